"""NPNet training (paper Alg. 2, Eq. 8-9, App. A.5; optimizer as the official solver): AdamW on every
parameter incl. alpha and beta.

``python -m cli train --data NPD_DIR --preset sdxl --epochs 30 --batch-size 64 --lr 1e-4 --out CKPT_DIR``

* Loss: MSE(NPNet(x_T, c), x'_T) (Eq. 8 with the prediction of Eq. 9 as released: (2 sigmoid(alpha) - 1) e);
  alpha and beta start at 0.
* Init: ``init="imagenet"`` (paper App. A.4 and the official code) starts the residual branch's Swin-T
  from timm's ImageNet weights (``npnet.training.pretrained``: offline without them in the cache it is a
  UserError naming them and ``--init random``). The default ``"auto"`` takes them wherever they exist (the
  SDXL / DiT NPNets) and a random init for the reduced Swins of the micro / tiny presets.
* Conditioning: by default every sample is conditioned on its **own** prompt embedding.
  ``batch_prompt="random"`` is the paper's regulariser "randomly assign one prompt to the whole batch"
  (App. A.5). The official code (``encode_prompt(prompt=prompt[0])`` on a shuffled batch) does exactly
  that by accident: the first prompt of the batch conditions all 64 samples, so 63 of 64 see the wrong
  prompt. Validation always uses each sample's own prompt (the inference condition).
* Outputs in ``out``: ``best/`` and ``last/`` (``npnet.safetensors`` + official ``npnet.pth``, both
  loadable with ``npnet.load_npnet``), ``last/trainer_state.pt`` (optimizer, scheduler, RNG
  states, epoch, step, history; ``torch.load(weights_only=True)``-safe), ``history.csv`` (per epoch),
  ``steps.csv`` (per step) and ``train_config.json`` (see ``npnet.training.state``); the command line
  adds ``loss.html`` (plotly) through the epoch callback.
* Collapse check every epoch: validation MSE of the model vs the identity (pred = x_T) and zero
  (pred = 0) baselines, and the output/input RMS ratio; ``collapsed`` flags an output that (nearly)
  cancels its input or is no better than predicting zeros.
* An ``out`` folder that holds a run (``last/trainer_state.pt``) is never overwritten: pass ``resume=True``
  (command line: ``--resume``) to continue it, or choose a new folder. Settings and the ``init``
  checkpoint's header are checked before any work (``npnet.training.checks``: ``check_before_training``;
  ``check_init`` for the app).
* Seeding happens inside ``torch.random.fork_rng``: the process-wide RNG state is restored after
  ``build_model`` and ``train`` (other threads' requests are not reseeded by a training run).
* Resume (``resume=True``) continues from ``last/`` with the same trajectory: batches are shuffled
  from (seed, epoch), so "2 epochs + resume 2" equals "4 straight" (checkpoints are per epoch; a kill
  mid-epoch redoes that epoch). Only ``epochs`` may change on resume (with ``lr_schedule="cosine"``
  that changes the schedule). DDP through accelerate: ``accelerate launch -m cli train ...`` or
  ``torchrun --nproc_per_node N -m cli train ...`` (``--batch-size`` is per process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from npnet.checkpoints import load_npnet
from npnet.data.dataset import NoisePairDataset
from npnet.errors import UserError
from npnet.io import atomic_write_json
from npnet.model import NPNET_PRESETS, NPNet, NPNetConfig
from npnet.training.checks import INITS, _preset_config, check_init, check_out, resolve_init
from npnet.training.pretrained import check_architecture, imagenet_npnet
from npnet.training.state import (
    load_last,
    restore_rng,
    rng_state,
    save_checkpoint,
    write_logs,
)

BATCH_PROMPT = ("own", "random")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run: 30 epochs, batch 64 (App. A.5), AdamW lr 1e-4 (the official solver;
    the paper names no optimizer), Swin-T from ImageNet (App. A.4)."""

    data: str
    out: str
    preset: str | NPNetConfig | None = "sdxl"  # NPNET_PRESETS key or config; None: the init checkpoint's
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 0.0  # 0: no clipping
    val_fraction: float = 0.1
    split_by: str = "sample"  # "sample" | "prompt" (hold out whole prompts)
    margin: float | None = None  # re-apply s_0 + m < s'_0; None: the collection's decision
    select: bool = True  # False: train on every pair ("w/o data selection")
    seed: int = 0
    init: str = "auto"  # "auto": "imagenet" (App. A.4) where the Swin has ImageNet weights, else "random";
    # "imagenet" | "random" | an NPNet checkpoint (path, hub id, name)
    batch_prompt: str = "own"  # "own" | "random" (paper's regulariser)
    device: str = "auto"  # "auto" (accelerate's device for this process) | "cpu"
    num_workers: int = 0
    resume: bool = False
    collapse_ratio: float = 0.5  # flag when RMS(pred) < ratio * RMS(x_T)

    def __post_init__(self):
        checks = [
            ("batch_prompt", self.batch_prompt, BATCH_PROMPT),
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("device", self.device, ("auto", "cpu")),
        ]
        for name, value, choices in checks:
            if value not in choices:
                raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if isinstance(self.preset, str) and self.preset not in NPNET_PRESETS:
            raise UserError(f"unknown NPNet preset {self.preset!r}; choose one of {', '.join(NPNET_PRESETS)}")
        if self.split_by not in ("sample", "prompt"):
            raise UserError(f"unknown split_by {self.split_by!r}; choose sample or prompt")
        if not isinstance(self.init, str) or not self.init.strip():
            raise UserError(f"init must be {', '.join(INITS)} or an NPNet checkpoint; got {self.init!r}")
        if self.preset is None and self.init in INITS:
            raise UserError("preset=None needs init=<checkpoint> to take the architecture from")
        if self.init == "imagenet":
            check_architecture(_preset_config(self.preset))
        whole = (("epochs", 1), ("batch_size", 1), ("warmup_steps", 0), ("num_workers", 0), ("seed", 0))
        for name, low in whole:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{name} must be an integer >= {low}; got {value!r}")
        _check_number("lr", self.lr, "> 0", lambda v: v > 0)
        _check_number("weight_decay", self.weight_decay, ">= 0", lambda v: v >= 0)
        _check_number("max_grad_norm", self.max_grad_norm, ">= 0 (0: no clipping)", lambda v: v >= 0)
        _check_number("val_fraction", self.val_fraction, "in [0, 1)", lambda v: 0 <= v < 1)
        _check_number("collapse_ratio", self.collapse_ratio, ">= 0", lambda v: v >= 0)
        if self.margin is not None:
            _check_number("margin", self.margin, "or None (the collection's decision)", lambda v: True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_number(name: str, value: Any, rule: str, ok: Callable[[float], bool]) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise UserError(f"{name} must be a finite number {rule}; got {value!r}")


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints went and how training went (one dict per epoch in ``history``)."""

    out: Path
    best: Path  # best/npnet.safetensors
    last: Path  # last/npnet.safetensors
    best_epoch: int
    best_val_loss: float
    history: tuple[dict[str, Any], ...]
    step_losses: tuple[float, ...]
    net: NPNet


# -- model ---------------------------------------------------------------------------------------
def build_model(config: TrainConfig) -> tuple[NPNet, str]:
    """NPNet from the preset (seeded), initialised per ``config.init``; returns (net, init report).

    Seeded inside ``torch.random.fork_rng``: the process-wide RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        return _seeded_model(config)


def _seeded_model(config: TrainConfig, resuming: bool = False) -> tuple[NPNet, str]:
    """``build_model`` on the current (already forked) RNG: seeds it with ``config.seed`` first.

    ``resuming``: ``last/`` replaces every weight, so an "imagenet" run is rebuilt without the download.
    """
    torch.default_generator.manual_seed(config.seed)  # the weights are built on the CPU
    preset = None if config.preset is None else _preset_config(config.preset)
    init = resolve_init(config.init, preset)
    note = init if config.init == init else f"{init} ({config.init})"  # e.g. "random (auto)"
    if init == "imagenet" and not resuming:
        return imagenet_npnet(preset), note
    if init in INITS:
        return NPNet.from_config(preset), note
    source = load_npnet(config.init)
    if preset is None:
        return source, f"checkpoint {config.init}"
    net = NPNet.from_config(preset)
    target = net.state_dict()
    loaded = {k: v for k, v in source.state_dict().items() if k in target and v.shape == target[k].shape}
    net.load_state_dict(loaded, strict=False)
    skipped = sorted(set(target) - set(loaded))
    note = f"; re-initialised {len(skipped)} tensors of other shape: {skipped[:4]}" if skipped else ""
    return net, f"checkpoint {config.init}{note}"


@contextlib.contextmanager
def _own_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Fork the CPU generator, the training device's CUDA generator (seeded with ``seed`` as
    ``torch.manual_seed`` did: drop-path draws on the GPU) and Python's ``random`` for a training run."""
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[index] if cuda else []):
            if cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            yield
    finally:
        random.setstate(state)


