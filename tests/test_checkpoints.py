"""Checkpoint layouts, round trips, hub resolution offline, and every bad-checkpoint error."""

import argparse
import dataclasses
import json
import pickle
import re
import time
import zipfile

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cli.convert import main as convert_main
from npnet.checkpoints import (
    infer_config,
    inspect_checkpoint,
    load_npnet,
    read_checkpoint,
    resolve_checkpoint,
    save_npnet,
    save_official,
)
from npnet.errors import UserError
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
    torch.testing.assert_close(
        half.float(), net(noise.bfloat16().float(), embeds.bfloat16().float()).bfloat16().float()
    )
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
    with pytest.raises(ValueError, match="evil.pth: not a safetensors/.pth state dict; pickled code is refused") as info:
        load_npnet(tmp_path / "evil.pth")
    assert "weights_only" not in str(info.value) and "https://" not in str(info.value)  # not PyTorch's text
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


# -- untrusted files: refused before anything is built, every message names the file ---------------------
WHAT = "An NPNet checkpoint is a .safetensors or PyTorch .pth file"


def _refuses(path, match, loader=load_npnet):
    start = time.perf_counter()
    with pytest.raises(UserError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message and WHAT in message, message
    assert re.search(match, message), message
    return time.perf_counter() - start


def test_a_huge_declared_architecture_is_refused_before_any_allocation(tmp_path):
    """A ~150-byte safetensors whose metadata declares text_dim=4e6 (a 9.9 GB text embedding)."""
    path = tmp_path / "huge.safetensors"
    save_file(
        {"alpha": torch.zeros(1)}, str(path), metadata={"npnet_config": json.dumps({"text_dim": 4_000_000})}
    )
    assert path.stat().st_size < 200
    assert _refuses(path, r"text_dim=4000000 is outside the limit 1\.\.16384") < 2.0
    assert _refuses(path, "text_dim=4000000", inspect_checkpoint) < 2.0
    # within the limits but not what the tensors hold: refused by the shape check (meta device, no memory)
    net = _net()
    big = dataclasses.replace(net.config, text_dim=16384).to_dict()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "liar.safetensors"), metadata={"npnet_config": json.dumps(big)})
    seconds = _refuses(
        tmp_path / "liar.safetensors",
        r"does not match the NPNet architecture declared in its metadata.*embeeding.linear.weight: "
        r"file \(8, 4928\) vs model \(8, 1261568\)",
    )
    assert seconds < 2.0


def test_convert_refuses_the_huge_file_fast(tmp_path):
    path = tmp_path / "huge.safetensors"
    save_file(
        {"alpha": torch.zeros(1)}, str(path), metadata={"npnet_config": json.dumps({"text_dim": 4_000_000})}
    )
    args = argparse.Namespace(
        source=str(path), target=str(tmp_path / "out.pth"), to="auto", filename=None, check=True
    )
    start = time.perf_counter()
    with pytest.raises(UserError, match="huge.safetensors"):
        convert_main(args)
    assert time.perf_counter() - start < 2.0 and not (tmp_path / "out.pth").exists()


def test_text_and_system_files_are_not_checkpoints(tmp_path):
    (tmp_path / "x.pth").write_text("hello, this is a text file\n")  # torch.load: KeyError(101) before
    _refuses(tmp_path / "x.pth", "is not an NPNet checkpoint: it is neither a safetensors nor a PyTorch file")
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    _refuses(passwd, "is not an NPNet checkpoint")  # IndexError before
    _refuses(passwd, "is not an NPNet checkpoint", read_checkpoint)
    _refuses(passwd, "is not an NPNet checkpoint", inspect_checkpoint)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    _refuses(tmp_path / "empty.safetensors", "is not an NPNet checkpoint")
    args = argparse.Namespace(source=str(tmp_path / "x.pth"), target=str(tmp_path / "y.safetensors"), to="auto",
                              filename=None, check=True)  # fmt: skip
    with pytest.raises(UserError, match="x.pth is not an NPNet checkpoint"):
        convert_main(args)


