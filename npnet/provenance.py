"""What produced a result: library versions and the git commit, recorded in every meta.json / manifest."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


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
