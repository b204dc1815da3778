"""Scorers: each real loading path on tiny random weights written in the real on-disk layout."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from eval.metrics import PAPER_METRICS, available_scorers, get_scorer, scorer_class
from eval.metrics.random_weights import write_random_checkpoints

PROMPTS = ["a red car", "two cats on a sofa, watercolor", "a tiny robot left of a blue cube"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, dict]:
    return write_random_checkpoints(tmp_path_factory.mktemp("weights"), size="tiny", seed=0)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shapes = [(48, 64), (64, 40), (32, 32)]  # non-square on purpose
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]


# ---------------------------------------------------------------- registry and interface


def test_registry_lists_paper_metrics_micro_and_toys():
    names = available_scorers()
    assert set(PAPER_METRICS) <= set(names)
    assert {"micro", "toy-brightness", "toy-colorfulness"} <= set(names)
    assert scorer_class("mps").pairwise and not scorer_class("hpsv2").pairwise


def test_unknown_scorer_lists_names():
    with pytest.raises(ValueError, match="available: .*hpsv2.*pickscore"):
        get_scorer("hps-v9")


def test_bad_scorer_option_is_a_value_error():
    with pytest.raises(ValueError, match="bad options for scorer 'aes'"):
        get_scorer("aes", no_such_option=1)


def test_scorer_attributes_are_declared():
    for name in available_scorers():
        cls = scorer_class(name)
        assert cls.name == name
        assert isinstance(cls.units, str) and cls.units
        assert cls.higher_is_better is True


def test_input_validation(images):
    scorer = get_scorer("toy-brightness")
    with pytest.raises(ValueError, match="3 images but 2 prompts"):
        scorer(images, PROMPTS[:2])
    with pytest.raises(ValueError, match="list of strings"):
        scorer(images[:1], "a red car")
    with pytest.raises(ValueError, match="PIL images"):
        scorer([torch.zeros(3, 8, 8)], ["x"])
    assert scorer([], []).shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        get_scorer("toy-brightness", batch_size=0)


# ---------------------------------------------------------------- the six metrics on tiny weights


@pytest.mark.parametrize("name", PAPER_METRICS)
def test_scorer_shape_determinism_and_batching(name, tiny, images):
    batched = get_scorer(name, batch_size=3, **tiny[name])
    assert not batched.loaded  # lazy
    first = batched(images, PROMPTS)
    assert batched.loaded
    assert first.shape == (3,) and first.dtype == torch.float32 and first.device.type == "cpu"
    assert torch.isfinite(first).all()
    assert torch.equal(first, batched.score(images, PROMPTS))  # deterministic
    single = get_scorer(name, batch_size=1, **tiny[name])(images, PROMPTS)
    torch.testing.assert_close(first, single, atol=1e-4, rtol=1e-4)  # batch of 3 == 3 batches of 1


@pytest.mark.parametrize("name", ["clipscore", "hpsv2"])
def test_low_precision_returns_float32(name, tiny, images):
    scores = get_scorer(name, dtype=torch.bfloat16, **tiny[name])(images, PROMPTS)
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()


def test_hpsv2_is_100_cos_of_open_clip_features(tiny, images):
    import open_clip

    from eval.metrics.clip_utils import hps_pixels

    scorer = get_scorer("hpsv2", **tiny["hpsv2"]).load()
    model = open_clip.create_model("ViT-H-14", pretrained=None, **tiny["hpsv2"]["arch_overrides"])
    open_clip.load_checkpoint(
        model, f"{tiny['hpsv2']['checkpoint']}/HPS_v2.1_compressed.pt", weights_only=True
    )
    # hpsv2's eval transform (tensor-first resize, pad), checked against hpsv2 itself in test_parity_openclip.py
    pixels = hps_pixels(images, 32)  # (3, 3, 32, 32)
    tokens = open_clip.get_tokenizer("ViT-H-14")(PROMPTS)
    with torch.no_grad():
        cos = F.normalize(model.eval().encode_image(pixels), dim=-1) * F.normalize(
            model.encode_text(tokens), dim=-1
        )
    torch.testing.assert_close(scorer(images, PROMPTS), 100 * cos.sum(-1), atol=1e-3, rtol=1e-4)


def _reference_clip(directory, processor_directory=None):
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(processor_directory or directory, backend="pil")
    return CLIPModel.from_pretrained(directory).eval(), processor


def _openai_pixels(images, size=32):
    """OpenAI clip's transform (CLIPScore's and AES's references): torchvision resize + centre crop."""
    from torchvision import transforms as T

    from eval.metrics.clip_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    transform = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                           T.ToTensor(), T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])  # fmt: skip
    return {"pixel_values": torch.stack([transform(image) for image in images])}


