"""``python -m cli train``: train an NPNet on a noise prompt dataset (Alg. 2) and write its loss page.

python -m cli train --data NPD_DIR --preset sdxl --epochs 30 --batch-size 64 --lr 1e-4 --out CKPT_DIR
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

from cli.common import check_writable, require_dir, run_standalone
from eval.training_plots import loss_figure
from npnet.io import atomic_write_text, dist_rank_world
from npnet.model import NPNET_PRESETS
from npnet.training.state import read_step_losses
from npnet.training.train import BATCH_PROMPT, LR_SCHEDULES, TrainConfig, TrainResult, train


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    d = TrainConfig(data="", out="")
    parser.add_argument("--data", required=True, help="noise prompt dataset folder (python -m cli collect / import-official)")
    parser.add_argument("--out", required=True, help="checkpoint folder (best/, last/, logs)")
    parser.add_argument("--preset", default=d.preset, help=f"NPNet architecture: {', '.join(NPNET_PRESETS)}")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="0: no clipping")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction)
    parser.add_argument("--split-by", choices=("sample", "prompt"), default=d.split_by)
    parser.add_argument("--margin", type=float, default=None, help="re-apply s_0 + m < s'_0 at read time")
    parser.add_argument("--no-select", action="store_true", help="train on every pair (no data selection)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--init",
        default=d.init,
        help="auto (default: imagenet where the weights exist, i.e. the sdxl/dit presets; random for the "
        "reduced Swins of micro/tiny) | imagenet (paper App. A.4: timm's ImageNet Swin-T, "
        "timm/swin_tiny_patch4_window7_224.ms_in1k) | random (e.g. offline without those weights) | "
        "NPNet checkpoint path/id (fine-tuning)",
    )
    parser.add_argument(
        "--batch-prompt",
        choices=BATCH_PROMPT,
        default=d.batch_prompt,
        help="own: each sample its own prompt; random: one random prompt of the batch for all samples "
        "(the paper's regulariser; the official code uses the first prompt of the shuffled batch, so "
        "63 of 64 samples see the wrong prompt)",
    )
    parser.add_argument("--device", choices=("auto", "cpu"), default=d.device)
    parser.add_argument("--num-workers", type=int, default=d.num_workers)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last")
    parser.add_argument(
        "--encode-with", default=None, help="model preset that encodes prompts when the data has no cache"
    )
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train an NPNet on a noise prompt dataset (Alg. 2)")
    return add_arguments(parser)


def main(args: argparse.Namespace) -> TrainResult:
    require_dir(args.data, "--data")
    check_writable(args.out, "--out", folder=True)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values["preset"] = None if args.preset in ("", "none", "None") else args.preset
    config = TrainConfig(**values, select=not args.no_select)
    encode = None
    if args.encode_with:
        from npnet.data.collect import service_prompt_encoder  # loads diffusers: only when needed

        encode = service_prompt_encoder(args.encode_with, device=args.device)
    result = train(config, encode_prompts=encode, callback=loss_page(Path(config.out)))
    if dist_rank_world()[0] == 0:
        print(
            json.dumps(
                {"best": str(result.best), "best_epoch": result.best_epoch, "val": result.best_val_loss}
            )
        )
    return result


def loss_page(out: Path):
    """An epoch callback that rewrites ``out/loss.html`` (plotly) from the run's logs (main process only)."""

    def write(_record: dict) -> None:
        if dist_rank_world()[0] != 0:
            return
        history = read_history(out)
        figure = loss_figure(history, read_step_losses(out))
        atomic_write_text(out / "loss.html", figure.to_html(include_plotlyjs=True))

    return write


def read_history(out: Path) -> list[dict]:
    with open(out / "history.csv", newline="") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text == "True" if text in ("True", "False") else text


if __name__ == "__main__":
    run_standalone(add_arguments, main, __doc__)
