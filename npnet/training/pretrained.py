"""ImageNet-pretrained Swin-T for NPNet's residual branch (paper App. A.4; ``init="imagenet"``).

The paper initialises the residual predictor's backbone from a pretrained Swin-Tiny, and the official
``NoiseTransformer`` builds it with ``timm.create_model("swin_tiny_patch4_window7_224", pretrained=True)``,
i.e. timm's default tag of that architecture: ``timm/swin_tiny_patch4_window7_224.ms_in1k`` on the
Hugging Face hub (``model.safetensors``). Only the standard Swin-T at 224 px has such weights; the micro
and tiny presets use reduced Swins and train from ``init="random"``.

Checks run before any work (``check_imagenet``): an architecture without weights, or an offline hub
(``HF_HUB_OFFLINE=1``) without the weights in the local cache, is a ``UserError`` naming the weights,
the download command and the random-init flag.
"""

from __future__ import annotations

from npnet.errors import UserError
from npnet.model import NPNet, NPNetConfig

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm fetches from the hub, in order
RANDOM_INIT_HINT = (
    "or train from a random initialisation: init='random' (command line: --init random; "
    "app Train tab: Initialisation 'random')"
)


def imagenet_weights(config: NPNetConfig) -> str:
    """The hub id of the weights ``timm.create_model(config.backbone, pretrained=True)`` loads."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(config.backbone)
    if cfg is None or not cfg.hf_hub_id:
        raise UserError(
            f"timm has no pretrained hub weights for the backbone {config.backbone!r}; {RANDOM_INIT_HINT}"
        )
    return cfg.hf_hub_id


def download_command(config: NPNetConfig) -> str:
    return f"hf download {imagenet_weights(config)} {WEIGHT_FILES[0]}"


def check_architecture(config: NPNetConfig) -> None:
    """ImageNet weights fit the standard Swin-T at its pretrained size only (no reduced ``backbone_kwargs``)."""
    if not config.use_residual_branch:
        return
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(config.backbone)
    side = cfg.input_size[-1] if cfg is not None else None
    if config.backbone_kwargs or config.backbone_img_size != side:
        raise UserError(
            f"init='imagenet' loads timm's pretrained {config.backbone} ({side} px), but this NPNet's "
            f"backbone is a reduced Swin ({dict(config.backbone_kwargs)}, {config.backbone_img_size} px) "
            f"that has no pretrained weights; {RANDOM_INIT_HINT}"
        )


def has_imagenet_weights(config: NPNetConfig) -> bool:
    """Whether ``init="imagenet"`` fits ``config``: its Swin is the standard one timm has weights for."""
    try:
        check_architecture(config)
        imagenet_weights(config)
    except UserError:
        return False
    return True


def weights_cached(repo_id: str) -> bool:
    """Whether one of timm's weight files of ``repo_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in WEIGHT_FILES)


def offline_message(config: NPNetConfig) -> str:
    repo = imagenet_weights(config)
    return (
        f"init='imagenet' (the paper's setting, App. A.4) needs timm's ImageNet Swin-T weights {repo}, "
        "which are not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1 or no "
        f"network). Download them where the hub is reachable with `{download_command(config)}`, "
        f"{RANDOM_INIT_HINT}"
    )


def check_imagenet(config: NPNetConfig, offline: bool | None = None) -> None:
    """Everything ``init="imagenet"`` needs, checked without building anything: the architecture and,
    with the hub offline, the weights in the local cache."""
    from npnet.diffusion.presets import hub_offline

    check_architecture(config)
    if not config.use_residual_branch:
        return
    if hub_offline(offline) and not weights_cached(imagenet_weights(config)):
        raise UserError(offline_message(config))


def imagenet_npnet(config: NPNetConfig, offline: bool | None = None) -> NPNet:
    """An NPNet (current RNG) whose Swin holds timm's ImageNet weights (``NPNet.from_config(init="imagenet")``).

    A failed download (no network, hub unreachable) is a ``UserError`` with the same advice as offline.
    """
    check_imagenet(config, offline)
    try:
        return NPNet.from_config(config, init="imagenet")
    except OSError as err:  # huggingface_hub's LocalEntryNotFoundError / HTTP errors are OSErrors
        raise UserError(f"{offline_message(config)} ({type(err).__name__}: {err})") from err
