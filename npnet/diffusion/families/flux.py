"""Flux family: ``FluxPipeline`` (guidance-distilled MMDiT, 16-channel latents packed 2x2, flow matching).

``FluxPipeline(latents=...)`` takes packed latents (B, (H/16)(W/16), 64); NPNet works on the unpacked
(B, 16, H/8, W/8) ones: ``pack`` / ``unpack`` are the pipeline's own ``_pack_latents`` / ``_unpack_latents``.
The NPNet condition is the T5 ``prompt_embeds`` (1, 512, 4096). There is no unconditional branch: for
Flux-dev the guidance weight is the transformer's distilled ``guidance`` input; Flux-schnell has none.
"""

from __future__ import annotations

import numpy as np
import torch

from npnet.diffusion.families.flow import FlowFamily
from npnet.errors import UserError


class FluxFamily(FlowFamily):
    name = "flux"
    label = "a Flux"
    models = "a Flux model (flux-schnell, flux-dev, tiny-flux)"
    pipeline_classes = ("FluxPipeline",)
    embed_keys = ("prompt_embeds", "pooled_prompt_embeds")
    t5_length = 512  # FluxPipeline's default max_sequence_length
    text_pool = 8

    def denoiser(self, pipe):
        return pipe.transformer

    def latent_channels(self, pipe):
        return int(pipe.transformer.config.in_channels) // 4  # 64 packed = 16 channels x 2 x 2

    def latent_shape(self, pipe, width, height):
        factor = pipe.vae_scale_factor * 2  # as FluxPipeline.prepare_latents: even latent sides
        return self.latent_channels(pipe), 2 * (int(height) // factor), 2 * (int(width) // factor)

    def pack(self, pipe, latents):
        b, c, h, w = latents.shape
        return pipe._pack_latents(latents, b, c, h, w)  # (B, h/2 * w/2, 4C)

    def unpack(self, pipe, latents, width, height):
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)  # (B, C, h, w)

    def encode(self, pipe, prompt, negative, device):
        out = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device, max_sequence_length=self.t5_length)
        return dict(zip(self.embed_keys, out[:2]))  # text_ids are rebuilt from the length

    def check_negative(self, negative_prompt):
        if negative_prompt and negative_prompt.strip():
            raise UserError(
                "Flux is guidance-distilled and has no unconditional branch: leave the negative prompt empty"
            )

    def text_shape(self, pipe):
        return self.t5_length, int(pipe.transformer.config.joint_attention_dim)

    def guidance_embedded(self, pipe):
        return bool(pipe.transformer.config.guidance_embeds)  # dev: True; schnell: False

    def velocity(self, pipe, x, t, embeds, guidance_scale):
        """v(x, t | c, guidance) on unpacked (B, 16, h, w) latents, as ``FluxPipeline.__call__`` calls it."""
        b, _, h, w = x.shape
        packed = self.pack(pipe, x)
        guidance = None
        if self.guidance_embedded(pipe):
            guidance = torch.full((b,), float(guidance_scale), device=x.device, dtype=torch.float32)
        text = embeds["prompt_embeds"]
        out = pipe.transformer(
            hidden_states=packed,
            timestep=torch.as_tensor(t, device=x.device, dtype=x.dtype).reshape(-1).expand(b) / 1000,
            guidance=guidance,
            pooled_projections=embeds["pooled_prompt_embeds"],
            encoder_hidden_states=text,
            txt_ids=torch.zeros(text.shape[1], 3, device=x.device, dtype=text.dtype),
            img_ids=pipe._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype),
            return_dict=False,
        )[0]
        return self.unpack(pipe, out, w * pipe.vae_scale_factor, h * pipe.vae_scale_factor)

    def model_outputs(self, pipe, x, t, embeds, guidance_scale):
        """(v at guidance 1, v at ``guidance_scale``): the distilled model's stand-in for (uncond, cond)."""
        return self.velocity(pipe, x, t, embeds, 1.0), self.velocity(pipe, x, t, embeds, guidance_scale)

    def guided_output(self, pipe, x, t, embeds, guidance_scale):
        return self.velocity(pipe, x, t, embeds, guidance_scale)

    def inversion_output(self, pipe, x, t, embeds, guidance_scale):
        return self.velocity(pipe, x, t, embeds, guidance_scale)

    def set_flow_timesteps(self, pipe, scheduler, steps, latent_hw):
        """As ``FluxPipeline.__call__``: sigmas linspace(1, 1/N, N) and ``mu = calculate_shift(h/2 * w/2)``."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        sigmas = np.linspace(1.0, 1 / steps, steps)
        if getattr(scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        c = scheduler.config
        mu = calculate_shift(
            (latent_hw[0] // 2) * (latent_hw[1] // 2),
            c.get("base_image_seq_len", 256),
            c.get("max_image_seq_len", 4096),
            c.get("base_shift", 0.5),
            c.get("max_shift", 1.15),
        )
        retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas, mu=mu)


FLUX = FluxFamily()
