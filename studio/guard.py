"""Deny by default: one ASGI middleware in front of every route of the Gradio app.

1. **Login.** When the app has accounts (``--auth``, ``--auth-file``), every request needs a valid login,
   read the way ``gradio.routes``' ``get_current_user`` reads it (the ``access-token-<cookie id>`` cookie
   that ``POST /login`` sets, looked up in the app's tokens), except on ``PUBLIC``: the login page, the
   login form and the page's static files. A route that a future Gradio adds stays closed until it is
   listed there.
2. **Streams.** ``POST /gradio_api/stream/<event_id>`` replaces a pending job's inputs and ``.../close``
   ends it; Gradio 6.31 checks neither login nor ownership there. Only events with streaming inputs
   (``.stream()``) use them and this app has none (a test checks it), so both are refused for everyone.
3. **Ownership.** ``POST /gradio_api/cancel`` must name an event of the caller's own session (and user).
   With logins, a session hash belongs to the first user who uses it, and a download folder the app made
   for a user (``TempFiles.download_dir(owner)``) is served to that user only.
4. **Bodies.** A request with a body must be JSON (at most ``MAX_BODY``), except the upload (multipart,
   ``POST /gradio_api/upload``, size-limited by Gradio) and the login form; its file arguments must be
   uploads of this app, in Gradio's ``FileData`` form (``studio.payloads``).

Refusals are JSON ``{"detail": "<one line>"}`` with status 401, 403, 400, 404, 413 or 415.
"""

from __future__ import annotations

import inspect
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request, cookie_parser
from starlette.routing import compile_path

from studio.payloads import check_body
from studio.sessions import user_key

MAX_BODY = 16 * 2**20
MAX_SESSIONS = 100_000  # session hash -> user entries kept (the oldest are forgotten first)
SAFE = ("GET", "HEAD", "OPTIONS")
GET = ("GET", "HEAD")
PUBLIC = {  # route -> methods answered without a login: the login page and what it loads
    "/": GET,  # Gradio renders only the login form until the cookie is valid
    "/login": ("POST",),
    "/login/": ("POST",),
    "/logout": GET,
    "/assets/{path:path}": GET,  # the frontend's scripts, styles and fonts
    "/static/{path:path}": GET,
    "/svelte/{path:path}": GET,
    "/favicon.ico": GET,
    "/manifest.json": GET,
    "/pwa_icon": GET,
    "/pwa_icon/{size}": GET,
    "/robots.txt": GET,
    "/theme.css": GET,
    "/gradio_api/theme.css": GET,
    "/gradio_api/startup-events": GET,  # launch() calls it on its own server before anyone logs in
}
_PUBLIC = [(compile_path(route)[0], methods) for route, methods in PUBLIC.items()]
LOGIN = ("/login", "/login/")
UPLOAD = "/gradio_api/upload"
STREAM = "/gradio_api/stream/"
CANCEL = "/gradio_api/cancel"
JOIN = "/gradio_api/queue/join"
API_CALL = re.compile(r"^/gradio_api/(?:call|run|api)/([^/]+)/?$")
FILE = re.compile(r"^/gradio_api/file[=/](.+)$")
HEARTBEAT = re.compile(r"^/gradio_api/heartbeat/([^/]+)/?$")

LOG_IN = "log in first: open this app's page, or pass auth=(user, password) to gradio_client.Client"
NO_STREAMS = "this app streams no inputs, so POST /gradio_api/stream/... is refused; send a new request instead"
NOT_YOUR_JOB = "that job belongs to another session; you can cancel only your own jobs"
NOT_YOUR_SESSION = "that session belongs to another user; reload the page to start your own"
NOT_JSON = "the request body must be JSON; files go to POST /gradio_api/upload (multipart) first"
MULTIPART = "multipart bodies are accepted by POST /gradio_api/upload only; send JSON here"
TOO_LARGE = f"request body over {MAX_BODY // 2**20} MB; upload files with POST /gradio_api/upload instead"


def is_public(method: str, path: str) -> bool:
    return any(regex.match(path) and method in methods for regex, methods in _PUBLIC)


def route_path(scope) -> str:
    """The path the router matches (``root_path`` removed, as Starlette does)."""
    path, root = scope["path"], scope.get("root_path", "")
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


def login_required(gradio: Any) -> bool:
    """Whether the Gradio app has accounts (or an auth dependency), as its ``login_check`` asks."""
    return getattr(gradio, "auth", None) is not None or getattr(gradio, "auth_dependency", None) is not None


async def current_user(gradio: Any, scope) -> str | None:
    """The logged-in user of a request, as ``gradio.routes``' ``get_current_user`` finds it."""
    if getattr(gradio, "auth_dependency", None) is not None:
        user = gradio.auth_dependency(Request(scope))
        return await user if inspect.isawaitable(user) else user
    tokens, cookie_id = getattr(gradio, "tokens", None), getattr(gradio, "cookie_id", None)
    if not tokens or cookie_id is None:
        return None
    header = "; ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie")
    cookies = cookie_parser(header)
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return tokens.get(token)


