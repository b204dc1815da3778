"""NPNet with the Hugging Face convention: from_pretrained / save_pretrained / push_to_hub, offline."""

import json
import shutil

import pytest
import torch
from reference_npnet import reference_forward
from safetensors.torch import save_file

import npnet
from npnet import model as bare
from npnet.checkpoints import NPNet, load_npnet
from npnet.errors import UserError
from npnet.hub import HubOptions
from npnet.model import NPNET_PRESETS

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a commit hash: the cache's snapshot folder name


def _net(preset: str, seed: int = 0) -> bare.NPNet:
    torch.manual_seed(seed)
    net = bare.NPNet(NPNET_PRESETS[preset]).eval()
    with torch.no_grad():
        net.alpha.fill_(0.3)
        net.beta.fill_(-0.2)
    return net


def _inputs(net: bare.NPNet, batch: int = 2):
    gen = torch.Generator().manual_seed(3)
    cfg = net.config
    return torch.randn(batch, 4, cfg.latent_size, cfg.latent_size, generator=gen), torch.randn(
        1, cfg.text_len, cfg.text_dim, generator=gen
    )


def _forward(net, noise, embeds) -> torch.Tensor:
    with torch.no_grad():
        return net(noise, embeds)


def _official_pth(net: bare.NPNet, path):
    """The released layout: nested per branch, no architecture metadata (shapes tell it)."""
    state = net.state_dict()
    nested = {
        top: {k[len(top) + 1 :]: v for k, v in state.items() if k.startswith(top + ".")}
        for top in ("unet_svd", "unet_embedding", "embeeding")
    }
    torch.save({**nested, "alpha": state["alpha"], "beta": state["beta"]}, path)
    return path


def test_official_pth_save_pretrained_round_trip_keeps_the_official_forward(tmp_path):
    original = _net("sdxl")
    pth = _official_pth(original, tmp_path / "sdxl.pth")
    first = NPNet.from_pretrained(pth)
    assert type(first) is NPNet and npnet.NPNet is NPNet and isinstance(first, bare.NPNet)
    assert first.config == NPNET_PRESETS["sdxl"] and not first.training

    folder = tmp_path / "npnet-sdxl"
    assert first.save_pretrained(folder) is None
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["config"] == NPNET_PRESETS["sdxl"].to_dict() and config["size_strategy"] == "nearest-exact"
    second = NPNet.from_pretrained(folder)

    noise, embeds = _inputs(original)
    out = _forward(second, noise, embeds)
    assert torch.equal(out, _forward(original, noise, embeds))
    official = reference_forward(original, noise, embeds)  # float64, formulas written out
    assert torch.allclose(out.double(), official, atol=1e-4, rtol=1e-4)
    assert (out - noise).abs().max() > 1e-2  # the round trip carries a real correction, not the identity
    assert NPNet(second.config).alpha.item() == 0.0  # __init__ never loads weights


def test_options_travel_in_config_json_and_explicit_options_win(tmp_path):
    net = NPNet.from_pretrained(
        _official_pth(_net("sdxl", seed=1), tmp_path / "a.pth"), size_strategy="residual"
    )
    net.save_pretrained(tmp_path / "saved")
    assert NPNet.from_pretrained(tmp_path / "saved").size_strategy == "residual"
    assert NPNet.from_pretrained(tmp_path / "saved", size_strategy="bilinear").size_strategy == "bilinear"


def _fill_cache(cache, repo_id: str, net: NPNet):
    """A hub cache as hf_hub_download leaves it: refs/main -> snapshot folder with the files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    net.save_pretrained(repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)


def test_a_hub_id_resolves_offline_from_a_prefilled_cache(tmp_path):
    torch.manual_seed(4)
    net = NPNet(NPNET_PRESETS["tiny"]).eval()  # attn_heads=2: shapes alone would say 8, config.json tells
    _fill_cache(tmp_path / "cache", "someone/npnet-tiny", net)
    loaded = NPNet.from_pretrained("someone/npnet-tiny", cache_dir=tmp_path / "cache")
    assert loaded.config == NPNET_PRESETS["tiny"]
    noise, embeds = _inputs(net)
    assert torch.equal(_forward(loaded, noise, embeds), _forward(net, noise, embeds))
    function_form = load_npnet("someone/npnet-tiny", hub=HubOptions(cache_dir=tmp_path / "cache"))
    assert torch.equal(_forward(function_form, noise, embeds), _forward(net, noise, embeds))
    with pytest.raises(
        UserError,
        match=r"not in the local cache.*huggingface-cli download someone/absent model.safetensors config.json",
    ):
        NPNet.from_pretrained("someone/absent", cache_dir=tmp_path / "cache")


def test_config_json_gives_the_architecture_of_bare_weights_and_must_agree(tmp_path):
    torch.manual_seed(5)
    net = NPNet(NPNET_PRESETS["tiny"]).eval()
    folder = tmp_path / "bare"
    net.save_pretrained(folder)
    # weights without metadata (as a plain PyTorchModelHubMixin writes them): config.json says the architecture
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    noise, embeds = _inputs(net)
    assert torch.equal(_forward(NPNet.from_pretrained(folder), noise, embeds), _forward(net, noise, embeds))

    config = json.loads((folder / "config.json").read_text())
    net.save_pretrained(folder)  # the metadata is back: now both declare the architecture
    (folder / "config.json").write_text(
        json.dumps({**config, "config": {**config["config"], "attn_heads": 4}})
    )
    with pytest.raises(UserError, match=r"config.json declares .*attn_heads=4.*model.safetensors beside it"):
        NPNet.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "long_prompt": "drop"}))
    with pytest.raises(
        UserError, match=r"config.json: long_prompt 'drop' is not one of truncate, chunk-mean"
    ):
        NPNet.from_pretrained(folder)
    (folder / "config.json").write_text("[1, 2")
    with pytest.raises(UserError, match=r"config.json is not a readable JSON config"):
        NPNet.from_pretrained(folder)


class FakeHfApi:
    """HfApi without the network: records create_repo and keeps a copy of the uploaded folder."""

    calls: list = []
    uploaded = None

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None, **kwargs):
        self.calls.append(("upload_folder", repo_id, repo_type, commit_message))
        shutil.copytree(folder_path, FakeHfApi.uploaded)
        return f"https://huggingface.co/{repo_id}/commit/{SNAPSHOT}"


def test_push_to_hub_uploads_the_save_pretrained_folder(tmp_path, monkeypatch):
    from huggingface_hub import hub_mixin

    monkeypatch.setattr(hub_mixin, "HfApi", FakeHfApi)
    monkeypatch.setattr(FakeHfApi, "calls", [])
    monkeypatch.setattr(FakeHfApi, "uploaded", tmp_path / "uploaded")
    torch.manual_seed(6)
    net = NPNet(NPNET_PRESETS["tiny"]).eval()
    url = net.push_to_hub("me/my-npnet", token="hf_test", commit_message="NPNet tiny")
    assert url == f"https://huggingface.co/me/my-npnet/commit/{SNAPSHOT}"
    assert FakeHfApi.calls == [
        ("init", "hf_test"),
        ("create_repo", "me/my-npnet", None, True),
        ("upload_folder", "me/my-npnet", "model", "NPNet tiny"),
    ]
    uploaded = tmp_path / "uploaded"
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (uploaded / "README.md").read_text()
    assert "library_name: npnet-studio" in card and "2411.09502" in card and "NPNet.from_pretrained" in card
    noise, embeds = _inputs(net)
    assert torch.equal(_forward(NPNet.from_pretrained(uploaded), noise, embeds), _forward(net, noise, embeds))