def check_data(net: NPNet, sample: tuple) -> None:
    """Raise a ValueError when the data's latents or prompt embeddings do not fit the NPNet."""
    x, _, cond = sample
    cfg = net.config
    if tuple(x.shape[-2:]) != (cfg.latent_size, cfg.latent_size):
        raise UserError(
            f"the dataset's latents are {tuple(x.shape)}, the NPNet preset expects 4x{cfg.latent_size}x"
            f"{cfg.latent_size}; choose the preset of the model the pairs were collected with"
        )
    if isinstance(cond, torch.Tensor) and cond.shape[-1] != cfg.text_dim:
        raise UserError(
            f"the dataset's prompt embeddings are {tuple(cond.shape)}, the NPNet preset expects "
            f"(77, {cfg.text_dim}); choose the preset of the model the pairs were collected with"
        )


# -- batching ------------------------------------------------------------------------------------
def _seed_of(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches of one epoch: a (seed, epoch) permutation cut into global batches.

    Each global batch of ``batch_size * world`` is split evenly across processes; with several
    processes the permutation is padded by wrapping so that every process runs the same step count.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed_of(seed, "epoch", epoch))).tolist()
    global_bs = batch_size * world
    steps = math.ceil(n / global_bs)
    if world > 1:
        perm = (perm * math.ceil(steps * global_bs / n))[: steps * global_bs]
    batches = []
    for s in range(steps):
        chunk = perm[s * global_bs : (s + 1) * global_bs]
        mine = chunk[rank * batch_size : (rank + 1) * batch_size]
        if mine:
            batches.append(mine)
    return batches


