"""Turn exceptions into ``gr.Error`` messages; the server keeps running.

Bad input (``UserError``) is shown on one line with server paths cut to their file names (an upload is
named as the user named it, never by its place in the server's cache); out-of-memory gets a hint saying
what to change; anything else is a bug or an environment failure: it is logged with its traceback under
a short id and the user sees "internal error, logged as <id>" (no server details leak into the page).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import uuid

import gradio as gr
import torch

from npnet.errors import UserError, one_line

log = logging.getLogger("studio")
OOM_HINT = (
    "out of memory: try a smaller size (e.g. 768x768), fewer methods, fewer seeds, or restart the app "
    "with --cpu-offload (model CPU offload) or --dtype float16"
)
# an absolute path of two or more parts that is not inside a URL ("https://host/a/b") or a relative path
SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s/'\"`,;:()\[\]{}<>]+){2,}/?")
MAX_MESSAGE = 600


def public_message(text: object) -> str:
    """``text`` as the page shows it: one line, each absolute path replaced by its last part."""
    line = SERVER_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], one_line(text))
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def to_gr_error(err: Exception) -> gr.Error:
    """A user-facing error for ``err``: its own message for bad input, a hint for OOM, else a logged id."""
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, UserError):
        return gr.Error(public_message(err), duration=None)  # stays until closed: the outputs keep the last result
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
        log.warning("out of memory in a request: %s", str(err).splitlines()[0][:300])
        return gr.Error(OOM_HINT, duration=None)
    error_id = uuid.uuid4().hex[:8]
    log.error("internal error %s in a request", error_id, exc_info=err)
    return gr.Error(f"internal error, logged as {error_id}; the server is still running", duration=None)


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