def _reference_cos(model, processor, images, prompts, pixels=None):
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt") if pixels is None else pixels
        img = model.get_image_features(**pixels).pooler_output
        txt = processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        txt = model.get_text_features(**txt).pooler_output
    return (F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1)


def test_pickscore_is_logit_scale_times_cos(tiny, images):
    model, processor = _reference_clip(tiny["pickscore"]["model"], tiny["pickscore"]["processor"])
    expected = model.logit_scale.exp().item() * _reference_cos(model, processor, images, PROMPTS)
    torch.testing.assert_close(get_scorer("pickscore", **tiny["pickscore"])(images, PROMPTS), expected)


def test_clipscore_is_clipped_2_5_cos_with_prefix(tiny, images):
    model, processor = _reference_clip(tiny["clipscore"]["model"])
    pixels = _openai_pixels(images)
    cos = _reference_cos(model, processor, images, ["A photo depicts " + p for p in PROMPTS], pixels)
    scores = get_scorer("clipscore", **tiny["clipscore"])(images, PROMPTS)
    torch.testing.assert_close(scores, 2.5 * cos.clamp(min=0))
    assert ((scores >= 0) & (scores <= 2.5)).all()
    no_prefix = get_scorer("clipscore", prefix="", **tiny["clipscore"])(images, PROMPTS)
    torch.testing.assert_close(
        no_prefix, 2.5 * _reference_cos(model, processor, images, PROMPTS, pixels).clamp(min=0)
    )


def test_aes_is_mlp_of_normalised_image_embedding(tiny, images):
    from eval.metrics.aes import AES_MLP_FILE, AestheticMLP

    model, processor = _reference_clip(tiny["aes"]["backbone"])
    mlp = AestheticMLP(16)
    mlp.load_state_dict(torch.load(f"{tiny['aes']['mlp']}/{AES_MLP_FILE}", weights_only=True))
    with torch.no_grad():
        embeds = model.get_image_features(**_openai_pixels(images)).pooler_output
        expected = mlp.eval()(F.normalize(embeds, dim=-1))
    torch.testing.assert_close(get_scorer("aes", **tiny["aes"])(images, PROMPTS), expected)


def test_aes_mlp_layout_matches_released_file(tmp_path):
    from eval.metrics.aes import AestheticMLP, load_aesthetic_mlp

    keys = {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
    assert set(AestheticMLP().state_dict()) == keys
    bare = {key.removeprefix("layers."): value for key, value in AestheticMLP(8).state_dict().items()}
    torch.save(bare, tmp_path / "bare.pth")  # a plain nn.Sequential's keys load too
    assert load_aesthetic_mlp(tmp_path / "bare.pth").layers[0].in_features == 8
    torch.save({"layers.0.weight": torch.zeros(2, 2)}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="does not match the LAION head"):
        load_aesthetic_mlp(tmp_path / "broken.pth")


def test_imagereward_is_standardised_reward_times_100(tiny, images):
    from eval.metrics.imagereward import REWARD_MEAN, REWARD_STD

    scorer = get_scorer("imagereward", **tiny["imagereward"]).load()
    raw = []
    handle = scorer.net.mlp.register_forward_hook(lambda module, args, out: raw.append(out.squeeze(-1)))
    scores = scorer(images, PROMPTS)
    handle.remove()
    torch.testing.assert_close(scores, 100 * (torch.cat(raw) - REWARD_MEAN) / REWARD_STD)


def test_imagereward_and_mps_state_dicts_match_imscore(monkeypatch):
    """Our re-assembled networks have imscore's exact parameter names and shapes (built on meta)."""
    import imscore.imreward.model as imreward_module
    import imscore.mps.model as mps_module

    from eval.metrics.imagereward import ImageRewardArch, ImageRewardNet
    from eval.metrics.mps import MPSNet
    from eval.metrics.random_weights import CLIP_SIZES, clip_config

    stub = types.SimpleNamespace(add_special_tokens=lambda tokens: None, additional_special_tokens_ids=[0])
    monkeypatch.setattr(
        imreward_module, "BertTokenizer", types.SimpleNamespace(from_pretrained=lambda *a: stub)
    )
    config = clip_config(CLIP_SIZES["full"]["H"])
    base = mps_module.XCLIPModel
    monkeypatch.setattr(
        mps_module, "AutoTokenizer", types.SimpleNamespace(from_pretrained=lambda *a, **k: None)
    )
    monkeypatch.setattr(
        mps_module,
        "XCLIPModel",
        type("X", (base,), {"from_pretrained": classmethod(lambda cls, *a: base(config))}),
    )
    with torch.device("meta"):
        pairs = [
            (imreward_module.ImageReward(), ImageRewardNet(ImageRewardArch()), ""),
            (mps_module.MPS(), MPSNet(config), "mps."),
        ]
    for reference, ours, prefix in pairs:
        expected = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
        assert {prefix + key: tuple(value.shape) for key, value in ours.state_dict().items()} == expected


def test_mps_compare_is_a_probability(tiny, images):
    scorer = get_scorer("mps", **tiny["mps"])
    ab = scorer.compare(images, images[::-1], PROMPTS)
    ba = scorer.compare(images[::-1], images, PROMPTS)
    torch.testing.assert_close(ab + ba, torch.ones(3))
    torch.testing.assert_close(scorer.compare(images, images, PROMPTS), torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="equal-length"):
        scorer.compare(images, images[:2], PROMPTS)


# ---------------------------------------------------------------- offline errors


@pytest.mark.parametrize(
    ("name", "repo", "filename"),
    [
        ("hpsv2", "xswu/HPSv2", "HPS_v2.1_compressed.pt"),
        ("pickscore", "yuvalkirstain/PickScore_v1", "model.safetensors"),
        ("aes", "camenduru/improved-aesthetic-predictor", "sac+logos+ava1-l14-linearMSE.pth"),
        ("imagereward", "RE-N-Y/ImageReward", "model.safetensors"),
        ("clipscore", "openai/clip-vit-base-patch32", "model.safetensors"),
        ("mps", "RE-N-Y/mpsv1", "model.safetensors"),
    ],
)
def test_missing_weights_offline_name_the_hub_files(name, repo, filename, tmp_path):
    scorer = get_scorer(name, cache_dir=tmp_path)
    with pytest.raises(ValueError) as info:
        scorer.load()
    message = str(info.value)
    assert repo in message and filename in message and "hf download" in message
    assert not scorer.loaded


def test_local_path_without_the_file_says_which(tmp_path):
    with pytest.raises(ValueError, match="has no 'HPS_v2.1_compressed.pt'"):
        get_scorer("hpsv2", checkpoint=tmp_path).load()
    with pytest.raises(ValueError, match="does not exist"):
        get_scorer("aes", mlp="/no/such/dir/weights").load()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"lacks model.safetensors \(or pytorch_model.bin\)"):
        get_scorer("clipscore", model=tmp_path).load()


