"""The app behind logins (alice from --auth, bob from --auth-file): every route but the login page needs a
login, nobody swaps, ends or cancels another's pending job, and each user lists, resumes, cancels and
downloads only their own runs, across reloads. One server for the module."""

from __future__ import annotations

import json
import re
import time

import pytest
from devserver import running_app
from rawhttp import call, fn_index, generate_data, hijack, join, login, result, send, session_messages

from npnet.errors import UserError
from studio.auth import accounts, read_auth_file
from studio.config import build_parser, config_from_args
from studio.guard import PUBLIC, is_public

USERS = {"alice": "pw-alice-1", "bob": "pw-bob-2"}
PROMPTS = "\n".join(f"a {c} {s}" for c in ("red", "blue") for s in ("circle", "square", "triangle"))


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth")
    accounts_file = workdir / "accounts.txt"
    accounts_file.write_text(f"# reviewers\nbob:{USERS['bob']}\n")
    accounts_file.chmod(0o600)
    args = ("--offline", "--device", "cpu", "--cache-examples", "off", "--queue-size", "32", "--max-sessions", "8",
            "--auth", f"alice:{USERS['alice']}", "--auth-file", str(accounts_file))  # fmt: skip
    with running_app(workdir, *args) as (url, proc):
        yield url
        assert proc.poll() is None, "the server died during the tests"


@pytest.fixture(scope="module")
def cookies(auth_app):
    return {user: login(auth_app, user, password) for user, password in USERS.items()}


def _client(url, user):
    from gradio_client import Client

    return Client(url, auth=(user, USERS[user]), verbose=False, download_files=False)


@pytest.fixture(scope="module")
def app_routes():
    """(path, methods) of every route of this app's FastAPI server, as Gradio builds it for ``launch()``."""
    import gradio as gr
    from fastapi.routing import iter_route_contexts

    from app import build_demo
    from studio.service import StudioService
    from studio.tempfiles import TempFiles

    config = config_from_args(build_parser().parse_args(["--offline", "--device", "cpu", "--cache-examples", "off"]))
    temp = TempFiles()
    try:
        demo = build_demo(StudioService(config, temp))
        demo.auth = [("alice", "x")]
        server = gr.routes.App.create_app(demo)
        routes = [(r.path, sorted(r.methods or ())) for r in iter_route_contexts(server.routes) if r.path]
    finally:
        temp.cleanup()
    return demo, routes


def _concrete(template: str) -> str:
    """A path that the route template matches ({name} and {name:path} filled in)."""
    return re.sub(r"\{[^}]+\}", "x1", template)


def test_without_a_login_no_route_takes_data(auth_app, app_routes):
    _, routes = app_routes
    assert len(routes) > 50 and any(p == "/gradio_api/queue/join" for p, _ in routes)
    probe = {"data": [], "fn_index": 0, "session_hash": "x1", "event_id": "x1"}
    for path, methods in routes:
        for method in {*methods, "POST"} - {"OPTIONS"}:
            if is_public(method, path):
                continue
            status, text = send(auth_app, _concrete(path), probe if method == "POST" else None, method=method)
            assert status in (401, 403, 404, 405), (method, path, status, text[:200])
    for template, methods in PUBLIC.items():  # every public entry is a route of this app, none takes data
        assert any(path == template for path, _ in routes), f"PUBLIC lists {template}, which Gradio does not serve"
        assert "POST" not in methods or template in ("/login", "/login/")
    status, page = send(auth_app, "")
    assert status == 200 and "auth_required" in page and "generate-button" not in page  # only the login form


