"""ZeroGPU on Hugging Face Spaces: ``spaces.GPU`` when the ``spaces`` package is importable, else a no-op.

The ZeroGPU habits (https://huggingface.co/docs/hub/spaces-zerogpu): models load at start-up, outside the
``@spaces.GPU`` functions (``StudioService.warm_up`` when ``on_zero_gpu()``), and each GPU function asks
for the seconds its work needs: ``spaces.GPU(duration=f)`` with ``f`` taking the function's own
arguments (``gpu(duration=...)`` below binds them by name; ``studio.gpu_time`` holds the cost model).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable

from npnet.errors import UserError
from studio.gpu_time import MAX_S, MIN_S

log = logging.getLogger("studio")


def _spaces():
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def on_zero_gpu() -> bool:
    """Running as a Space (``SPACE_ID`` set) with the ``spaces`` package importable."""
    return bool(os.environ.get("SPACE_ID")) and _spaces() is not None


def gpu(duration: int | Callable[..., float] = 60):
    """Decorator requesting a GPU per call on ZeroGPU Spaces: ``duration`` seconds, or
    ``duration(**arguments)`` seconds for a callable, given the call's arguments by parameter name."""

    def decorate(fn):
        spaces = _spaces()
        if spaces is None:
            return fn
        return spaces.GPU(duration=duration_of(fn, duration) if callable(duration) else duration)(fn)

    return decorate


def duration_of(fn, estimate: Callable[..., float]) -> Callable[..., int]:
    """What ``spaces.GPU(duration=...)`` calls with ``fn``'s arguments: ``estimate`` of them by name.

    Bad input (the function will refuse it at once) asks for ``MIN_S``; an estimate that fails otherwise
    asks for ``MAX_S`` rather than cutting the call short."""
    signature = inspect.signature(fn)

    def seconds(*args, **kwargs) -> int:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:  # the call itself will fail
            return MIN_S
        bound.apply_defaults()
        try:
            return int(estimate(**bound.arguments))
        except UserError:
            return MIN_S
        except Exception:
            log.exception("GPU duration estimate of %s failed; asking for %d s", fn.__name__, MAX_S)
            return MAX_S

    return seconds
