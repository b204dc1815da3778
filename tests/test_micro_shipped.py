"""The shipped micro generator (assets/micro/generator): offline load, determinism, quality, size budget."""

from __future__ import annotations

import torch

from npnet.paths import MICRO_ASSETS as ASSETS_DIR
from npnet.worlds.micro.grammar import caption_of, specs_for
from npnet.worlds.micro.pipeline import MICRO_GUIDANCE_SCALE, MICRO_STEPS, load_micro_pipeline
from npnet.worlds.micro.quality import generate
from npnet.worlds.micro.verifier import MicroVerifier


def test_shipped_assets_are_safetensors_under_the_hub_limits():
    """Each file stays under the Hub's 10 MB plain-git limit (no LFS); all of assets/micro under 40 MiB."""
    files = [p for p in ASSETS_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.name.endswith((".bin", ".pt", ".pth", ".ckpt", ".safetensors"))]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert max(p.stat().st_size for p in files) < 10 * 1000 * 1000
    assert sum(p.stat().st_size for p in files) < 40 * 1024 * 1024


def test_shipped_generator_loads_offline_and_is_deterministic():
    pipe = load_micro_pipeline(device="cpu", dtype=torch.float32)
    assert pipe.unet.dtype == torch.float32 and pipe.vae_scale_factor == 8
    embeds, _, pooled, _ = pipe.encode_prompt(
        "a red circle", device=torch.device("cpu"), do_classifier_free_guidance=False
    )
    assert embeds.shape == (1, 77, 64) and pooled.shape == (1, 32)

    def run():
        generator = torch.Generator("cpu").manual_seed(3)
        return pipe(
            "a red circle", num_inference_steps=4, height=64, width=64, output_type="pt", generator=generator
        ).images

    assert torch.equal(run(), run())


def test_shipped_generator_draws_single_objects_the_verifier_accepts():
    pipe = load_micro_pipeline()
    prompts = [caption_of(s) for s in specs_for("train")["single"]][:6]
    images = generate(pipe, prompts, list(range(len(prompts))), MICRO_STEPS, MICRO_GUIDANCE_SCALE)
    scores = MicroVerifier().score(images, prompts)
    assert int((scores > 0.5).sum()) >= 4
