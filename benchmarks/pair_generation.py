"""Batched vs sequential standard/golden pair generation, and NPNet time as a fraction of one image.

    python benchmarks/pair_generation.py --model tiny-sdxl --repeats 7 --threads 2

Both images of a pair come from one pipeline call with a batch of two latents (the service's
default) or from two calls. Prints a markdown table of medians over ``--repeats`` runs (after one
warm-up), measured on whatever device ``--device`` resolves to.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npnet.diffusion.sampling import encode_prompt, initial_latents, run_pipeline, with_scheduler  # noqa: E402
from npnet.engine import GenerationRequest, GoldenNoiseService, resolve_settings  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args: argparse.Namespace) -> dict[str, float]:
    service = GoldenNoiseService(device=args.device, dtype=args.dtype, progress=False)
    loaded = service.load(args.model)
    request = GenerationRequest(args.model, args.prompt, seed=0, steps=args.steps)
    settings = resolve_settings(request, loaded.preset)
    pipe, device = loaded.pipe, loaded.device
    net = next(iter(loaded.npnets.values()))
    embeds = encode_prompt(pipe, args.prompt)
    x_T = initial_latents(pipe, 0, settings["width"], settings["height"])  # (1, C, h, w)
    with torch.inference_mode():
        golden = net(x_T.to(device), embeds.condition).float().cpu()
    pair = torch.cat([x_T, golden])  # (2, C, h, w)
    view = with_scheduler(pipe, settings["scheduler"], progress=False)
    common = dict(
        steps=settings["steps"],
        guidance_scale=settings["guidance_scale"],
        width=settings["width"],
        height=settings["height"],
    )

    def npnet_call():
        with torch.inference_mode():
            net(x_T.to(device), embeds.condition)

    times = {
        "encode prompt": median_seconds(lambda: encode_prompt(pipe, args.prompt), args.repeats, device),
        "NPNet forward": median_seconds(npnet_call, args.repeats, device),
        "one image": median_seconds(lambda: run_pipeline(view, embeds, x_T, **common), args.repeats, device),
        "pair, batched": median_seconds(lambda: run_pipeline(view, embeds, pair, **common), args.repeats, device),
        "pair, sequential": median_seconds(
            lambda: [run_pipeline(view, embeds, x, **common) for x in pair.split(1)], args.repeats, device
        ),
    }
    return {**times, "_steps": settings["steps"], "_device": str(device), "_dtype": str(loaded.dtype)}


def table(times: dict[str, float], args: argparse.Namespace) -> str:
    rows = [
        f"Model `{args.model}`, {times['_steps']} steps, device {times['_device']} ({times['_dtype']}), "
        f"{torch.get_num_threads()} threads, median of {args.repeats}",
        "",
        "| measure | median |",
        "|---|---|",
    ]
    rows += [f"| {k} | {v * 1e3:.1f} ms |" for k, v in times.items() if not k.startswith("_")]
    speedup = times["pair, sequential"] / times["pair, batched"]
    rows += [
        f"| batched speed-up (sequential / batched) | {speedup:.2f}x |",
        f"| NPNet / one image | {100 * times['NPNet forward'] / times['one image']:.2f} % |",
    ]
    return "\n".join(rows)


def main(args: argparse.Namespace) -> str:
    if args.threads:
        torch.set_num_threads(args.threads)
    text = table(measure(args), args)
    print(text)
    return text


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sdxl")
    parser.add_argument("--prompt", default="a red cube on a blue table")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
