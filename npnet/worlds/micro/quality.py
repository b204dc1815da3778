"""Held-out quality of the micro generator: generate held-out prompts x seeds and score them with the verifier."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from npnet.worlds.micro.grammar import KINDS, caption_of, heldout_captions, parse_caption, specs_for
from npnet.worlds.micro.pipeline import MICRO_GUIDANCE_SCALE, MICRO_STEPS, load_micro_pipeline
from npnet.worlds.micro.verifier import MicroVerifier

CORRECT_THRESHOLD = 0.5


def generate(
    pipe, prompts: list[str], seeds: list[int], steps: int, guidance_scale: float, batch_size: int = 32
) -> list[Image.Image]:
    """One image per (prompt, seed) with a CPU generator seeded per image; batched, deterministic."""
    images: list[Image.Image] = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[chunk]]
        out = pipe(
            prompts[chunk],
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=64,
            width=64,
            generator=generators,
        )
        images += out.images
    return images


def save_grid(images: list[Image.Image], path: str | Path, columns: int = 16, scale: int = 2) -> Path:
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (64 * columns, 64 * rows), (128, 128, 128))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * 64, (i // columns) * 64))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    grid.save(path)
    return Path(path)


def split_captions(split: str) -> list[str]:
    """All held-out captions, or a fixed shuffled list of training captions (for tuning defaults off held-out)."""
    if split == "heldout":
        return heldout_captions()
    captions = [caption_of(s) for kind in KINDS for s in specs_for(split)[kind]]
    order = np.random.default_rng(0).permutation(len(captions))
    return [captions[i] for i in order]


def check_generator(
    path: str | Path | None = None,
    n_prompts: int = 85,
    seeds: int = 4,
    steps: int | None = None,
    guidance_scale: float | None = None,
    threshold: float | None = None,
    grid: str | Path | None = None,
    split: str = "heldout",
) -> dict:
    """Verifier accuracy (fraction of samples scoring above ``threshold``) on held-out prompts x seeds."""
    steps = steps or MICRO_STEPS
    guidance_scale = MICRO_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
    threshold = CORRECT_THRESHOLD if threshold is None else threshold
    pipe = load_micro_pipeline(path=path)
    return score_captions(pipe, split, n_prompts, seeds, steps, guidance_scale, threshold, grid)


def score_captions(
    pipe,
    split: str,
    n_prompts: int,
    seeds: int,
    steps: int,
    guidance_scale: float,
    threshold: float = CORRECT_THRESHOLD,
    grid: str | Path | None = None,
) -> dict:
    """Generate the split's first ``n_prompts`` captions x seeds 0..seeds-1 with ``pipe`` and score them."""
    captions = split_captions(split)[:n_prompts]
    prompts = [c for c in captions for _ in range(seeds)]
    seed_list = [s for _ in captions for s in range(seeds)]
    start = time.time()
    images = generate(pipe, prompts, seed_list, steps, guidance_scale)
    elapsed = time.time() - start
    scores = MicroVerifier().score(images, prompts).numpy()
    if grid:
        save_grid(images, grid, columns=seeds * 4)
    kinds = np.array([parse_caption(p).kind for p in prompts])
    per_prompt = scores.reshape(len(captions), seeds)
    return {
        "split": split,
        "prompts": len(captions),
        "seeds": seeds,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "threshold": threshold,
        "accuracy": float((scores > threshold).mean()),
        "mean_score": float(scores.mean()),
        "prompt_majority_correct": float(((per_prompt > threshold).mean(1) > 0.5).mean()),
        "by_kind": {k: float((scores[kinds == k] > threshold).mean()) for k in sorted(set(kinds))},
        "sec_per_image": elapsed / len(prompts),
    }
