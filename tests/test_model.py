"""NPNet architecture: official layout, exact formulas, batching, dtypes, sizes and input errors."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference_npnet import reference_svd_branch

from npnet.model import NPNET_PRESETS, NPNet

# The released checkpoints' state-dict keys, shapes and dtypes (a copy of shared/spec, kept with the tests).
SPEC_DIR = Path(__file__).resolve().parent / "fixtures"


def _tiny(seed: int = 0, **options) -> NPNet:
    torch.manual_seed(seed)
    net = NPNet(NPNET_PRESETS["tiny"], **options).eval()
    with torch.no_grad():
        net.alpha.fill_(0.7)
        net.beta.fill_(-0.4)
    return net


def _inputs(net: NPNet, batch: int = 2, seed: int = 1, side: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    side = side or net.config.latent_size
    noise = torch.randn(batch, 4, side, side, generator=gen)
    embeds = torch.randn(batch, net.config.text_len, net.config.text_dim, generator=gen)
    return noise, embeds


@pytest.mark.parametrize("preset", ["sdxl", "dit"])
def test_state_dict_matches_official_spec(preset):
    spec = json.loads((SPEC_DIR / f"official_checkpoint_keys_{preset}.json").read_text())
    expected = {f"{top}.{name}": (shape, dtype) for top, rows in spec.items() for name, shape, dtype in rows}
    expected["alpha"] = ([1], "torch.float32")
    expected["beta"] = ([1], "torch.float32")
    state = NPNet(NPNET_PRESETS[preset]).state_dict()
    got = {k: (list(v.shape), str(v.dtype)) for k, v in state.items()}
    assert got == expected


def test_residual_branch_keeps_the_nhwc_quirk():
    net = NPNet(NPNET_PRESETS["sdxl"]).eval()
    feats = net.unet_embedding.swin.forward_features(torch.zeros(1, 3, 224, 224))
    assert feats.shape == (1, 7, 7, 768)  # NHWC: the 7-long H axis becomes 7 "channels"
    assert net.unet_embedding.upconv.in_channels == 7


def test_forward_matches_independent_computation_of_the_formulas():
    net = _tiny().double()
    noise, embeds = _inputs(net)
    noise, embeds = noise.double(), embeds.double()
    with torch.no_grad():
        svd = reference_svd_branch(net, noise)
        assert torch.allclose(net.unet_svd(noise), svd, atol=1e-9)
        lin = net.embeeding.linear
        scale, shift = (embeds.reshape(2, -1) @ lin.weight.T + lin.bias).chunk(2, dim=1)
        mean = noise.mean(dim=(1, 2, 3), keepdim=True)
        var = noise.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        e = (noise - mean) / torch.sqrt(var + 1e-6) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        residual = net.unet_embedding(noise + e)
        expected = svd + (2 * torch.sigmoid(torch.tensor(0.7, dtype=torch.float64)) - 1) * e - 0.4 * residual
        assert torch.allclose(net(noise, embeds), expected, atol=1e-9)


def test_batch_equals_per_sample_and_broadcast_equals_repeat():
    net = _tiny()
    noise, embeds = _inputs(net, batch=3)
    with torch.no_grad():
        batched = net(noise, embeds)
        single = torch.cat([net(noise[i : i + 1], embeds[i : i + 1]) for i in range(3)])
        assert torch.allclose(batched, single, atol=1e-5)
        shared = net(noise, embeds[:1])
        assert torch.allclose(shared, net(noise, embeds[:1].expand(3, -1, -1)), atol=1e-6)


def test_output_keeps_input_dtype_and_initial_alpha_beta_are_zero():
    fresh = NPNet(NPNET_PRESETS["tiny"])
    assert fresh.alpha.item() == 0.0 and fresh.beta.item() == 0.0
    net = _tiny()
    noise, embeds = _inputs(net)
    with torch.no_grad():
        ref = net(noise, embeds)
        for dtype in (torch.float16, torch.bfloat16):
            out = net(noise.to(dtype), embeds.to(dtype))
            assert out.dtype == dtype and out.shape == noise.shape
            assert torch.allclose(out.float(), ref, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("strategy", ["nearest-exact", "bilinear", "residual"])
def test_other_latent_sizes_are_resized(strategy):
    net = _tiny(size_strategy=strategy)
    noise = torch.randn(1, 4, 13, 19)
    embeds = torch.randn(1, 77, 64)
    with torch.no_grad():
        out = net(noise, embeds)
    assert out.shape == noise.shape and torch.isfinite(out).all()
    if strategy == "residual":  # x_T kept exactly; only the resized correction is added
        with torch.no_grad():
            native = F.interpolate(noise, size=(8, 8), mode="bilinear", align_corners=False)
            delta = net(native, embeds) - native
        expected = noise + F.interpolate(delta, size=(13, 19), mode="bilinear", align_corners=False)
        assert torch.allclose(out, expected, atol=1e-5)


def test_reject_strategy_and_bad_inputs_raise_clear_errors():
    net = _tiny(size_strategy="reject")
    embeds = torch.randn(1, 77, 64)
    with pytest.raises(ValueError, match="8x8 latents"):
        net(torch.randn(1, 4, 13, 19), embeds)
    with pytest.raises(ValueError, match="4-channel"):
        net(torch.randn(1, 3, 8, 8), embeds)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.randn(4, 8, 8), embeds)
    with pytest.raises(ValueError, match="Hunyuan-DiT"):
        NPNet(NPNET_PRESETS["sdxl"]).condition(torch.randn(1, 77, 1024), batch=1)
    with pytest.raises(ValueError, match="batch"):
        net(torch.randn(2, 4, 8, 8), torch.randn(3, 77, 64))
    with pytest.raises(ValueError, match="tokens"):
        net(torch.randn(1, 4, 8, 8), torch.randn(1, 10, 64))
    with pytest.raises(ValueError, match="size_strategy"):
        NPNet(NPNET_PRESETS["tiny"], size_strategy="cubic")


def test_long_prompts_truncate_or_average_chunks():
    noise, embeds = _inputs(_tiny(), batch=1)
    long = torch.cat([embeds, embeds], dim=1)  # 154 tokens: two identical chunks
    with torch.no_grad():
        base = _tiny()(noise, embeds)
        assert torch.equal(_tiny()(noise, torch.cat([embeds, torch.randn(1, 30, 64)], dim=1)), base)
        assert torch.allclose(_tiny(long_prompt="chunk-mean")(noise, long), base, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 77"):
        _tiny(long_prompt="chunk-mean")(noise, torch.randn(1, 100, 64))


def test_ablation_configs_drop_branches():
    from dataclasses import replace

    cfg = replace(NPNET_PRESETS["tiny"], use_svd_branch=False, use_residual_branch=False)
    net = NPNet(cfg).eval()
    assert not any(k.startswith(("unet_svd", "unet_embedding")) for k in net.state_dict())
    noise, embeds = _inputs(net)
    with torch.no_grad():
        assert torch.allclose(net(noise, embeds), noise)  # alpha = 0: identity without both branches
