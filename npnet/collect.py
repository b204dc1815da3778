"""Noise prompt dataset collection (paper Alg. 1, Sec. 3.1, App. A.5), resumable and distributed.

For every (prompt, k): x_T from a seed drawn in [0, 1024]; x'_T by re-denoise sampling (one DDIM step
with CFG w_l, one DDIM-inversion step with w_w); x_0 and x'_0 by full sampling from each; scores s_0
and s'_0 from the scorer; the pair is kept iff s_0 + m < s'_0. Every sample is recorded, kept or not,
with both scores, so the selection can be changed at read time (``NoisePairDataset(margin=...)``).

python -m npnet collect --model tiny-sdxl --prompts P --seeds-per-prompt K --steps 10 --cfg 5.5
    --inversion-cfg 1.0 --scorer NAME --margin 0 --out DIR

Sample i = prompt_index * K + k. Block b (samples [b*S, (b+1)*S)) goes to process ``b % world``
(``npnet.jobs.shard``; RANK/WORLD_SIZE from ``accelerate launch`` / torchrun), is written as one
atomic shard and only then logged, and is skipped on resume; a kill loses at most the unfinished
block. Shards and the merged ``manifest.jsonl`` are identical for any number of processes.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npnet.dataset import (
    merge,
    read_manifest,
    read_shard_rows,
    shard_relpath,
    write_config,
    write_embed,
    write_shard,
)
from npnet.jobs import JsonlTable, dist_rank_world, shard

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
        raise ValueError(f"seed_range must be (low, high) with 0 <= low <= high; got {seed_range}")
    if not 1 <= seeds_per_prompt <= high - low + 1:
        raise ValueError(f"seeds_per_prompt must be in [1, {high - low + 1}] for seed range {seed_range}")
    plan = []
    for p, prompt in enumerate(prompts):
        seeds = np.random.default_rng([seed_base, p]).permutation(high - low + 1)[:seeds_per_prompt] + low
        plan += [Sample(p * seeds_per_prompt + k, p, k, prompt, int(s)) for k, s in enumerate(seeds)]
    return plan


def _scorer_name(scorer: Scorer, name: str | None) -> str:
    return name or getattr(scorer, "name", None) or getattr(scorer, "__name__", type(scorer).__name__)


def _resolve(service, model: str, steps: int, cfg, inversion_cfg, scheduler: str) -> dict[str, Any]:
    """The generation settings with the model preset's defaults filled in (no model is loaded)."""
    from npnet.registry import resolve_model
    from npnet.service import GenerationRequest, resolve_settings

    request = GenerationRequest(
        model=model,
        prompt="x",
        steps=steps,
        guidance_scale=cfg,
        inversion_guidance_scale=inversion_cfg,
        scheduler=scheduler,
        methods=("standard", "inversion"),
        redenoise_steps=steps,
    )
    got = resolve_settings(request, resolve_model(model, getattr(service, "offline", None)))
    keys = {
        "model": "model",
        "steps": "steps",
        "cfg": "guidance_scale",
        "inversion_cfg": "inversion_guidance_scale",
    }
    keys.update(scheduler="scheduler", width="width", height="height")
    return {ours: got[theirs] for ours, theirs in keys.items()}


def collect(
    service,
    model: str,
    prompts: Sequence[str],
    seeds_per_prompt: int,
    out: str | Path,
    scorer: Scorer,
    steps: int = 10,
    cfg: float | None = None,
    inversion_cfg: float = 1.0,
    margin: float = 0.0,
    scheduler: str = "ddim",
    seed_base: int = 0,
    seed_range: tuple[int, int] = (0, 1024),
    shard_size: int = 64,
    cache_embeds: bool = True,
    negative_prompt: str = "",
    redenoise_mode: str = "correct",
    scorer_name: str | None = None,
    rank: int | None = None,
    world: int | None = None,
    progress: bool = True,
) -> CollectResult:
    """Alg. 1 for this process's blocks; ``scorer(images, prompts) -> tensor[B]`` (higher is better)."""
    start = time.perf_counter()
    if rank is None or world is None:
        rank, world = dist_rank_world()
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty strings")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1; got {shard_size}")
    if getattr(scorer, "higher_is_better", True) is False:
        raise ValueError(
            "the selection s_0 + m < s'_0 needs a higher-is-better scorer (e.g. hpsv2, pickscore)"
        )
    plan = sample_plan(prompts, seeds_per_prompt, seed_base, seed_range)
    settings = {
        **_resolve(service, model, steps, cfg, inversion_cfg, scheduler),
        "redenoise_mode": redenoise_mode,
        "negative_prompt": negative_prompt,
        "scorer": _scorer_name(scorer, scorer_name),
        "margin": margin,
        "seeds_per_prompt": seeds_per_prompt,
        "seed_base": seed_base,
        "seed_range": list(seed_range),
        "shard_size": shard_size,
        "num_samples": len(plan),
        "prompts_sha256": hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
    }
    out = Path(out)
    write_config(out, settings)
    blocks = [plan[b * shard_size : (b + 1) * shard_size] for b in range(math.ceil(len(plan) / shard_size))]
    mine = [b for _, b in shard(range(len(blocks)), rank, world)]
    log = JsonlTable(out / f"manifest.rank{rank}.jsonl")
    done = _repair_log(out, log, mine)
    assigned = sum(len(blocks[b]) for b in mine)
    resumed = sum(len(blocks[b]) for b in mine if b in done)
    bar = _progress(progress, assigned, resumed, rank, world)
    counts = [0, 0]  # collected, kept
    for b in (b for b in mine if b not in done):
        rows, xs, xps = [], [], []
        for sample in blocks[b]:
            row, x, xp = _collect_one(service, sample, settings, scorer, out, cache_embeds)
            rows.append(row)
            xs.append(x)
            xps.append(xp)
            counts = [counts[0] + 1, counts[1] + row["kept"]]
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


