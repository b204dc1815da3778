"""Temporary files of the app in one private directory: per-request folders swept by age, all removed at exit.

``--temp-dir DIR`` names where that directory is made (a fresh private subfolder of DIR), never a folder
whose existing files the app would serve. Files handed to clients live under Gradio's own upload/cache
folder in unguessable per-download folders (``download_dir``); nothing else is ever served. A download
folder made for a logged-in user records its owner, and ``studio.guard`` serves it to that user only.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

MAX_OWNED = 100_000  # download folders whose owner is remembered (the oldest are forgotten first)


class TempFiles:
    """``root/gradio`` (GRADIO_TEMP_DIR), ``root/examples`` (example cache) and ``root/requests/<id>``."""

    def __init__(self, parent: str | None = None, max_age_s: float = 3600.0):
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="npnet-studio-", dir=parent)).resolve()  # mode 0700
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._owners: OrderedDict[str, str] = OrderedDict()  # download folder name -> owner (session key)
        for sub in ("gradio", "examples", "requests"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        atexit.register(self.cleanup)

    @property
    def gradio_dir(self) -> Path:
        return self.root / "gradio"

    @property
    def examples_dir(self) -> Path:
        return self.root / "examples"

    def download_dir(self, owner: str | None = None) -> Path:
        """A fresh folder inside Gradio's cache with a 128-bit random name: what the app hands to one client
        (``owner``: the session key it belongs to, see ``owner_of``)."""
        path = self.gradio_dir / f"dl-{secrets.token_hex(16)}"
        path.mkdir(parents=True)
        if owner is not None:
            with self._lock:
                self._owners[path.name] = owner
                while len(self._owners) > MAX_OWNED:
                    self._owners.popitem(last=False)
        return path

    def for_download(self, source: str | os.PathLike, owner: str | None = None) -> str:
        """A copy of a file the app wrote, in a fresh download folder; the path to return to the client."""
        source = Path(source)
        target = self.download_dir(owner) / source.name
        shutil.copyfile(source, target)
        return str(target)

    def owner_of(self, path: str) -> str | None:
        """The owner recorded for the download folder holding ``path`` (None: not an owned download)."""
        try:
            relative = Path(path).resolve().relative_to(self.gradio_dir)
        except (OSError, ValueError):
            return None
        with self._lock:
            return self._owners.get(relative.parts[0]) if relative.parts else None

    def new_dir(self, prefix: str) -> Path:
        """A fresh folder for one request's files (older request folders are swept first)."""
        self.sweep()
        path = self.root / "requests" / f"{prefix}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def sweep(self) -> int:
        """Delete request folders older than ``max_age_s``; returns how many were removed."""
        cutoff = time.time() - self.max_age_s
        removed = 0
        with self._lock:
            for path in (self.root / "requests").iterdir():
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
        return removed

    def cleanup(self) -> None:
        """Remove everything the app wrote (the private root included)."""
        shutil.rmtree(self.root, ignore_errors=True)
