"""Micro flow world: SD3 components, the null-token training context, the flow objective, resumable training."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from npnet.worlds.micro_flow.components import (
    CLIP_LENGTH,
    LATENT_CHANNELS,
    T5_LENGTH,
    FlowConfig,
    build_components,
    build_pipeline,
    build_transformer,
)
from npnet.worlds.micro_flow.null_tokens import RepeatedNullAttnProcessor, trailing_run
from npnet.worlds.micro_flow.pipeline import load_micro_flow_pipeline
from npnet.worlds.micro_flow.quality import check_flow_generator
from npnet.worlds.micro_flow.train import FlowTrainConfig, train_flow

TINY = FlowConfig(
    text_hidden=8,
    text_layers=2,
    text_heads=2,
    text_intermediate=16,
    num_layers=2,
    num_heads=2,
    head_dim=8,
    vae_channels=(8, 8, 8, 8),
    vae_norm_groups=4,
)
TINY_TRAIN = FlowTrainConfig(
    vae_steps=3, flow_steps=3, vae_batch_size=2, batch_size=4, cache_size=16, warmup=2, model=TINY
)


def _encode(pipe, prompts, length):
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompts,
        None,
        None,
        device=torch.device("cpu"),
        do_classifier_free_guidance=False,
        max_sequence_length=length,
    )
    return embeds, pooled


def test_components_run_in_the_real_sd3_pipeline_without_t5(tmp_path):
    pipe = build_pipeline(build_components(tmp_path / "tok", TINY))
    embeds, pooled = _encode(pipe, ["a red circle"], T5_LENGTH)
    assert embeds.shape == (1, CLIP_LENGTH + T5_LENGTH, TINY.text_dim) and pooled.shape == (1, TINY.text_dim)
    assert torch.equal(embeds[:, CLIP_LENGTH:], torch.zeros_like(embeds[:, CLIP_LENGTH:]))
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) and pipe.text_encoder_3 is None

    def run():
        return pipe(
            "a red circle above a blue square",
            num_inference_steps=2,
            height=64,
            width=64,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        ).images

    latents = run()
    assert latents.shape == (1, LATENT_CHANNELS, 8, 8) and pipe.vae_scale_factor == 8
    assert torch.equal(latents, run())


def _stock_and_compressed(tmp_path):
    """The same random transformer twice: diffusers' stock processors, and with the null-run compression."""
    pipe = build_pipeline(build_components(tmp_path / "tok", TINY))
    stock = build_transformer(TINY)
    torch.manual_seed(1)
    for p in stock.parameters():  # the output projection starts at zero: give every weight a value
        torch.nn.init.normal_(p, std=0.2)
    pipe.transformer.load_state_dict(stock.state_dict())
    return pipe, stock


def test_the_run_of_zero_t5_tokens_computed_as_one_equals_the_stock_transformer(tmp_path):
    pipe, stock = _stock_and_compressed(tmp_path)
    assert type(next(iter(stock.attn_processors.values()))).__name__ == "JointAttnProcessor2_0"
    prompts = ["a red circle above a blue square", ""]
    full, pooled = _encode(pipe, prompts, T5_LENGTH)  # (2, 16 + 256, w)
    assert trailing_run(full) == T5_LENGTH
    x = torch.randn(2, LATENT_CHANNELS, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([900.0, 150.0])
    with torch.no_grad():
        kw = {"hidden_states": x, "pooled_projections": pooled, "timestep": t}
        ref = stock(encoder_hidden_states=full, **kw).sample
        out = pipe.transformer(encoder_hidden_states=full, **kw).sample
        one = stock(encoder_hidden_states=full[:, : CLIP_LENGTH + 1], **kw).sample
        mixed = full.clone()
        mixed[0, -1] = 1.0  # no run: the compression is the stock attention
        torch.testing.assert_close(
            pipe.transformer(encoder_hidden_states=mixed, **kw).sample,
            stock(encoder_hidden_states=mixed, **kw).sample,
        )
    assert ref.abs().mean() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert (one - ref).abs().max() > 1e-3  # one zero token alone is not 256 of them
    with pytest.raises(ValueError, match="null_repeats"):
        RepeatedNullAttnProcessor()(pipe.transformer.transformer_blocks[0].attn, x, full, null_repeats=0)


def test_pipeline_images_with_the_compression_equal_the_stock_pipelines(tmp_path):
    pipe, stock = _stock_and_compressed(tmp_path)

    def run(p):
        return p(
            ["a red circle", "two blue squares"],
            num_inference_steps=3,
            guidance_scale=5.0,
            height=64,
            width=64,
            output_type="latent",
            generator=[torch.Generator().manual_seed(s) for s in (0, 1)],
        ).images

    compressed = run(pipe)
    pipe.transformer = stock
    torch.testing.assert_close(compressed, run(pipe), rtol=1e-3, atol=1e-4)  # float rounding, x CFG 5


def test_the_training_target_is_the_velocity_the_euler_sampler_integrates():
    """x_t = (1 - s) x0 + s eps at timestep 1000 s; one scheduler step with v = eps - x0 lands on x at s'."""
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    scheduler.set_timesteps(4)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 16, 8, 8, generator=gen), torch.randn(1, 16, 8, 8, generator=gen)
    s, s_next = scheduler.sigmas[1], scheduler.sigmas[2]
    assert torch.isclose(scheduler.timesteps[1], 1000 * s)
    x_t = (1 - s) * x0 + s * eps
    scheduler._step_index = 1
    stepped = scheduler.step(eps - x0, scheduler.timesteps[1], x_t).prev_sample
    torch.testing.assert_close(stepped, (1 - s_next) * x0 + s_next * eps)


