"""Re-denoise sampling vs a direct computation of Eq. 1-2 and the closed form of Eq. 12-13 (Theorem E.1)."""

import copy

import pytest
import torch

from npnet.diffusion.redenoise import first_timestep, guided_output, model_outputs, redenoise_trace
from npnet.diffusion.sampling import encode_prompt, initial_latents, with_scheduler
from npnet.worlds.tiny import build_tiny_hunyuan_dit, build_tiny_sdxl

STEPS = 4
K = 1000 // STEPS  # DDIM step size in timesteps
PROMPT = "a red cube on a blue table"


def x_prime(*args, **kwargs) -> torch.Tensor:
    """x'_T of a re-denoise round trip."""
    return redenoise_trace(*args, **kwargs).x_prime


@pytest.fixture(scope="module", params=["sdxl", "hunyuan-dit"])
def setup(request):
    pipe = build_tiny_sdxl() if request.param == "sdxl" else build_tiny_hunyuan_dit()
    pipe.set_progress_bar_config(disable=True)
    return pipe, encode_prompt(pipe, PROMPT), initial_latents(pipe, 7, 64, 64)


def _levels(pipe, t):
    """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) in float64 (the paper's notation)."""
    abar = pipe.scheduler.alphas_cumprod.double()[t]
    return abar.sqrt(), (1 - abar).sqrt()


def _eps(pipe, out, x, t):
    """Model output -> epsilon at level t (v-prediction: eps = alpha v + sigma x)."""
    out, x = out.double(), x.double()
    if pipe.scheduler.config.prediction_type == "v_prediction":
        alpha, sigma = _levels(pipe, t)
        return alpha * out + sigma * x
    return out


def _guided_eps(pipe, x, t_model, t_level, embeds, w):
    """(eps_u, eps_c) and the CFG combination eps_u + w (eps_c - eps_u) in float64."""
    uncond, cond = model_outputs(pipe, x.float(), t_model, embeds, w)
    eu, ec = _eps(pipe, uncond.cpu(), x, t_level), _eps(pipe, cond.cpu(), x, t_level)
    return eu, ec, eu + w * (ec - eu)


def _ddim(pipe, x, eps, t_from, t_to):
    """Eq. 1 / Eq. 2: x_to = alpha_to (x - sigma_from eps) / alpha_from + sigma_to eps."""
    a_from, s_from = _levels(pipe, t_from)
    a_to, s_to = _levels(pipe, t_to)
    return a_to * (x - s_from * eps) / a_from + s_to * eps


@pytest.mark.parametrize("mode", ["correct", "official"])
def test_matches_a_direct_computation_of_eq_1_2(setup, mode):
    pipe, embeds, x_T = setup
    w_l, w_w = 5.5, 1.0
    trace = redenoise_trace(pipe, x_T, embeds, STEPS, w_l, w_w, mode=mode)
    t0 = (STEPS - 1) * K + 1  # leading spacing, steps_offset 1
    assert (trace.t_start, trace.t_mid) == (t0, t0 - K)
    if mode == "correct":  # eps at x_{T-k}'s own timestep, back up to T
        assert (trace.t_eval, trace.t_from, trace.t_to) == (t0 - K, t0 - K, t0)
    else:  # official: eps at T, inverse scheduler called with the next timestep -> one step short
        assert (trace.t_eval, trace.t_from, trace.t_to) == (t0, t0 - 2 * K, t0 - K)
    x = x_T.double()
    _, _, e0 = _guided_eps(pipe, x_T, t0, t0, embeds, w_l)
    x_mid = _ddim(pipe, x, e0, t0, t0 - K)
    torch.testing.assert_close(trace.x_mid.double(), x_mid, atol=2e-5, rtol=1e-5)
    _, _, e1 = _guided_eps(pipe, x_mid, trace.t_eval, trace.t_from, embeds, w_w)
    x_prime = _ddim(pipe, x_mid, e1, trace.t_from, trace.t_to)
    torch.testing.assert_close(trace.x_prime.double(), x_prime, atol=2e-5, rtol=1e-5)
    assert not torch.allclose(trace.x_prime, x_T, atol=1e-3)


