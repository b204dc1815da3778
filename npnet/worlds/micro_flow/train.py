"""Train the micro flow generator: VAE (as the micro world's), then MMDiT + CLIP encoders by rectified flow.

The rectified-flow objective of SD3: x_t = (1 - s) x_0 + s eps with s ~ logit-normal(m, s_std), the model predicts
the velocity eps - x_0 at timestep 1000 s, uniform loss weight, captions dropped to "" for CFG. The training
context is the pipeline's own ``encode_prompt`` (16 CLIP tokens + 256 zero T5 tokens, computed as one by
``null_tokens.compress_null_runs``). Checkpoints, resume and export are the micro world's (``train_generator.Trainer``):
atomic step-stamped safetensors made current by ``latest.json``, data and noise seeded by (seed, phase, step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from npnet.worlds.micro.train_generator import Trainer, train
from npnet.worlds.micro_flow.components import (
    FLOW_CONFIG,
    T5_LENGTH,
    FlowConfig,
    build_components,
    build_pipeline,
)


@dataclass(frozen=True)
class FlowTrainConfig:
    """Budget and hyper-parameters of one flow generator training run."""

    vae_steps: int = 300
    flow_steps: int = 5000
    vae_batch_size: int = 32
    batch_size: int = 64
    vae_lr: float = 2e-3
    lr: float = 5e-4
    warmup: int = 100
    kl_weight: float = 1e-4
    cfg_dropout: float = 0.12
    kind_weights: tuple[float, ...] = (0.15, 0.15, 0.7)  # single, count, relation (relations are hardest)
    logit_mean: float = 0.0  # SD3's logit-normal timestep density
    logit_std: float = 1.0
    ema_decay: float = 0.999
    cache_size: int = 30000
    seed: int = 0
    ckpt_every_steps: int = 500
    ckpt_every_seconds: float = 180.0
    model: FlowConfig = field(default_factory=lambda: FLOW_CONFIG)


class FlowTrainer(Trainer):
    """The micro trainer with SD3 components and a rectified-flow denoiser phase."""

    trained = {"vae": ("vae",), "flow": ("transformer", "text_encoder", "text_encoder_2")}
    denoiser_phase = "flow"

    def build_components(self) -> dict:
        return build_components(self.out / "tokenizer", self.config.model, seed=self.config.seed)

    def build_pipeline(self, components: dict):
        return build_pipeline(components)

    def phase_steps(self) -> int:
        return self.config.vae_steps if self.phase == "vae" else self.config.flow_steps

    def phase_lr(self) -> float:
        return self.config.vae_lr if self.phase == "vae" else self.config.lr

    def kind_weights(self) -> tuple[float, ...]:
        return self.config.kind_weights

    def latent_stats(self, means: torch.Tensor) -> dict[str, float]:
        """SD3's VAE convention: latents = (z - shift_factor) * scaling_factor, zero mean and unit std."""
        means = means.float()
        return {"shift_factor": float(means.mean()), "scaling_factor": float(1.0 / means.std())}

    def denoise_step(self) -> dict[str, float]:
        """Velocity loss ||(eps - x_0) - v_theta(x_t, 1000 s, c)||^2, s logit-normal, CFG caption dropout."""
        rng, gen = self._rng(1)
        captions, x0 = self.sample_latents(rng, gen)  # (B, 16, 8, 8)
        noise = torch.randn(x0.shape, generator=gen)
        sigma = torch.sigmoid(
            self.config.logit_mean + self.config.logit_std * torch.randn(len(captions), generator=gen)
        )  # (B,)
        s = sigma.view(-1, 1, 1, 1)
        noisy = (1.0 - s) * x0 + s * noise  # (B, 16, 8, 8)
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            captions,
            None,
            None,
            device=torch.device("cpu"),
            do_classifier_free_guidance=False,
            max_sequence_length=T5_LENGTH,
        )  # (B, 16 + 256, 64), (B, 64)
        pred = self.components["transformer"](
            hidden_states=noisy,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            timestep=sigma * 1000,
        ).sample  # (B, 16, 8, 8)
        loss = (pred - (noise - x0)).pow(2).mean()
        self._update(loss)
        return {"loss": loss.item()}


def train_flow(
    out: str | Path,
    config: FlowTrainConfig,
    resume: bool = False,
    stop_after_steps: int | None = None,
    export_to: str | Path | None = None,
    log=print,
    init_from: str | Path | None = None,
) -> FlowTrainer:
    """Run (or resume) flow generator training; the micro world's ``train`` loop with ``FlowTrainer``."""
    return train(
        out, config, resume, stop_after_steps, export_to, log, trainer_class=FlowTrainer, init_from=init_from
    )
