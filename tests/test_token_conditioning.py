"""Token-conditioned NPNet (issue 21): off by default, starts as the official net, learns what 8 numbers cannot,
round-trips through the checkpoint code, and has an SDXL-sized config that runs and trains."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors import safe_open

from eval.metrics import get_scorer
from npnet.checkpoints import load_npnet, save_npnet, save_official
from npnet.data.collect import CollectConfig, collect
from npnet.data.dataset import write_dataset
from npnet.engine import GoldenNoiseService
from npnet.errors import UserError
from npnet.model import NPNET_PRESETS, NPNet, NPNetConfig
from npnet.training.train import TrainConfig, train

TINY_TOKENS = dataclasses.replace(
    NPNET_PRESETS["tiny"],
    text_conditioning="tokens",
    token_width=16,
    token_layers=1,
    token_heads=2,
    token_grid=4,
)


def _randomise_head(net: NPNet, seed: int = 0) -> NPNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.token_branch.head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


def test_official_presets_have_no_token_branch_and_unchanged_metadata():
    for name in ("sdxl", "dit", "micro", "tiny"):
        config = NPNET_PRESETS[name]
        assert config.text_conditioning == "official" and not config.uses_tokens
        data = config.to_dict()
        assert "text_conditioning" not in data and not any(k.startswith("token_") for k in data)
        assert NPNetConfig.from_dict(data) == config
    with torch.device("meta"):
        keys = NPNet(NPNET_PRESETS["micro"]).state_dict()
    assert not any(k.startswith("token_branch") for k in keys)


def test_token_net_starts_as_the_official_net_with_the_same_weights():
    torch.manual_seed(0)
    tokens = NPNet(TINY_TOKENS).eval()
    official = NPNet(NPNET_PRESETS["tiny"]).eval()
    shared = {k: v for k, v in tokens.state_dict().items() if not k.startswith("token_branch")}
    official.load_state_dict(shared, strict=True)
    with torch.no_grad():
        tokens.alpha.fill_(0.7), tokens.beta.fill_(0.3), official.alpha.fill_(0.7), official.beta.fill_(0.3)
    x, c = torch.randn(3, 4, 8, 8), torch.randn(3, 77, 64)
    torch.testing.assert_close(tokens(x, c), official(x, c), rtol=0, atol=1e-6)


def test_prompt_reaches_each_position_and_no_text_ignores_it():
    torch.manual_seed(0)
    net = _randomise_head(NPNet(TINY_TOKENS).eval())
    x, a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 64), torch.randn(1, 77, 64)
    change = net.token_branch(x, b) - net.token_branch(x, a)  # (1, 4, 8, 8)
    # the official path can only move each channel by one scale and one shift of GroupNorm(x):
    # residuals of that per-channel affine fit stay large for the token branch
    feats = torch.stack(
        [torch.nn.functional.group_norm(x, 1)[0].flatten(1), torch.ones(4, 64)], -1
    )  # (4, 64, 2)
    fit = torch.linalg.lstsq(feats, change[0].flatten(1).unsqueeze(-1)).solution  # (4, 2, 1)
    left = (feats @ fit).squeeze(-1) - change[0].flatten(1)
    assert left.norm() > 0.3 * change.norm() > 0
    blind = _randomise_head(
        NPNet(dataclasses.replace(TINY_TOKENS, text_conditioning="tokens-no-text")).eval()
    )
    torch.testing.assert_close(blind(x, a), blind(x, b), rtol=0, atol=0)


def test_checkpoints_round_trip_with_the_config_in_the_metadata(tmp_path):
    torch.manual_seed(0)
    net = _randomise_head(NPNet(dataclasses.replace(TINY_TOKENS, token_output="film")).eval())
    x, c = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 64)
    path = save_npnet(net, tmp_path / "tokens.safetensors")
    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["npnet_config"])
    assert meta["text_conditioning"] == "tokens" and meta["token_output"] == "film"
    for loaded in (load_npnet(path), load_npnet(save_official(net, tmp_path / "tokens.pth"))):
        assert loaded.config == net.config
        torch.testing.assert_close(loaded(x, c), net(x, c), rtol=0, atol=0)


def test_bad_token_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="text_conditioning"):
        dataclasses.replace(TINY_TOKENS, text_conditioning="cross")
    with pytest.raises(ValueError, match="token_grid=3 must divide latent_size=8"):
        dataclasses.replace(TINY_TOKENS, token_grid=3)
    with pytest.raises(ValueError, match="token_output"):
        dataclasses.replace(TINY_TOKENS, token_output="gate")
    net = NPNet(TINY_TOKENS)
    path = save_npnet(net, tmp_path / "a.safetensors")
    official = NPNet(NPNET_PRESETS["tiny"])
    official.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("token_")})
    save_npnet(official, tmp_path / "b.safetensors")
    assert (
        load_npnet(path).config.uses_tokens and not load_npnet(tmp_path / "b.safetensors").config.uses_tokens
    )
    from safetensors.torch import save_file

    bad = {**TINY_TOKENS.to_dict(), "token_layers": 10_000}
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(tmp_path / "c.safetensors"), metadata={"npnet_config": json.dumps(bad)})
    with pytest.raises(UserError, match="token_layers=10000 is outside the limit"):
        load_npnet(tmp_path / "c.safetensors")


def _spatial_npd(folder, n_prompts=4, per_prompt=25, seed=0):
    """x'_T = x_T + a spatial pattern fixed by the prompt: 8 numbers per prompt cannot express it."""
    g = torch.Generator().manual_seed(seed)
    prompts = [f"prompt {i}" for i in range(n_prompts)]
    embeds = {p: torch.randn(77, 64, generator=g) for p in prompts}
    patterns = torch.randn(n_prompts, 4, 8, 8, generator=g)  # (P, 4, 8, 8)
    patterns = patterns - patterns.mean((2, 3), keepdim=True)  # no per-channel offset at all
    which = torch.arange(n_prompts).repeat_interleave(per_prompt)  # (N,)
    x = torch.randn(len(which), 4, 8, 8, generator=g)
    rows = [{"index": i, "prompt": prompts[int(p)], "seed": i, "score_standard": 0.0, "score_inversion": 1.0,
             "kept": True} for i, p in enumerate(which)]  # fmt: skip
    write_dataset(folder, rows, x, x + patterns[which], {"model": "synthetic"}, embeds=embeds, shard_size=16)
    return folder


