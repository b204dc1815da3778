"""Re-denoise with DPM-Solver and its inverse (App. A.5, DreamShaper-xl-v2-turbo) on the tiny pipelines."""

import pytest
import torch

from npnet.diffusion import redenoise
from npnet.diffusion.families import get_family
from npnet.diffusion.presets import MODEL_PRESETS
from npnet.diffusion.redenoise import dpm_schedulers, redenoise_trace
from npnet.diffusion.sampling import encode_prompt, initial_latents
from npnet.engine import GenerationRequest, GoldenNoiseService, resolve_sampling
from npnet.errors import UserError
from npnet.worlds.tiny import build_tiny_hunyuan_dit, build_tiny_sdxl

PROMPT = "a red cube on a blue table"


@pytest.fixture(scope="module", params=["sdxl", "hunyuan-dit"])
def setup(request):
    pipe = build_tiny_sdxl() if request.param == "sdxl" else build_tiny_hunyuan_dit()
    pipe.set_progress_bar_config(disable=True)
    return pipe, encode_prompt(pipe, PROMPT), initial_latents(pipe, 7, 64, 64)


def test_dpm_runs_on_its_own_schedule_and_lands_at_the_start_level(setup):
    pipe, embeds, x_T = setup
    forward, _ = dpm_schedulers(pipe, 4)
    own = [int(t) for t in forward.timesteps]
    trace = redenoise_trace(pipe, x_T, embeds, 4, 5.5, 1.0, solver="dpmsolver")
    ddim = redenoise_trace(pipe, x_T, embeds, 4, 5.5, 1.0)
    assert (trace.t_start, trace.t_mid) == (own[0], own[1]) and trace.solver == "dpmsolver"
    assert (trace.t_eval, trace.t_from, trace.t_to) == (own[1], own[1], own[0])  # the mirrored step
    assert torch.isfinite(trace.x_prime).all() and trace.x_prime.shape == x_T.shape
    assert (trace.t_start, trace.t_mid) != (ddim.t_start, ddim.t_mid)  # leading 1000//(N+1) vs 1000//N
    assert not torch.allclose(trace.x_prime, ddim.x_prime, atol=1e-3)


def test_first_order_dpm_equals_ddim_between_the_same_levels(setup):
    """DPM-Solver(++) 1st order is the DDIM update: start 751, DPM at 3 steps (step 250) = DDIM at 4 steps."""
    pipe, embeds, x_T = setup
    dpm = redenoise_trace(pipe, x_T, embeds, 3, 5.5, 1.0, start=751, solver="dpmsolver")
    ddim = redenoise_trace(pipe, x_T, embeds, 4, 5.5, 1.0, start=751)
    assert (dpm.t_start, dpm.t_mid, dpm.t_to) == (ddim.t_start, ddim.t_mid, ddim.t_to) == (751, 501, 751)
    torch.testing.assert_close(dpm.x_mid, ddim.x_mid, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(dpm.x_prime, ddim.x_prime, atol=2e-5, rtol=1e-5)


def test_with_a_fixed_model_output_the_round_trip_returns_x_T(monkeypatch):
    """Forward then inverse DPM step with the same epsilon undo each other exactly (mirrored levels)."""
    pipe = build_tiny_sdxl()
    x_T = initial_latents(pipe, 3, 64, 64)
    eps = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(redenoise, "guided_output", lambda *args: eps)
    monkeypatch.setattr(redenoise, "inversion_output", lambda *args: eps)
    for start in (None, 700):  # on the DPM schedule, and off it (custom timesteps)
        trace = redenoise_trace(pipe, x_T, None, 4, 5.5, 1.0, start=start, solver="dpmsolver")
        assert not torch.allclose(trace.x_mid, x_T, atol=1e-2)
        torch.testing.assert_close(trace.x_prime, x_T, atol=1e-5, rtol=1e-5)
    official = redenoise_trace(pipe, x_T, None, 4, 5.5, 1.0, mode="official", solver="dpmsolver")
    assert official.t_to > official.t_start  # the inverse scheduler's own grid overshoots x_T's level
    assert not torch.allclose(official.x_prime, x_T, atol=1e-2)


def test_the_solver_is_a_preset_setting_recorded_with_the_settings():
    assert MODEL_PRESETS["dreamshaper-xl-v2-turbo"].redenoise_solver == "dpmsolver"
    assert MODEL_PRESETS["dreamshaper-xl-v2-turbo"].collect_steps == 4
    others = [p for n, p in MODEL_PRESETS.items() if n != "dreamshaper-xl-v2-turbo"]
    flow = {p.name for p in others if get_family(p.family).scheduler_kind == "flow"}  # SD3, Flux
    assert flow and all(p.redenoise_solver == ("flow-euler" if p.name in flow else "ddim") for p in others)
    assert resolve_sampling(MODEL_PRESETS["dreamshaper-xl-v2-turbo"])["redenoise_solver"] == "dpmsolver"
    assert resolve_sampling(MODEL_PRESETS["tiny-sdxl"], redenoise_solver="dpmsolver")["redenoise_solver"] == (
        "dpmsolver"
    )
    with pytest.raises(UserError, match="unknown re-denoise solver 'euler'"):
        resolve_sampling(MODEL_PRESETS["tiny-sdxl"], redenoise_solver="euler")


def test_the_engine_threads_the_solver_into_the_inversion_latent():
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    request = GenerationRequest(model="tiny-sdxl", prompt=PROMPT, seed=5, steps=4, methods=("inversion",))
    ddim = service.generate(request)
    dpm = service.generate(GenerationRequest(**{**request.__dict__, "redenoise_solver": "dpmsolver"}))
    assert (ddim.settings["redenoise_solver"], dpm.settings["redenoise_solver"]) == ("ddim", "dpmsolver")
    pipe = service.load("tiny-sdxl", with_npnet=False).pipe
    expected = redenoise_trace(
        pipe, initial_latents(pipe, 5, 64, 64), encode_prompt(pipe, PROMPT), 4, dpm.settings["redenoise_guidance_scale"], 1.0,
        start=dpm.settings["redenoise_start"], solver="dpmsolver",
    ).x_prime  # fmt: skip
    torch.testing.assert_close(dpm.latents["inversion"], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(dpm.latents["inversion"], ddim.latents["inversion"], atol=1e-3)
