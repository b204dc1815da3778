"""Parity with the reference implementations of HPSv2 (hpsv2 1.2.0), ImageReward (image-reward 1.5) and MPS
(Kwai-Kolors/MPS), issue 13.

The fixtures tests/fixtures/parity/{hpsv2,imagereward,mps}.json hold the reference's own scores on seeded
random weights, written by scripts/parity/{hpsv2,imagereward,mps}_ref.py in throwaway reference venvs (see
their docstrings to regenerate). Each test rebuilds the same weights from the fixture's parameter shapes and
seed (checked against its hash) and the same images (checked against their hashes), writes the weights in
the project's on-disk layout, loads them through the scorer's real loading code and compares its scores with
the reference's, in the reference's units, to 1e-4. No network: everything is local and small (~1 s each).
"""

from __future__ import annotations

import pytest
import torch
from parity_fixtures import TOLERANCE, fixture_images, load_fixture, max_abs_diff

from eval.metrics.parity import (
    seeded_state_dict,
    state_sha256,
    write_openai_clip_processor,
)
from eval.metrics.random_weights import write_bert_vocab


def fixture_weights(fixture: dict) -> dict[str, torch.Tensor]:
    weights = fixture["weights"]
    state = seeded_state_dict(weights["shapes"], weights["seed"])
    assert state_sha256(state) == weights["sha256"], (
        "seeded_state_dict no longer draws the fixture's weights; regenerate the fixtures (scripts/parity)"
    )
    return state


def converted(project_state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], buffers) -> dict:
    """The project module's state with every reference parameter put in; only buffers may stay as built."""
    unknown = sorted(set(reference) - set(project_state))
    untouched = sorted(set(project_state) - set(reference))
    assert not unknown, f"reference parameters with no project counterpart: {unknown[:5]}"
    assert set(untouched) <= set(buffers), f"project parameters the reference lacks: {untouched[:5]}"
    return {key: reference.get(key, value).contiguous() for key, value in project_state.items()}


# ------------------------------------------------------------------------------------------------- HPSv2


@pytest.fixture(scope="module")
def hps(tmp_path_factory):
    from eval.metrics.hpsv2 import HPSv2Scorer

    fixture = load_fixture("hpsv2")
    root = tmp_path_factory.mktemp("hps")
    torch.save({"epoch": 1, "state_dict": fixture_weights(fixture)}, root / "HPS_v2.1_compressed.pt")
    scorer = HPSv2Scorer(checkpoint=root, arch_overrides=fixture["arch"]).load()
    return scorer, fixture, fixture_images(fixture)


def test_hpsv2_matches_reference(hps):
    scorer, fixture, images = hps
    scores = scorer.score(images, fixture["prompts"])  # (B,) 100 x cos
    assert max_abs_diff(scores / 100.0, fixture["scores"]) <= TOLERANCE


def test_hpsv2_pil_first_resize_misses_reference(hps):
    """The pre-fix preprocessing (8-bit PIL resize, then tensor) is off by more than the tolerance."""
    from benchmarks.hps_preprocessing import hps_scores, pil_first_pixels

    scorer, fixture, images = hps
    pixels = torch.stack([pil_first_pixels(image, scorer.image_size) for image in images])  # (B, 3, 224, 224)
    scores = torch.stack(
        [hps_scores(scorer, pixels[i : i + 1], prompt)[0] for i, prompt in enumerate(fixture["prompts"])]
    )
    assert max_abs_diff(scores / 100.0, fixture["scores"]) > 3 * TOLERANCE


def test_hps_resize_keeps_overshoot_and_pads_square():
    from eval.metrics.clip_utils import max_size_shape, resize_max_size

    edges = torch.zeros(3, 100, 300)  # (3, H, W) a sharp step: bicubic overshoots on both sides
    edges[:, :, 150:] = 1.0
    out = resize_max_size(edges, 224)  # (3, 224, 224)
    assert out.shape == (3, 224, 224)
    assert out.max() > 1.0 and out[:, 74:149].min() < 0.0  # unclamped, as hpsv2's tensor resize
    assert out[:, :74].abs().max() == 0 and out[:, 149:].abs().max() == 0  # round(74.67) = 75 rows, centred
    assert max_size_shape(3, 448, 224) == (2, 224)  # round half to even, as the reference's round()
    square = resize_max_size(torch.rand(3, 224, 160), 224)  # longest side already 224: padded anyway
    assert square.shape == (3, 224, 224)


# ----------------------------------------------------------------------------------------------- ImageReward


