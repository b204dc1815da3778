"""Turn exceptions into ``gr.Error`` messages that say what to change; the server keeps running."""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr
import torch

log = logging.getLogger("studio")
OOM_HINT = (
    "out of memory: try a smaller size (e.g. 768x768), fewer methods, fewer seeds, or restart the app "
    "with --cpu-offload (model CPU offload) or --dtype float16"
)


def to_gr_error(err: Exception) -> gr.Error:
    """A user-facing error for ``err``: its own message for bad input, a hint for OOM, else a summary."""
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
        return gr.Error(OOM_HINT)
    if isinstance(err, (ValueError, FileNotFoundError, KeyError)):
        return gr.Error(str(err).strip("'\""))
    log.exception("unexpected error in a request", exc_info=err)
    return gr.Error(f"internal error ({type(err).__name__}: {err}); the server is still running")


def user_errors(fn):
    """Decorate an event handler (function or generator) so every failure becomes a ``gr.Error``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:
                raise to_gr_error(err) from err

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise to_gr_error(err) from err

    return wrapper
