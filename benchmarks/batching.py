"""Eval throughput with batching across samples: images/s on micro at the preset's batch vs batch 1 vs diffusers.

    python benchmarks/batching.py                      # 16 held-out prompts x (standard, npnet), 20 steps, 1 thread

All three in one process after one warm-up (model loading excluded), each from an empty run folder:
- ``eval batch=B``: ``run_benchmark`` (generation, image cache, micro verifier scores, JSONL rows) at the
  micro preset's ``batch_size`` (samples per pipeline call; their images share the call);
- ``eval batch=1``: the same run one sample per pipeline call (its two methods batched, as before);
- ``plain diffusers``: the loop a user would write: per prompt, ``pipe(prompt, latents=x_T)`` for the
  standard image and ``pipe(prompt, latents=NPNet(x_T, c))`` for the golden one, one image per call,
  then the same micro verifier scores.
Prints images/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def eval_run(service, prompts, steps: int, batch: int | None, out: Path) -> float:
    """Seconds of one eval run (standard + npnet, seed 0, micro verifier) from an empty folder."""
    from eval.benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        model="micro", prompts=tuple(prompts), out=str(out), seeds=(0,), steps=steps,
        methods=("standard", "npnet"), metrics=("micro",), device="cpu", offline=True, batch_size=batch,
    )  # fmt: skip
    start = time.perf_counter()
    result = run_benchmark(config, service=service)
    seconds = time.perf_counter() - start
    assert result.counts["computed"] == len(prompts) and result.rows["error"].isna().all()
    return seconds


def plain_loop(service, prompts, steps: int) -> float:
    """Seconds of the plain diffusers loop: two one-image calls per prompt, then the verifier."""
    import torch

    from eval.metrics import get_scorer
    from npnet.diffusion.sampling import encode_prompt, initial_latents, with_scheduler

    preset = service.preset("micro")
    loaded = service.load("micro")
    pipe = with_scheduler(loaded.pipe, preset.scheduler, progress=False)
    net = loaded.npnets[next(iter(loaded.npnets))]
    scorer = get_scorer("micro")
    start = time.perf_counter()
    for prompt in prompts:
        x_T = initial_latents(pipe, 0, preset.width, preset.height)
        with torch.inference_mode():
            golden = net(x_T, encode_prompt(pipe, prompt).condition)
            images = [
                pipe(
                    prompt,
                    latents=x,
                    num_inference_steps=steps,
                    guidance_scale=preset.guidance_scale,
                    width=preset.width,
                    height=preset.height,
                ).images[0]  # fmt: skip
                for x in (x_T, golden)
            ]
        scorer.score(images, [prompt, prompt])
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=16, help="held-out micro prompts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from npnet.engine import GoldenNoiseService
    from npnet.worlds.micro.grammar import heldout_captions

    prompts = heldout_captions()[: args.prompts]
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    default = service.preset("micro").batch_size
    images = 2 * len(prompts)
    with tempfile.TemporaryDirectory() as tmp:
        eval_run(service, prompts[:2], 2, None, Path(tmp) / "warm")  # load model, NPNet, verifier
        plain_loop(service, prompts[:1], 2)
        seconds = {
            f"eval batch={default}": eval_run(service, prompts, args.steps, None, Path(tmp) / "batched"),
            "eval batch=1": eval_run(service, prompts, args.steps, 1, Path(tmp) / "one"),
            "plain diffusers": plain_loop(service, prompts, args.steps),
        }
    print(f"micro, {len(prompts)} held-out prompts x (standard, npnet) = {images} images, {args.steps} steps, "
          f"{args.threads} thread(s)")  # fmt: skip
    print("| run | seconds | images/s |\n|---|---:|---:|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.2f} | {images / s:.2f} |")
    batched, one, plain = seconds.values()
    print(f"\nbatch={default} vs batch=1: {one / batched:.2f}x images/s; "
          f"vs plain diffusers: {plain / batched:.2f}x; batch=1 vs plain diffusers: {plain / one:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
