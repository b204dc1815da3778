"""Noise prompt dataset collection (paper Alg. 1, Sec. 3.1, App. A.5), resumable and distributed.

For every (prompt, k): x_T from a seed drawn in [0, 1024]; x'_T by re-denoise sampling (one DDIM step
with CFG w_l, one DDIM-inversion step with w_w; DPM-Solver and its inverse for DreamShaper-xl-v2-turbo,
App. A.5: the preset's ``redenoise_solver``); x_0 and x'_0 by full sampling from each; scores s_0
and s'_0 from the scorer; the pair is kept iff s_0 + m < s'_0. Every sample is recorded, kept or not,
with both scores, so the selection can be changed at read time (``NoisePairDataset(margin=...)``).

The library takes the prompts and a scorer callable (``scorer(images, prompts) -> tensor[B]``, higher
is better); ``python -m cli collect`` wires prompt sets and the eval scorers into it.

Sample i = prompt_index * K + k. Block b (samples [b*S, (b+1)*S)) goes to process ``b % world``
(``npnet.io.shard``; RANK/WORLD_SIZE from ``accelerate launch`` / torchrun), is written as one
atomic shard and only then logged, and is skipped on resume; a kill loses at most the unfinished
block. Shards and the merged ``manifest.jsonl`` are identical for any number of processes.

Within a block, ``batch_size`` samples (default: the model preset's) share each model call (re-denoise and
sampling), padded to the full batch so a sample's floats depend on its own prompt, seed and the batch size
only, not on its batch mates: resume and sharding give the same bytes. x_T is exact; CPU kernels sum in
a batch-size dependent order, so x'_T of a batched collection differs from ``batch_size=1``'s by < 1e-5
and its images (hence scores) by one 8-bit level in a few pixels (see tests/test_batching.py).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npnet.data.dataset import (
    merge,
    read_manifest,
    read_shard_rows,
    shard_relpath,
    write_config,
    write_embed,
    write_shard,
)
from npnet.diffusion.families import get_family
from npnet.engine import GenerationRequest, resolve_sampling
from npnet.errors import UserError, check_whole_number
from npnet.io import JsonlTable, dist_rank_world, shard

Scorer = Callable[[list[Any], list[str]], torch.Tensor]


@dataclass(frozen=True)
class Sample:
    index: int
    prompt_index: int
    k: int
    prompt: str
    seed: int


@dataclass(frozen=True)
class CollectResult:
    out: Path
    rank: int
    world: int
    total: int  # samples of the whole plan
    assigned: int  # samples of this process
    resumed: int  # of those, already on disk before this call
    collected: int  # generated and scored by this call
    kept: int  # kept among ``collected``
    seconds: float

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / self.collected if self.collected else float("nan")


def sample_plan(
    prompts: Sequence[str], seeds_per_prompt: int, seed_base: int = 0, seed_range: tuple[int, int] = (0, 1024)
) -> list[Sample]:
    """Deterministic samples: prompt p gets the first K of a (seed_base, p)-seeded permutation of the range.

    Seeds are distinct within a prompt and do not change when prompts are appended or K grows.
    """
    low, high = seed_range
    if not 0 <= low <= high:
        raise UserError(f"seed_range must be (low, high) with 0 <= low <= high; got {seed_range}")
    if not 1 <= seeds_per_prompt <= high - low + 1:
        raise UserError(f"seeds_per_prompt must be in [1, {high - low + 1}] for seed range {seed_range}")
    plan = []
    for p, prompt in enumerate(prompts):
        seeds = np.random.default_rng([seed_base, p]).permutation(high - low + 1)[:seeds_per_prompt] + low
        plan += [Sample(p * seeds_per_prompt + k, p, k, prompt, int(s)) for k, s in enumerate(seeds)]
    return plan


@dataclass(frozen=True)
class CollectConfig:
    """Settings of one collection (paper App. A.5: 10 DDIM steps (DreamShaper: 4, DPM-Solver), CFG w_l for
    the DDIM step, w_w = 1)."""

    model: str
    out: str
    seeds_per_prompt: int = 1
    steps: int = 10  # sampling steps; re-denoise runs on the same schedule unless redenoise_steps is set
    cfg: float | None = None  # the sampling CFG; None: the model preset's
    inversion_cfg: float = 1.0  # w_w of the inversion step
    redenoise_cfg: float | None = None  # w_l of the DDIM step; None: the sampling CFG (the paper's setting)
    redenoise_steps: int | None = None  # DDIM step size 1000/N; None: the sampling schedule
    margin: float = 0.0  # keep iff s_0 + margin < s'_0 (Alg. 1 line 11)
    scheduler: str | None = None  # None: the family's collection sampler (DDIM, App. A.5; flow: the model's)
    seed_base: int = 0
    seed_range: tuple[int, int] = (0, 1024)
    shard_size: int = 64  # pairs per shard: the resume unit
    batch_size: int | None = None  # samples per re-denoise / pipeline call in a shard; None: the preset's
    cache_embeds: bool = True
    negative_prompt: str = ""
    redenoise_mode: str = "correct"
    redenoise_solver: str | None = None  # "ddim" | "dpmsolver"; None: the model preset's (App. A.5)
    scorer_name: str | None = None  # recorded in every row; default: the scorer's ``name``

    def __post_init__(self):
        if self.shard_size < 1:
            raise UserError(f"shard_size must be >= 1; got {self.shard_size}")
        if self.batch_size is not None:
            check_whole_number("batch_size", self.batch_size, 1)


def _scorer_name(scorer: Scorer, name: str | None) -> str:
    return name or getattr(scorer, "name", None) or getattr(scorer, "__name__", type(scorer).__name__)


def _check_inputs(prompts: list[str], scorer: Scorer) -> None:
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise UserError("prompts must be a non-empty list of non-empty strings")
    if getattr(scorer, "higher_is_better", True) is False:
        raise UserError(
            "the selection s_0 + m < s'_0 needs a higher-is-better scorer (e.g. hpsv2, pickscore)"
        )


def collection_settings(service, config: CollectConfig, prompts: list[str], scorer: Scorer) -> dict[str, Any]:
    """What ``config.json`` records: the sampling settings with the preset's defaults filled in, and the plan."""
    preset = service.preset(config.model)
    sampling = resolve_sampling(
        preset,
        steps=config.steps,
        guidance_scale=config.cfg,
        inversion_guidance_scale=config.inversion_cfg,
        scheduler=config.scheduler or get_family(preset.family).collect_scheduler,
        methods=("standard", "inversion"),
        redenoise_steps=config.redenoise_steps,
        redenoise_mode=config.redenoise_mode,
        redenoise_guidance_scale=config.redenoise_cfg,
        redenoise_solver=config.redenoise_solver,
    )
    return {
        "model": sampling["model"],
        "steps": sampling["steps"],
        "cfg": sampling["guidance_scale"],
        "inversion_cfg": sampling["inversion_guidance_scale"],
        "redenoise_cfg": sampling["redenoise_guidance_scale"],
        "redenoise_steps": sampling["redenoise_steps"],
        "redenoise_solver": sampling["redenoise_solver"],
        "scheduler": sampling["scheduler"],
        "width": sampling["width"],
        "height": sampling["height"],
        "redenoise_mode": config.redenoise_mode,
        "negative_prompt": config.negative_prompt,
        "scorer": _scorer_name(scorer, config.scorer_name),
        "margin": config.margin,
        "seeds_per_prompt": config.seeds_per_prompt,
        "seed_base": config.seed_base,
        "seed_range": list(config.seed_range),
        "shard_size": config.shard_size,
        "num_samples": len(prompts) * config.seeds_per_prompt,
        "prompts_sha256": hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
    }


