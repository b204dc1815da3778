"""Errors about a request's values in the app's words: the field by its label, and the fix, on one line.

Gradio (6.31) reports a value its component cannot take as "Could not preprocess input component at
index 2 ... with input components: [textbox, ...]" plus the original exception, and too few values as a
list of ``<gradio.components... object at 0x...>`` reprs. Its ``Blocks`` builds both messages in two
methods, ``validate_inputs`` and ``_format_processing_error``; ``explain_errors`` replaces them on this
app's Blocks only (instance attributes, Gradio itself is untouched) so the client gets a ``gr.Error``
such as "'Seed' (input 3 of /generate): 'abc' is not a number; enter a number, e.g. 0".
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import gradio as gr

from studio.payloads import field_name

log = logging.getLogger("studio")
HINTS = {  # component class -> what the field takes
    "Number": "is not a number; enter a number, e.g. 0",
    "Slider": "is not a number; enter a number within the slider's range",
    "Checkbox": "is not true or false; send true or false",
    "CheckboxGroup": "is not a list of the listed choices; send a list such as the field's default",
    "Dropdown": "is not one of the listed choices; choose one of them",
    "Radio": "is not one of the listed choices; choose one of them",
    "Textbox": "is not text; send a string",
    "File": "is not an uploaded file; upload it first and send what the upload returns",
}


def shown(value: Any) -> str:
    """A short, safe rendering of a client's value: scalars as repr (cut to 40 characters), else the type."""
    if value is None or isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"


def input_message(fn: Any, index: int, block: Any, value: Any) -> str:
    """One line for a value the input component ``block`` cannot take."""
    hint = HINTS.get(type(block).__name__, "is not a valid value for this field; send what 'Use via API' shows")
    return f"{field_name(fn, index)}: {shown(value)} {hint}"


def count_message(fn: Any, got: int) -> str:
    """One line for a request with the wrong number of values."""
    names = [getattr(b, "label", None) or type(b).__name__.lower() for b in fn.inputs]
    api = f"/{fn.api_name}" if getattr(fn, "api_name", None) else "this event"
    listed = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"{api} takes {len(names)} input values ({listed}); got {got}: send one value per input, in this order"


def explain_errors(demo: gr.Blocks) -> gr.Blocks:
    """Install the two messages on ``demo`` (see the module docstring); returns ``demo``."""

    def validate_inputs(block_fn, inputs):
        too_many = len(inputs) > len(block_fn.inputs) and not block_fn.cancels  # cancels get the session
        if len(inputs) < len(block_fn.inputs) or too_many:
            raise gr.Error(count_message(block_fn, len(inputs)), print_exception=False)

    def format_processing_error(block_fn, index, block, value, is_input, original_error) -> str:
        if is_input:
            return input_message(block_fn, index, block, value)
        error_id = uuid.uuid4().hex[:8]  # an output the app returned: a bug, logged in full
        log.error("internal error %s: output %d of %s", error_id, index, block_fn.name, exc_info=original_error)
        return f"internal error, logged as {error_id}; the server is still running"

    demo.validate_inputs = validate_inputs
    demo._format_processing_error = format_processing_error
    return demo
