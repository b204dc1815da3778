"""The app's tabs on the SD 1.5, SD3 and Flux families (tiny offline presets), with an NPNet the user supplies.

The tab functions are called as Gradio calls them (``make_generate``, ``make_run_seeds``, ``make_handlers``) on
one ``StudioService``; the checkpoint is a fresh NPNet of the family's shape saved to a file, not the preset's.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from npnet.checkpoints import load_npnet, save_npnet
from npnet.diffusion.families import get_family
from studio.config import LaunchConfig
from studio.service import StudioService
from studio.sessions import session_of
from studio.tabs.evaluate import make_handlers
from studio.tabs.generate import _model_defaults, make_generate
from studio.tabs.seeds import make_run_seeds
from studio.tempfiles import TempFiles

MODELS = ("tiny-sd15", "tiny-sd3", "tiny-flux")
PROMPT = "a red cube on a table"


class _Progress:
    """Stands in for ``gr.Progress`` outside a running event."""

    def __call__(self, *args, **kwargs):
        return None

    def tqdm(self, iterable, *args, **kwargs):
        return iterable


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-families")
    config = LaunchConfig(device="cpu", offline=True, runs_dir=str(root / "runs"))
    return StudioService(config, TempFiles(str(root / "tmp")), offline=True)


@pytest.fixture(scope="module")
def user_npnets(service, tmp_path_factory):
    """model -> a safetensors NPNet of the model's family shape with weights the preset's net does not have."""
    folder, paths = tmp_path_factory.mktemp("user-npnets"), {}
    for k, model in enumerate(MODELS):
        net = copy.deepcopy(service.engine.npnet(model)).float()
        gen = torch.Generator().manual_seed(100 + k)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        paths[model] = str(save_npnet(net, folder / f"{model}-mine.safetensors"))
    return paths


def _pixels(image) -> np.ndarray:
    image = image if isinstance(image, Image.Image) else Image.open(image)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _generate(service, model, npnet, seed=7):
    p = service.preset(model)
    generate = make_generate(service)
    return generate(
        PROMPT, "", seed, model, npnet, p.scheduler, 2, p.guidance_scale, p.width, p.height,
        ["standard", "npnet"], [], progress=_Progress(),
    )  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_new_models_are_listed_and_flow_models_offer_only_their_own_sampler(service, model):
    assert model in service.models()
    scheduler = _model_defaults(service, model, "")[1]
    family = get_family(service.preset(model).family)
    assert scheduler["choices"] == [(c, c) for c in family.scheduler_names()] or scheduler["choices"] == (
        family.scheduler_names()
    )
    if family.scheduler_kind == "flow":
        assert family.scheduler_names() == ["default"]
    else:
        assert "ddim" in family.scheduler_names()


@pytest.mark.parametrize("model", MODELS)
def test_generate_with_the_users_npnet_differs_from_the_presets_and_repeats(service, user_npnets, model):
    gallery, *_rest, pair = _generate(service, model, user_npnets[model])
    standard, golden = (_pixels(image) for image, _caption in gallery)
    again = [_pixels(image) for image, _caption in _generate(service, model, user_npnets[model])[0]]
    own = [_pixels(image) for image, _caption in _generate(service, model, "")[0]]
    assert np.array_equal(again[1], golden) and np.array_equal(again[0], standard)  # same seed, same images
    assert not np.array_equal(golden, standard)
    assert np.array_equal(own[0], standard) and not np.array_equal(own[1], golden)  # the user's net was used
    assert pair.result.settings["npnet"] == user_npnets[model]


@pytest.mark.parametrize("model", MODELS)
def test_seeds_tab_pairs_each_seed_with_the_users_npnet(service, user_npnets, model):
    p = service.preset(model)
    run_seeds = make_run_seeds(service)
    text, table, gallery, pairs = run_seeds(
        PROMPT, "", 3, 2, "toy-brightness", model, user_npnets[model], p.scheduler, 2, p.guidance_scale,
        p.width, p.height, progress=_Progress(),
    )  # fmt: skip
    assert [pr.result.settings["seed"] for pr in pairs] == [3, 4]
    assert len(table) == 2 and len(gallery) == 4
    assert all(pr.result.settings["npnet"] == user_npnets[model] for pr in pairs)


@pytest.mark.parametrize("model", MODELS)
def test_evaluate_tab_runs_the_users_npnet(service, user_npnets, model):
    evaluate, _resume, _stop = make_handlers(service)
    status, summary, _chart, per_prompt, files, run_id, rows = evaluate(
        "", model, "(prompts typed below)", "a red cube\na blue ball", None, 2, "0-1", ["standard", "npnet"],
        ["toy-brightness"], 2, user_npnets[model], progress=_Progress(),
    )  # fmt: skip
    assert "npnet" in set(rows["method"]) and len(rows) == 2 * 2 * 2, status
    run = service.sessions.run_dir(session_of(None), run_id)
    stored = json.loads((run / "manifest.json").read_text())["config"]
    assert stored["npnet"] == user_npnets[model] and stored["model"] == model


def test_user_npnet_of_another_family_is_refused_with_the_reason(service, user_npnets):
    from gradio import Error

    with pytest.raises(Error) as info:
        _generate(service, "tiny-sd15", user_npnets["tiny-flux"])
    message = str(info.value)
    assert "trained for a Flux model" in message and "choose a Flux model" in message, message
    assert load_npnet(user_npnets["tiny-flux"]).config.latent_channels == 16
