"""Start a generator training run from an exported pipeline folder instead of a run folder.

``--resume`` needs the run folder (full-precision weights, EMA, optimizer state, latent cache), which is large and
not in git. An export (``Trainer.export``: float16 EMA weights + ``train_state.json``) is what gets shipped, so a
warm start continues the denoiser phase from it: its weights become the live and the EMA weights, the optimizer
starts afresh with a new warmup, the latent cache is re-encoded with the exported VAE keeping its latent stats, and
the data stream goes on at the exported step. The result is close to, not equal to, an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from npnet.errors import UserError

TRAIN_STATE = "train_state.json"  # written by Trainer.export into every pipeline folder


def read_train_state(folder: str | Path) -> dict:
    """The ``train_state.json`` of an exported pipeline folder, or a clear error."""
    path = Path(folder) / TRAIN_STATE
    if not path.exists():
        raise UserError(
            f"{folder} has no {TRAIN_STATE}: pass a pipeline folder written by train-generator's export "
            "(--export-to), or continue the original run folder with --resume"
        )
    return json.loads(path.read_text())


def _component_state(folder: Path, name: str) -> dict[str, torch.Tensor]:
    files = sorted((folder / name).glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder / name} has no safetensors weights; is {folder} an exported generator?")
    return {k: v.float() for f in files for k, v in load_file(str(f)).items()}


def warm_start(trainer, folder: str | Path) -> None:
    """Put ``trainer`` (a new run) at the exported denoiser step of ``folder``, checkpointed in its out folder."""
    folder = Path(folder)
    state = read_train_state(folder)
    if state["phase"] != trainer.denoiser_phase:
        raise UserError(
            f"{folder} was exported in phase {state['phase']!r}; a warm start continues the "
            f"{trainer.denoiser_phase!r} phase"
        )
    for name in trainer._all_trained():
        try:
            trainer.components[name].load_state_dict(_component_state(folder, name))
        except RuntimeError as err:
            raise UserError(f"{folder / name} does not fit this run's model config: {err}") from err
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    keys = trainer.latent_stats(torch.randn(8, 2))  # only its keys: which VAE config entries the run fixes
    stats = {k: vae_config[k] for k in keys}
    trainer.finish_vae(stats=stats)  # (N, C, 8, 8) cache from the exported VAE, its scaling kept
    trainer.phase, trainer.step = trainer.denoiser_phase, int(state["step"])
    trainer.warm_from = trainer.step
    trainer._setup_phase()  # fresh optimizer; EMA = the exported (EMA) weights
    trainer.save_checkpoint()
