"""Swin-T init (paper App. A.4): ImageNet by default, a clear error offline or for reduced Swins, stubbed timm."""

import pytest
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError

from npnet.errors import UserError
from npnet.training import pretrained
from npnet.training.checks import check_before_training, check_init, resolve_init
from npnet.training.train import TrainConfig, build_model, train

WEIGHTS = "timm/swin_tiny_patch4_window7_224.ms_in1k"


def test_the_default_is_imagenet_where_it_exists_and_names_the_weights_timm_loads():
    from npnet.model import NPNET_PRESETS

    assert TrainConfig(data="d", out="o").init == "auto"
    assert resolve_init("auto", "sdxl") == resolve_init("auto", "dit") == "imagenet"
    assert resolve_init("auto", "micro") == resolve_init("auto", "tiny") == "random"  # reduced Swins
    assert resolve_init("random", "sdxl") == "random" and resolve_init("ckpt.safetensors", "sdxl") == "ckpt.safetensors"
    assert pretrained.imagenet_weights(NPNET_PRESETS[TrainConfig(data="d", out="o").preset]) == WEIGHTS


def test_offline_without_the_weights_names_them_the_download_and_the_random_flag(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "weights_cached", lambda repo: False)
    config = TrainConfig(data=str(tmp_path / "npd"), out=str(tmp_path / "run"), preset="sdxl")  # init "auto"
    for check in (lambda: check_init("imagenet", "sdxl"), lambda: check_before_training(config)):
        with pytest.raises(UserError) as err:
            check()
        text = str(err.value)
        assert WEIGHTS in text and f"hf download {WEIGHTS} model.safetensors" in text
        assert "--init random" in text and "Train tab" in text and "HF_HUB_OFFLINE" in text
    with pytest.raises(UserError, match="--init random"):
        train(config, log=lambda s: None)  # refused before any work: no run folder
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset", ["tiny", "micro"])
def test_reduced_swins_have_no_imagenet_weights_and_say_to_use_random(preset):
    with pytest.raises(UserError, match=r"reduced Swin.*init='random' \(command line: --init random"):
        TrainConfig(data="d", out="o", preset=preset, init="imagenet")
    assert TrainConfig(data="d", out="o", preset=preset, init="random").init == "random"
    net, note = build_model(TrainConfig(data="d", out="o", preset=preset))  # "auto": random, offline
    assert note == "random (auto)"


def _stub(monkeypatch, fail: bool = False) -> dict:
    """timm.create_model whose pretrained=True model holds seeded 'ImageNet' weights (kept in the dict)."""
    real, held = timm.create_model, {}

    def create_model(name, pretrained=False, **kwargs):
        if not pretrained:
            return real(name, pretrained=False, **kwargs)
        if fail:
            raise LocalEntryNotFoundError("no connection")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            model = real(name, pretrained=False, **kwargs)
        held.update({k: v.clone() for k, v in model.state_dict().items()})
        held["name"], held["kwargs"] = name, kwargs
        return model

    monkeypatch.setattr(timm, "create_model", create_model)
    return held


def test_the_pretrained_path_puts_the_stub_weights_into_the_swin(monkeypatch):
    monkeypatch.setattr(pretrained, "weights_cached", lambda repo: True)  # offline, weights cached
    held = _stub(monkeypatch)
    net, note = build_model(TrainConfig(data="d", out="o", preset="sdxl", seed=3))
    assert note == "imagenet (auto)" and held["name"] == "swin_tiny_patch4_window7_224"
    swin = net.unet_embedding.swin.state_dict()
    assert swin and all(torch.equal(v, held[k]) for k, v in swin.items())
    plain, _ = build_model(TrainConfig(data="d", out="o", preset="sdxl", seed=3, init="random"))
    differs = [k for k, v in plain.unet_embedding.swin.state_dict().items() if not torch.equal(v, held[k])]
    assert differs  # the random init does not hold them
    rest = [k for k in plain.state_dict() if not k.startswith("unet_embedding.swin.")]
    assert all(torch.equal(net.state_dict()[k], plain.state_dict()[k]) for k in rest)  # same seeded init


def test_a_failed_download_is_the_same_user_error(monkeypatch):
    monkeypatch.setattr(pretrained, "weights_cached", lambda repo: True)
    _stub(monkeypatch, fail=True)
    with pytest.raises(UserError, match=rf"{WEIGHTS}.*--init random.*LocalEntryNotFoundError"):
        build_model(TrainConfig(data="d", out="o", preset="sdxl"))
