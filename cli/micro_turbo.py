"""``python -m cli micro-turbo``: golden noise at the few-step micro preset, against honest controls.

    python -m cli micro-turbo evaluate --npnet assets/micro/npnet-turbo.safetensors --out assets/micro/turbo
    python -m cli micro-turbo evaluate --npnet assets/micro/npnet-turbo.safetensors --steps 4 --out assets/micro/turbo/steps-4
    python -m cli micro-turbo curve assets/micro/turbo assets/micro/turbo/steps-4 ... --out assets/micro/turbo/steps.md
    python -m cli micro-turbo agreement --data runs/micro_turbo/npd --npnet runs/micro_turbo/npnet/best/npnet.safetensors
    python -m cli micro-turbo ablations --data runs/micro_turbo/npd --runs runs/micro_turbo/ablations --out assets/micro/turbo/ablations

``evaluate`` scores, on the held-out captions x seeds (never used to choose anything), with the micro
verifier (correct iff score > 0.5), per (caption, seed):

* standard: x_T at the preset's settings (5 DDIM steps, trailing; ``--steps`` for the steps curve, the same
  NPNet at every step count); standard +1 step (compute-matched: one NPNet forward costs about one micro
  UNet step);
* inversion: x'_T by re-denoise sampling at the preset's w_l (NPNet's teacher and upper bound);
* npnet: NPNet(x_T, c);
* random-direction: x_T + r ||NPNet(x_T) - x_T|| / ||r||, r Gaussian (seeded): the same change norm,
  no learned direction;
* scaled-noise: x_T ||NPNet(x_T)|| / ||x_T||: the NPNet's norm, x_T's direction.

Accuracy with prompt-clustered CIs, rescued/broken vs standard and exact McNemar tests come from
``eval.stats.binary_stats``; every per-sample score is written to ``rows.csv``. ``ablations`` (Table 4's
rows: no SVD branch, no residual branch, with / without data selection) lives in ``cli.micro_ablations``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cli.common import run_command
from cli.micro_ablations import (
    ablation_config,
    ablation_markdown,
    add_ablation_parser,
    run_ablations,
    validation_agreement,
)
from cli.micro_arms import ARMS, control_latents, evaluate, markdown, steps_curve, summarize_arms, write_curve
from cli.micro_tokens import add_token_parsers, run_token_command
from npnet.checkpoints import load_npnet
from npnet.errors import OneLineParser

MODEL = "micro-turbo"
__all__ = ["ARMS", "control_latents", "evaluate", "markdown", "steps_curve", "summarize_arms"]


def agreement(data: str, npnet: str, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """On the NPD's validation pairs (all, kept or not): cosine and explained energy of NPNet(x_T) - x_T
    against the re-denoise change x'_T - x_T (the issue's measure of whether NPNet learned its target)."""
    return validation_agreement(data, load_npnet(npnet), val_fraction, seed)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m cli micro-turbo", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="every arm on the held-out captions x seeds")
    ev.add_argument("--npnet", required=True, help="the micro-turbo NPNet checkpoint")
    ev.add_argument("--out", required=True, help="results folder (rows.csv, results.json, results.md)")
    ev.add_argument("--seeds", default="0,1,2", help="comma list (default 0,1,2)")
    ev.add_argument("--limit", type=int, default=None, help="first N held-out captions")
    ev.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's 5)")
    ag = sub.add_parser("agreement", help="NPNet(x_T) - x_T vs x'_T - x_T on the NPD's validation pairs")
    ag.add_argument("--data", required=True)
    ag.add_argument("--npnet", required=True)
    ag.add_argument("--val-fraction", type=float, default=0.1)
    cu = sub.add_parser("curve", help="a steps-curve table from several evaluate folders")
    cu.add_argument("folders", nargs="+", help="evaluate --out folders (one per step count)")
    cu.add_argument("--out", default=None, help="also write the table to this markdown file")
    add_ablation_parser(sub)
    add_token_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.command == "ablations":
        return run_command(lambda: print(ablation_markdown(run_ablations(ablation_config(args)))))
    if args.command in ("token-candidates", "compare", "compute-matched"):
        return run_command(lambda: print(run_token_command(args)))
    if args.command == "curve":
        return run_command(lambda: print(write_curve(args.folders, args.out)))
    if args.command == "agreement":
        return run_command(lambda: print(json.dumps(agreement(args.data, args.npnet, args.val_fraction))))
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    return run_command(
        lambda: print(markdown(evaluate(args.npnet, Path(args.out), seeds, args.limit, args.steps)))
    )


if __name__ == "__main__":
    sys.exit(main())