def _params(trainer) -> dict[str, torch.Tensor]:
    names = ("vae", "transformer", "text_encoder", "text_encoder_2")
    return {f"{n}.{k}": v for n in names for k, v in trainer.components[n].state_dict().items()}


def test_resumed_flow_training_matches_uninterrupted_run_and_exports_a_loadable_pipeline(tmp_path):
    full = train_flow(tmp_path / "full", TINY_TRAIN, log=lambda s: None)
    parts = tmp_path / "parts"
    train_flow(parts, TINY_TRAIN, stop_after_steps=2, log=lambda s: None)  # inside the VAE phase
    train_flow(parts, TINY_TRAIN, resume=True, stop_after_steps=2, log=lambda s: None)  # across phases
    with pytest.raises(ValueError, match="--resume"):
        train_flow(parts, TINY_TRAIN, log=lambda s: None)
    resumed = train_flow(parts, TINY_TRAIN, resume=True, log=lambda s: None)
    assert resumed.phase == full.phase == "done"
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    vae = resumed.components["vae"].config
    assert vae.shift_factor != 0.0 and vae.scaling_factor != 1.0
    assert vae.shift_factor == full.components["vae"].config.shift_factor
    pipe = load_micro_flow_pipeline(path=parts / "generator")
    assert pipe.transformer.dtype == torch.float32 and pipe.vae.config.shift_factor == vae.shift_factor
    assert type(next(iter(pipe.transformer.attn_processors.values()))).__name__ == "RepeatedNullAttnProcessor"
    report = check_flow_generator(path=parts / "generator", n_prompts=2, seeds=2, steps=[1, 2], shift=3.0)
    assert report["shift"] == 3.0 and [r["steps"] for r in report["by_steps"]] == [1, 2]
    assert all(r["prompts"] == 2 and 0.0 <= r["accuracy"] <= 1.0 for r in report["by_steps"])


def test_warm_start_from_an_export_continues_at_its_step_with_its_weights(tmp_path):
    from dataclasses import replace

    from npnet.worlds.micro.warm_start import read_train_state

    first = train_flow(tmp_path / "a", replace(TINY_TRAIN, flow_steps=2), log=lambda s: None)
    export = tmp_path / "a" / "generator"
    assert read_train_state(export)["phase"] == "flow" and read_train_state(export)["step"] == 2
    longer = replace(TINY_TRAIN, flow_steps=4)
    warm = train_flow(tmp_path / "b", longer, init_from=export, stop_after_steps=0, log=lambda s: None)
    assert (warm.phase, warm.step, warm.warm_from) == ("flow", 2, 2)
    assert warm._lr_scale() == 0.5  # the warmup restarts: (2 - 2 + 1) / warmup 2
    shipped = load_micro_flow_pipeline(path=export).transformer.state_dict()
    mine = warm.components["transformer"].state_dict()
    assert all(torch.equal(mine[k], shipped[k].float()) for k in shipped)
    params = dict(warm.components["transformer"].named_parameters())
    assert all(torch.equal(warm.ema[f"transformer.{k}"], p) for k, p in params.items())  # EMA = exported
    for key in ("shift_factor", "scaling_factor"):
        assert warm.components["vae"].config[key] == first.components["vae"].config[key]
    assert warm.cache["mean"].shape == (TINY_TRAIN.cache_size, LATENT_CHANNELS, 8, 8)
    done = train_flow(tmp_path / "b", longer, resume=True, init_from=export, log=lambda s: None)
    assert done.phase == "done" and read_train_state(tmp_path / "b" / "generator")["step"] == 4
    with pytest.raises(ValueError, match="train_state.json.*--export-to"):
        train_flow(tmp_path / "c", longer, init_from=tmp_path / "a", log=lambda s: None)


def test_missing_flow_generator_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="micro-flow .*train-generator"):
        load_micro_flow_pipeline(path=tmp_path / "nowhere")
