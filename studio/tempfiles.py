"""Temporary files of the app in one configurable directory: per-request folders swept by age, all removed at exit."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path


class TempFiles:
    """``root/gradio`` (GRADIO_TEMP_DIR), ``root/examples`` (example cache) and ``root/requests/<id>``."""

    def __init__(self, root: str | None = None, max_age_s: float = 3600.0):
        self.owned = root is None
        self.root = Path(tempfile.mkdtemp(prefix="npnet-studio-") if root is None else root).resolve()
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        for sub in ("gradio", "examples", "requests"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        atexit.register(self.cleanup)

    @property
    def gradio_dir(self) -> Path:
        return self.root / "gradio"

    @property
    def examples_dir(self) -> Path:
        return self.root / "examples"

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
        """Remove everything the app wrote; the root itself too when this object created it."""
        for sub in ("requests", "gradio", "examples"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)
