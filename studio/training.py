"""Collect a small noise prompt dataset and train / fine-tune an NPNet from the app (Alg. 1 + Alg. 2).

``plan_training`` checks every setting before any work; ``collect_pairs`` runs ``npnet.data.collect.collect``
with the app's engine and a scorer as the filter;
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

from eval.prompts import available_prompt_sets, load_prompts
from eval.training_plots import loss_figure
from npnet.checkpoints import save_npnet
from npnet.data.collect import CollectConfig, collect
from npnet.errors import UserError
from npnet.training.checks import check_init
from npnet.training.state import read_step_losses
from npnet.training.train import TrainConfig, train
from studio.form import finite_number, whole_number
from studio.service import StudioService

# Fine-tuning the model's NPNet is the default (a pretrained start that works offline for every model);
# "ImageNet Swin-T" is the paper's start from scratch (App. A.4: the SDXL / DiT NPNets only, needs the
# weights timm/swin_tiny_patch4_window7_224.ms_in1k from the hub or its cache); "random" needs nothing.
INITS = ("fine-tune the model's NPNet", "ImageNet Swin-T (paper, from scratch)", "random")
_TRAIN_INIT = {INITS[1]: "imagenet", INITS[2]: "random"}


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


@dataclass(frozen=True)
class TrainForm:
    """The Train tab's fields, validated into a plan before anything is collected or written."""

    model: str
    npnet: str
    prompts_text: str
    prompt_set: str
    max_prompts: Any
    seeds_per_prompt: Any
    steps: Any
    scorer: str
    margin: Any
    select: bool
    init: str
    epochs: Any
    batch_size: Any
    lr: Any
    val_fraction: Any


@dataclass(frozen=True)
class TrainPlan:
    """What one Train-tab run will do: Alg. 1 settings, the prompts, Alg. 2 settings and the fine-tuning start."""

    out: Path
    prompts: list[str]
    collect: CollectConfig
    train: TrainConfig
    init_npnet: str | None  # the NPNet to fine-tune (None: the preset's), or unused for a random init


def plan_training(service: StudioService, form: TrainForm, session: str) -> TrainPlan:
    """Check every setting (and load the NPNet to fine-tune) before collection; UserError says the fix."""
    if form.model not in service.models():
        raise UserError(f"model {form.model!r} is not available here; choose one of {', '.join(service.models())}")
    if form.init not in INITS:
        raise UserError(f"initialisation must be one of {', '.join(INITS)}")
    prompts = _prompts(form.prompts_text, form.prompt_set)[: whole_number("max prompts", form.max_prompts, 1)]
    seeds = whole_number("seeds per prompt", form.seeds_per_prompt, 1)
    if len(prompts) * seeds < 4:
        raise UserError("collect at least 4 pairs (prompts x seeds per prompt) so a validation split exists")
    if len(prompts) * seeds > service.config.max_train_pairs:
        raise UserError(f"{len(prompts) * seeds} pairs asked; this server collects at most {service.config.max_train_pairs}")
    out = new_train_dir(service, form.model)
    collect_config = CollectConfig(
        model=form.model, out=str(out / "npd"), seeds_per_prompt=seeds, steps=whole_number("steps", form.steps, 2),
        margin=finite_number("margin", form.margin), scorer_name=form.scorer,
    )  # fmt: skip
    npnet = service.check_npnet(form.model, str(form.npnet or "").strip() or None, session)
    fine_tune = form.init == INITS[0]
    train_config = TrainConfig(
        data=collect_config.out, out=str(out), preset=None if fine_tune else service.preset(form.model).npnet_preset,
        init=str(out / "init" / "npnet.safetensors") if fine_tune else _TRAIN_INIT[form.init],
        device="cpu" if service.engine.device.type == "cpu" else "auto",
        epochs=whole_number("epochs", form.epochs, 1), batch_size=whole_number("batch size", form.batch_size, 1),
        lr=finite_number("learning rate", form.lr), val_fraction=finite_number("validation fraction", form.val_fraction),
        select=bool(form.select),
    )  # fmt: skip
    if fine_tune:
        service.engine.npnet(form.model, npnet)  # a bad checkpoint fails here, before any collection
    else:
        check_init(train_config.init, train_config.preset)  # ImageNet weights offline: fails here too
    service.scorer(form.scorer)  # so does a scorer that cannot run here
    return TrainPlan(out, prompts, collect_config, train_config, npnet)


def _prompts(text: str, prompt_set: str) -> list[str]:
    """Typed prompts, else a prompt set of the registry (never a path: the UI reads no server files)."""
    typed = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if typed:
        return typed
    names = available_prompt_sets()
    if prompt_set not in names:
        raise UserError(f"type prompts (one per line) or pick a prompt set: {', '.join(names)}")
    return load_prompts(prompt_set)


def collect_pairs(service: StudioService, plan: TrainPlan, on_sample=None):
    """Alg. 1 on the app's engine: x_T, x'_T (re-denoise), both images scored; every sample recorded."""
    scorer = service.scorer(plan.collect.scorer_name)
    return collect(service.engine, plan.collect, plan.prompts, scorer, rank=0, world=1, progress=False,
                   on_sample=on_sample)  # fmt: skip


def save_init(service: StudioService, plan: TrainPlan) -> None:
    """Save the NPNet to fine-tune (the preset's or the chosen one) as the run's start point."""
    if plan.train.init not in _TRAIN_INIT.values():
        save_npnet(service.engine.npnet(plan.collect.model, plan.init_npnet), plan.train.init)


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
