"""Generation on the tiny SDXL and Hunyuan-DiT backends: determinism, agreement with plain pipeline calls."""

import dataclasses
import threading

import numpy as np
import pytest
import torch

import npnet.engine.generation as generation
from npnet.diffusion.redenoise import redenoise_trace
from npnet.diffusion.sampling import encode_prompt, initial_latents, run_pipeline, with_scheduler
from npnet.diffusion.schedulers import scheduler_names
from npnet.engine import GenerationRequest, GoldenNoiseService

MODELS = ["tiny-sdxl", "tiny-hunyuan-dit"]
PROMPT = "a red cube on a blue table"


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", progress=False, max_loaded=2)


def _np(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _plain(pipe, latents, seed, steps, cfg, **kw):
    """A plain diffusers call with the given x_T and the sampler generator the service uses."""
    extra = {"use_resolution_binning": False} if type(pipe).__name__ == "HunyuanDiTPipeline" else {}
    return pipe(
        prompt=PROMPT,
        latents=latents,
        num_inference_steps=steps,
        guidance_scale=cfg,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(seed),
        **extra,
        **kw,
    ).images[0]


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_same_images_and_latent_from_a_cpu_generator(service, model):
    request = GenerationRequest(model, PROMPT, seed=3, methods=("standard", "npnet"))
    a, b = service.generate(request), service.generate(request)
    for method in ("standard", "npnet"):
        assert np.array_equal(_np(a.images[method]), _np(b.images[method]))
        assert torch.equal(a.latents[method], b.latents[method])
        assert a.latents[method].shape == (1, 4, 8, 8) and a.latents[method].dtype == torch.float32
    expected = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(3))
    assert torch.equal(a.latents["standard"], expected)
    other = service.generate(GenerationRequest(model, PROMPT, seed=4, methods=("standard",)))
    assert not torch.equal(other.latents["standard"], a.latents["standard"])
    assert a.images["standard"].size == (64, 64)
    assert {"encode", "npnet", "denoise", "total"} <= set(a.timings) and a.peak_memory["rss_high_water"] > 0


@pytest.mark.parametrize("model", MODELS)
def test_standard_equals_a_plain_pipeline_call(service, model):
    result = service.generate(
        GenerationRequest(model, PROMPT, seed=5, scheduler="default", methods=("standard",))
    )
    pipe = service.load(model).pipe
    plain = _plain(
        pipe, result.latents["standard"], 5, result.settings["steps"], result.settings["guidance_scale"]
    )
    assert np.array_equal(_np(result.images["standard"]), _np(plain))


@pytest.mark.parametrize("model", MODELS)
def test_golden_is_npnet_of_x_T_and_equals_a_pipeline_call_on_it(service, model):
    result = service.generate(GenerationRequest(model, PROMPT, seed=6, batched=False))
    loaded = service.load(model)
    net = service.npnet(model)
    embeds = encode_prompt(loaded.pipe, PROMPT)
    assert torch.equal(result.prompt_embeds, embeds.condition)  # the NPNet condition, encoded once
    with torch.inference_mode():
        golden = net(result.latents["standard"], embeds.condition)
    assert torch.equal(result.latents["npnet"], golden)
    assert not torch.allclose(result.latents["npnet"], result.latents["standard"], atol=1e-2)
    settings = result.settings
    view = with_scheduler(loaded.pipe, settings["scheduler"])
    ref = _plain(view, golden, 6, settings["steps"], settings["guidance_scale"])
    assert np.array_equal(_np(result.images["npnet"]), _np(ref))
    assert not np.array_equal(_np(result.images["npnet"]), _np(result.images["standard"]))


@pytest.mark.parametrize("model", MODELS)
def test_inversion_uses_redenoise_of_x_T(service, model):
    result = service.generate(GenerationRequest(model, PROMPT, seed=2, methods=("standard", "inversion")))
    loaded = service.load(model)
    settings = result.settings
    expected = redenoise_trace(
        loaded.pipe,
        result.latents["standard"],
        encode_prompt(loaded.pipe, PROMPT),
        settings["redenoise_steps"],
        settings["redenoise_guidance_scale"],
        settings["inversion_guidance_scale"],
        start=settings["redenoise_start"],
    ).x_prime
    assert torch.equal(result.latents["inversion"], expected) and "redenoise" in result.timings


