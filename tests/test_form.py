"""The Generate form -> GenerationRequest: one place that validates and defaults what a user typed."""

import pytest

from npnet.diffusion.presets import get_model_preset
from npnet.errors import UserError
from studio.form import GenerateForm, whole_number
from studio.service import StudioService


class _Service:
    """What the form asks of the app service: the models offered, presets and the default NPNet."""

    def models(self):
        return ["micro", "tiny-sdxl"]

    def preset(self, model):
        return get_model_preset(model)

    def default_npnet(self, model):
        return get_model_preset(model).npnet_checkpoint or ""

    def check_npnet(self, model, spec, session):
        if spec == "not-allowed":
            raise UserError("NPNet 'not-allowed' is not offered on this shared server")
        return spec

    npnet_override = StudioService.npnet_override  # the real resolution, on this stub's answers


def _form(**changes) -> GenerateForm:
    base = GenerateForm.defaults(_Service(), "micro", "a red circle", 7)
    return GenerateForm(**{**base.__dict__, **changes})


def test_defaults_are_the_presets_settings_and_its_own_npnet_is_no_override():
    request = _form().request(_Service(), ["standard", "npnet"])
    micro = get_model_preset("micro")
    assert (request.steps, request.guidance_scale, request.width, request.height) == (
        micro.steps, micro.guidance_scale, micro.width, micro.height,
    )  # fmt: skip
    assert request.npnet is None and request.seed == 7 and request.methods == ("standard", "npnet")


def test_gradio_floats_become_ints_and_a_chosen_checkpoint_is_kept():
    request = _form(seed=3.0, steps=8.0, width=64.0, npnet=" runs/x/npnet.safetensors ").request(
        _Service(), ["npnet"]
    )
    assert (request.seed, request.steps, request.width) == (3, 8, 64)
    assert request.npnet == "runs/x/npnet.safetensors"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt": "  "}, "prompt is empty"),
        ({"model": "sdxl"}, "not available here; choose one of micro, tiny-sdxl"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"height": 63.5}, "height must be a whole number"),
        ({"steps": float("nan")}, "steps must be a whole number"),
        ({"steps": 0}, "steps must be a whole number >= 1"),
        ({"guidance_scale": float("inf")}, "guidance scale must be a finite number"),
        ({"seed": "abc"}, "seed must be a whole number"),
        ({"npnet": "not-allowed"}, "not offered on this shared server"),
    ],
)
def test_bad_fields_say_the_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        _form(**changes).request(_Service(), ["standard"])


def test_no_method_is_an_error():
    with pytest.raises(ValueError, match="choose at least one method"):
        _form().request(_Service(), [])


def test_whole_number_accepts_integral_values_only():
    assert whole_number("n", "12") == 12 and whole_number("n", 4.0, low=4) == 4
    for bad in (None, "", True, -1, 2.5, float("inf")):
        with pytest.raises(ValueError):
            whole_number("n", bad)


def test_re_denoise_settings_are_optional_and_checked():
    plain = _form().request(_Service(), ["inversion"])
    assert (plain.redenoise_guidance_scale, plain.inversion_guidance_scale, plain.redenoise_steps) == (None, None, None)
    set_ = _form(redenoise_cfg=9, inversion_cfg=0.5, redenoise_steps=10.0).request(_Service(), ["inversion"])
    assert (set_.redenoise_guidance_scale, set_.inversion_guidance_scale, set_.redenoise_steps) == (9.0, 0.5, 10)
    with pytest.raises(UserError, match="re-denoise steps must be a whole number >= 2"):
        _form(redenoise_steps=1).request(_Service(), ["inversion"])


def test_seed_grid_counts_rescued_and_broken_seeds_for_a_binary_verifier():
    import pandas as pd

    from studio.tabs.seeds import binary_summary

    table = pd.DataFrame(
        {"seed": [0, 1, 2, 3, 4], "standard": [0.1, 0.9, 0.2, 0.8, 0.3], "npnet": [0.7, 0.95, 0.1, 0.2, 0.6]}
    )
    text = binary_summary(table, "micro")
    assert "standard 2 of 5, NPNet 3" in text and "2 rescued** [0, 4]" in text and "1 broken** [3]" in text
    assert binary_summary(table, "toy-brightness") == ""
