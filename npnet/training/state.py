"""Training run state: checkpoints (both layouts), resume state, RNG states and loss logs (CSV).

``last/trainer_state.pt`` holds only tensors and plain Python values so that it loads with
``torch.load(weights_only=True)``: optimizer and scheduler state dicts, RNG states, epoch, step,
the per-epoch history and the per-step losses. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from npnet.checkpoints import read_checkpoint, save_npnet, save_official
from npnet.errors import UserError
from npnet.io import atomic_write_text, atomic_write_with
from npnet.model import NPNet

_RESUME_FREE = ("epochs", "resume", "device", "num_workers")


def finished_run(out: Path) -> int | None:
    """How many epochs the run in ``out`` finished (``last/trainer_state.pt`` exists), else None."""
    out = Path(out)
    if not (out / "last" / "trainer_state.pt").is_file():
        return None
    history = out / "history.csv"
    if history.is_file():
        return max(0, len([line for line in history.read_text().splitlines() if line.strip()]) - 1)
    try:  # the history is written right after the state: read the epoch from the state itself
        return int(
            torch.load(out / "last" / "trainer_state.pt", map_location="cpu", weights_only=True)["epoch"]
        )
    except Exception:  # unreadable: still a run that must not be overwritten silently
        return 0


def check_resume_config(out: Path, config) -> None:
    """Resuming with other data or hyper-parameters would not continue the same run (epochs may grow)."""
    path = out / "train_config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{path} (the settings of the run to resume) is unreadable ({err}); choose a new out folder"
        ) from err
    now = json.loads(json.dumps(config.to_dict()))
    diff = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k])
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise UserError(
            f"{out} was trained with other settings ({shown}); resume with the same ones or a new --out"
        )


# -- checkpoints, resume state and logs ------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Torch CPU/CUDA and Python RNG states as tensors and plain numbers (weights_only-loadable)."""
    import random

    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, net: NPNet, trainer_state: dict[str, Any] | None) -> None:
    """Both layouts (safetensors + official .pth) and, for ``last``, the trainer state; all atomic."""
    save_npnet(net, folder / "npnet.safetensors")
    save_official(net, folder / "npnet.pth")
    if trainer_state is not None:
        atomic_write_with(folder / "trainer_state.pt", lambda tmp: torch.save(trainer_state, tmp))


def load_last(out: Path, net: NPNet, optimizer, scheduler) -> dict[str, Any] | None:
    """Load ``out/last`` into the module, optimizer and scheduler; None when there is nothing yet."""
    path = out / "last" / "trainer_state.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    flat, _ = read_checkpoint(out / "last" / "npnet.safetensors")
    net.load_state_dict(flat, strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def write_logs(out: Path, history: list[dict[str, Any]], step_losses: list[float]) -> None:
    """history.csv (per epoch) and steps.csv (per step), rewritten atomically."""
    import csv
    import io

    cols = list(history[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "history.csv", buf.getvalue())
    atomic_write_text(
        out / "steps.csv", "step,loss\n" + "".join(f"{i + 1},{v}\n" for i, v in enumerate(step_losses))
    )


def read_step_losses(out: Path) -> list[float]:
    """The per-step training losses logged so far in ``out/steps.csv`` (empty before the first epoch)."""
    path = out / "steps.csv"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()[1:]
    return [float(line.split(",")[1]) for line in lines if "," in line]
