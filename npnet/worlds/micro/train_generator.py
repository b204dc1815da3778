"""Train the micro generator: VAE (reconstruction + small KL), then UNet + text encoders (epsilon loss, CFG dropout).

Resumable: every checkpoint is a set of step-stamped files (safetensors weights, optimizer state) made current by an
atomic ``latest.json``. Each step draws its data and noise from generators seeded by (seed, phase, step), so a
resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from npnet.errors import UserError
from npnet.io import atomic_write_json, atomic_write_with
from npnet.worlds.micro.components import MICRO_CONFIG, MicroConfig, build_components, build_pipeline
from npnet.worlds.micro.grammar import IMAGE_SIZE, KINDS, parse_caption
from npnet.worlds.micro.render import sample_batch
from npnet.worlds.micro.warm_start import TRAIN_STATE, warm_start

TRAINED = {"vae": ("vae",), "unet": ("unet", "text_encoder", "text_encoder_2")}


@dataclass(frozen=True)
class TrainConfig:
    """Budget and hyper-parameters of one generator training run."""

    vae_steps: int = 700
    unet_steps: int = 6000
    vae_batch_size: int = 32
    batch_size: int = 96
    vae_lr: float = 2e-3
    unet_lr: float = 5e-4
    warmup: int = 100
    kl_weight: float = 1e-4
    cfg_dropout: float = 0.12
    unet_kind_weights: tuple[float, ...] = (
        0.15,
        0.15,
        0.7,
    )  # single, count, relation (relations are hardest)
    ema_decay: float = 0.999
    cache_size: int = 30000
    seed: int = 0
    ckpt_every_steps: int = 500
    ckpt_every_seconds: float = 180.0
    model: MicroConfig = field(default_factory=lambda: MICRO_CONFIG)


class Trainer:
    """Holds the components, the optimizer and the EMA of the current phase; runs and checkpoints steps.

    Two phases, the VAE then the denoiser (``denoiser_phase``), each training the components named in
    ``trained``; a subclass for another pipeline overrides the build hooks, ``denoise_step`` and ``latent_stats``.
    """

    trained = TRAINED
    denoiser_phase = "unet"

    def __init__(self, out: str | Path, config):
        self.out, self.config = Path(out), config
        self.components = self.build_components()
        self.pipe = self.build_pipeline(self.components)
        self.phase, self.step = "vae", 0
        self.cache: dict[str, torch.Tensor] | None = None
        self._weights: np.ndarray | None = None
        self.captions: list[str] = []
        self.warm_from = 0  # denoiser step a warm start began at (its warmup restarts there)
        self._setup_phase()

    # --- hooks (the micro SDXL generator) ----------------------------------------------------------
    def build_components(self) -> dict:
        return build_components(self.out / "tokenizer", self.config.model, seed=self.config.seed)

    def build_pipeline(self, components: dict):
        return build_pipeline(components)

    def phase_steps(self) -> int:
        return self.config.vae_steps if self.phase == "vae" else self.config.unet_steps

    def phase_lr(self) -> float:
        return self.config.vae_lr if self.phase == "vae" else self.config.unet_lr

    def kind_weights(self) -> tuple[float, ...]:
        return self.config.unet_kind_weights

    def denoise_step(self) -> dict[str, float]:
        return self.unet_step()

    def latent_stats(self, means: torch.Tensor) -> dict[str, float]:
        """VAE config entries fixed from the cached latent means: scaling_factor = 1 / std."""
        return {"scaling_factor": float(1.0 / means.float().std())}

    # --- phase bookkeeping -------------------------------------------------------------------------
    @property
    def phases(self) -> tuple[str, str, str]:
        return ("vae", self.denoiser_phase, "done")

    def _modules(self, phase: str) -> list[torch.nn.Module]:
        return [self.components[name] for name in self.trained.get(phase, ())]

    def _setup_phase(self) -> None:
        params = [p for m in self._modules(self.phase) for p in m.parameters()]
        lr = self.phase_lr()
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0) if params else None
        self.ema = {n: p.detach().clone() for n, p in self._named_params(self.phase)}

    def _named_params(self, phase: str):
        for name in self.trained.get(phase, ()):
            for pname, p in self.components[name].named_parameters():
                yield f"{name}.{pname}", p

    def _lr_scale(self) -> float:
        """Linear warmup; the VAE also decays linearly to zero over its last 30% (its final weights are used)."""
        scale = min(1.0, (self.step - self.warm_from + 1) / self.config.warmup)
        if self.phase == "vae":
            scale *= min(1.0, (self.config.vae_steps - self.step) / (0.3 * self.config.vae_steps))
        return scale

    def _rng(self, kind: int) -> tuple[np.random.Generator, torch.Generator]:
        key = [self.config.seed, self.phases.index(self.phase), self.step, kind]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        return np.random.default_rng(key), torch.Generator().manual_seed(seed)

    # --- steps -------------------------------------------------------------------------------------
    def vae_step(self) -> dict[str, float]:
        """Reconstruction (MSE + L1) plus a small per-dimension KL, as an SD-style VAE."""
        vae = self.components["vae"]
        rng, gen = self._rng(0)
        images, _ = sample_batch(rng, self.config.vae_batch_size)  # (B, 3, 64, 64)
        posterior = vae.encode(images).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)  # (B, 4, 8, 8)
        recon = vae.decode(z).sample  # (B, 3, 64, 64)
        rec_loss = (recon - images).pow(2).mean() + (recon - images).abs().mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        self._update(rec_loss + self.config.kl_weight * kl)
        return {"rec": rec_loss.item(), "kl": kl.item()}

    def sample_latents(self, rng: np.random.Generator, gen: torch.Generator) -> tuple[list[str], torch.Tensor]:
        """A kind-weighted batch from the latent cache: captions (CFG dropout to "") and scaled latent samples."""
        assert self.cache is not None
        idx = torch.from_numpy(
            rng.choice(len(self.captions), size=self.config.batch_size, p=self._sample_weights())
        )
        captions = [
            "" if u < self.config.cfg_dropout else self.captions[i] for u, i in zip(rng.random(len(idx)), idx)
        ]
        mean, std = self.cache["mean"][idx].float(), self.cache["std"][idx].float()  # (B, C, 8, 8)
        vae_config = self.components["vae"].config
        shift = vae_config.get("shift_factor", None) or 0.0
        latents = (mean + std * torch.randn(mean.shape, generator=gen) - shift) * vae_config.scaling_factor
        return captions, latents

    def unet_step(self) -> dict[str, float]:
        """Epsilon-prediction loss ||eps - eps_theta(x_t, t, c)||^2 with CFG caption dropout."""
        rng, gen = self._rng(1)
        captions, latents = self.sample_latents(rng, gen)  # (B, 4, 8, 8)
        noise = torch.randn(latents.shape, generator=gen)
        scheduler = self.components["scheduler"]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(captions),), generator=gen)
        noisy = scheduler.add_noise(latents, noise, t)  # (B, 4, 8, 8)
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            captions, device=torch.device("cpu"), do_classifier_free_guidance=False
        )
        time_ids = torch.tensor([[IMAGE_SIZE, IMAGE_SIZE, 0, 0, IMAGE_SIZE, IMAGE_SIZE]], dtype=torch.float32)
        cond = {"text_embeds": pooled, "time_ids": time_ids.expand(len(captions), -1)}
        pred = self.components["unet"](noisy, t, embeds, added_cond_kwargs=cond).sample  # (B, 4, 8, 8)
        loss = (pred - noise).pow(2).mean()
        self._update(loss)
        return {"loss": loss.item()}

    def _update(self, loss: torch.Tensor) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.phase_lr() * self._lr_scale()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        self.optimizer.step()
        self.step += 1
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))  # EMA warmup
        with torch.no_grad():
            for name, p in self._named_params(self.phase):
                self.ema[name].lerp_(p.detach(), 1.0 - decay)

    # --- between phases ----------------------------------------------------------------------------
    @torch.no_grad()
    def finish_vae(self, stats: dict[str, float] | None = None) -> None:
        """Encode the latent cache with the final VAE and fix its ``latent_stats`` (scaling_factor, ...).

        ``stats`` given (a warm start) keeps those instead of measuring them on the cache."""
        vae = self.components["vae"].eval()
        rng = np.random.default_rng([self.config.seed, 99])
        means, stds, captions = [], [], []
        for start in range(0, self.config.cache_size, 256):
            images, caps = sample_batch(rng, min(256, self.config.cache_size - start))  # (b, 3, 64, 64)
            posterior = vae.encode(images).latent_dist
            means.append(posterior.mean.half())
            stds.append(posterior.std.half())
            captions += caps
        self.cache = {
            "mean": torch.cat(means).contiguous(),
            "std": torch.cat(stds).contiguous(),
        }  # (N, C, 8, 8) each
        self.captions = captions
        stats = stats if stats is not None else self.latent_stats(self.cache["mean"])
        vae.register_to_config(**stats)
        atomic_write_with(self.out / "latent_cache.safetensors", lambda p: save_file(self.cache, str(p)))
        meta = {"captions": captions, **stats}
        atomic_write_json(self.out / "latent_cache.json", meta)

    def _load_ema(self, phase: str) -> None:
        with torch.no_grad():
            for name, p in self._named_params(phase):
                p.copy_(self.ema[name])

    def _sample_weights(self) -> np.ndarray:
        """Per-cache-item sampling probabilities giving each caption kind its ``unet_kind_weights`` share."""
        if self._weights is None:
            kinds = np.array([KINDS.index(parse_caption(c).kind) for c in self.captions])
            share = np.array(self.kind_weights()) / np.bincount(kinds, minlength=len(KINDS)).clip(
                min=1
            )
            self._weights = share[kinds] / share[kinds].sum()
        return self._weights

    def _load_cache(self) -> None:
        meta = json.loads((self.out / "latent_cache.json").read_text())
        self.cache = load_file(str(self.out / "latent_cache.safetensors"))
        self.captions = meta.pop("captions")
        self.components["vae"].register_to_config(**meta)

    # --- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        stem = f"{self.phase}-{self.step:07d}"
        weights = {
            f"{name}.{k}": v.contiguous()
            for name in self._all_trained()
            for k, v in self.components[name].state_dict().items()
        }
        ema = {f"ema.{k}": v.contiguous() for k, v in self.ema.items()}
        atomic_write_with(self.out / f"{stem}.safetensors", lambda p: save_file({**weights, **ema}, str(p)))
        opt = self.optimizer.state_dict() if self.optimizer else {}
        atomic_write_with(self.out / f"{stem}.optim.pt", lambda p: torch.save(opt, p))
        previous = self._latest()
        atomic_write_json(
            self.out / "latest.json",
            {**self.train_state(), "stem": stem, "warm_from": self.warm_from},
        )
        if previous and previous["stem"] != stem:
            for suffix in (".safetensors", ".optim.pt"):
                (self.out / f"{previous['stem']}{suffix}").unlink(missing_ok=True)

    def train_state(self) -> dict:
        return {"phase": self.phase, "step": self.step, "config": asdict(self.config)}

    def _all_trained(self) -> tuple[str, ...]:
        return tuple(name for names in self.trained.values() for name in names)

    def _latest(self) -> dict | None:
        path = self.out / "latest.json"
        return json.loads(path.read_text()) if path.exists() else None

    def resume(self) -> bool:
        latest = self._latest()
        if latest is None:
            return False
        self.phase, self.step = latest["phase"], latest["step"]
        self.warm_from = latest.get("warm_from", 0)
        tensors = load_file(str(self.out / f"{latest['stem']}.safetensors"))
        for name in self._all_trained():
            prefix = f"{name}."
            self.components[name].load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        if self.phase != "vae":
            self._load_cache()
        self._setup_phase()
        self.ema = {k[4:]: v.clone() for k, v in tensors.items() if k.startswith("ema.")}
        if self.optimizer is not None:
            self.optimizer.load_state_dict(
                torch.load(self.out / f"{latest['stem']}.optim.pt", weights_only=True)
            )
        return True

    # --- export ------------------------------------------------------------------------------------
    def export(self, folder: str | Path) -> Path:
        """Save the pipeline with EMA weights in float16 via ``save_pretrained`` (safetensors), replacing ``folder`` atomically."""
        folder = Path(folder)
        backup = {n: p.detach().clone() for n, p in self._named_params(self.phase)}
        if self.phase == self.denoiser_phase:
            self._load_ema(self.denoiser_phase)
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        half = {
            k: copy.deepcopy(v).to(torch.float16) if isinstance(v, torch.nn.Module) else v
            for k, v in self.components.items()
        }
        self.build_pipeline(half).save_pretrained(tmp, safe_serialization=True)
        atomic_write_json(tmp / TRAIN_STATE, self.train_state())  # what a warm start continues from
        with torch.no_grad():
            for name, p in self._named_params(self.phase):
                p.copy_(backup[name])
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return folder


def train(
    out: str | Path,
    config,
    resume: bool = False,
    stop_after_steps: int | None = None,
    export_to: str | Path | None = None,
    log=print,
    trainer_class: type[Trainer] = Trainer,
    init_from: str | Path | None = None,
) -> Trainer:
    """Run (or resume) training until done or ``stop_after_steps`` steps in this call; returns the trainer.

    ``config`` is a ``TrainConfig`` (or the config ``trainer_class`` takes). ``init_from`` (an exported pipeline
    folder) starts a new run at that export's denoiser step (``warm_start``); with ``resume`` and a run already in
    ``out``, the run is resumed instead."""
    out = Path(out)
    if (out / "latest.json").exists() and not resume:
        raise UserError(
            f"{out} already holds a training run; pass --resume to continue it or choose a new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    trainer = trainer_class(out, config)
    if resume and trainer.resume():
        log(f"resumed at phase={trainer.phase} step={trainer.step}")
    elif init_from is not None:
        warm_start(trainer, init_from)
        log(f"warm start from {init_from} at phase={trainer.phase} step={trainer.step}")
    export_to = Path(export_to) if export_to else out / "generator"
    done_here, last_ckpt, t0 = 0, time.time(), time.time()
    while trainer.phase != "done":
        total = trainer.phase_steps()
        if trainer.step >= total:
            _advance(trainer, export_to, log)
            continue
        if stop_after_steps is not None and done_here >= stop_after_steps:
            trainer.save_checkpoint()
            return trainer
        tick = time.time()
        stats = trainer.vae_step() if trainer.phase == "vae" else trainer.denoise_step()
        done_here += 1
        if trainer.step % 25 == 0 or trainer.step == total:
            log(
                json.dumps(
                    {
                        "phase": trainer.phase,
                        "step": trainer.step,
                        "sec_per_step": round(time.time() - tick, 3),
                        "elapsed_min": round((time.time() - t0) / 60, 2),
                        **{k: round(v, 5) for k, v in stats.items()},
                    }
                )
            )
        if trainer.step % config.ckpt_every_steps == 0 or time.time() - last_ckpt > config.ckpt_every_seconds:
            trainer.save_checkpoint()
            if trainer.phase == trainer.denoiser_phase:
                trainer.export(export_to)
            last_ckpt = time.time()
    return trainer


def _advance(trainer: Trainer, export_to: Path, log) -> None:
    """Close the current phase (checkpointed) and open the next one."""
    if trainer.phase == "vae":
        log("vae done; encoding latent cache")
        trainer.finish_vae()
        trainer.phase, trainer.step = trainer.denoiser_phase, 0
        trainer._setup_phase()
        log(f"latent scaling_factor={trainer.components['vae'].config.scaling_factor:.4f}")
    else:
        trainer._load_ema(trainer.denoiser_phase)
        trainer.export(export_to)  # still the denoiser phase: its train_state says how far it trained
        trainer.phase, trainer.step = "done", 0
        trainer._setup_phase()
        log(f"exported {export_to}")
    trainer.save_checkpoint()
