"""Micro-world CLI: ``python -m cli micro train-generator`` and ``python -m cli micro check-generator``."""

from __future__ import annotations

import argparse
import json
import sys

from cli.common import positive_int, run_command, whole_number
from npnet.errors import OneLineParser


def _train(args: argparse.Namespace) -> None:
    from npnet.worlds.micro.train_generator import TrainConfig, train

    config = TrainConfig(
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        vae_batch_size=args.vae_batch_size,
        batch_size=args.batch_size,
        seed=args.seed,
        cache_size=args.cache_size,
        ckpt_every_seconds=args.ckpt_every_seconds,
    )
    train(args.out, config, resume=args.resume, export_to=args.export_to, log=lambda s: print(s, flush=True))


def _check(args: argparse.Namespace) -> None:
    from npnet.worlds.micro.quality import check_generator

    report = check_generator(
        path=args.path,
        n_prompts=args.prompts,
        seeds=args.seeds,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        threshold=args.threshold,
        grid=args.grid,
        split=args.split,
    )
    print(json.dumps(report, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m cli micro", description=__doc__)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train-generator", help="train the micro VAE then UNet (resumable)")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, latent cache, log)")
    tr.add_argument("--vae-steps", type=positive_int, default=700)
    tr.add_argument("--unet-steps", type=positive_int, default=6000)
    tr.add_argument("--vae-batch-size", type=positive_int, default=32)
    tr.add_argument("--batch-size", type=positive_int, default=96, help="UNet batch size")
    tr.add_argument(
        "--cache-size", type=positive_int, default=30000, help="training images encoded once by the VAE"
    )
    tr.add_argument("--ckpt-every-seconds", type=float, default=180.0)
    tr.add_argument("--seed", type=whole_number(0), default=0)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/latest.json")
    tr.add_argument("--export-to", default=None, help="pipeline folder (default OUT/generator)")
    tr.set_defaults(func=_train)
    ck = sub.add_parser("check-generator", help="held-out accuracy of the micro generator under the verifier")
    ck.add_argument("--path", default=None, help="pipeline folder (default assets/micro/generator)")
    ck.add_argument("--prompts", type=positive_int, default=85, help="held-out prompts (all 85 by default)")
    ck.add_argument("--seeds", type=positive_int, default=4)
    ck.add_argument("--steps", type=positive_int, default=None)
    ck.add_argument("--guidance-scale", type=float, default=None)
    ck.add_argument("--threshold", type=float, default=None)
    ck.add_argument("--split", choices=("heldout", "train"), default="heldout")
    ck.add_argument("--grid", default=None, help="write a PNG grid of the samples here")
    ck.set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    sys.exit(run_command(lambda: main(sys.argv[1:])))