@pytest.mark.parametrize("mode", ["correct", "official"])
def test_residual_equals_the_closed_form_of_eq_12_13(setup, mode):
    pipe, embeds, x_T = setup
    w_l, w_w = 5.5, 1.0
    trace = redenoise_trace(pipe, x_T, embeds, STEPS, w_l, w_w, mode=mode)
    T, mid = trace.t_start, trace.t_mid
    (a_T, s_T), (a_m, s_m) = _levels(pipe, T), _levels(pipe, mid)
    (a_f, s_f), (a_t, s_t) = _levels(pipe, trace.t_from), _levels(pipe, trace.t_to)
    # Eq. 12 generalised to the levels each mode uses: x'_T = A x_T + B eps(x_T, T) + C eps(x_{T-k}, .)
    A = a_t * a_m / (a_f * a_T)
    B = (a_t / a_f) * (s_m - a_m * s_T / a_T)
    C = s_t - a_t * s_f / a_f
    if (
        mode == "correct"
    ):  # exactly Eq. 12: A = 1, B = -C = (alpha_T sigma_{T-k} - alpha_{T-k} sigma_T) / alpha_{T-k}
        coef = (a_T * s_m - a_m * s_T) / a_m
        torch.testing.assert_close(torch.stack([A, B, C]), torch.stack([torch.ones_like(A), coef, -coef]))
    x = x_T.double()
    eu0, ec0, _ = _guided_eps(pipe, x_T, T, T, embeds, w_l)
    x_mid = trace.x_mid.double()
    eu1, ec1, _ = _guided_eps(pipe, x_mid, trace.t_eval, trace.t_from, embeds, w_w)
    om_l, om_w = w_l - 1, w_w - 1  # paper Eq. 3: (omega + 1) eps_c - omega eps_u, omega = w - 1
    e0 = (om_l + 1) * ec0 - om_l * eu0
    e1 = (om_w + 1) * ec1 - om_w * eu1
    residual = (A - 1) * x + B * e0 + C * e1  # Eq. 13 (and its official-mode counterpart)
    torch.testing.assert_close(trace.x_prime.double() - x, residual, atol=2e-5, rtol=1e-5)


def test_injection_along_the_guidance_direction_grows_with_the_cfg_gap(setup):
    """Theorem E.1: the residual's component along eps(x_T,c) - eps(x_T,0) grows with w_l - w_w."""
    pipe, embeds, x_T = setup
    T, mid = (STEPS - 1) * K + 1, (STEPS - 2) * K + 1
    (a_T, s_T), (a_m, s_m) = _levels(pipe, T), _levels(pipe, mid)
    coef = (a_T * s_m - a_m * s_T) / a_m
    eu, ec, _ = _guided_eps(pipe, x_T, T, T, embeds, 1.0)
    d = ec - eu
    gaps = (0.0, 1.0, 2.5, 4.5, 6.5)
    comps = []
    for gap in gaps:
        moved = x_prime(pipe, x_T, embeds, STEPS, 1.0 + gap, 1.0)
        residual = (moved.double() - x_T.double()) / coef
        comps.append(float((residual * d).sum() / (d * d).sum()))
    assert all(b > a for a, b in zip(comps, comps[1:])), comps
    if pipe.scheduler.config.prediction_type == "epsilon":  # Eq. 14: no gap, (almost) no injection
        assert abs(comps[0]) < 0.1 * abs(comps[3])


def test_first_ddim_step_is_the_pipelines_own(setup):
    """The guided prediction uses the pipeline's call conventions: its DDIM step 0 gives x_{T-k}."""
    pipe, embeds, x_T = setup
    view = with_scheduler(pipe, "ddim", progress=False)
    captured = {}

    def grab(_, i, t, kwargs):
        if i == 0:
            captured["x"] = kwargs["latents"].clone()
        return kwargs

    extra = {"use_resolution_binning": False} if embeds.family == "hunyuan-dit" else {}
    view(
        prompt=PROMPT,
        latents=x_T,
        num_inference_steps=STEPS,
        guidance_scale=5.5,
        height=64,
        width=64,
        output_type="latent",
        callback_on_step_end=grab,
        **extra,
    )
    trace = redenoise_trace(pipe, x_T, embeds, STEPS, 5.5, 1.0)
    torch.testing.assert_close(trace.x_mid, captured["x"].float(), atol=1e-5, rtol=1e-5)


def test_trailing_spacing_round_trip_stays_consistent(setup):
    pipe, embeds, x_T = setup
    trailing = copy.copy(pipe)
    trailing.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing="trailing")
    trace = redenoise_trace(trailing, x_T, embeds, STEPS, 5.5, 1.0)
    assert (trace.t_start, trace.t_mid, trace.t_to) == (999, 999 - K, 999)
    _, _, e0 = _guided_eps(pipe, x_T, 999, 999, embeds, 5.5)
    torch.testing.assert_close(
        trace.x_mid.double(), _ddim(pipe, x_T.double(), e0, 999, 999 - K), atol=2e-5, rtol=0
    )
    assert pipe.scheduler.config.timestep_spacing == "leading"