def test_tokens_learn_a_spatial_prompt_target_the_official_net_cannot(tmp_path):
    data = str(_spatial_npd(tmp_path / "npd"))
    losses = {}
    for name, preset in (("official", NPNET_PRESETS["tiny"]), ("tokens", TINY_TOKENS)):
        config = TrainConfig(data, str(tmp_path / name), preset=preset, epochs=10, batch_size=8, lr=1e-2,
                             init="random", device="cpu", val_fraction=0.2)  # fmt: skip
        losses[name] = train(config).history[-1]
    assert losses["tokens"]["val_loss"] < 0.6 * losses["official"]["val_loss"]
    assert (
        losses["official"]["val_loss"] > 0.7 * losses["official"]["val_identity"]
    )  # ~ all of the pattern left


def test_sdxl_sized_config_builds_runs_and_takes_a_training_step():
    config = NPNET_PRESETS["sdxl-tokens"]
    torch.manual_seed(0)
    net = NPNet(config)
    x, c = torch.randn(1, 4, 128, 128), torch.randn(1, 77, 2048)
    out = net(x, c)
    assert out.shape == (1, 4, 128, 128) and torch.isfinite(out).all()
    assert sum(p.numel() for p in net.token_branch.parameters()) < 0.15 * sum(p.numel() for p in net.parameters())
    loss = (out - (x + 0.1)).square().mean()
    loss.backward()
    assert net.token_branch.head.weight.grad.abs().sum() > 0  # the zero-initialised head gets a gradient


def test_sdxl_widths_train_on_tiny_sdxl_pairs(tmp_path):
    """The SDXL-sized token branch and Swin-T at tiny-sdxl's shapes (8x8 latents, 77x64 text, patch 1)."""
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    npd = tmp_path / "npd"
    collect(service, CollectConfig("tiny-sdxl", str(npd), 2, steps=2, shard_size=4, batch_size=1),
            ["a red cube", "a blue ball"], get_scorer("toy-brightness"), progress=False)  # fmt: skip
    sized = dataclasses.replace(NPNET_PRESETS["sdxl-tokens"], text_dim=64, latent_size=8, token_grid=8)
    result = train(TrainConfig(str(npd), str(tmp_path / "ckpt"), preset=sized, epochs=1, batch_size=2, lr=1e-3,
                               init="random", device="cpu", select=False, val_fraction=0.25))  # fmt: skip
    assert len(result.step_losses) >= 1 and all(torch.isfinite(torch.tensor(result.step_losses)))
    loaded = load_npnet(result.last)
    assert loaded.config == sized and loaded.token_branch.head.weight.abs().sum() > 0  # trained, saved, reloaded
