"""Refuse API calls whose file arguments name server files instead of this app's uploads.

Gradio (6.31) copies any file a ``FileData`` argument names into its cache before a handler runs, so a
client could have the app read, say, ``/etc/passwd`` as a prompt file. This ASGI middleware looks at
every JSON request to the prediction routes and answers 400 when a file argument's ``path`` lies outside
the app's upload folder (and is not an http URL). Browser uploads go to ``/gradio_api/upload`` first and
then name a path inside that folder, so they pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GUARDED = ("/gradio_api/queue/join", "/gradio_api/call/", "/gradio_api/run/", "/gradio_api/api/")
MAX_BODY = 16 * 2**20


def file_paths(value: Any) -> Iterator[str]:
    """Every ``path`` of a file-like dict (Gradio ``FileData``) anywhere inside a JSON value."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str) and ("meta" in value or "orig_name" in value or "url" in value):
            yield value["path"]
        for item in value.values():
            yield from file_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from file_paths(item)


def foreign_paths(payload: Any, upload_dir: Path) -> list[str]:
    """File paths in ``payload`` that are neither inside ``upload_dir`` nor http(s) URLs."""
    root = upload_dir.resolve()
    bad = []
    for path in file_paths(payload):
        if path.startswith(("http://", "https://")):
            continue
        try:
            inside = Path(path).resolve().is_relative_to(root)
        except (OSError, ValueError):
            inside = False
        if not inside:
            bad.append(path)
    return bad


class UploadGuard:
    """ASGI middleware: 400 for prediction requests that name server files as file arguments."""

    def __init__(self, app, upload_dir: str | Path):
        self.app = app
        self.upload_dir = Path(upload_dir)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].startswith(GUARDED):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                return await _reply(send, 413, "request too large")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        if foreign_paths(payload, self.upload_dir):
            return await _reply(send, 400, "file arguments must be files uploaded to this app")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _reply(send, status: int, detail: str) -> None:
    data = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
