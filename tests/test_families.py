"""Model families: registry, shapes from encode_prompt, Flux packing against FluxPipeline, 16-channel NPNets."""

import dataclasses

import pytest
import torch

from npnet.checkpoints import load_npnet, save_npnet
from npnet.diffusion.families import FAMILIES, family_of, get_family
from npnet.diffusion.presets import MODEL_PRESETS
from npnet.diffusion.sampling import check_npnet_matches, encode_prompt, initial_latents, latent_shape
from npnet.errors import UserError
from npnet.model import NPNET_PRESETS, NPNet
from npnet.worlds.tiny import build_tiny_npnet, build_tiny_sdxl
from npnet.worlds.tiny_families import build_tiny_flux, build_tiny_sd3, build_tiny_sd15

BUILDERS = {"tiny-sd15": build_tiny_sd15, "tiny-sd3": build_tiny_sd3, "tiny-flux": build_tiny_flux}


@pytest.fixture(scope="module", params=list(BUILDERS))
def tiny(request):
    pipe = BUILDERS[request.param]()
    pipe.set_progress_bar_config(disable=True)
    return request.param, pipe


def test_every_preset_names_a_registered_family_and_every_family_a_pipeline_class():
    assert {"sdxl", "hunyuan-dit", "sd15", "sd3", "flux"} <= set(FAMILIES)
    for preset in MODEL_PRESETS.values():
        family = get_family(preset.family)
        assert preset.pipeline_class in family.pipeline_classes
        assert preset.redenoise_solver in family.redenoise_solvers
        family.check_scheduler(preset.scheduler)
    with pytest.raises(UserError, match="unknown model family 'sd9'"):
        get_family("sd9")


def test_shapes_come_from_the_pipelines_own_encode_prompt(tiny):
    name, pipe = tiny
    preset = MODEL_PRESETS[name]
    family = family_of(pipe)
    assert family.name == preset.family
    embeds = encode_prompt(pipe, "a red cube")
    length, width = family.text_shape(pipe)
    assert embeds.condition.shape == (1, length, width)
    cfg = NPNET_PRESETS[preset.npnet_preset]
    assert (cfg.text_len, cfg.text_dim, cfg.family) == (length, width, family.name)
    channels = latent_shape(pipe, 64, 64)[0]
    assert channels == cfg.latent_channels == (4 if name == "tiny-sd15" else 16)
    assert cfg.svd_grid**2 == channels
    assert not torch.equal(embeds.condition, encode_prompt(pipe, "a blue ball").condition)


def test_sd3_condition_is_clip_padded_then_t5_on_the_token_axis():
    pipe = build_tiny_sd3()
    embeds = encode_prompt(pipe, "a red cube").condition  # (1, 77 + 256, 96)
    clip = torch.cat(
        [pipe._get_clip_prompt_embeds("a red cube", device="cpu")[0],
         pipe._get_clip_prompt_embeds("a red cube", device="cpu", clip_model_index=1)[0]], dim=-1
    )  # fmt: skip
    torch.testing.assert_close(embeds[:, :77, : clip.shape[-1]], clip)
    assert torch.count_nonzero(embeds[:, :77, clip.shape[-1] :]) == 0  # zero-padded to T5's width
    torch.testing.assert_close(embeds[:, 77:], pipe._get_t5_prompt_embeds("a red cube", device="cpu"))


