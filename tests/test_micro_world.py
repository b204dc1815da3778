"""Micro world: grammar, renderer, verifier, tokenizer, components and resumable generator training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from npnet.model import NPNET_PRESETS
from npnet.worlds.micro import grammar
from npnet.worlds.micro.components import MicroConfig, build_components, build_pipeline, count_parameters
from npnet.worlds.micro.grammar import caption_of, heldout_captions, parse_caption, sample_scene, vocabulary
from npnet.worlds.micro.pipeline import load_micro_pipeline
from npnet.worlds.micro.quality import check_generator
from npnet.worlds.micro.render import stream
from npnet.worlds.micro.train_generator import TrainConfig, train
from npnet.worlds.micro.verifier import MicroVerifier

TINY = MicroConfig(
    text_hidden=8,
    text_layers=2,
    text_heads=2,
    text_intermediate=16,
    unet_channels=(16, 32),
    unet_head_dim=(2, 4),
    vae_channels=(8, 8, 8, 8),
    vae_norm_groups=4,
)


def _renders(seed: int, n: int, split: str = "train"):
    pairs = stream(seed, split)
    return [next(pairs) for _ in range(n)]


def test_grammar_is_deterministic_and_parses_its_own_captions():
    a = [sample_scene(np.random.default_rng(7)) for _ in range(3)]
    b = [sample_scene(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    for spec in grammar.all_specs():
        assert parse_caption(caption_of(spec)) == spec
    with pytest.raises(ValueError, match="outside the micro grammar"):
        parse_caption("a purple hexagon")


def test_heldout_captions_never_appear_in_training_stream():
    heldout = set(heldout_captions())
    kinds = {parse_caption(c).kind for c in heldout}
    assert kinds == {"single", "count", "relation"}
    rng = np.random.default_rng(0)
    train_captions = {sample_scene(rng, "train").caption for _ in range(3000)}
    assert not train_captions & heldout
    rng = np.random.default_rng(0)
    assert {sample_scene(rng, "heldout").caption for _ in range(300)} <= heldout
    words = set(vocabulary())
    assert all(set(c.split()) <= words for c in heldout | train_captions)


def test_objects_stay_inside_the_canvas_and_relations_hold():
    rng = np.random.default_rng(3)
    for _ in range(500):
        scene = sample_scene(rng)
        for obj in scene.objects:
            assert obj.size / 2 <= obj.x <= 64 - obj.size / 2 and obj.size / 2 <= obj.y <= 64 - obj.size / 2
        if scene.spec.relation:
            a, b = scene.objects
            offset = {"left of": b.x - a.x, "right of": a.x - b.x, "above": b.y - a.y, "below": a.y - b.y}
            assert offset[scene.spec.relation] > (a.size + b.size) / 2


def test_verifier_agrees_with_ground_truth_renders():
    pairs = _renders(11, 150) + _renders(12, 50, "heldout")
    scores = MicroVerifier().score([im for im, _ in pairs], [s.caption for _, s in pairs])
    assert scores.shape == (200,) and scores.dtype == torch.float32
    assert float(((scores >= 0) & (scores <= 1)).float().mean()) == 1.0
    assert float((scores > 0.9).float().mean()) >= 0.95


def _corrupt(spec: grammar.CaptionSpec, rng: np.random.Generator) -> grammar.CaptionSpec:
    """A caption that contradicts the image: other colour, other shape, flipped relation or other count."""
    (colour, shape), rest = spec.objects[0], spec.objects[1:]
    choice = rng.integers(3)
    if spec.kind == "relation" and choice == 0:
        flip = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        return dataclasses.replace(spec, relation=flip[spec.relation])
    if spec.kind == "count" and choice == 0:
        n = {2: 3, 3: 4, 4: 2}[len(spec.objects)]
        return dataclasses.replace(spec, objects=((colour, shape),) * n)
    if choice == 1:
        colour = [c for c in grammar.COLOURS if c != colour][rng.integers(3)]
    else:
        shape = [s for s in grammar.SHAPES if s != shape][rng.integers(2)]
    first = (colour, shape)
    objects = (first,) * len(spec.objects) if spec.kind == "count" else (first, *rest)
    if spec.kind == "relation" and objects[0] == objects[1]:
        return dataclasses.replace(
            spec,
            relation={"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[
                spec.relation
            ],
        )
    return dataclasses.replace(spec, objects=objects)


def test_verifier_rejects_wrong_captions():
    rng = np.random.default_rng(0)
    pairs = _renders(21, 120)
    verifier = MicroVerifier()
    right = verifier.score([im for im, _ in pairs], [s.caption for _, s in pairs])
    wrong = verifier.score([im for im, _ in pairs], [caption_of(_corrupt(s.spec, rng)) for _, s in pairs])
    assert float((wrong < 0.5).float().mean()) >= 0.95
    assert float((right - wrong > 0.4).float().mean()) >= 0.95


def test_tokenizer_maps_each_word_to_one_id(tmp_path):
    components = build_components(tmp_path / "tok", TINY)
    for tokenizer in (components["tokenizer"], components["tokenizer_2"]):
        ids = [tokenizer(w).input_ids for w in vocabulary()]
        assert all(len(i) == 3 for i in ids)  # BOS, word, EOS
        assert len({i[1] for i in ids}) == len(ids)
        assert tokenizer.model_max_length == 77
    assert components["tokenizer_2"].pad_token == "!"


def test_components_run_in_the_real_sdxl_pipeline(tmp_path):
    pipe = build_pipeline(build_components(tmp_path / "tok", dataclasses.replace(TINY, text_hidden=32)))
    embeds, _, pooled, _ = pipe.encode_prompt(
        "a red circle", device=torch.device("cpu"), do_classifier_free_guidance=False
    )
    assert embeds.shape == (1, 77, NPNET_PRESETS["micro"].text_dim) and pooled.shape == (1, 32)

    def run():
        return pipe(
            "a red circle above a blue square",
            num_inference_steps=2,
            guidance_scale=5.0,
            height=64,
            width=64,
            output_type="pt",
            generator=torch.Generator().manual_seed(0),
        ).images

    images = run()
    assert images.shape == (1, 3, 64, 64)
    assert torch.equal(images, run())
    assert pipe.vae_scale_factor == 8 and pipe.unet.config.sample_size == NPNET_PRESETS["micro"].latent_size
    assert count_parameters(pipe.unet) > 0


def _params(trainer) -> dict[str, torch.Tensor]:
    return {
        f"{n}.{k}": v
        for n in ("vae", "unet", "text_encoder", "text_encoder_2")
        for k, v in trainer.components[n].state_dict().items()
    }


def test_resumed_training_matches_uninterrupted_run(tmp_path):
    config = TrainConfig(
        vae_steps=3, unet_steps=3, vae_batch_size=2, batch_size=4, cache_size=16, warmup=2, model=TINY
    )
    full = train(tmp_path / "full", config, log=lambda s: None)
    parts = tmp_path / "parts"
    train(parts, config, stop_after_steps=2, log=lambda s: None)  # inside the VAE phase
    train(parts, config, resume=True, stop_after_steps=2, log=lambda s: None)  # across the phase change
    with pytest.raises(ValueError, match="--resume"):
        train(parts, config, log=lambda s: None)
    resumed = train(parts, config, resume=True, log=lambda s: None)
    assert resumed.phase == full.phase == "done"
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (parts / "generator" / "model_index.json").exists()
    assert full.components["vae"].config.scaling_factor == resumed.components["vae"].config.scaling_factor


def test_missing_generator_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="train-generator"):
        load_micro_pipeline(path=tmp_path / "nowhere")


def test_check_generator_reports_heldout_accuracy_of_a_saved_pipeline(tmp_path):
    components = build_components(tmp_path / "tok", TINY)
    half = {k: v.to(torch.float16) if isinstance(v, torch.nn.Module) else v for k, v in components.items()}
    build_pipeline(half).save_pretrained(tmp_path / "gen", safe_serialization=True)
    pipe = load_micro_pipeline(path=tmp_path / "gen")
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder_2.dtype == torch.float32
    report = check_generator(path=tmp_path / "gen", n_prompts=3, seeds=2, steps=2, grid=tmp_path / "grid.png")
    assert report["prompts"] == 3 and report["seeds"] == 2
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["mean_score"] <= 1.0
    assert (tmp_path / "grid.png").exists()
