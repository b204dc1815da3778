"""Atomic writes, append-only result tables, deterministic sharding and provenance for long jobs.

Collection, benchmarks and training all write through here so that a killed job never leaves a
half-written file behind and can resume from what is on disk, and every result records what made it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from npnet.errors import UserError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Let ``writer(tmp_path)`` produce the file (e.g. ``safetensors.torch.save_file``), then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class JsonlTable:
    """An append-only JSON-lines table: one ``fsync``-ed line per finished row.

    A kill during an append can leave a partial last line; it is dropped (and cut off the file)
    when the table is opened again, so the row is simply redone.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[: data.rfind(b"\n") + 1]
            atomic_write_bytes(self.path, keep)

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, sort_keys=True, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.path)) if self.path.exists() else []

    def keys(self, key: Callable[[dict[str, Any]], Any]) -> set:
        return {key(row) for row in self.rows()}


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The rows of a JSON-lines file; a torn last line (a kill mid-append) is skipped, any other bad line raises."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) - 1:  # no newline after it: the append never finished; redone on resume
                return
            raise UserError(f"{path}:{n + 1} is not valid JSON (the file is corrupt)") from None


def dist_rank_world() -> tuple[int, int]:
    """Rank and world size as set by ``accelerate launch`` / ``torchrun`` (1 process otherwise)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard(items: Iterable[Any], rank: int, world: int) -> Iterator[tuple[int, Any]]:
    """Deterministic split by global index: process ``rank`` gets indices ``rank, rank+world, ...``."""
    if not 0 <= rank < world:
        raise UserError(f"rank {rank} is outside a world of {world} processes")
    for index, item in enumerate(items):
        if index % world == rank:
            yield index, item


# -- provenance --------------------------------------------------------------------------------------
def versions(*extra: str) -> dict[str, str]:
    """Versions of python, torch, diffusers, transformers, npnet and any ``extra`` importable packages."""
    import importlib

    import npnet

    found = {"npnet": npnet.__version__, "python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", *extra):
        found[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    return found


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