def _blocks(gradio: Any):
    try:
        return gradio.get_blocks()
    except (AttributeError, ValueError):  # not a Gradio app, or no Blocks configured yet
        return None


def dependency(blocks: Any, path: str, payload: Any):
    """The Gradio dependency (event handler) a prediction body calls, when the route names one."""
    if blocks is None or not isinstance(payload, dict):
        return None
    if path == JOIN:
        index = payload.get("fn_index")
        return blocks.fns.get(index) if isinstance(index, int) else None
    match = API_CALL.match(path)
    if match:
        return next((fn for fn in blocks.fns.values() if fn.api_name == match.group(1)), None)
    return None


def foreign_event(blocks: Any, payload: dict, user: str | None, check_user: bool) -> bool:
    """Whether a cancel body names an event of another session (or, with logins, another user)."""
    event_id, session = payload.get("event_id"), payload.get("session_hash")
    queue = getattr(blocks, "_queue", None)
    if queue is None or not isinstance(event_id, str):
        return False
    event = queue.event_ids_to_events.get(event_id)
    if event is not None and (event.session_hash != session or (check_user and event.username != user)):
        return True
    return any(event_id in ids and owner != session for owner, ids in queue.pending_event_ids_session.items())


class Guard:
    """The middleware (see the module docstring); ``owner_of(path)`` names the owner of a download."""

    def __init__(self, app, upload_dir: str | Path, owner_of: Callable[[str], str | None] | None = None):
        self.app = app
        self.upload_dir = Path(upload_dir)
        self.owner_of = owner_of
        self._session_users: OrderedDict[str, str] = OrderedDict()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        gradio, path = scope.get("app"), route_path(scope)
        method = scope.get("method", "GET")
        logins = login_required(gradio)
        user = await current_user(gradio, scope) if logins else None
        if logins and user is None and not is_public(method, path):
            return await _refuse(scope, receive, send, 401, LOG_IN)
        if scope["type"] == "websocket" or method in SAFE:
            problem = self._read_problem(scope, path, user)
            if problem:
                return await _refuse(scope, receive, send, *problem)
            return await self.app(scope, receive, send)
        if path.startswith(STREAM):
            return await _refuse(scope, receive, send, 403, NO_STREAMS)
        if path == UPLOAD:
            return await self.app(scope, receive, send)  # multipart, streamed; Gradio limits its size
        body = await _read_body(receive)
        if body is None:
            return await _reply(send, 413, TOO_LARGE)
        if path not in LOGIN:
            problem = self._body_problem(scope, gradio, path, body, user)
            if problem:
                return await _reply(send, *problem)
        return await self.app(scope, _replay(body, receive), send)

    def _read_problem(self, scope, path: str, user: str | None) -> tuple[int, str] | None:
        """Ownership on reads: another user's session hash or download."""
        if user is None:
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        heartbeat = HEARTBEAT.match(path)
        session = heartbeat.group(1) if heartbeat else (query.get("session_hash") or [None])[0]
        if session is not None and not self._claim(session, user):
            return 403, NOT_YOUR_SESSION
        file = FILE.match(path)
        if file and self.owner_of is not None:
            owner = self.owner_of(file.group(1))
            if owner is not None and owner != user_key(user):
                return 404, "file not found"  # as for any file this server does not serve
        return None

    def _body_problem(self, scope, gradio, path: str, body: bytes, user: str | None) -> tuple[int, str] | None:
        """What is wrong with a POST body (format, session, cancel target, file arguments), if anything."""
        if _content_type(scope).startswith("multipart/"):
            return 415, MULTIPART
        try:
            payload = json.loads(body) if body.strip() else None
        except ValueError:
            return 400, NOT_JSON
        session = payload.get("session_hash") if isinstance(payload, dict) else None
        if user is not None and isinstance(session, str) and not self._claim(session, user):
            return 403, NOT_YOUR_SESSION
        blocks = _blocks(gradio)
        if path == CANCEL and isinstance(payload, dict) and foreign_event(blocks, payload, user, user is not None):
            return 403, NOT_YOUR_JOB
        problem = check_body(payload, self.upload_dir, dependency(blocks, path, payload))
        return (400, problem) if problem else None

    def _claim(self, session: str, user: str) -> bool:
        """Bind ``session`` to ``user`` on first use; False when another user holds it."""
        owner = self._session_users.setdefault(session, user)
        self._session_users.move_to_end(session)
        while len(self._session_users) > MAX_SESSIONS:
            self._session_users.popitem(last=False)
        return owner == user


def _content_type(scope) -> str:
    return next((v.decode("latin-1").lower() for k, v in scope.get("headers", []) if k == b"content-type"), "")


async def _read_body(receive) -> bytes | None:
    """The whole request body, or None once it passes ``MAX_BODY``."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_BODY:
            return None
    return body


def _replay(body: bytes, receive):
    """A ``receive`` that hands the app the body already read, then the client's further messages."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(scope, receive, send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await _reply(send, status, detail)


async def _reply(send, status: int, detail: str) -> None:
    data = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