@pytest.fixture(scope="module")
def imagereward(tmp_path_factory):
    from safetensors.torch import save_file

    from eval.metrics.imagereward import IMAGEREWARD_FILE, ImageRewardArch, ImageRewardNet, ImageRewardScorer

    fixture = load_fixture("imagereward")
    vit, med = fixture["arch"]["vit"], fixture["arch"]["med_config"]
    bert_keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                 "max_position_embeddings", "vocab_size", "layer_norm_eps", "pad_token_id", "type_vocab_size")  # fmt: skip
    arch = ImageRewardArch(
        image_size=vit["image_size"], patch_size=vit["patch_size"], vision_width=vit["width"],
        vision_depth=vit["depth"], vision_heads=vit["heads"], bert={key: med[key] for key in bert_keys},
    )  # fmt: skip
    root = tmp_path_factory.mktemp("imagereward")
    net = ImageRewardNet(arch)
    buffers = [name for name, _ in net.named_buffers()]
    (root / "weights").mkdir()
    save_file(
        converted(net.state_dict(), fixture_weights(fixture), buffers),
        str(root / "weights" / IMAGEREWARD_FILE),
    )
    write_bert_vocab(
        root / "tokenizer", med["vocab_size"]
    )  # the vocabulary the reference's fake hub cache held
    scorer = ImageRewardScorer(checkpoint=root / "weights", tokenizer=root / "tokenizer", arch=arch).load()
    return scorer, fixture, fixture_images(fixture)


def test_imagereward_matches_reference(imagereward):
    scorer, fixture, images = imagereward
    scores = scorer.score(images, fixture["prompts"])  # (B,) 100 x standardised reward
    assert max_abs_diff(scores / 100.0, fixture["scores"]) <= TOLERANCE


# ------------------------------------------------------------------------------------------------------ MPS


@pytest.fixture(scope="module")
def mps_files(tmp_path_factory):
    from safetensors.torch import save_file
    from transformers import CLIPConfig

    from eval.metrics.mps import MPS_FILE, MPSNet

    fixture = load_fixture("mps")
    arch = fixture["arch"]
    root = tmp_path_factory.mktemp("mps")
    config = CLIPConfig(
        text_config=arch["text_config"],
        vision_config=arch["vision_config"],
        projection_dim=arch["projection_dim"],
    )
    write_openai_clip_processor(root / "clip", arch["vision_config"]["image_size"])
    config.save_pretrained(root / "clip")
    net = MPSNet(config, arch["cross_layers"], arch["cross_heads"])
    buffers = [name for name, _ in net.named_buffers()]
    state = converted(net.state_dict(), fixture_weights(fixture), buffers)
    (root / "weights").mkdir()
    save_file({f"mps.{key}": value for key, value in state.items()}, str(root / "weights" / MPS_FILE))
    kwargs = dict(checkpoint=root / "weights", clip=root / "clip", cross_layers=arch["cross_layers"],
                  cross_heads=arch["cross_heads"], condition=fixture["condition"])  # fmt: skip
    return kwargs, fixture, fixture_images(fixture)


def test_mps_default_matches_readme_inference(mps_files):
    """Threshold 0.01 (default): logits of both images of each pair and the pair's preference."""
    from eval.metrics.mps import MPSScorer

    kwargs, fixture, images = mps_files
    scorer = MPSScorer(**kwargs)
    pairs, prompts = fixture["readme"]["pairs"], fixture["prompts"]
    images_a, images_b = [images[a] for a, _ in pairs], [images[b] for _, b in pairs]
    pair_prompts = [prompts[a] for a, _ in pairs]
    logits = fixture["readme"]["logits"]
    assert max_abs_diff(scorer.score(images_a, pair_prompts), [pair[0] for pair in logits]) <= TOLERANCE
    assert max_abs_diff(scorer.score(images_b, pair_prompts), [pair[1] for pair in logits]) <= TOLERANCE
    preference = scorer.compare(images_a, images_b, pair_prompts)  # (B,) P(a preferred over b)
    assert max_abs_diff(preference, [probs[0] for probs in fixture["readme"]["probs"]]) <= TOLERANCE


def test_mps_threshold_03_matches_eval_script(mps_files):
    from eval.metrics.mps import MPSScorer

    kwargs, fixture, images = mps_files
    scores = MPSScorer(**kwargs, condition_threshold=0.3).score(images, fixture["prompts"])
    assert max_abs_diff(scores, fixture["hpd_eval"]["scores"]) <= TOLERANCE
    readme = [pair[0] for pair in fixture["readme"]["logits"]]  # same (image, prompt) pairs at 0.01
    assert max_abs_diff(scores, readme) > 1e-2  # the fixture's weights make the two thresholds differ


def test_mps_threshold_changes_mask():
    from eval.metrics.mps import condition_mask

    sim = torch.tensor(
        [[[0.005, 0.2, 0.8, 2.0]]]
    )  # (b=1, 1, T=4); normalised by its max: 0.0025, 0.1, 0.4, 1
    assert torch.isinf(condition_mask(sim, 0.01)).tolist() == [[[True, False, False, False]]]
    assert torch.isinf(condition_mask(sim, 0.3)).tolist() == [[[True, True, False, False]]]


def test_mps_rejects_threshold_that_masks_everything():
    from eval.metrics.mps import MPSScorer
    from npnet.errors import UserError

    with pytest.raises(UserError, match="condition_threshold"):
        MPSScorer(condition_threshold=1.0)
