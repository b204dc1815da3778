"""Flow-matching re-denoise (Euler sigma_0 -> sigma_1 and back): closed form, round trip, Theorem E.1 for v."""

import pytest
import torch

from npnet.diffusion import redenoise
from npnet.diffusion.flow_redenoise import euler_step, flow_scheduler
from npnet.diffusion.redenoise import model_outputs, redenoise_trace
from npnet.diffusion.sampling import encode_prompt, initial_latents
from npnet.worlds.tiny_families import build_tiny_flux, build_tiny_sd3

PROMPT = "a red cube on a blue table"


@pytest.fixture(scope="module", params=["sd3", "flux"])
def setup(request):
    pipe = build_tiny_sd3() if request.param == "sd3" else build_tiny_flux()
    pipe.set_progress_bar_config(disable=True)
    return pipe, encode_prompt(pipe, PROMPT), initial_latents(pipe, 7, 64, 64)


def _trace(pipe, x_T, embeds, w_l, w_w, steps=4):
    return redenoise_trace(pipe, x_T, embeds, steps, w_l, w_w, solver="flow-euler")


def test_one_euler_step_and_its_inverse_in_closed_form(monkeypatch):
    """With a stand-in velocity field the trip is x_mid = x + (s1 - s0) v(x), x' = x_mid + (s0 - s1) v(x_mid)."""
    pipe = build_tiny_sd3()
    embeds = encode_prompt(pipe, PROMPT)
    x_T = initial_latents(pipe, 0, 64, 64)
    field = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(1))

    def velocity(_pipe, x, t, _embeds, w):  # depends on x, t and the guidance weight
        return w * field + 0.1 * x * float(t) / 1000

    monkeypatch.setattr(redenoise, "guided_output", velocity)
    monkeypatch.setattr(redenoise, "inversion_output", velocity)
    trace = _trace(pipe, x_T, embeds, 5.0, 1.0)
    scheduler = flow_scheduler(pipe, 4, (8, 8))
    s0, s1 = (float(s) for s in scheduler.sigmas[:2])
    t0, t1 = (float(t) for t in scheduler.timesteps[:2])
    assert s0 == 1.0 and 0 < s1 < 1 and (trace.sigma_start, trace.sigma_mid) == (s0, s1)
    x_mid = x_T + (s1 - s0) * velocity(None, x_T, t0, None, 5.0)
    torch.testing.assert_close(trace.x_mid, x_mid)
    torch.testing.assert_close(trace.x_prime, x_mid + (s0 - s1) * velocity(None, x_mid, t1, None, 1.0))
    # a constant field is inverted exactly; the residual is Delta (w_l - w_w) times the guidance direction
    monkeypatch.setattr(redenoise, "guided_output", lambda _p, x, t, _e, w: w * field)
    monkeypatch.setattr(redenoise, "inversion_output", lambda _p, x, t, _e, w: w * field)
    torch.testing.assert_close(_trace(pipe, x_T, embeds, 3.0, 3.0).x_prime, x_T)
    torch.testing.assert_close(_trace(pipe, x_T, embeds, 5.0, 1.0).x_prime, x_T - (s0 - s1) * 4.0 * field)
    assert euler_step(euler_step(x_T, field, s0, s1), field, s1, s0).allclose(x_T)


