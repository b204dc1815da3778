"""Collect a small noise prompt dataset and train / fine-tune an NPNet from the app (Alg. 1 + Alg. 2).

``collect_npd`` runs ``npnet.data.collect.collect`` with the app's engine and a scorer as the filter;
``start_training`` runs ``npnet.training.train.train`` in a thread and streams one record per epoch through a
queue, so the tab can redraw the loss curve live and stop between epochs.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.training_plots import loss_figure
from npnet.checkpoints import save_npnet
from npnet.data.collect import CollectConfig, collect
from npnet.errors import UserError
from npnet.training.state import read_step_losses
from npnet.training.train import TrainConfig, train
from studio.service import StudioService

INITS = ("fine-tune the model's NPNet", "random")


class TrainingStopped(Exception):
    """Raised from the epoch callback when the user pressed Stop."""


@dataclass
class TrainingJob:
    """A training run in a background thread: epoch records arrive on ``records``."""

    out: Path
    records: queue.Queue = field(default_factory=queue.Queue)
    history: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def new_train_dir(service: StudioService, model: str) -> Path:
    return (
        service.config.runs_path
        / "train"
        / f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{uuid.uuid4().hex[:6]}"
    )


def collect_npd(
    service: StudioService,
    model: str,
    prompts: list[str],
    seeds_per_prompt: int,
    steps: int,
    scorer: str,
    margin: float,
    out: Path,
):
    """Alg. 1 on the app's engine: x_T, x'_T (re-denoise), both images scored; every sample recorded."""
    if not prompts:
        raise UserError("give at least one prompt to collect noise pairs for")
    if seeds_per_prompt < 1 or len(prompts) * seeds_per_prompt < 4:
        raise UserError("collect at least 4 pairs (prompts x seeds per prompt) so a validation split exists")
    config = CollectConfig(
        model=model, out=str(out), seeds_per_prompt=seeds_per_prompt, steps=steps, margin=margin, scorer_name=scorer
    )
    return collect(service.engine, config, prompts, service.scorer(scorer), rank=0, world=1, progress=True)


def init_checkpoint(service: StudioService, model: str, npnet: str | None, out: Path) -> str:
    """Save the NPNet the model currently uses (its preset's or ``npnet``) as the fine-tuning start point."""
    path = out / "init" / "npnet.safetensors"
    return str(save_npnet(service.engine.npnet(model, npnet or None), path))


def train_config(service: StudioService, model: str, npd: Path, out: Path, init: str, **opts):
    """A TrainConfig for the app's device: fine-tune from ``init`` (a checkpoint path) or random."""
    device = "cpu" if service.engine.device.type == "cpu" else "auto"
    if init == "random":
        return TrainConfig(data=str(npd), out=str(out), preset=service.preset(model).npnet_preset,
                           init="random", device=device, **opts)  # fmt: skip
    return TrainConfig(data=str(npd), out=str(out), preset=None, init=init, device=device, **opts)


def start_training(config, stop: threading.Event) -> TrainingJob:
    """Run ``npnet.training.train.train(config)`` in a thread; each epoch's record goes to ``job.records``."""
    job = TrainingJob(out=Path(config.out))

    def callback(record: dict[str, Any]) -> None:
        job.records.put(record)
        if stop.is_set():
            raise TrainingStopped(f"stopped after epoch {record['epoch']}")

    def target() -> None:
        try:
            job.result = train(config, callback=callback, log=lambda _msg: None)
        except BaseException as err:  # surfaced to the UI by the tab
            job.error = err
        finally:
            job.records.put(None)

    job.thread = threading.Thread(target=target, name="npnet-train", daemon=True)
    job.thread.start()
    return job


def loss_curve(history: list[dict[str, Any]], out: Path):
    """The training loss figure from the records so far."""
    return loss_figure(history, read_step_losses(out))