def test_bad_metadata_names_the_file_and_the_field(tmp_path):
    net = _net()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    config = net.config.to_dict()
    config.pop("text_dim")
    save_file(state, str(tmp_path / "no-width.safetensors"), metadata={"npnet_config": json.dumps(config)})
    _refuses(tmp_path / "no-width.safetensors", "has no text_dim")  # TypeError before
    save_file(state, str(tmp_path / "bad-json.safetensors"), metadata={"npnet_config": "{'text_dim': 64,"})
    _refuses(tmp_path / "bad-json.safetensors", "metadata 'npnet_config' .* is not valid JSON")
    save_file(state, str(tmp_path / "list.safetensors"), metadata={"npnet_config": "[64]"})
    _refuses(tmp_path / "list.safetensors", "'npnet_config' is a list, not a JSON object")
    for field, value, match in [
        ("text_dim", 64.5, "text_dim must be an integer"),
        ("latent_size", 0, r"latent_size=0 is outside the limit 1\.\.512"),
        ("use_svd_branch", "yes", "use_svd_branch must be true or false"),
        (
            "backbone_kwargs",
            [["embed_dim", 10**9]],
            "backbone_kwargs embed_dim=1000000000 is outside the limits",
        ),
        ("backbone_kwargs", [["window_size", 64]], "backbone_kwargs window_size=64 is outside the limits"),
        ("attn_heads", 3, "attn_heads=3 must divide the SVD width 16"),
    ]:
        meta = {"npnet_config": json.dumps({**net.config.to_dict(), field: value})}
        save_file(state, str(tmp_path / "field.safetensors"), metadata=meta)
        _refuses(tmp_path / "field.safetensors", match)
    official = {**_official_dict(net), "npnet_config": {"latent_size": 8}}  # .pth: a dict without text_dim
    torch.save(official, tmp_path / "no-width.pth")
    _refuses(tmp_path / "no-width.pth", "has no text_dim")


def test_foreign_entries_and_shapes_without_metadata_are_user_errors(tmp_path):
    torch.save({"unet_svd": {"mlp1.0.weight": "not a tensor"}}, tmp_path / "str.pth")
    _refuses(tmp_path / "str.pth", r"entry unet_svd.mlp1.0.weight is a str, not a tensor")
    state = {k: v.contiguous() for k, v in _net().state_dict().items()}
    no_swin = {k: v for k, v in state.items() if not k.startswith("unet_embedding.swin.")}
    save_file(no_swin, str(tmp_path / "no-swin.safetensors"))  # no metadata: shapes are inferred
    _refuses(tmp_path / "no-swin.safetensors", r"its tensors do not form an NPNet \(KeyError")
    save_file({**state, "alpha": torch.zeros(5)}, str(tmp_path / "alpha.safetensors"),
              metadata={"npnet_config": json.dumps(_net().config.to_dict())})  # fmt: skip
    _refuses(tmp_path / "alpha.safetensors", r"wrong shapes \['alpha: file \(5,\) vs model \(1,\)'\]")


def test_inspect_reads_the_header_without_the_tensors(tmp_path, monkeypatch):
    net = _net()
    path = save_npnet(net, tmp_path / "n.safetensors")
    read = []
    real_open = safe_open

    class Counting:  # safe_open that counts the tensors read
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            self.handle = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def get_tensor(self, key):
            read.append(key)
            return self.handle.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr("npnet.checkpoints.safe_open", Counting)
    header = inspect_checkpoint(path)
    assert header.path == path and header.config == net.config and read == []
    assert header.shapes["embeeding.linear.weight"] == (8, 77 * 64) and header.shapes["alpha"] == (1,)
    assert torch.equal(_out(load_npnet(path)), _out(net)) and len(read) == len(net.state_dict())
