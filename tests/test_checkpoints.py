"""Checkpoint layouts, round trips, hub resolution offline, and every bad-checkpoint error."""

import argparse
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from cli.convert import main as convert_main
from npnet.checkpoints import (
    infer_config,
    load_npnet,
    read_checkpoint,
    resolve_checkpoint,
    save_npnet,
    save_official,
)
from npnet.model import NPNET_PRESETS, NPNet


def _net(preset: str = "tiny", seed: int = 0) -> NPNet:
    torch.manual_seed(seed)
    net = NPNet(NPNET_PRESETS[preset]).eval()
    with torch.no_grad():
        net.alpha.fill_(1e-4)
        net.beta.fill_(-0.0189)
    return net


def _out(net: NPNet) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    side, cfg = net.config.latent_size, net.config
    noise = torch.randn(2, 4, side, side, generator=gen)
    with torch.no_grad():
        return net(noise, torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen))


def _official_dict(net: NPNet, text_key: str = "embeeding") -> dict:
    state = net.state_dict()
    nested = {
        top: {k[len(top) + 1 :]: v for k, v in state.items() if k.startswith(top + ".")}
        for top in ("unet_svd", "unet_embedding", "embeeding")
    }
    nested[text_key] = nested.pop("embeeding")
    nested["alpha"], nested["beta"] = state["alpha"], state["beta"]
    return nested


def _community_flat(net: NPNet, text_prefix: str) -> dict:
    return {
        (text_prefix + k[len("embeeding") :] if k.startswith("embeeding") else k): v.contiguous()
        for k, v in net.state_dict().items()
    }


def test_official_sdxl_layout_loads_without_metadata_and_infers_the_preset(tmp_path):
    net = _net("sdxl")
    torch.save(_official_dict(net), tmp_path / "sdxl.pth")
    loaded = load_npnet(tmp_path / "sdxl.pth", expect="sdxl")
    assert loaded.config == NPNET_PRESETS["sdxl"]
    assert torch.equal(_out(loaded), _out(net))


@pytest.mark.parametrize(
    "layout",
    [
        "official",
        "official-embedding-alias",
        "community-embeeding",
        "community-text_embedding",
        "ours-safetensors",
        "ours-official",
    ],
)
def test_every_layout_gives_identical_outputs(tmp_path, layout):
    net = _net()
    path = tmp_path / (
        "ckpt.safetensors" if "community" in layout or layout == "ours-safetensors" else "ckpt.pth"
    )
    if layout == "official":
        torch.save({**_official_dict(net), "npnet_config": net.config.to_dict()}, path)
    elif layout == "official-embedding-alias":
        torch.save({**_official_dict(net, "embedding"), "npnet_config": net.config.to_dict()}, path)
    elif layout.startswith("community"):
        import json

        meta = {"npnet_config": json.dumps(net.config.to_dict())}
        save_file(_community_flat(net, layout.split("-", 1)[1]), str(path), metadata=meta)
    elif layout == "ours-safetensors":
        save_npnet(net, path)
    else:
        save_official(net, path)
    loaded = load_npnet(str(path))
    assert loaded.config == net.config
    assert torch.equal(_out(loaded), _out(net))


def test_round_trips_are_exact_and_folders_resolve(tmp_path):
    net = _net()
    st = save_npnet(net, tmp_path / "folder")
    assert st == tmp_path / "folder" / "npnet.safetensors"
    pth = save_official(net, tmp_path / "official.pth")
    for source in (tmp_path / "folder", pth):
        state = load_npnet(str(source)).state_dict()
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    raw = torch.load(pth, weights_only=True)
    assert {"unet_svd", "unet_embedding", "embeeding", "alpha", "beta"} <= set(raw)


def test_convert_cli_round_trip(tmp_path):
    src = save_official(_net(), tmp_path / "a.pth")
    args = argparse.Namespace(
        source=src, target=str(tmp_path / "b.safetensors"), to="auto", filename=None, check=True
    )
    out = convert_main(args)
    back = convert_main(
        argparse.Namespace(
            source=out, target=str(tmp_path / "c.pth"), to="official", filename=None, check=True
        )
    )
    assert torch.equal(_out(load_npnet(back)), _out(_net()))


def test_half_precision_noise_goes_through_a_float32_npnet(tmp_path):
    """Weights load in float32 (no half SVD kernels); half noise comes back half, equal to the fp32 result."""
    net = load_npnet(save_npnet(_net(), tmp_path / "n.safetensors"), device="cpu")
    assert net.alpha.dtype == torch.float32 and not net.training
    cfg = net.config
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 4, cfg.latent_size, cfg.latent_size, generator=gen)
    embeds = torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen)
    with torch.inference_mode():
        full, half = net(noise, embeds), net(noise.bfloat16(), embeds.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), net(noise.bfloat16().float(), embeds.bfloat16().float()).bfloat16().float())
    assert full.dtype == torch.float32


def test_wrong_family_names_the_right_model(tmp_path):
    dit = save_official(_net("dit"), tmp_path / "dit.pth")
    with pytest.raises(ValueError, match="77x1024: this is a Hunyuan-DiT checkpoint"):
        load_npnet(dit, expect="sdxl")


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path):
    net = _net()
    meta = {"npnet_config": __import__("json").dumps(net.config.to_dict())}
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    dropped = dict(state)
    dropped.pop("unet_svd.mlp3.0.bias")
    save_file(dropped, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"missing keys \['unet_svd.mlp3.0.bias'\]"):
        load_npnet(tmp_path / "missing.safetensors")
    save_file({**state, "extra.weight": torch.zeros(1)}, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        load_npnet(tmp_path / "extra.safetensors")
    save_file(
        {**state, "unet_svd.mlp3.0.bias": torch.zeros(5)}, str(tmp_path / "shape.safetensors"), metadata=meta
    )
    with pytest.raises(ValueError, match="wrong shapes"):
        load_npnet(tmp_path / "shape.safetensors")


def test_corrupt_truncated_unsafe_and_foreign_files(tmp_path):
    good = save_npnet(_net(), tmp_path / "good.safetensors")
    data = open(good, "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.safetensors is not a readable safetensors"):
        load_npnet(tmp_path / "cut.safetensors")
    pth = save_official(_net(), tmp_path / "good.pth")
    raw = open(pth, "rb").read()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut.pth is not a readable PyTorch checkpoint"):
        load_npnet(tmp_path / "cut.pth")
    (tmp_path / "noise.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="noise.pth"):
        load_npnet(tmp_path / "noise.pth")
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"unet_svd": zipfile.ZipFile}, handle)
    with pytest.raises(ValueError, match="evil.pth"):
        load_npnet(tmp_path / "evil.pth")
    torch.save({"model": {"weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an NPNet checkpoint"):
        load_npnet(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="absent.safetensors does not exist"):
        load_npnet(str(tmp_path / "absent.safetensors"))


def test_hub_names_fail_offline_with_download_instructions():
    with pytest.raises(ValueError, match="huggingface-cli download Klayand/GoldenNoiseModel sdxl.pth"):
        resolve_checkpoint("sdxl")
    with pytest.raises(ValueError, match="known name"):
        resolve_checkpoint("no-such-checkpoint")
    with pytest.raises(ValueError, match="cannot list 'asagi4/NPNet'.*npnet-sdxl.safetensors"):
        resolve_checkpoint("asagi4/NPNet")


def test_config_inference_from_shapes_matches_presets():
    for name in ("sdxl", "dit"):
        assert infer_config(NPNet(NPNET_PRESETS[name]).state_dict()) == NPNET_PRESETS[name]
