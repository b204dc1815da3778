"""Loading presets onto a device: hub pipelines (with replacement UNets), offline builders, NPNets."""

from __future__ import annotations

from pathlib import Path

import torch

from npnet.checkpoints import load_npnet
from npnet.diffusion.families import family_of, get_family
from npnet.diffusion.presets import MICRO_BUILD_HINT, ModelPreset, describe_presets
from npnet.diffusion.sampling import check_npnet_matches
from npnet.diffusion.schedulers import make_scheduler
from npnet.errors import UserError
from npnet.paths import asset_path
from npnet.worlds.tiny import build_tiny_npnet

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device="auto") -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else as torch.device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {device!r} requested but CUDA is not available here; use --device cpu or auto"
        )
    return resolved


def resolve_dtype(dtype, preset: ModelPreset, device: torch.device) -> torch.dtype:
    """Explicit dtype, else the preset's half dtype on CUDA and float32 on CPU."""
    if dtype is None:
        return DTYPES[preset.dtype] if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise UserError("float16 is not supported for CPU generation; use float32 or bfloat16 on CPU")
    return dtype


def _hub_unet(preset: ModelPreset, dtype: torch.dtype, offline: bool, variant: str | None):
    """The replacement UNet: a single safetensors file (SDXL-Lightning) or a diffusers repo (LCM)."""
    from diffusers import UNet2DConditionModel

    if preset.unet_file:
        from huggingface_hub import hf_hub_download
        from safetensors.torch import load_file

        config = UNet2DConditionModel.load_config(preset.hub_id, subfolder="unet", local_files_only=offline)
        unet = UNet2DConditionModel.from_config(config)
        path = hf_hub_download(preset.unet_id, preset.unet_file, local_files_only=offline)
        unet.load_state_dict(load_file(path, device="cpu"))
        return unet.to(dtype=dtype)
    return UNet2DConditionModel.from_pretrained(
        preset.unet_id, dtype=dtype, variant=variant, local_files_only=offline
    )


def _from_hub(preset: ModelPreset, dtype: torch.dtype, offline: bool):
    import diffusers
    from huggingface_hub.errors import EntryNotFoundError

    variant = preset.variant if dtype in (torch.float16, torch.bfloat16) else None
    kwargs = {"dtype": dtype, "local_files_only": offline}
    if variant:
        kwargs["variant"] = variant
    kwargs.update(get_family(preset.family).hub_kwargs)
    try:
        if preset.unet_id:
            kwargs["unet"] = _hub_unet(preset, dtype, offline, variant)
        return getattr(diffusers, preset.pipeline_class).from_pretrained(preset.hub_id, **kwargs)
    except (OSError, EntryNotFoundError) as err:
        repos = ", ".join(r for r in (preset.hub_id, preset.unet_id) if r)
        raise UserError(
            f"could not load {preset.name!r} from the hub ({repos}): {err}. Download it with "
            f"`huggingface-cli download {preset.hub_id}` where the hub is reachable. {describe_presets()}"
        ) from err


def load_pipeline(
    preset: ModelPreset,
    device: torch.device,
    dtype: torch.dtype,
    offline: bool = False,
    cpu_offload: bool = False,
    vae_tiling: bool = False,
):
    """Build or download the preset's pipeline, set its base scheduler, and place it on ``device``."""
    if preset.builder:
        pipe = preset.builder(device=device, dtype=dtype)
    else:
        pipe = _from_hub(preset, dtype, offline)
    if preset.base_scheduler:
        pipe.scheduler = make_scheduler(preset.base_scheduler, pipe.scheduler)
    if preset.scheduler_overrides:
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, **dict(preset.scheduler_overrides)
        )
    if cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if device.type == "cuda":
        pipe.vae.enable_slicing()  # decode a batch one image at a time
        if vae_tiling:
            pipe.vae.enable_tiling()  # large sizes: decode in overlapping tiles
    return pipe


def resolve_npnet_spec(preset: ModelPreset, spec: str) -> str:
    """Project-relative asset paths (e.g. assets/micro/...) resolve against the repository root."""
    shipped = asset_path(spec)
    if shipped is not None:
        if not shipped.is_file():
            hint = MICRO_BUILD_HINT if preset.name == "micro" else "check the path"
            raise UserError(f"NPNet checkpoint {shipped} does not exist; {hint}")
        return str(shipped)
    local = Path(spec).expanduser()
    if (local.is_absolute() or spec.startswith((".", "~"))) and not local.exists():
        raise UserError(f"NPNet checkpoint {local} does not exist; pass an existing file or a hub id")
    return str(local) if spec.startswith("~") else spec


def unavailable_reason(preset: ModelPreset) -> str | None:
    """Why an offline preset cannot be built here (its shipped assets are missing), else None."""
    needed = [*preset.assets, preset.npnet_checkpoint or ""]
    missing = [spec for spec in needed if asset_path(spec) is not None and not asset_path(spec).is_file()]
    if not missing:
        return None
    return f"{', '.join(missing)} missing; " + (MICRO_BUILD_HINT if preset.name == "micro" else "check the install")


def load_npnet_for(preset: ModelPreset, pipe, spec: str | None, device: torch.device):
    """The NPNet ``spec`` (or a seeded tiny random one when None) in float32 on ``device``, checked against ``pipe``."""
    if spec is None:
        net = build_tiny_npnet(seed=0, device=device, preset=preset.npnet_preset, **family_of(pipe).npnet_shape(pipe))
    else:
        net = load_npnet(resolve_npnet_spec(preset, spec), device=device)
    check_npnet_matches(net, pipe)
    return net
