"""The architecture an NPNet checkpoint declares (metadata) or implies (tensor shapes), checked before
anything is built: ``CONFIG_LIMITS``, every field's type, and every tensor shape against the network that
architecture builds (on the meta device, no memory). Used by ``npnet.checkpoints``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from npnet.errors import UserError
from npnet.hub import OFFICIAL_REPO
from npnet.model import LEGACY_FAMILIES, NPNet, NPNetConfig

WHAT_IS_A_CHECKPOINT = (
    "An NPNet checkpoint is a .safetensors or PyTorch .pth file holding the noise prompt network's weights "
    f"(unet_svd.*, unet_embedding.*, embeeding.*, alpha, beta): the official release ({OFFICIAL_REPO}), "
    "the community safetensors, or a file written by npnet-studio (train, convert)"
)
# The largest architecture a checkpoint may declare (metadata) or imply (tensor shapes), checked before
# anything is built. Released NPNets: text 77x2048 (SDXL) / 77x1024 (DiT), 128x128 latents, SVD MLPs
# 64 / 1024 wide, Swin-T at 224 px with 7x7 windows; the limits leave room for larger models (4096 px
# images are 512x512 latents) while keeping every buffer that is not in the file (Swin's attention masks)
# small.
CONFIG_LIMITS: dict[str, int] = {
    "text_dim": 16384,
    "text_len": 1024,
    "latent_channels": 16,
    "text_pool": 1024,
    "latent_size": 512,
    "backbone_img_size": 512,
    "svd_hidden": 16384,
    "svd_mlp4_hidden": 16384,
    "attn_heads": 1024,
    "token_width": 4096,
    "token_layers": 64,
    "token_heads": 256,
    "token_grid": 512,
}
_NON_NEGATIVE = ("text_pool",)  # CONFIG_LIMITS fields where 0 is allowed
BACKBONE_LIMITS: dict[str, int] = {"window_size": 16, "number": 4096, "list": 16, "name": 200}
Shape = tuple[int, ...]


def not_npnet(path: Any, detail: str) -> UserError:
    return UserError(f"{path} is not an NPNet checkpoint: {detail}. {WHAT_IS_A_CHECKPOINT}")


def few(items: list[str], n: int = 8) -> str:
    return "none" if not items else f"{items[:n]}" + (f" (+{len(items) - n} more)" if len(items) > n else "")


def infer_config(flat: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> NPNetConfig:
    """The architecture from the metadata if present, else from tensor shapes (official 77-token layout)."""
    if meta and meta.get("npnet_config"):
        return NPNetConfig.from_dict(meta["npnet_config"])
    return _infer_from_shapes({k: tuple(v.shape) for k, v in flat.items()}, "checkpoint")


def checked_config(shapes: dict[str, Shape], meta: dict[str, Any], path: Any) -> NPNetConfig:
    """The declared (metadata) or inferred architecture, within ``CONFIG_LIMITS`` and matching every shape.

    Builds the NPNet on the meta device only (no memory), so a file that declares a huge architecture
    is refused before anything is allocated.
    """
    declared = meta.get("npnet_config")
    if declared is not None:
        origin = "declared in its metadata ('npnet_config')"
        if "text_dim" not in declared:
            raise bad_config(
                path, origin, "it has no text_dim (the prompt-embedding width, e.g. 2048 for SDXL)"
            )
        _check_config_values(declared, path, origin)
        try:
            config = NPNetConfig.from_dict(declared)
        except (TypeError, ValueError) as err:
            raise bad_config(path, origin, str(err)) from err
    else:
        origin = "inferred from its tensor shapes"
        config = _infer_from_shapes(shapes, path)
        _check_config_values(config.to_dict(), path, origin)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in NPNet(config).state_dict().items()}
    except Exception as err:  # timm: unknown backbone name or keyword
        raise bad_config(path, origin, f"{config} cannot be built ({type(err).__name__}: {err})") from err
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [
        f"{k}: file {shapes[k]} vs model {v}" for k, v in expected.items() if k in shapes and shapes[k] != v
    ]
    if missing or unexpected or wrong:
        raise UserError(
            f"{path} does not match the NPNet architecture {origin} {config}: "
            f"missing keys {few(missing)}; unexpected keys {few(unexpected)}; wrong shapes {few(wrong)}. "
            f"{WHAT_IS_A_CHECKPOINT}"
        )
    return config


def bad_config(path: Any, origin: str, detail: str) -> UserError:
    return UserError(
        f"{path}: the NPNet architecture {origin} is not usable: {detail}. {WHAT_IS_A_CHECKPOINT}"
    )


def _check_config_values(data: dict[str, Any], path: Any, origin: str) -> None:
    """Types and ``CONFIG_LIMITS`` of NPNetConfig fields (a dict), before anything is built from them."""
    for name, limit in CONFIG_LIMITS.items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_config(path, origin, f"{name} must be an integer; got {value!r}")
        low = 0 if name in _NON_NEGATIVE else 1
        if not low <= value <= limit:
            raise bad_config(path, origin, f"{name}={value} is outside the limit {low}..{limit}")
    family = data.get("family")
    if family is not None and (not isinstance(family, str) or not 0 < len(family) <= 64):
        raise bad_config(path, origin, f"family must be a model family name or null; got {family!r:.80}")
    for name in ("use_svd_branch", "use_residual_branch", "token_into_residual"):
        if name in data and not isinstance(data[name], bool):
            raise bad_config(path, origin, f"{name} must be true or false; got {data[name]!r}")
    backbone = data.get("backbone", "")
    if not isinstance(backbone, str) or len(backbone) > BACKBONE_LIMITS["name"]:
        raise bad_config(path, origin, f"backbone must be a timm model name; got {backbone!r:.80}")
    kwargs = data.get("backbone_kwargs", ())
    if not isinstance(kwargs, (list, tuple)) or len(kwargs) > BACKBONE_LIMITS["list"]:
        raise bad_config(
            path, origin, f"backbone_kwargs must be a short list of [name, value] pairs; got {kwargs!r:.80}"
        )
    for pair in kwargs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise bad_config(path, origin, f"backbone_kwargs entry {pair!r:.80} is not a [name, value] pair")
        name, value = pair
        values = value if isinstance(value, (list, tuple)) else [value]
        limit = BACKBONE_LIMITS["window_size" if name == "window_size" else "number"]
        ok = len(values) <= BACKBONE_LIMITS["list"] and all(
            isinstance(v, (bool, str))
            or (isinstance(v, (int, float)) and math.isfinite(v) and abs(v) <= limit)
            for v in values
        )
        if not ok:
            raise bad_config(
                path,
                origin,
                f"backbone_kwargs {name}={value!r:.80} is outside the limits (numbers up to {limit})",
            )


def _infer_from_shapes(shapes: dict[str, Shape], path: Any) -> NPNetConfig:
    if "embeeding.linear.weight" not in shapes:
        raise not_npnet(
            path,
            "no text embedding weights (embeeding.linear.weight) found; "
            f"keys start with {few(sorted({k.split('.')[0] for k in shapes}))}",
        )
    try:
        in_features = shapes["embeeding.linear.weight"][1]
        if in_features % 77:
            raise not_npnet(path, f"text embedding input {in_features} is not 77 x text width")
        channels = shapes["embeeding.linear.weight"][0] // 2  # AdaGroupNorm: scale and shift per channel
        fields: dict[str, Any] = {"text_dim": in_features // 77, "latent_channels": channels}
        if in_features // 77 in LEGACY_FAMILIES and channels == 4:
            fields["family"] = LEGACY_FAMILIES[in_features // 77]
        fields.update(_infer_svd(shapes, math.isqrt(channels)))
        fields.update(_infer_backbone(shapes))
        return NPNetConfig(**fields)
    except UserError:
        raise
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
        raise not_npnet(path, f"its tensors do not form an NPNet ({type(err).__name__}: {err})") from err


def _infer_svd(shapes: dict[str, Shape], grid: int = 2) -> dict[str, Any]:
    if "unet_svd.mlp1.0.weight" not in shapes:
        return {"use_svd_branch": False}
    hidden, dim = shapes["unet_svd.mlp1.0.weight"]
    fields = {
        "latent_size": dim // max(grid, 1),
        "svd_hidden": hidden,
        "svd_mlp4_hidden": shapes["unet_svd.mlp4.0.weight"][0],
    }
    fields["attn_heads"] = 8 if dim % 8 == 0 else 1
    return fields


def _infer_backbone(shapes: dict[str, Shape]) -> dict[str, Any]:
    if "unet_embedding.upconv.weight" not in shapes:
        return {"use_residual_branch": False}
    img_size = 32 * shapes["unet_embedding.upconv.weight"][1]
    embed_dim = shapes["unet_embedding.swin.patch_embed.proj.weight"][0]
    depths, heads, window = [], [], 7
    for layer in range(4):
        blocks = {
            k.split(".")[5] for k in shapes if k.startswith(f"unet_embedding.swin.layers.{layer}.blocks.")
        }
        depths.append(len(blocks))
        table = shapes[f"unet_embedding.swin.layers.{layer}.blocks.0.attn.relative_position_bias_table"]
        heads.append(table[1])
        if layer == 0:
            window = (round(table[0] ** 0.5) + 1) // 2
    kwargs = (
        ("embed_dim", embed_dim),
        ("depths", tuple(depths)),
        ("num_heads", tuple(heads)),
        ("window_size", window),
    )
    if img_size == 224 and kwargs == (
        ("embed_dim", 96),
        ("depths", (2, 2, 6, 2)),
        ("num_heads", (3, 6, 12, 24)),
        ("window_size", 7),
    ):
        kwargs = ()
    return {"backbone_img_size": img_size, "backbone_kwargs": kwargs}