def test_mismatched_checkpoint_is_a_clear_error(tiny):
    kwargs = dict(tiny["hpsv2"], arch_overrides={**tiny["hpsv2"]["arch_overrides"], "embed_dim": 24})
    with pytest.raises(ValueError, match="does not match open_clip"):
        get_scorer("hpsv2", **kwargs).load()


# ---------------------------------------------------------------- toys and micro


def test_toy_scorers_known_values():
    gray = Image.new("RGB", (8, 8), (128, 128, 128))
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    brightness = get_scorer("toy-brightness")([gray, red], ["", ""])
    torch.testing.assert_close(brightness, torch.tensor([128 / 255, 0.299]))
    colorfulness = get_scorer("toy-colorfulness")([gray, red], ["x", "y"])
    torch.testing.assert_close(colorfulness, torch.tensor([0.0, 0.3 * float(np.hypot(1.0, 0.5))]))


def test_micro_wraps_the_verifier(monkeypatch, images):
    class FakeVerifier:
        def score(self, images, prompts):
            return torch.tensor([len(p) / 100 for p in prompts])

    monkeypatch.setitem(
        sys.modules, "npnet.worlds.micro.verifier", types.SimpleNamespace(MicroVerifier=FakeVerifier)
    )
    scores = get_scorer("micro")(images, PROMPTS)
    torch.testing.assert_close(scores, torch.tensor([len(p) / 100 for p in PROMPTS]))


def test_micro_without_verifier_is_a_clear_error(monkeypatch, images):
    monkeypatch.setitem(sys.modules, "npnet.worlds.micro.verifier", None)
    with pytest.raises(ValueError, match="npnet.worlds.micro.verifier"):
        get_scorer("micro")(images, PROMPTS)


def test_throughput_benchmark_runs_on_tiny_weights(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_throughput.py"
    spec = importlib.util.spec_from_file_location("eval_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--size", "tiny", "--metrics", "aes,toy-brightness", "--images", "2", "--batch-sizes", "1,2",
            "--image-size", "40", "--workdir", str(tmp_path), "--out", str(tmp_path / "out.json")]  # fmt: skip
    results = module.main(module.parse_args(argv))["scoring"]
    assert [r["metric"] for r in results] == ["aes", "toy-brightness"]
    assert all(r["rates"][1] > 0 and r["rates"][2] > 0 for r in results)
    assert "| aes |" in capsys.readouterr().out and (tmp_path / "out.json").is_file()