def batch_condition(cond, mode: str, generator: torch.Generator, encode_prompts) -> torch.Tensor:
    """(B, 77, D) own embeddings, or one random sample's (1, 77, D) for the whole batch (App. A.5)."""
    if not isinstance(cond, torch.Tensor):
        if encode_prompts is None:
            raise UserError(
                "the dataset has no prompt-embedding cache: collect with cache_embeds=True or pass "
                "encode_prompts (the CLI's --encode-with MODEL)"
            )
        if mode == "random":  # encode only the chosen prompt
            return encode_prompts([cond[int(torch.randint(len(cond), (1,), generator=generator))]])
        cond = encode_prompts(list(cond))  # (B, 77, D)
    if mode == "random":
        j = int(torch.randint(cond.shape[0], (1,), generator=generator))
        cond = cond[j : j + 1]  # (1, 77, D), broadcast over the batch
    return cond


def _lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


# -- validation ------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net, loader, device, accelerator, collapse_ratio: float, encode_prompts=None) -> dict[str, Any]:
    """Val MSE of the model, the identity (x_T) and zero baselines, RMS of output vs input (collapse)."""
    net.eval()
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # model, identity, zero, pred^2, x^2, count
    for x, xp, cond in loader:
        x, xp = x.to(device), xp.to(device)  # (B, 4, h, w)
        pred = net(x, batch_condition(cond, "own", None, encode_prompts).to(device)).float()
        per = x[0].numel()
        sums += torch.stack(
            [
                F.mse_loss(pred, xp, reduction="sum"),
                F.mse_loss(x, xp, reduction="sum"),
                xp.square().sum(),
                pred.square().sum(),
                x.square().sum(),
                torch.tensor(float(x.shape[0] * per), device=device),
            ]
        ).double()
    sums = accelerator.reduce(sums, "sum")
    model, identity, zero, pred_sq, x_sq, count = sums.tolist()
    if count == 0:
        raise UserError("the validation split is empty; raise val_fraction or collect more pairs")
    rms_ratio = math.sqrt(pred_sq / max(x_sq, 1e-12))
    result = {"val_loss": model / count, "val_identity": identity / count, "val_zero": zero / count}
    result["rms_ratio"] = rms_ratio
    result["beats_identity"] = result["val_loss"] < result["val_identity"]
    result["collapsed"] = rms_ratio < collapse_ratio or result["val_loss"] >= 0.95 * result["val_zero"]
    net.train()
    return result


