"""Checks a training run makes before any work: the ``init`` (ImageNet Swin-T, a checkpoint's header, or
random) and the ``out`` folder (an existing run needs ``resume``, with the same settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from npnet.checkpoints import inspect_checkpoint
from npnet.errors import UserError
from npnet.model import NPNET_PRESETS, NPNetConfig
from npnet.training.pretrained import check_imagenet, has_imagenet_weights
from npnet.training.state import check_resume_config, finished_run

INITS = ("auto", "imagenet", "random")


def _preset_config(preset: str | NPNetConfig) -> NPNetConfig:
    return NPNET_PRESETS[preset] if isinstance(preset, str) else preset


def resolve_init(init: str, preset: str | NPNetConfig | None) -> str:
    """``"auto"`` -> ``"imagenet"`` where the preset's Swin is the standard Swin-T that has ImageNet
    weights (the SDXL and DiT NPNets), else ``"random"`` (the reduced Swins of the micro / tiny presets)."""
    if init != "auto" or preset is None:
        return init
    return "imagenet" if has_imagenet_weights(_preset_config(preset)) else "random"


# -- checks before any work -------------------------------------------------------------------------
def check_init(init: str, preset: str | NPNetConfig | None = None) -> NPNetConfig | None:
    """The architecture of the ``init`` checkpoint (None for "random" / "imagenet"), from its header.

    Cheap (no network is built; a safetensors file's tensors are not read): the app calls it before
    collecting. A UserError names the input when it is not a loadable NPNet checkpoint; for "imagenet"
    with ``preset``, when the pretrained Swin-T does not fit it or the hub is offline without it cached.
    """
    init = resolve_init(init, preset)
    if init == "imagenet" and preset is not None:
        check_imagenet(_preset_config(preset))
    if init in INITS:
        return None
    try:
        return inspect_checkpoint(init).config
    except UserError as err:
        raise UserError(f"init {init!r} is not a usable NPNet checkpoint: {err}") from err


def check_out(config: Any) -> int | None:  # config: a TrainConfig (not imported: train imports this module)
    """Refuse to overwrite a run: ``out`` holding ``last/trainer_state.pt`` needs ``resume=True``.

    Returns the finished epochs to resume from (None: nothing to resume); with ``resume``, the saved
    settings must match (``check_resume_config``).
    """
    out = Path(config.out)
    epochs = finished_run(out)
    if epochs is not None and not config.resume:
        raise UserError(
            f"{out} already holds a training run of {epochs} epoch{'' if epochs == 1 else 's'} "
            f"({out / 'last'}); pass resume=True "
            "(command line: --resume) to continue it, or choose a new out folder"
        )
    if config.resume and epochs is not None:
        check_resume_config(out, config)
    return epochs


def check_before_training(config: Any) -> NPNetConfig | None:
    """Every check ``train`` makes before any work: the out folder (``check_out``) and ``check_init``."""
    resumable = check_out(config)
    return check_init(config.init, None if resumable else config.preset)