def test_no_user_can_swap_end_or_cancel_another_users_pending_job(auth_app, cookies):
    url = auth_app
    blocker = _client(url, "alice").submit(
        model="micro", prompt_set="(prompts typed below)", prompts_text=PROMPTS, prompts_file=None, limit=6,
        seeds="0-1", methods=["standard", "npnet"], metrics=["micro"], steps=4, api_name="/evaluate",
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while blocker.status().code.name not in ("PROCESSING", "PROGRESS") and time.monotonic() < deadline:
        time.sleep(0.05)
    fn = fn_index(url, "generate", cookies["alice"])
    event = join(url, fn, generate_data(seed=7), session="alice-page", cookie=cookies["alice"])
    strangers = {"no login": (hijack(url, event, fn), 401), "bob": (hijack(url, event, fn, cookies["bob"]), 403)}
    peek = send(url, "gradio_api/queue/data?session_hash=alice-page", cookie=cookies["bob"])
    assert not blocker.done()  # alice's job was waiting in the queue all along
    for who, (attempts, expected) in strangers.items():
        for name, (status, text) in attempts.items():
            assert status == expected and "root:" not in text, (who, name, status, text)
    assert peek[0] == 403 and "another user" in peek[1]
    done = [m for m in session_messages(url, "alice-page", cookies["alice"]) if m["msg"] == "process_completed"]
    assert len(done) == 1 and done[0]["success"], done
    assert "seed 7" in done[0]["output"]["data"][4] and "seed 99" not in json.dumps(done[0])
    assert "Done" in blocker.result()[0]


def _evaluate(client, prompts="a red circle\na blue square", seeds="0"):
    return client.submit(
        model="micro", prompt_set="(prompts typed below)", prompts_text=prompts, prompts_file=None, limit=6,
        seeds=seeds, methods=["standard", "npnet"], metrics=["micro"], steps=2, api_name="/evaluate",
    )  # fmt: skip


def _runs(client) -> list[str]:
    return [value for _label, value in client.predict(api_name="/list_runs")["choices"]]


def test_each_user_lists_resumes_cancels_and_downloads_only_their_own_runs(auth_app, cookies):
    from gradio_client.exceptions import AppError

    url = auth_app
    alice, bob = _client(url, "alice"), _client(url, "bob")
    long_run = _evaluate(bob, PROMPTS, seeds="0-1")  # 12 samples
    deadline = time.monotonic() + 120
    while not (long_run.status().progress_data or long_run.done()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Nothing is running" in alice.predict(api_name="/cancel_evaluation")  # bob's run is not alice's
    assert "Stopping" in bob.predict(api_name="/cancel_evaluation")
    stopped, *_rest, bob_run = long_run.result()
    assert "Stopped" in stopped
    status, *_rest, alice_files, alice_run = _evaluate(alice).result()
    assert "Done" in status
    reloaded = {"alice": _client(url, "alice"), "bob": _client(url, "bob")}  # a reload: fresh sessions
    assert alice_run in _runs(reloaded["alice"]) and bob_run not in _runs(reloaded["alice"])
    assert bob_run in _runs(reloaded["bob"]) and alice_run not in _runs(reloaded["bob"])
    with pytest.raises(AppError, match="no evaluation run"):
        reloaded["alice"].predict(run_dir=bob_run, api_name="/resume_evaluation")
    resumed, *_rest, bob_files, _ = reloaded["bob"].predict(run_dir=bob_run, api_name="/resume_evaluation")
    assert "Done" in resumed and "resumed from disk" in resumed
    for owner, files in (("alice", alice_files), ("bob", bob_files)):
        other = "bob" if owner == "alice" else "alice"
        assert len(files) == 4
        for file in files:
            path = "gradio_api/file=" + file["path"]
            assert send(url, path, cookie=cookies[owner])[0] == 200
            assert send(url, path, cookie=cookies[other])[0] == 404  # another user's download does not exist
            assert send(url, path)[0] == 401


def test_auth_flags_and_auth_file(tmp_path):
    file = tmp_path / "accounts.txt"
    file.write_text("# team\nalice:one\n\ncarol:two:with:colons\n")
    file.chmod(0o640)
    assert read_auth_file(file) == [("alice", "one"), ("carol", "two:with:colons")]
    args = build_parser().parse_args(["--auth", "bob:pw", "--auth", "dave:pw2", "--auth-file", str(file)])
    assert config_from_args(args).auth == (("bob", "pw"), ("dave", "pw2"), ("alice", "one"), ("carol", "two:with:colons"))
    file.chmod(0o644)
    with pytest.raises(UserError, match="readable by every user.*chmod 600"):
        read_auth_file(file)
    file.write_text("alice:one\nsecret-password-line\n")
    file.chmod(0o600)
    with pytest.raises(UserError, match="line 2: expected user:password") as info:
        read_auth_file(file)
    assert "secret-password-line" not in str(info.value)
    duplicate = tmp_path / "duplicate.txt"
    duplicate.write_text("alice:y\n")
    duplicate.chmod(0o600)
    with pytest.raises(UserError, match="'alice' is given more than once"):
        accounts([("alice", "x")], str(duplicate))
    with pytest.raises(UserError, match="no such file"):
        read_auth_file(tmp_path / "absent.txt")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--auth", "nopassword"])


def test_no_event_streams_inputs(app_routes):
    """The guard refuses POST /gradio_api/stream/... outright because no event of the app streams inputs;
    an event with streaming inputs needs those routes (with an ownership check) first."""
    demo, _ = app_routes
    assert demo.fns and all(fn.connection != "stream" for fn in demo.fns.values())


def test_sessions_beyond_max_sessions_are_forgotten_oldest_first(auth_app, cookies):
    """--max-sessions bounds what Gradio keeps per visitor (the current pair, updated fields): after 8 newer
    sessions, the oldest one's pair is gone and the newest one's is kept."""
    from gradio_client.exceptions import AppError

    url = auth_app
    oldest, newest = _client(url, "alice"), _client(url, "alice")
    oldest.predict(*generate_data(seed=1), api_name="/generate")
    assert "golden" in oldest.predict(api_name="/analyze")[0]
    for seed in range(2, 10):  # eight more sessions: one raw call each
        event = call(url, "generate", generate_data(seed=seed), cookies["bob"])
        assert "event: complete" in result(url, "generate", event, cookies["bob"])
    newest.predict(*generate_data(seed=11), api_name="/generate")
    assert "golden" in newest.predict(api_name="/analyze")[0]
    with pytest.raises(AppError, match="generate one"):
        oldest.predict(api_name="/analyze")