# -- training --------------------------------------------------------------------------------------
def _datasets(config: TrainConfig) -> tuple[NoisePairDataset, NoisePairDataset]:
    common = dict(
        margin=config.margin,
        val_fraction=config.val_fraction,
        seed=config.seed,
        select=config.select,
        split_by=config.split_by,
    )
    train_set = NoisePairDataset(config.data, split="train", **common)
    val_set = NoisePairDataset(config.data, split="val", **common)
    if len(train_set) == 0 or len(val_set) == 0:
        raise UserError(
            f"{config.data}: {len(train_set)} training and {len(val_set)} validation pairs after selection "
            f"(margin={config.margin}); collect more pairs, lower the margin or change val_fraction"
        )
    return train_set, val_set


def _collate(items):
    xs, xps, conds = zip(*items)
    cond = torch.stack(conds) if isinstance(conds[0], torch.Tensor) else list(conds)
    return torch.stack(xs), torch.stack(xps), cond  # (B, 4, h, w), (B, 4, h, w), (B, 77, D) | prompts


def train(
    config: TrainConfig,
    encode_prompts: Callable[[list[str]], torch.Tensor] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Alg. 2. ``callback(epoch_record)`` runs after each epoch's checkpoint (progress UIs; may raise).

    Refuses (before any work) an ``out`` that holds a run unless ``config.resume``; with ``resume`` and
    nothing to resume it logs so and starts a new run.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    resumable = check_out(config)
    check_init(config.init, None if resumable else config.preset)  # a resumed run loads last/, not ImageNet
    # find_unused_parameters: the SVD branch's BatchNorm is in the released weights but unused (and
    # beta is unused without the residual branch), which plain DDP rejects.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    acc = Accelerator(cpu=config.device == "cpu", kwargs_handlers=[ddp])
    log = log if acc.is_main_process else (lambda message: None)
    if config.resume and resumable is None:
        log(f"nothing to resume in {config.out}; starting a new run")
    with _own_rng(acc.device, config.seed):
        return _train(config, acc, encode_prompts, callback, log, resuming=resumable is not None)


def _train(config: TrainConfig, acc, encode_prompts, callback, log, resuming: bool) -> TrainResult:
    out = Path(config.out)
    train_set, val_set = _datasets(config)
    net, init_note = _seeded_model(config, resuming=resuming)
    check_data(net, train_set[0])
    net.to(acc.device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(epoch_batches(len(train_set), config.batch_size, 0, 0, 0, acc.num_processes))
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, total))
    state = load_last(out, net, optimizer, scheduler) if config.resume else None
    start_epoch = state["epoch"] if state else 0
    history, step_losses = (state["history"], state["step_losses"]) if state else ([], [])
    if state:
        restore_rng(state["rng"])
        log(f"resumed from {out / 'last'} after epoch {start_epoch} (step {state['step']})")
    else:
        log(f"NPNet init: {init_note}; {len(train_set)} training / {len(val_set)} validation pairs")
    if acc.is_main_process:
        atomic_write_json(out / "train_config.json", config.to_dict())
    model, optimizer = acc.prepare(net, optimizer)
    val_idx = [i for i in range(len(val_set)) if i % acc.num_processes == acc.process_index]
    val_loader = DataLoader(val_set, batch_size=config.batch_size, sampler=val_idx, collate_fn=_collate)
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(
            len(train_set), config.batch_size, config.seed, epoch, acc.process_index, acc.num_processes
        )
        loader = DataLoader(
            train_set, batch_sampler=batches, collate_fn=_collate, num_workers=config.num_workers
        )
        gen = torch.Generator().manual_seed(_seed_of(config.seed, "prompt", epoch, acc.process_index))
        step_losses += _train_epoch(acc, model, optimizer, scheduler, loader, gen, config, encode_prompts)
        record = _epoch_record(epoch, step_losses, steps_per_epoch, scheduler, acc.unwrap_model(model))
        record.update(evaluate(model, val_loader, acc.device, acc, config.collapse_ratio, encode_prompts))
        history.append(record)
        if acc.is_main_process:
            _save_epoch(out, acc.unwrap_model(model), optimizer, scheduler, history, step_losses, record)
        acc.wait_for_everyone()
        log(_describe(record))
        if callback is not None:
            callback(record)
    best = min(history, key=lambda r: r["val_loss"])
    return TrainResult(
        out=out,
        best=out / "best" / "npnet.safetensors",
        last=out / "last" / "npnet.safetensors",
        best_epoch=best["epoch"],
        best_val_loss=best["val_loss"],
        history=tuple(history),
        step_losses=tuple(step_losses),
        net=acc.unwrap_model(model).eval(),
    )