def test_batch_and_determinism(setup):
    pipe, embeds, x_T = setup
    other = initial_latents(pipe, 8, 64, 64)
    both = x_prime(pipe, torch.cat([x_T, other]), embeds, STEPS, 5.5, 1.0)  # (2, 4, 8, 8)
    assert both.shape == (2, 4, 8, 8) and both.dtype == torch.float32 and both.device.type == "cpu"
    torch.testing.assert_close(both[:1], x_prime(pipe, x_T, embeds, STEPS, 5.5, 1.0), atol=1e-5, rtol=1e-5)
    assert torch.equal(
        x_prime(pipe, x_T, embeds, STEPS, 5.5, 1.0), x_prime(pipe, x_T, embeds, STEPS, 5.5, 1.0)
    )


def test_bad_mode_and_steps(setup):
    pipe, embeds, x_T = setup
    with pytest.raises(ValueError, match="unknown re-denoise mode 'paper'.*correct, official"):
        x_prime(pipe, x_T, embeds, STEPS, 5.5, 1.0, mode="paper")
    with pytest.raises(ValueError, match="steps >= 2"):
        x_prime(pipe, x_T, embeds, 1, 5.5, 1.0)


def test_guidance_at_most_one_uses_the_conditional_prediction_like_the_pipelines(setup):
    pipe, embeds, x_T = setup
    _, cond = model_outputs(pipe, x_T, 751, embeds)
    assert torch.equal(guided_output(pipe, x_T, 751, embeds, 0.5), cond)
    assert torch.equal(guided_output(pipe, x_T, 751, embeds, 1.0), cond)
    torch.testing.assert_close(
        x_prime(pipe, x_T, embeds, STEPS, 0.0, 1.0), x_prime(pipe, x_T, embeds, STEPS, 1.0, 1.0)
    )


@pytest.mark.parametrize("w_w", [0.0, 0.5, 2.0])
def test_inversion_guidance_applies_the_official_formula_for_any_weight(setup, w_w):
    """Eq. 2 with eps_u + w_w (eps_c - eps_u), w_w < 1 included (the official code; not the pipelines'
    'no CFG below 1' rule, which would silently turn w_w = 0.5 into 1)."""
    pipe, embeds, x_T = setup
    trace = redenoise_trace(pipe, x_T, embeds, STEPS, 5.5, w_w)
    T, mid = trace.t_start, trace.t_mid
    _, _, e1 = _guided_eps(pipe, trace.x_mid, mid, mid, embeds, w_w)
    expected = _ddim(pipe, trace.x_mid.double(), e1, mid, T)
    torch.testing.assert_close(trace.x_prime.double(), expected, atol=2e-5, rtol=0)
    if w_w != 1.0:
        assert not torch.allclose(trace.x_prime, x_prime(pipe, x_T, embeds, STEPS, 5.5, 1.0), atol=1e-4)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("steps", [5, 6])
@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpm++2m"])
def test_redenoise_on_the_sampling_schedule_lands_on_the_samplers_first_level(setup, spacing, steps, sampler):
    """With the DDIM step size of the sampling schedule (steps = sampling steps), x'_T sits exactly at the
    first noise level the sampler starts from, and equals the closed form of Eq. 1-2 there."""
    pipe, embeds, x_T = setup
    spaced = copy.copy(pipe)
    spaced.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing=spacing)
    view = with_scheduler(spaced, sampler, progress=False)
    first = first_timestep(view, steps)
    view.scheduler.set_timesteps(steps)
    assert first == int(view.scheduler.timesteps[0])  # DPM++ 'leading' starts at 831 for 5 steps, DDIM at 801
    trace = redenoise_trace(spaced, x_T, embeds, steps, 5.5, 1.0, start=first)
    assert trace.t_start == trace.t_to == first
    assert trace.t_mid == first - 1000 // steps  # diffusers' DDIM step size (trailing 6 steps: 999 -> 833)
    _, _, e0 = _guided_eps(pipe, x_T, first, first, embeds, 5.5)
    x_mid = _ddim(pipe, x_T.double(), e0, first, trace.t_mid)
    _, _, e1 = _guided_eps(pipe, x_mid.float(), trace.t_mid, trace.t_mid, embeds, 1.0)
    torch.testing.assert_close(trace.x_prime.double(), _ddim(pipe, x_mid, e1, trace.t_mid, first), atol=5e-5, rtol=0)