def _collect_one(service, sample: Sample, settings: dict[str, Any], scorer, out: Path, cache_embeds: bool):
    """Lines 3-12 of Alg. 1 for one (prompt, seed): both noises, both images, both scores."""
    from npnet.service import GenerationRequest

    request = GenerationRequest(
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
        redenoise_steps=settings["steps"],
    )
    result = service.generate(request)
    images = [result.images["standard"], result.images["inversion"]]
    scores = torch.as_tensor(scorer(images, [sample.prompt] * 2)).detach().flatten().double().tolist()
    if len(scores) != 2 or not all(math.isfinite(s) for s in scores):
        raise ValueError(f"the scorer must return 2 finite scores for 2 images; got {scores}")
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
            for k in ("model", "steps", "cfg", "inversion_cfg", "scheduler", "scorer", "margin")
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
    from npnet.loading import load_pipeline, resolve_device, resolve_dtype
    from npnet.pipeline import encode_prompt
    from npnet.registry import hub_offline, resolve_model

    preset = resolve_model(model, offline)
    dev = resolve_device(device)
    pipe = load_pipeline(preset, dev, resolve_dtype(None, preset, dev), hub_offline(offline))

    def encode(prompts: list[str]) -> torch.Tensor:
        return torch.cat([encode_prompt(pipe, p).condition.float().cpu() for p in prompts])  # (B, 77, D)

    return encode


# -- CLI -----------------------------------------------------------------------------------------
def read_prompts(spec: str, limit: int | None = None) -> list[str]:
    """Prompts via ``eval.prompts.load_prompts`` (sets, CSV, JSONL, ...) when installed, else a .txt file."""
    try:
        from eval.prompts import load_prompts
    except ImportError:
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"prompt file {spec} does not exist") from None
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return prompts[:limit] if limit else prompts
    return load_prompts(spec, limit=limit)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, help="model preset (e.g. sdxl, tiny-sdxl)")
    parser.add_argument("--prompts", required=True, help="prompt file (txt/CSV/JSONL) or prompt-set name")
    parser.add_argument("--limit", type=int, default=None, help="use the first N prompts")
    parser.add_argument("--seeds-per-prompt", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="sampling and re-denoise steps (paper: 10)")
    parser.add_argument("--cfg", type=float, default=None, help="CFG w_l (default: the model preset's)")
    parser.add_argument("--inversion-cfg", type=float, default=1.0, help="CFG w_w of the inversion step")
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument(
        "--scorer", required=True, help="eval scorer name (hpsv2, pickscore, toy-brightness, ...)"
    )
    parser.add_argument("--margin", type=float, default=0.0, help="keep iff s_0 + margin < s'_0")
    parser.add_argument("--seed-base", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=64, help="pairs per shard (the resume unit)")
    parser.add_argument("--no-cache-embeds", action="store_true", help="do not cache prompt embeddings")
    parser.add_argument("--redenoise-mode", choices=("correct", "official"), default="correct")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", required=True, help="NPD output folder (resumes when it exists)")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("collect", help="collect noise pairs by re-denoise sampling (Alg. 1)")
    add_arguments(parser)
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> CollectResult:
    from eval.metrics import get_scorer
    from npnet.service import GoldenNoiseService

    rank, world = dist_rank_world()
    device = args.device
    if device == "auto" and world > 1 and torch.cuda.is_available():  # one GPU per local process
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    service = GoldenNoiseService(device=device, progress=False)
    scorer = get_scorer(args.scorer, device=service.device)
    result = collect(
        service,
        args.model,
        read_prompts(args.prompts, args.limit),
        args.seeds_per_prompt,
        args.out,
        scorer,
        steps=args.steps,
        cfg=args.cfg,
        inversion_cfg=args.inversion_cfg,
        margin=args.margin,
        scheduler=args.scheduler,
        seed_base=args.seed_base,
        shard_size=args.shard_size,
        cache_embeds=not args.no_cache_embeds,
        redenoise_mode=args.redenoise_mode,
        scorer_name=args.scorer,
        rank=rank,
        world=world,
    )
    print(
        f"rank {rank}/{world}: {result.collected} new pairs ({result.kept} kept), {result.resumed} already "
        f"on disk, {result.seconds_per_sample:.2f} s/pair -> {result.out}"
    )
    return result


if __name__ == "__main__":
    main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
