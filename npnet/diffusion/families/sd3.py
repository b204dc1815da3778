"""Stable Diffusion 3 / 3.5 family: ``StableDiffusion3Pipeline`` (MMDiT, 16-channel latents, flow matching).

The NPNet condition is the pipeline's joint ``prompt_embeds``: CLIP-L and CLIP-G concatenated on the
width and zero-padded to T5's width, then concatenated with the T5 embeddings on the token axis:
(1, 77 + 256, 4096) for SD3.5 with the pipeline's default ``max_sequence_length`` 256.
"""

from __future__ import annotations

import torch

from npnet.diffusion.families.base import pairs
from npnet.diffusion.families.flow import FlowFamily


class SD3Family(FlowFamily):
    name = "sd3"
    label = "a Stable Diffusion 3/3.5"
    models = "a Stable Diffusion 3/3.5 model (sd3.5-medium, sd3.5-large-turbo, tiny-sd3)"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    embed_keys = (
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    )
    t5_length = 256  # StableDiffusion3Pipeline's default max_sequence_length
    text_pool = 8

    def denoiser(self, pipe):
        return pipe.transformer

    def encode(self, pipe, prompt, negative, device):
        out = pipe.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            prompt_3=None,
            device=device,
            do_classifier_free_guidance=True,
            negative_prompt=negative,
            max_sequence_length=self.t5_length,
        )
        return dict(zip(self.embed_keys, out))

    def text_shape(self, pipe):
        # without T5 (text_encoder_3=None) the pipeline appends max_sequence_length zero tokens instead
        # (``_get_t5_prompt_embeds``), so the length is the same: e.g. the micro-flow world's 16 + 256
        clip = int(pipe.tokenizer_max_length)
        return clip + self.t5_length, int(pipe.transformer.config.joint_attention_dim)

    def model_outputs(self, pipe, x, t, embeds, guidance_scale):
        both = pairs(embeds)
        x2 = torch.cat([x, x])  # (2B, 16, h, w)
        out = pipe.transformer(
            hidden_states=x2,
            timestep=torch.as_tensor(t, device=x.device, dtype=x.dtype).reshape(-1).expand(x2.shape[0]),
            encoder_hidden_states=both["prompt_embeds"],
            pooled_projections=both["pooled_prompt_embeds"],
            return_dict=False,
        )[0]
        return out.chunk(2)

    def set_flow_timesteps(self, pipe, scheduler, steps, latent_hw):
        """As ``StableDiffusion3Pipeline.__call__``: the static ``shift`` of the scheduler config, or
        ``mu = calculate_shift(patches)`` when the config uses dynamic shifting."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
            calculate_shift,
            retrieve_timesteps,
        )

        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            patch = pipe.transformer.config.patch_size
            seq = (latent_hw[0] // patch) * (latent_hw[1] // patch)
            c = scheduler.config
            kwargs["mu"] = calculate_shift(
                seq,
                c.get("base_image_seq_len", 256),
                c.get("max_image_seq_len", 4096),
                c.get("base_shift", 0.5),
                c.get("max_shift", 1.16),
            )
        retrieve_timesteps(scheduler, steps, "cpu", **kwargs)


SD3 = SD3Family()
