"""Eval throughput with batching across samples: images/s on micro at the preset's batch vs batch 1 vs diffusers.

    python benchmarks/batching.py                      # 16 held-out prompts x (standard, npnet), 20 steps, 1 thread
    python benchmarks/batching.py --model tiny-sdxl --steps 4   # the random-weight SDXL pipeline, toy scorer

All three in one process after one warm-up (model loading excluded), each from an empty run folder:
- ``eval batch=B``: ``run_benchmark`` (generation, image cache, micro verifier scores, JSONL rows) at the
  micro preset's ``batch_size`` (samples per pipeline call; their images share the call);
- ``eval batch=1``: the same run one sample per pipeline call (its two methods batched, as before);
- ``plain diffusers``: the loop a user would write: per prompt, ``pipe(prompt, latents=x_T)`` for the
  standard image and ``pipe(prompt, latents=NPNet(x_T, c))`` for the golden one, one image per call,
  then the same micro verifier scores.
Then, at the same batch sizes: collection pairs/s (``collect`` on ``--pairs`` pairs: re-denoise and
sampling batched across samples; also the earlier path, batched sampling with re-denoise one sample per
call, ``exact_latents``) and the seed grid's time for 32 seeds (``StudioService``'s path:
``generate_many`` vs one ``generate`` per seed). Prints images/s of each and the ratios.
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


MODELS = {"micro": "micro", "tiny-sdxl": "toy-brightness"}  # model -> the scorer its runs use
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def eval_run(service, model: str, prompts, steps: int, batch: int | None, out: Path, clock=time.perf_counter) -> float:
    """Seconds of one eval run (standard + npnet, seed 0, the model's scorer) from an empty folder."""
    from eval.benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        model=model, prompts=tuple(prompts), out=str(out), seeds=(0,), steps=steps,
        methods=("standard", "npnet"), metrics=(MODELS[model],), device="cpu", offline=True, batch_size=batch,
    )  # fmt: skip
    start = clock()
    result = run_benchmark(config, service=service)
    seconds = clock() - start
    assert result.counts["computed"] == len(prompts) and result.rows["error"].isna().all()
    return seconds


def plain_loop(service, model: str, prompts, steps: int, clock=time.perf_counter) -> float:
    """Seconds of the plain diffusers loop: two one-image calls per prompt, then the verifier."""
    import torch

    from eval.metrics import get_scorer
    from npnet.diffusion.sampling import encode_prompt, initial_latents, with_scheduler

    preset = service.preset(model)
    loaded = service.load(model)
    pipe = with_scheduler(loaded.pipe, preset.scheduler, progress=False)
    net = loaded.npnets[next(iter(loaded.npnets))]
    scorer = get_scorer(MODELS[model])
    start = clock()
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
    return clock() - start


class ExactLatents:
    """A service whose ``generate_many`` runs NPNet / re-denoise one sample per call (``exact_latents``)."""

    def __init__(self, service):
        self.inner = service

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate_many(self, requests, *args, **kw):
        return self.inner.generate_many(requests, *args, **kw, exact_latents=True)


def collect_run(
    service, model: str, prompts, pairs: int, steps: int, batch: int | None, out: Path, clock=time.perf_counter
) -> float:
    """Seconds to collect ``pairs`` noise pairs (Alg. 1) at ``batch`` samples per pipeline call."""
    from eval.metrics import get_scorer
    from npnet.data.collect import CollectConfig, collect

    per_prompt = max(1, pairs // len(prompts))
    config = CollectConfig(model, str(out), per_prompt, steps=steps, batch_size=batch, shard_size=pairs)
    start = clock()
    collect(service, config, prompts[: pairs // per_prompt], get_scorer(MODELS[model]), progress=False)
    return clock() - start


def seed_grid(
    service, model: str, prompt: str, steps: int, batched: bool, seeds: int = 32, clock=time.perf_counter
) -> float:
    """Seconds of the Seeds tab's work for ``seeds`` seeds (standard + npnet per seed)."""
    import dataclasses

    from npnet.engine import GenerationRequest

    request = GenerationRequest(model, prompt, steps=steps, methods=("standard", "npnet"))
    requests = [dataclasses.replace(request, seed=s) for s in range(seeds)]
    start = clock()
    if batched:  # as the Seeds tab: the preset's batch_size samples per pipeline call
        service.generate_many(requests, samples_per_call=service.preset(model).batch_size)
    else:
        for r in requests:
            service.generate(r)
    return clock() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=16, help="held-out micro prompts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", choices=sorted(MODELS), default="micro")
    parser.add_argument("--pairs", type=int, default=16, help="noise pairs for the collection timing")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall: elapsed time (an otherwise idle machine); cpu: this process's CPU time, which other "
        "processes on a shared machine disturb far less (with --threads 1 the two agree when idle)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    model, clock = args.model, CLOCKS[args.clock]
    import torch

    torch.set_num_threads(args.threads)
    from npnet.engine import GoldenNoiseService
    from npnet.worlds.micro.grammar import heldout_captions

    prompts = heldout_captions()[: args.prompts]  # captions of the micro grammar; any text for tiny-sdxl
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    default = service.preset(model).batch_size
    images = 2 * len(prompts)
    with tempfile.TemporaryDirectory() as tmp:
        eval_run(service, model, prompts[:2], 2, None, Path(tmp) / "warm")  # load model, NPNet, verifier
        plain_loop(service, model, prompts[:1], 2)
        seconds = {
            f"eval batch={default}": eval_run(service, model, prompts, args.steps, None, Path(tmp) / "b", clock),
            "eval batch=1": eval_run(service, model, prompts, args.steps, 1, Path(tmp) / "one", clock),
            "plain diffusers": plain_loop(service, model, prompts, args.steps, clock),
        }
        collect_s = {
            name: collect_run(svc, model, prompts, args.pairs, args.steps, b, Path(tmp) / name, clock)
            for name, svc, b in (("batched", service, None), ("one", service, 1),
                                 ("exact", ExactLatents(service), None))
        }  # fmt: skip
    grid = {b: seed_grid(service, model, prompts[0], args.steps, b, clock=clock) for b in (True, False)}
    print(f"{model}, {len(prompts)} held-out prompts x (standard, npnet) = {images} images, {args.steps} steps, "
          f"{args.threads} thread(s), {args.clock} clock")  # fmt: skip
    print("| run | seconds | images/s |\n|---|---:|---:|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.2f} | {images / s:.2f} |")
    batched, one, plain = seconds.values()
    print(f"\nbatch={default} vs batch=1: {one / batched:.2f}x images/s; "
          f"vs plain diffusers: {plain / batched:.2f}x; batch=1 vs plain diffusers: {plain / one:.2f}x")  # fmt: skip
    rate = {name: args.pairs / s for name, s in collect_s.items()}
    print(f"collection, {args.pairs} pairs: batch={default} {rate['batched']:.2f} pairs/s, batch=1 {rate['one']:.2f} "
          f"pairs/s ({rate['batched'] / rate['one']:.2f}x); batch={default} with re-denoise one sample per call "
          f"{rate['exact']:.2f} pairs/s ({rate['exact'] / rate['one']:.2f}x)")  # fmt: skip
    print(f"seed grid, 32 seeds x (standard, npnet): batched {grid[True]:.1f} s, one per seed {grid[False]:.1f} s "
          f"({grid[False] / grid[True]:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
