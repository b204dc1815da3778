"""What a request body may carry as a file: an upload of this app, in Gradio's ``FileData`` form.

Gradio (6.31) copies any file a ``FileData`` argument names into its cache before a handler runs, so a
client could have the app read, say, ``/etc/passwd`` as a prompt file; a malformed one fails later with
pydantic's text and a link to its docs. ``studio.guard`` runs these checks on every JSON body first and
answers with the one line they return, which names the input and says how to send it. Browser uploads
go to ``/gradio_api/upload`` first and then name a path inside the upload folder, so they pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_TYPE = "gradio.FileData"
HOW = "upload the file first (POST /gradio_api/upload, or gradio_client.handle_file) and send what it returns"
SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
WEB = ("http", "https")


def file_refs(value: Any, where: str) -> Iterator[tuple[str, dict]]:
    """(location, dict) of every file reference inside a JSON value: a dict with a ``path`` key or
    ``FileData`` meta, at any depth."""
    if isinstance(value, dict):
        meta = value.get("meta")
        if "path" in value or (isinstance(meta, dict) and meta.get("_type") == FILE_TYPE):
            yield where, value
        for item in value.values():
            yield from file_refs(item, where)
    elif isinstance(value, list):
        for item in value:
            yield from file_refs(item, where)


def _scheme(text: str) -> str | None:
    match = SCHEME.match(text)
    return match.group(1).lower() if match and len(match.group(1)) > 1 else None  # "C:" is a drive


def _inside(path: str, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def file_problem(ref: dict, upload_dir: Path) -> str | None:
    """Why a file reference cannot be used (None: it is an upload of this app or an http(s) URL)."""
    meta = ref.get("meta")
    if not isinstance(meta, dict) or meta.get("_type") != FILE_TYPE:
        return f'a file argument needs "meta": {{"_type": "{FILE_TYPE}"}}'
    path, url = ref.get("path"), ref.get("url")
    for text in (path, url):
        scheme = _scheme(text) if isinstance(text, str) else None
        if scheme is not None and scheme not in WEB:
            return f"{scheme}: URLs are not read; file arguments must be files uploaded to this app"
    if not isinstance(path, str) or not path:
        return 'a file argument needs a "path"'
    if url is not None and not isinstance(url, str):
        return 'a file argument\'s "url" must be a string or null'
    if _scheme(path) in WEB or _inside(path, upload_dir):
        return None
    return "file arguments must be files uploaded to this app"


def field_name(fn: Any, index: int, inputs: list | None = None) -> str:
    """'Seed' (input 3 of /generate): a dependency's input as a message names it (``inputs``: the
    components the values map to, by default all of ``fn``'s)."""
    inputs = (getattr(fn, "inputs", None) or []) if inputs is None else inputs
    label = getattr(inputs[index], "label", None) if index < len(inputs) else None
    api = getattr(fn, "api_name", None)
    place = f"input {index + 1} of /{api}" if api else f"input {index + 1}"
    return f"{label!r} ({place})" if label else place


def takes_files(block: Any) -> bool:
    """Whether a component's value is Gradio file data (gr.File and the like)."""
    model = getattr(block, "data_model", None)
    return getattr(model, "__name__", "") in ("FileData", "ListFiles")


def check_body(payload: Any, upload_dir: Path, fn: Any = None) -> str | None:
    """The first problem with the file arguments of a JSON body, as one line (None: none found).

    ``fn``, the Gradio dependency the body calls (when known), names the inputs and says which take files.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(data, list):
        inputs = value_inputs(fn, len(data))
        for index, value in enumerate(data):
            where = field_name(fn, index, inputs)
            refs = list(file_refs(value, where))
            if index < len(inputs) and takes_files(inputs[index]):
                if not _file_value(value):
                    return f"{where}: expected a file uploaded to this app, got {type(value).__name__}; {HOW}"
                refs = [(where, v) for v in (value if isinstance(value, list) else [value]) if v is not None]
            for _, ref in refs:
                problem = file_problem(ref, upload_dir)
                if problem:
                    return f"{where}: {problem}; {HOW}"
        rest = {k: v for k, v in payload.items() if k != "data"}
    else:
        rest = payload
    for where, ref in file_refs(rest, "the request body"):
        problem = file_problem(ref, upload_dir)
        if problem:
            return f"{where}: {problem}; {HOW}"
    return None


def value_inputs(fn: Any, count: int) -> list:
    """The components ``count`` values map to: all of ``fn``'s inputs, or (Gradio's simple API, /call)
    those shown in the API when the client left out the rest (``gr.State``)."""
    inputs = list(getattr(fn, "inputs", None) or [])
    shown = [block for block in inputs if not getattr(block, "skip_api", False)]
    return shown if count != len(inputs) and count == len(shown) else inputs


def _file_value(value: Any) -> bool:
    """None, one file reference or a list of them (the shapes a file input accepts)."""
    if value is None or isinstance(value, dict):
        return True
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)