def test_flux_x_T_is_the_one_a_plain_flux_call_draws_and_packing_is_the_pipelines():
    pipe = build_tiny_flux()
    family = family_of(pipe)
    for seed, (w, h) in [(7, (64, 64)), (3, (96, 64))]:
        x_T = initial_latents(pipe, seed, w, h)  # (1, 16, h/8, w/8)
        generator = torch.Generator("cpu").manual_seed(seed)
        packed, _ = pipe.prepare_latents(1, 16, h, w, torch.float32, torch.device("cpu"), generator)
        assert packed.shape == (1, (h // 16) * (w // 16), 64)
        assert torch.equal(family.pack(pipe, x_T), packed)
        assert torch.equal(family.unpack(pipe, packed, w, h), x_T)
    assert family.first_timestep(pipe, 4) == 1000  # sigma_0 = 1 whatever mu


def test_sixteen_channel_npnet_svd_branch_is_a_4x4_grid_round_trip():
    cfg = NPNET_PRESETS["tiny-flux"]
    net = NPNet(cfg).eval()
    svd = net.unet_svd
    with torch.no_grad():  # no correction: U diag(s) V^T of the 4x4-grid matrix must give x back
        for module in (svd.mlp4[-1], svd.mlp4[0]):
            module.weight.zero_()
            module.bias.zero_()
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(svd(x), x, atol=1e-4, rtol=1e-4)
    assert svd.mlp1[0].in_features == cfg.svd_dim == 4 * 8
    golden = net(x, torch.randn(1, cfg.text_len, cfg.text_dim))  # one prompt broadcast
    assert golden.shape == x.shape
    assert net.embeeding.linear.in_features == cfg.text_pool * cfg.text_dim  # pooled T5 tokens
    with pytest.raises(ValueError, match="16-channel latents.*got 4 channels"):
        net(torch.randn(1, 4, 8, 8), torch.randn(1, cfg.text_len, cfg.text_dim))
    with pytest.raises(ValueError, match="k x k grid"):
        dataclasses.replace(cfg, latent_channels=8)


def test_pooling_is_a_mean_over_contiguous_token_groups():
    cfg = dataclasses.replace(NPNET_PRESETS["tiny-flux"], text_pool=4)
    net = NPNet(cfg)
    emb = torch.randn(1, cfg.text_len, cfg.text_dim)
    expected = emb.reshape(1, 4, cfg.text_len // 4, cfg.text_dim).mean(2).reshape(1, -1)
    torch.testing.assert_close(net.condition(emb, batch=1), expected)


def test_a_flux_npnet_is_refused_by_an_sdxl_pipeline_after_a_save_and_load(tmp_path):
    flux = build_tiny_flux()
    net = build_tiny_npnet(preset="tiny-flux", **family_of(flux).npnet_shape(flux))
    check_npnet_matches(net, flux)
    loaded = load_npnet(save_npnet(net, tmp_path / "flux.safetensors"))
    assert loaded.config == net.config and loaded.config.family == "flux"
    with pytest.raises(UserError, match="trained for a Flux model .*SDXL-family pipeline; choose a Flux model"):
        check_npnet_matches(loaded, build_tiny_sdxl())
    with pytest.raises(UserError, match="'flux' model family.*needs one for 'sdxl'"):
        load_npnet(tmp_path / "flux.safetensors", expect=dataclasses.replace(NPNET_PRESETS["sdxl"], text_dim=40))


def test_released_layouts_keep_their_family_by_shape(tmp_path):
    from npnet.checkpoints import save_official

    for preset, family in (("sdxl", "sdxl"), ("dit", "hunyuan-dit")):
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in NPNet(NPNET_PRESETS[preset]).state_dict().items()}
        from npnet.architecture import _infer_from_shapes

        inferred = _infer_from_shapes({k: tuple(v) for k, v in shapes.items()}, "x")
        assert inferred == NPNET_PRESETS[preset] and inferred.family == family
    net = build_tiny_npnet(preset="tiny-sd3", text_dim=96)
    path = save_official(net, tmp_path / "sd3.pth")  # 16 channels + pooling: the config travels along
    assert load_npnet(path).config == net.config


def test_hub_models_without_a_released_npnet_say_how_to_make_one():
    from npnet.engine import resolve_sampling

    for name in ("sd15", "sd21", "sd3.5-medium", "sd3.5-large-turbo", "flux-schnell", "flux-dev"):
        preset = MODEL_PRESETS[name]
        with pytest.raises(UserError, match=f"no NPNet has been released for {name} yet.*cli collect.*cli train"):
            resolve_sampling(preset, methods=("standard", "npnet"))
        assert resolve_sampling(preset, methods=("standard", "inversion"))["npnet"] == "none"
    assert MODEL_PRESETS["flux-dev"].dtype == MODEL_PRESETS["flux-schnell"].dtype == "bfloat16"


def test_flow_models_refuse_noise_prediction_samplers_and_negative_prompts():
    from npnet.engine import GenerationRequest, resolve_sampling, resolve_settings

    flux = MODEL_PRESETS["tiny-flux"]
    with pytest.raises(UserError, match="flow matching .* use scheduler 'default'"):
        resolve_sampling(flux, scheduler="ddim")
    with pytest.raises(UserError, match="solver 'ddim' does not fit a Flux"):
        resolve_sampling(flux, methods=("inversion",), redenoise_solver="ddim")
    with pytest.raises(UserError, match="only the 'correct' round trip"):
        resolve_sampling(flux, methods=("inversion",), redenoise_mode="official")
    with pytest.raises(UserError, match="solver 'flow-euler' does not fit an SDXL"):
        resolve_sampling(MODEL_PRESETS["tiny-sdxl"], redenoise_solver="flow-euler")
    with pytest.raises(UserError, match="no unconditional branch"):
        resolve_settings(GenerationRequest("tiny-flux", "a cat", negative_prompt="blurry"), flux)


def test_noise_analysis_handles_sixteen_channels_as_the_4x4_grid():
    from eval.noise_plots import residual_figure
    from npnet.analysis import analyze_latents, singular_vector_similarity, to_matrix

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 8, 8, generator=gen)
    golden = x + 0.1 * torch.randn(1, 16, 8, 8, generator=gen)
    matrix = to_matrix(x)  # (1, 32, 32): channel a*4 + c at block (a, c), as NPNet's SVD branch
    assert matrix.shape == (1, 32, 32) and torch.equal(matrix[0, 8:16, 16:24].float(), x[0, 6])
    torch.testing.assert_close(to_matrix(x).float(), einops_grid(x))
    assert singular_vector_similarity(x, golden).u.shape == (1, 32)
    figure = residual_figure(analyze_latents({"standard": x, "npnet": golden}))
    heatmap = figure.data[0].z[::-1]  # one (32, 32) panel: the 4x4 grid of the residual
    torch.testing.assert_close(torch.as_tensor(heatmap.copy()), to_matrix(golden - x)[0])


def einops_grid(x):
    import einops

    return einops.rearrange(x, "b (a c) h w -> b (a h) (c w)", a=4, c=4)