def test_the_schedule_is_the_samplers_own_static_shift_or_flux_mu(setup):
    """The sigmas equal those a plain pipeline call samples with (SD3: static shift; Flux: mu from size)."""
    pipe, embeds, x_T = setup
    for size, steps in ((64, 4), (128, 6)):
        seen = []

        def record(p, i, t, kwargs, seen=seen):
            seen.append(p.scheduler.sigmas.clone())
            return {}

        pipe(prompt=PROMPT, num_inference_steps=steps, width=size, height=size, output_type="latent",
             callback_on_step_end=record)  # fmt: skip
        ours = flow_scheduler(pipe, steps, (size // 8, size // 8))
        torch.testing.assert_close(ours.sigmas, seen[0].cpu())
        assert float(ours.sigmas[0]) == 1.0
    small, large = flow_scheduler(pipe, 4, (8, 8)), flow_scheduler(pipe, 4, (64, 64))
    dynamic = bool(pipe.scheduler.config.get("use_dynamic_shifting"))
    assert torch.equal(small.sigmas, large.sigmas) != dynamic  # Flux shifts with the resolution, SD3 does not


def test_matches_a_direct_computation_on_the_tiny_pipelines(setup):
    pipe, embeds, x_T = setup
    trace = _trace(pipe, x_T, embeds, 5.0, 1.0)
    s0, s1 = trace.sigma_start, trace.sigma_mid
    scheduler = flow_scheduler(pipe, 4, x_T.shape[-2:])
    t0, t1 = scheduler.timesteps[:2]
    v0 = redenoise.guided_output(pipe, x_T, t0, embeds, 5.0).cpu()
    x_mid = x_T + (s1 - s0) * v0
    torch.testing.assert_close(trace.x_mid, x_mid, atol=1e-5, rtol=1e-5)
    v1 = redenoise.inversion_output(pipe, x_mid, t1, embeds, 1.0).cpu()
    torch.testing.assert_close(trace.x_prime, x_mid + (s0 - s1) * v1, atol=1e-5, rtol=1e-5)
    assert (trace.t_start, trace.t_to) == (1000, 1000) and trace.t_mid == round(1000 * s1)


def test_equal_guidance_returns_to_x_T_as_the_step_shrinks(setup):
    """w_l = w_w: x'_T - x_T = Delta [v(x_mid, s1) - v(x_T, s0)] = O(Delta^2)."""
    pipe, embeds, x_T = setup
    errors = {}
    for steps in (4, 40):
        trace = _trace(pipe, x_T, embeds, 3.0, 3.0, steps=steps)
        errors[steps] = float((trace.x_prime - x_T).norm() / x_T.norm())
        moved = float((trace.x_mid - x_T).norm() / x_T.norm())
        assert errors[steps] < moved  # the inverse step undoes most of the forward one
    assert errors[40] < errors[4] / 20  # second order: (10x smaller step) -> ~100x smaller error
    assert errors[40] < 1e-3


def test_component_along_v_cond_minus_v_uncond_grows_with_w_l_minus_w_w():
    """SD3 (CFG): Eq. 10', x'_T - x_T ~ -Delta (w_l - w_w) (v(x, c) - v(x, empty))."""
    pipe = build_tiny_sd3()
    embeds, x_T = encode_prompt(pipe, PROMPT), initial_latents(pipe, 7, 64, 64)
    t0 = flow_scheduler(pipe, 4, x_T.shape[-2:]).timesteps[0]
    uncond, cond = model_outputs(pipe, x_T, t0, embeds, 2.0)
    d = (cond - uncond).cpu()
    d = d / d.norm()
    along = [float(((_trace(pipe, x_T, embeds, w, 1.0).x_prime - x_T) * -d).sum()) for w in (1.0, 2.0, 4.0, 6.0)]
    assert all(b > a for a, b in zip(along, along[1:])), along
    assert along[-1] > 10 * abs(along[0])  # w_l = w_w leaves only the O(Delta^2) remainder
    gaps = [b - a for a, b in zip(along[1:], along[2:])]  # steps of 2 in w_l: about linear
    assert gaps[1] == pytest.approx(gaps[0], rel=0.3)


def test_flux_dev_moves_along_its_distilled_guidance_direction():
    """Flux-dev: x'_T(w_l) - x'_T(w_w) ~ -Delta (v(x, c, g=w_l) - v(x, c, g=w_w)); schnell: no guidance input."""
    pipe = build_tiny_flux()
    embeds, x_T = encode_prompt(pipe, PROMPT), initial_latents(pipe, 7, 64, 64)
    scheduler = flow_scheduler(pipe, 4, x_T.shape[-2:])
    delta = float(scheduler.sigmas[0] - scheduler.sigmas[1])
    same = _trace(pipe, x_T, embeds, 1.0, 1.0).x_prime
    v1 = redenoise.guided_output(pipe, x_T, scheduler.timesteps[0], embeds, 1.0).cpu()
    for w_l in (2.0, 6.0):
        moved = _trace(pipe, x_T, embeds, w_l, 1.0).x_prime - same
        dv = redenoise.guided_output(pipe, x_T, scheduler.timesteps[0], embeds, w_l).cpu() - v1
        cos = torch.nn.functional.cosine_similarity(moved.flatten(), -dv.flatten(), dim=0)
        assert cos > 0.95 and float(moved.norm()) == pytest.approx(delta * float(dv.norm()), rel=0.15)
    schnell = build_tiny_flux(guidance_embeds=False)
    e = encode_prompt(schnell, PROMPT)
    assert torch.equal(_trace(schnell, x_T, e, 6.0, 1.0).x_prime, _trace(schnell, x_T, e, 1.0, 1.0).x_prime)