@pytest.mark.parametrize("model", MODELS)
def test_batched_pair_equals_sequential_pair(service, model):
    loaded = service.load(model)
    view = with_scheduler(loaded.pipe, "euler-a", progress=False)  # stochastic: per-image generators matter
    embeds = encode_prompt(loaded.pipe, PROMPT)
    x_T = initial_latents(loaded.pipe, 1, 64, 64)
    pair = torch.cat([x_T, x_T.flip(-1)])  # (2, 4, 8, 8)
    batched = run_pipeline(view, embeds, pair, 3, 5.0, 64, 64, seed=1, output_type="np")  # (2, 64, 64, 3)
    sequential = [run_pipeline(view, embeds, x, 3, 5.0, 64, 64, seed=1, output_type="np")[0] for x in pair.split(1)]
    np.testing.assert_allclose(np.stack(batched), np.stack(sequential), atol=1e-4)
    a = service.generate(GenerationRequest(model, PROMPT, seed=1, scheduler="euler-a"))
    b = service.generate(GenerationRequest(model, PROMPT, seed=1, scheduler="euler-a", batched=False))
    assert a.settings["batched_used"] and not b.settings["batched_used"]
    for method in ("standard", "npnet"):
        assert np.abs(_np(a.images[method]) - _np(b.images[method])).max() <= 1


def test_out_of_memory_falls_back_to_sequential(service, monkeypatch):
    """generate's one OOM path is generate_many's: the pair's call is halved to one image per call."""
    real = generation.run_pipeline

    def fake(view, embeds, latents, *args, **kwargs):
        if latents.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(view, embeds, latents, *args, **kwargs)

    monkeypatch.setattr(generation, "run_pipeline", fake)
    result = service.generate(GenerationRequest("tiny-sdxl", PROMPT, seed=9))
    monkeypatch.undo()
    reference = service.generate(GenerationRequest("tiny-sdxl", PROMPT, seed=9, batched=False))
    assert result.settings["batched"] and not result.settings["batched_used"]
    for method in ("standard", "npnet"):
        assert np.array_equal(_np(result.images[method]), _np(reference.images[method]))


@pytest.mark.parametrize("model", MODELS)
def test_every_scheduler_name_works_and_the_shared_pipeline_is_untouched(service, model):
    pipe = service.load(model).pipe
    scheduler, config = pipe.scheduler, dict(pipe.scheduler.config)
    for name in scheduler_names():
        result = service.generate(
            GenerationRequest(model, PROMPT, steps=2, scheduler=name, methods=("standard",))
        )
        image = _np(result.images["standard"])
        assert image.shape == (64, 64, 3) and result.settings["scheduler"] == name
    assert pipe.scheduler is scheduler and dict(pipe.scheduler.config) == config
    assert type(pipe.scheduler).__name__ == pipe.config["scheduler"][1]


def test_concurrent_requests_match_sequential_ones(service):
    requests = [
        GenerationRequest("tiny-sdxl", PROMPT, seed=11, scheduler="dpm++2m", steps=3),
        GenerationRequest("tiny-sdxl", "a green ball", seed=12, scheduler="euler", steps=2),
    ]
    expected = [service.generate(r) for r in requests]
    results = [None, None]

    def run(i):
        results[i] = service.generate(requests[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert np.array_equal(_np(got.images["npnet"]), _np(want.images["npnet"]))


def test_generate_seeds_and_negative_prompt(service):
    request = GenerationRequest("tiny-sdxl", PROMPT, methods=("standard",))
    results = service.generate_seeds(request, [0, 1])
    assert [r.settings["seed"] for r in results] == [0, 1]
    assert not torch.equal(results[0].latents["standard"], results[1].latents["standard"])
    negative = service.generate(
        GenerationRequest("tiny-sdxl", PROMPT, negative_prompt="blurry", methods=("standard",))
    )
    assert not np.array_equal(_np(negative.images["standard"]), _np(results[0].images["standard"]))


@pytest.mark.parametrize("model", MODELS)
def test_redenoise_defaults_to_the_sampling_schedule_and_its_own_w_l(service, model):
    """x'_T is built on the sampler's schedule (steps and first timestep); w_l moves x'_T, never the sampling."""
    base = GenerationRequest(model, PROMPT, seed=4, steps=3, methods=("standard", "inversion"))
    default = service.generate(base)
    settings = default.settings
    assert settings["redenoise_steps"] == settings["steps"] == 3
    assert settings["redenoise_guidance_scale"] == settings["guidance_scale"]
    wider = service.generate(dataclasses.replace(base, redenoise_guidance_scale=9.0))
    assert wider.settings["redenoise_guidance_scale"] == 9.0 and wider.settings["guidance_scale"] == settings["guidance_scale"]
    assert not torch.allclose(wider.latents["inversion"], default.latents["inversion"], atol=1e-4)
    assert np.array_equal(_np(wider.images["standard"]), _np(default.images["standard"]))