def collect(
    service,
    config: CollectConfig,
    prompts: Sequence[str],
    scorer: Scorer,
    rank: int | None = None,
    world: int | None = None,
    progress: bool = True,
    on_sample: Callable[[int, int], None] | None = None,
) -> CollectResult:
    """Alg. 1 for this process's blocks; ``scorer(images, prompts) -> tensor[B]`` (higher is better).

    ``on_sample(done, assigned)`` runs after every sample (progress displays; it may raise to stop).
    """
    start = time.perf_counter()
    if rank is None or world is None:
        rank, world = dist_rank_world()
    prompts = list(prompts)
    _check_inputs(prompts, scorer)
    plan = sample_plan(prompts, config.seeds_per_prompt, config.seed_base, config.seed_range)
    settings = collection_settings(service, config, prompts, scorer)
    out = Path(config.out)
    write_config(out, settings)
    size = config.shard_size
    blocks = [plan[b * size : (b + 1) * size] for b in range(math.ceil(len(plan) / size))]
    mine = [b for _, b in shard(range(len(blocks)), rank, world)]
    log = JsonlTable(out / f"manifest.rank{rank}.jsonl")
    done = _repair_log(out, log, mine)
    assigned = sum(len(blocks[b]) for b in mine)
    resumed = sum(len(blocks[b]) for b in mine if b in done)
    bar = _progress(progress, assigned, resumed, rank, world)
    counts = [0, 0]  # collected, kept
    # samples per model call: fixed per collection (padded calls), so shards do not depend on resume
    batch = min(config.batch_size or service.preset(config.model).batch_size, size)
    for b in (b for b in mine if b not in done):
        rows, xs, xps = [], [], []
        for row, x, xp in _collect_block(service, blocks[b], batch, settings, scorer, out, config):
            rows.append(row)
            xs.append(x)
            xps.append(xp)
            counts = [counts[0] + 1, counts[1] + row["kept"]]
            if on_sample is not None:
                on_sample(resumed + counts[0], assigned)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"kept {counts[1]}/{counts[0]}")
        write_shard(out, b, rows, torch.cat(xs), torch.cat(xps))  # (N, 4, h, w); durable before logging
        for row in read_shard_rows(out / shard_relpath(b)):
            log.append(row)
    if bar is not None:
        bar.close()
    merge(out)
    seconds = time.perf_counter() - start
    return CollectResult(out, rank, world, len(plan), assigned, resumed, counts[0], counts[1], seconds)


