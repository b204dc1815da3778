"""Raw HTTP to a running app, as a hand-written (or hostile) client sends it: no gradio_client in between."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


def send(url: str, path: str, body=None, cookie: str = "", method: str | None = None,
         content_type: str = "application/json", timeout: float = 60) -> tuple[int, str]:  # fmt: skip
    """(status, text) of one request; ``body`` is JSON-encoded unless it is bytes already."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if data is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(url + path.lstrip("/"), data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def login(url: str, user: str, password: str) -> str:
    """The Cookie header of a user logged in through Gradio's login form."""
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(url + "login", data=form, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        cookies = [c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []]
    assert cookies, "the login set no cookie"
    return "; ".join(cookies)


def call(url: str, api: str, data: list, cookie: str = "") -> str:
    """Queue one call of a named endpoint (``POST /gradio_api/call/<api>``); returns its event id."""
    status, text = send(url, f"gradio_api/call/{api}", {"data": data}, cookie)
    assert status == 200, (status, text)
    return json.loads(text)["event_id"]


def result(url: str, api: str, event_id: str, cookie: str = "", timeout: float = 300) -> str:
    """The event stream of a queued call, read until it ends (its last ``data:`` is the outcome)."""
    status, text = send(url, f"gradio_api/call/{api}/{event_id}", cookie=cookie, timeout=timeout)
    assert status == 200, (status, text)
    return text


def upload(url: str, file: Path, cookie: str = "") -> str:
    """Upload ``file`` as the browser does (multipart ``POST /gradio_api/upload``); its server path."""
    boundary = secrets.token_hex(8)
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{file.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    body = head + file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, text = send(url, "gradio_api/upload", body, cookie, content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 200, (status, text)
    return json.loads(text)[0]


def generate_data(prompt: str = "a red circle", seed: int = 7, npnet="") -> list:
    """The 15 values of ``/generate`` (micro model, 3 steps, 64x64, standard and NPNet)."""
    return [prompt, "", seed, "micro", npnet, "ddim", 3, 5.0, 64, 64, ["standard", "npnet"], ["micro"], None, None, None]


def fn_index(url: str, api: str, cookie: str = "") -> int:
    """The dependency id of a named endpoint, from the page config."""
    status, text = send(url, "config", cookie=cookie)
    assert status == 200, (status, text)
    return next(d["id"] for d in json.loads(text)["dependencies"] if d.get("api_name") == api)


def join(url: str, fn: int, data: list, session: str, cookie: str = "") -> str:
    """Queue a call as the browser does (``POST /gradio_api/queue/join``); returns its event id."""
    body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None, "trigger_id": None}
    status, text = send(url, "gradio_api/queue/join", body, cookie)
    assert status == 200, (status, text)
    return json.loads(text)["event_id"]


def session_messages(url: str, session: str, cookie: str = "", timeout: float = 300) -> list[dict]:
    """Every queue message of a session (``GET /gradio_api/queue/data``), read until the stream closes."""
    status, text = send(url, f"gradio_api/queue/data?session_hash={session}", cookie=cookie, timeout=timeout)
    assert status == 200, (status, text)
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def hijack(url: str, event_id: str, fn: int, cookie: str = "") -> dict[str, tuple[int, str]]:
    """What a stranger tries on someone's pending job: swap its inputs for a payload naming /etc/passwd as a
    file, end it (``.../close``), and cancel it (with a session of its own, and with the event id as one)."""
    passwd = {"path": "/etc/passwd", "orig_name": "passwd", "meta": {"_type": "gradio.FileData"}}
    swapped = {"data": generate_data("a blue square", 99, passwd), "fn_index": fn, "session_hash": "stranger"}
    cancel = {"fn_index": fn, "event_id": event_id}
    return {
        "swap": send(url, f"gradio_api/stream/{event_id}", {**swapped, "event_data": None}, cookie),
        "close": send(url, f"gradio_api/stream/{event_id}/close", {}, cookie),
        "cancel": send(url, "gradio_api/cancel", {**cancel, "session_hash": "stranger"}, cookie),
        "cancel as its id": send(url, "gradio_api/cancel", {**cancel, "session_hash": event_id}, cookie),
    }