def _train_epoch(acc, model, optimizer, scheduler, loader, gen, config, encode_prompts) -> list[float]:
    """One pass of Alg. 2 lines 3-7 over this process's batches; the step losses (mean over processes)."""
    losses = []
    for x, xp, cond in loader:
        x, xp = x.to(acc.device), xp.to(acc.device)  # (B, 4, h, w)
        cond = batch_condition(cond, config.batch_prompt, gen, encode_prompts).to(acc.device)
        loss = F.mse_loss(model(x, cond).float(), xp)  # Eq. 8 with Eq. 9 as released: (2σ(α)−1)·e
        acc.backward(loss)
        if config.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(acc.reduce(loss.detach(), "mean").item())
    return losses


def _epoch_record(epoch, step_losses, steps_per_epoch, scheduler, net) -> dict[str, Any]:
    recent = step_losses[-steps_per_epoch:]
    return {
        "epoch": epoch + 1,
        "step": len(step_losses),
        "train_loss": sum(recent) / len(recent),
        "lr": scheduler.get_last_lr()[0],
        "alpha": float(net.alpha.detach()),
        "beta": float(net.beta.detach()),
    }


def _save_epoch(out, net, optimizer, scheduler, history, step_losses, record) -> None:
    is_best = record["val_loss"] <= min(r["val_loss"] for r in history)
    trainer_state = {
        "epoch": record["epoch"],
        "step": record["step"],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "history": history,
        "step_losses": step_losses,
    }
    save_checkpoint(out / "last", net, trainer_state)
    if is_best:
        save_checkpoint(out / "best", net, None)
    write_logs(out, history, step_losses)


def _describe(r: dict[str, Any]) -> str:
    flag = "  COLLAPSE? output ~cancels its input or ~zero prediction" if r["collapsed"] else ""
    return (
        f"epoch {r['epoch']}: train {r['train_loss']:.5f}  val {r['val_loss']:.5f}  "
        f"identity {r['val_identity']:.5f}  zero {r['val_zero']:.5f}  rms(pred)/rms(x_T) "
        f"{r['rms_ratio']:.3f}  alpha {r['alpha']:+.4f} beta {r['beta']:+.4f}{flag}"
    )
