"""What every command line shares: one-line errors with fixed exit statuses, seed lists, path checks.

Exit statuses: 0 done; 2 bad usage (an argparse error, a ``UserError`` or other ``ValueError``: the input
must change); 1 a failure (an ``OSError`` such as an unwritable output or a missing input file, or a
``RunFailed`` run); 130 interrupted (Ctrl-C). Each prints one line on stderr and no traceback. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from npnet.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, one_line


class RunFailed(RuntimeError):
    """The command ran but produced nothing usable (e.g. every sample failed): exit status 1."""


def describe(err: BaseException) -> str:
    """A one-line message for ``err``; ``OSError``s read 'No such file or directory: PATH'."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.strerror}: {err.filename}"
        if err.filename2 is not None:
            text += f" -> {err.filename2}"
    else:
        text = str(err) or type(err).__name__
    return one_line(text) or type(err).__name__


def exit_status(err: BaseException) -> int | None:
    """The exit status for an exception a command line reports in one line; ``None`` for a bug."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, ValueError):  # UserError is a ValueError
        return EXIT_USAGE
    if isinstance(err, (OSError, RunFailed)):
        return EXIT_FAILURE
    return None


def run_command(call: Callable[[], Any]) -> int:
    """Run ``call()``; map bad input / failures / Ctrl-C to one stderr line and an exit status.

    An ``int`` result is the exit status, anything else means 0. ``SystemExit`` (argparse) passes through.
    """
    try:
        result = call()
    except (KeyboardInterrupt, ValueError, OSError, RunFailed) as err:
        status = exit_status(err)
        message = "interrupted" if status == EXIT_INTERRUPTED else f"error: {describe(err)}"
        try:
            print(message, file=sys.stderr, flush=True)
        except OSError:  # stderr itself is gone (closed pipe): the status still tells
            pass
        return status
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def run_standalone(add_arguments: Callable, main: Callable, doc: str | None) -> None:
    """``python -m cli.<module>``: the module's own parser and ``main``, with the same errors and statuses."""
    parser = add_arguments(OneLineParser(description=(doc or "").strip().splitlines()[0]))
    sys.exit(run_command(lambda: main(parser.parse_args())))


class LazyHelp(str):
    """A help string made only when ``--help`` is shown (argparse expands help with ``help % params``).

    Listing the model presets imports diffusers (seconds); a usage error should not wait for that.
    """

    def __new__(cls, make: Callable[[], str], placeholder: str = "..."):
        text = super().__new__(cls, placeholder)
        text.make = make
        return text

    def __mod__(self, params):
        return str(self.make()) % params


# -- argument types -------------------------------------------------------------------------------------
def seed_list(text: str) -> tuple[int, ...]:
    """argparse type for seeds: ``0``, ``0,1,2`` or an inclusive range ``0-7`` (checked before expanding)."""
    from eval.seeds import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def whole_number(minimum: int = 0) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {text!r}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = whole_number(1)


# -- paths ----------------------------------------------------------------------------------------------
def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a ``Path``; ``FileNotFoundError`` (exit status 1) naming ``what`` when it is not a file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise IsADirectoryError(f"{what} {path} is a folder; name a file")
    return path


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a ``Path``; ``FileNotFoundError`` (exit status 1) naming ``what`` when it is not a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file; name a folder")
    return path


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> Path:
    """Fail early (an ``OSError``, exit status 1) when the output ``path`` (a file, or a folder) cannot be written.

    Creates nothing: a temporary file is made and removed in the nearest existing folder on the way.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a folder; name a file" if path.is_dir() else "a file; name a folder"
        raise (IsADirectoryError if path.is_dir() else NotADirectoryError)(f"{what} {path} is {kind}")
    probe = path if folder and path.is_dir() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"cannot write {what} {path}: {probe} is a file, not a folder")
    try:
        handle, tmp = tempfile.mkstemp(dir=probe, prefix=".npnet-write-check.", suffix=".tmp")
        os.close(handle)
        os.unlink(tmp)
    except OSError as err:
        raise type(err)(f"cannot write {what} {path}: {err.strerror or err}") from err
    return path
