"""``python -m cli collect``: Alg. 1 with a prompt set and an eval scorer as the selection filter.

python -m cli collect --model tiny-sdxl --prompts examples --seeds-per-prompt 2 --steps 10 --scorer toy-brightness
    --margin 0 --out runs/npd

Wires ``eval.prompts.load_prompts`` and ``eval.metrics.get_scorer`` into ``npnet.data.collect.collect``.
Several processes (``accelerate launch -m cli collect ...`` / torchrun) split the shards.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from cli.common import check_writable, positive_int, run_standalone, whole_number

if TYPE_CHECKING:
    from npnet.data.collect import CollectConfig, CollectResult


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, help="model preset (e.g. sdxl, tiny-sdxl)")
    parser.add_argument("--prompts", required=True, help="prompt file (txt/CSV/JSONL) or prompt-set name")
    parser.add_argument("--limit", type=positive_int, default=None, help="use the first N prompts")
    parser.add_argument("--seeds-per-prompt", type=positive_int, default=1)
    parser.add_argument(
        "--steps", type=positive_int, default=10, help="sampling and re-denoise steps (paper: 10)"
    )
    parser.add_argument("--cfg", type=float, default=None, help="CFG w_l (default: the model preset's)")
    parser.add_argument("--inversion-cfg", type=float, default=1.0, help="CFG w_w of the inversion step")
    parser.add_argument(
        "--scheduler", default=None, help="sampler (default: ddim, as the paper; flow-matching models: their own)"
    )
    parser.add_argument(
        "--scorer", required=True, help="eval scorer name (hpsv2, pickscore, toy-brightness, ...)"
    )
    parser.add_argument("--margin", type=float, default=0.0, help="keep iff s_0 + margin < s'_0")
    parser.add_argument("--seed-base", type=whole_number(0), default=0)
    parser.add_argument(
        "--shard-size", type=positive_int, default=64, help="pairs per shard (the resume unit)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="samples per re-denoise and pipeline call (default: the model preset's; 1: one sample at a time)",
    )
    parser.add_argument("--no-cache-embeds", action="store_true", help="do not cache prompt embeddings")
    parser.add_argument("--redenoise-mode", choices=("correct", "official"), default="correct")
    parser.add_argument(
        "--redenoise-cfg", type=float, default=None, help="w_l of the DDIM step (default: the preset's, else --cfg)"
    )
    parser.add_argument(
        "--redenoise-steps", type=int, default=None, help="DDIM step size 1000/N (default: the sampling schedule)"
    )
    parser.add_argument(
        "--redenoise-solver",
        choices=("ddim", "dpmsolver", "flow-euler"),
        default=None,
        help="ddim | dpmsolver | flow-euler (default: the model preset's; dreamshaper-xl-v2-turbo: dpmsolver, "
        "App. A.5; SD3 / Flux: flow-euler)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--cpu-offload", action="store_true", help="enable_model_cpu_offload on CUDA (SD3.5 / Flux on smaller GPUs)"
    )
    parser.add_argument("--out", required=True, help="NPD output folder (resumes when it exists)")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("collect", help="collect noise pairs by re-denoise sampling (Alg. 1)")
    return add_arguments(parser)


def collect_config(args: argparse.Namespace) -> CollectConfig:
    from npnet.data.collect import CollectConfig

    return CollectConfig(
        model=args.model,
        out=args.out,
        seeds_per_prompt=args.seeds_per_prompt,
        steps=args.steps,
        cfg=args.cfg,
        inversion_cfg=args.inversion_cfg,
        margin=args.margin,
        scheduler=args.scheduler,
        seed_base=args.seed_base,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        cache_embeds=not args.no_cache_embeds,
        redenoise_mode=args.redenoise_mode,
        redenoise_cfg=args.redenoise_cfg,
        redenoise_steps=args.redenoise_steps,
        redenoise_solver=args.redenoise_solver,
        scorer_name=args.scorer,
    )


def main(args: argparse.Namespace) -> CollectResult:
    check_writable(args.out, "--out", folder=True)
    from eval.prompts import load_prompts

    prompts = load_prompts(args.prompts, limit=args.limit)  # bad --out / --prompts fail before heavy imports
    import torch

    from eval.metrics import get_scorer
    from npnet.data.collect import collect
    from npnet.engine import GoldenNoiseService
    from npnet.io import dist_rank_world

    rank, world = dist_rank_world()
    device = args.device
    if device == "auto" and world > 1 and torch.cuda.is_available():  # one GPU per local process
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    config = collect_config(args)
    service = GoldenNoiseService(device=device, progress=False, cpu_offload=args.cpu_offload)
    scorer = get_scorer(args.scorer, device=service.device)
    result = collect(service, config, prompts, scorer, rank=rank, world=world)
    print(
        f"rank {rank}/{world}: {result.collected} new pairs ({result.kept} kept), {result.resumed} already "
        f"on disk, {result.seconds_per_sample:.2f} s/pair -> {result.out}"
    )
    return result


if __name__ == "__main__":
    run_standalone(add_arguments, main, __doc__)
