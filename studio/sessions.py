"""What each visitor may see: their own evaluation runs and trained checkpoints, plus published ones.

A visitor is the logged-in user when the app runs with ``--auth`` (so a reload, a second tab or a
``gradio_client.Client(auth=...)`` of the same user sees the same runs), else Gradio's ``session_hash``
(one per page load or ``Client``). Runs are shown and resumed by their folder name (a run id), never by
a server path a client could choose; the operator publishes runs and checkpoints for everyone with
``--publish``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from npnet.errors import UserError

NO_SESSION = "api"  # handlers called without a gr.Request (direct Python calls in tests)


@dataclass
class _Owned:
    runs: dict[str, Path] = field(default_factory=dict)  # run id -> folder, in creation order
    checkpoints: list[Path] = field(default_factory=list)


class Sessions:
    """Thread-safe map session -> the runs and checkpoints it made (the most recent ``max_sessions`` kept)."""

    def __init__(self, published: tuple[str, ...] = (), max_sessions: int = 10_000):
        self._lock = threading.Lock()
        self._owned: OrderedDict[str, _Owned] = OrderedDict()
        self.max_sessions = max_sessions
        paths = [Path(p).expanduser().resolve() for p in published]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise UserError(f"--publish: {', '.join(missing)} does not exist")
        self.published_runs = {p.name: p for p in paths if (p / "manifest.json").is_file()}
        self.published_checkpoints = [p for p in paths if p.is_file()]
        unknown = [str(p) for p in paths if p.name not in self.published_runs and p not in self.published_checkpoints]
        if unknown:
            raise UserError(
                f"--publish: {', '.join(unknown)} is neither an evaluation run folder (with manifest.json) "
                "nor a checkpoint file"
            )

    def _session(self, session: str) -> _Owned:
        owned = self._owned.setdefault(session, _Owned())
        self._owned.move_to_end(session)
        while len(self._owned) > self.max_sessions:
            self._owned.popitem(last=False)
        return owned

    def add_run(self, session: str, folder: Path) -> str:
        with self._lock:
            self._session(session).runs[folder.name] = folder
        return folder.name

    def add_checkpoint(self, session: str, path: Path) -> None:
        with self._lock:
            self._session(session).checkpoints.append(Path(path))

    def runs(self, session: str) -> list[str]:
        """Run ids this session may open: its own (newest first), then the published ones."""
        with self._lock:
            own = list(self._owned[session].runs) if session in self._owned else []
        return [*reversed(own), *[r for r in self.published_runs if r not in own]]

    def run_dir(self, session: str, run_id: str) -> Path:
        """The folder of a run this session may resume, or a UserError (other sessions' runs do not exist)."""
        with self._lock:
            own = self._owned[session].runs if session in self._owned else {}
            folder = own.get(str(run_id)) or self.published_runs.get(str(run_id))
        if folder is None:
            raise UserError(f"no evaluation run {str(run_id)[:80]!r} in this session; pick one from Previous runs")
        return folder

    def checkpoints(self, session: str) -> list[str]:
        with self._lock:
            own = list(self._owned[session].checkpoints) if session in self._owned else []
        return [str(p) for p in [*reversed(own), *self.published_checkpoints]]


USER_PREFIX = "user:"  # session keys of logged-in users; session hashes are stored without colons


def user_key(username: str) -> str:
    """The session key of a logged-in user."""
    return f"{USER_PREFIX}{username}"


def session_of(request) -> str:
    """Whose work a request sees: its logged-in user, else its Gradio session (``NO_SESSION`` when a
    handler is called directly)."""
    username = getattr(request, "username", None)
    if username:
        return user_key(username)
    session = getattr(request, "session_hash", None) or NO_SESSION
    return session.replace(":", "_")  # a client-chosen session hash never reads as a user's key
