"""Micro flow world CLI: ``python -m cli micro-flow train-generator`` and ``... check-generator``."""

from __future__ import annotations

import argparse
import json
import sys

from cli.common import positive_int, run_command, whole_number
from npnet.errors import OneLineParser, UserError


def _train(args: argparse.Namespace) -> None:
    from npnet.worlds.micro_flow.train import FlowTrainConfig, train_flow

    config = FlowTrainConfig(
        vae_steps=args.vae_steps,
        flow_steps=args.flow_steps,
        vae_batch_size=args.vae_batch_size,
        batch_size=args.batch_size,
        seed=args.seed,
        cache_size=args.cache_size,
        ckpt_every_seconds=args.ckpt_every_seconds,
    )
    train_flow(
        args.out, config, resume=args.resume, export_to=args.export_to, log=lambda s: print(s, flush=True)
    )


def _step_list(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--steps takes comma-separated whole numbers such as 2,4,8, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise UserError(f"--steps takes comma-separated step counts >= 1 such as 2,4,8, got {text!r}")
    return steps


def _check(args: argparse.Namespace) -> None:
    from npnet.worlds.micro_flow.quality import check_flow_generator

    report = check_flow_generator(
        path=args.path,
        n_prompts=args.prompts,
        seeds=args.seeds,
        steps=_step_list(args.steps),
        guidance_scale=args.guidance_scale,
        shift=args.shift,
        split=args.split,
        grid=args.grid,
    )
    print(json.dumps(report, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m cli micro-flow", description=__doc__)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train-generator", help="train the micro flow VAE then MMDiT (resumable)")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, latent cache, log)")
    tr.add_argument("--vae-steps", type=positive_int, default=300)
    tr.add_argument("--flow-steps", type=positive_int, default=5000)
    tr.add_argument("--vae-batch-size", type=positive_int, default=32)
    tr.add_argument("--batch-size", type=positive_int, default=64, help="transformer batch size")
    tr.add_argument(
        "--cache-size", type=positive_int, default=30000, help="training images encoded once by the VAE"
    )
    tr.add_argument("--ckpt-every-seconds", type=float, default=180.0)
    tr.add_argument("--seed", type=whole_number(0), default=0)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/latest.json")
    tr.add_argument("--export-to", default=None, help="pipeline folder (default OUT/generator)")
    tr.set_defaults(func=_train)
    ck = sub.add_parser("check-generator", help="verifier accuracy of the flow generator by step count")
    ck.add_argument("--path", default=None, help="pipeline folder (default assets/micro/flow-generator)")
    ck.add_argument(
        "--prompts", type=positive_int, default=85, help="captions of the split (85 = all held-out)"
    )
    ck.add_argument("--seeds", type=positive_int, default=4)
    ck.add_argument("--steps", default="20", help="comma-separated step counts, e.g. 2,3,4,5,6,8,10,20")
    ck.add_argument("--guidance-scale", type=float, default=None)
    ck.add_argument("--shift", type=float, default=None, help="scheduler shift (default: the saved one)")
    ck.add_argument("--split", choices=("heldout", "train"), default="heldout")
    ck.add_argument("--grid", default=None, help="write a PNG grid of the last step count's samples here")
    ck.set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    sys.exit(run_command(lambda: main(sys.argv[1:])))