def _request(sample: Sample, settings: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest(
        model=settings["model"],
        prompt=sample.prompt,
        negative_prompt=settings["negative_prompt"],
        seed=sample.seed,
        steps=settings["steps"],
        guidance_scale=settings["cfg"],
        scheduler=settings["scheduler"],
        methods=("standard", "inversion"),
        inversion_guidance_scale=settings["inversion_cfg"],
        redenoise_mode=settings["redenoise_mode"],
        redenoise_steps=settings["redenoise_steps"],
        redenoise_guidance_scale=settings["redenoise_cfg"],
        redenoise_solver=settings["redenoise_solver"],
    )


def _collect_block(service, block: list[Sample], batch: int, settings, scorer, out: Path, config):
    """(row, x_T, x'_T) of every sample of ``block``, ``batch`` samples per model call (padded)."""
    for lo in range(0, len(block), batch):
        chunk = block[lo : lo + batch]
        requests = [_request(s, settings) for s in chunk]
        for sample, result in zip(chunk, service.generate_many(requests, samples_per_call=batch, pad=True)):
            yield _collect_one(sample, result, settings, scorer, out, config.cache_embeds)


def _collect_one(sample: Sample, result, settings: dict[str, Any], scorer, out: Path, cache_embeds: bool):
    """Lines 3-12 of Alg. 1 for one (prompt, seed) from its ``result`` (both noises, both images): both
    scores, and the row recording them."""
    images = [result.images["standard"], result.images["inversion"]]
    scores = torch.as_tensor(scorer(images, [sample.prompt] * 2)).detach().flatten().double().tolist()
    if len(scores) != 2 or not all(math.isfinite(s) for s in scores):
        raise UserError(f"the scorer must return 2 finite scores for 2 images; got {scores}")
    embed = write_embed(out, sample.prompt, result.prompt_embeds) if cache_embeds else None
    row = {
        "index": sample.index,
        "prompt": sample.prompt,
        "prompt_index": sample.prompt_index,
        "k": sample.k,
        "seed": sample.seed,
        "score_standard": scores[0],
        "score_inversion": scores[1],
        "kept": scores[0] + settings["margin"] < scores[1],  # Alg. 1 line 11
        "embed": embed,
        **{
            k: settings[k]
            for k in ("model", "steps", "cfg", "redenoise_cfg", "redenoise_steps", "redenoise_solver",
                      "inversion_cfg", "scheduler", "scorer", "margin")  # fmt: skip
        },
    }
    return row, result.latents["standard"], result.latents["inversion"]  # (1, 4, h, w) each


def _repair_log(out: Path, log: JsonlTable, blocks: list[int]) -> set[int]:
    """Blocks of this process already on disk; rows of a shard written just before a kill are re-logged."""
    logged = {row["index"] for row in read_manifest(out)}
    done = set()
    for b in blocks:
        path = out / shard_relpath(b)
        if path.exists():
            done.add(b)
            for row in read_shard_rows(path):
                if row["index"] not in logged:
                    log.append(row)
    return done


def _progress(enabled: bool, total: int, initial: int, rank: int, world: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    desc = "collect" if world == 1 else f"collect rank {rank}/{world}"
    return tqdm(total=total, initial=initial, desc=desc, unit="pair")


def service_prompt_encoder(
    model: str, device="auto", offline: bool | None = None
) -> Callable[[list[str]], torch.Tensor]:
    """``encode(prompts) -> (B, 77, D)``: the NPNet condition from ``model``'s own text encoders."""
    from npnet.diffusion.loading import load_pipeline, resolve_device, resolve_dtype
    from npnet.diffusion.presets import hub_offline, resolve_model
    from npnet.diffusion.sampling import encode_prompt

    preset = resolve_model(model, offline)
    dev = resolve_device(device)
    pipe = load_pipeline(preset, dev, resolve_dtype(None, preset, dev), hub_offline(offline))

    def encode(prompts: list[str]) -> torch.Tensor:
        return torch.cat([encode_prompt(pipe, p).condition.float().cpu() for p in prompts])  # (B, 77, D)

    return encode
