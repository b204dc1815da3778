"""The offline tiny backends: project-written tokenizers, seeded weights, on-disk round trip, half precision."""

import numpy as np
import pytest
import torch

from npnet.diffusion.sampling import embedding_width, encode_prompt, initial_latents, latent_shape
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.worlds.tiny import TINY_BERT_DIM, TINY_SDXL_TEXT_DIM, build_tiny_hunyuan_dit, build_tiny_sdxl

BUILDERS = {"sdxl": build_tiny_sdxl, "hunyuan-dit": build_tiny_hunyuan_dit}


@pytest.fixture(scope="module", params=list(BUILDERS))
def pipe(request):
    pipe = BUILDERS[request.param]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, latents):
    extra = {"use_resolution_binning": False} if type(pipe).__name__ == "HunyuanDiTPipeline" else {}
    generator = torch.Generator("cpu").manual_seed(0)  # Hunyuan-DiT's default DDPM sampler is stochastic
    kwargs = dict(
        prompt="a cat", latents=latents, num_inference_steps=2, height=64, width=64, generator=generator
    )
    return pipe(**kwargs, output_type="np", **extra).images


def test_geometry_and_embeddings_match_the_real_models(pipe):
    assert pipe.vae_scale_factor == 8 and latent_shape(pipe, 64, 64) == (4, 8, 8)
    embeds = encode_prompt(pipe, "a red cube")
    width = TINY_SDXL_TEXT_DIM if embeds.family == "sdxl" else TINY_BERT_DIM
    assert embeds.condition.shape == (1, 77, width) == (1, 77, embedding_width(pipe))
    if embeds.family == "hunyuan-dit":
        assert embeds.tensors["prompt_embeds_2"].shape[:2] == (1, 256)  # the mT5 stand-in
        assert embeds.tensors["prompt_attention_mask"].dtype == torch.int64
    assert not torch.equal(embeds.condition, encode_prompt(pipe, "a blue ball").condition)


def test_tokenizers_come_from_project_files(pipe):
    ids = pipe.tokenizer("a red cube", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and pipe.tokenizer.model_max_length == 77
    assert pipe.tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "aredcube"
    second = pipe.tokenizer_2("a red cube", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(second) == 77 and len(set(second)) > 3


def test_weights_are_seeded(pipe):
    builder = BUILDERS["hunyuan-dit" if hasattr(pipe, "transformer") else "sdxl"]
    again, other = builder(seed=0), builder(seed=1)
    name, net = ("transformer", pipe.transformer) if hasattr(pipe, "transformer") else ("unet", pipe.unet)
    same = getattr(again, name).state_dict()
    assert all(torch.equal(v, same[k]) for k, v in net.state_dict().items())
    assert any(not torch.equal(v, getattr(other, name).state_dict()[k]) for k, v in net.state_dict().items())


def test_save_and_reload_in_the_real_on_disk_format(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    reloaded = type(pipe).from_pretrained(tmp_path, local_files_only=True)
    reloaded.set_progress_bar_config(disable=True)
    x_T = initial_latents(pipe, 0, 64, 64)
    np.testing.assert_allclose(_images(reloaded, x_T), _images(pipe, x_T), atol=1e-6)


@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-hunyuan-dit"])
def test_half_precision_path(model):
    """bfloat16 on CPU stands in for fp16/bf16 on CUDA: latents stay float32 and seeded."""
    service = GoldenNoiseService(device="cpu", dtype="bfloat16", progress=False)
    result = service.generate(GenerationRequest(model, "a red cube", steps=2, methods=("standard", "npnet")))
    assert result.settings["dtype"] == "bfloat16"
    assert all(v.dtype == torch.float32 for v in result.latents.values())
    fp32 = GoldenNoiseService(device="cpu", progress=False).generate(
        GenerationRequest(model, "a red cube", steps=2, methods=("standard",))
    )
    assert torch.equal(result.latents["standard"], fp32.latents["standard"])
