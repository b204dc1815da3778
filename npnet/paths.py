"""Where the project's shipped files live: the one place that works out the repository and assets roots."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = PROJECT_ROOT / "assets"
MICRO_ASSETS = ASSETS_DIR / "micro"


def asset_path(spec: str) -> Path | None:
    """``assets/...`` specs (as presets write them) resolved against the repository root, else None."""
    return PROJECT_ROOT / spec if str(spec).startswith("assets/") else None
