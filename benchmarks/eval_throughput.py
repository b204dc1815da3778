"""Scoring throughput: images scored per second per metric at batch size 1 vs 8.

    python benchmarks/eval_throughput.py --size small --metrics hpsv2,pickscore,aes,imagereward,clipscore,mps
    python benchmarks/eval_throughput.py --size full --metrics aes --images 8      # real ViT-L/14 architecture

Each scorer loads random weights written in its real on-disk layout (eval/metrics/random_weights.py)
through its real loading code, so the numbers cover preprocessing, tokenisation and the forward
pass but say nothing about score values. ``--size``: "tiny" (test-sized), "small" (224 px, reduced
widths/depths), "full" (the real architectures; writes several GB of weights to --workdir).
Prints a markdown table and optionally writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.metrics import PAPER_METRICS, get_scorer  # noqa: E402
from eval.metrics.random_weights import write_random_checkpoints  # noqa: E402

TOYS = ("toy-brightness", "toy-colorfulness")


def make_images(count: int, size: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def _parameters(scorer) -> int:
    modules = [v for v in vars(scorer).values() if isinstance(v, torch.nn.Module)]
    return sum(p.numel() for m in modules for p in m.parameters())


def measure_metric(name: str, kwargs: dict, args: argparse.Namespace, images: list[Image.Image]) -> dict:
    """Load time, parameter count and images/s at each batch size for one metric."""
    prompts = [f"a photo of object number {i}, watercolor" for i in range(len(images))]
    result = {"metric": name, "rates": {}}
    for batch in args.batch_sizes:
        scorer = get_scorer(
            name, device=args.device, dtype=getattr(torch, args.dtype), batch_size=batch, **kwargs
        )
        start = time.perf_counter()
        scorer.load()
        result["load_s"] = time.perf_counter() - start
        result["params_m"] = _parameters(scorer) / 1e6
        scorer(images[:batch], prompts[:batch])  # warm-up
        start = time.perf_counter()
        for _ in range(args.repeats):
            scorer(images, prompts)
        elapsed = time.perf_counter() - start
        result["rates"][batch] = args.repeats * len(images) / elapsed
    return result


def measure_scoring(args: argparse.Namespace) -> list[dict]:
    """Throughput of each requested metric on ``--images`` random images."""
    images = make_images(args.images, args.image_size, args.seed)
    real = [m for m in args.metrics if m in PAPER_METRICS]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="eval-throughput-"))
    kwargs = write_random_checkpoints(workdir, real, size=args.size, seed=args.seed)
    return [measure_metric(name, kwargs.get(name, {}), args, images) for name in args.metrics]


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    sizes = args.batch_sizes
    head = ["metric", "params (M)", "load (s)"] + [f"img/s @ batch {b}" for b in sizes]
    if len(sizes) > 1:
        head.append(f"speed-up {sizes[-1]} vs {sizes[0]}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["metric"], f"{r['params_m']:.1f}", f"{r['load_s']:.2f}"] + [
            f"{r['rates'][b]:.2f}" for b in sizes
        ]
        if len(sizes) > 1:
            cells.append(f"{r['rates'][sizes[-1]] / r['rates'][sizes[0]]:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metrics", default=",".join(PAPER_METRICS + TOYS), help="comma-separated scorer names"
    )
    parser.add_argument(
        "--size", choices=("tiny", "small", "full"), default="small", help="architecture size"
    )
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--images", type=int, default=16, help="images scored per measurement")
    parser.add_argument(
        "--image-size", type=int, default=512, help="input resolution (preprocessing resizes)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", default=None, help="where random checkpoints are written (default: temp)"
    )
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    args.metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if (
        not args.metrics
        or not args.batch_sizes
        or min(args.batch_sizes) < 1
        or args.images < max(args.batch_sizes)
    ):
        parser.error("need metrics, positive batch sizes, and --images >= the largest batch size")
    return args


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    results = {"scoring": measure_scoring(args)}
    print(
        f"Scoring throughput, random weights in the real file layouts, size={args.size}, "
        f"{args.images} images of {args.image_size}x{args.image_size}, device={args.device}, dtype={args.dtype}, "
        f"{args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}\n"
    )
    print(markdown(results["scoring"], args))
    if args.out:
        meta = {k: v for k, v in vars(args).items() if k != "out"}
        Path(args.out).write_text(json.dumps({"args": meta, **results}, indent=2, default=str))
    return results


if __name__ == "__main__":
    main(parse_args())
