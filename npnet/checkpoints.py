"""NPNet checkpoint formats: official ``.pth``, community safetensors, ours; hub resolution; safe loading.

Layouts read (all normalised to the flat keys of ``NPNet.state_dict()``):

* official ``.pth``: ``{"unet_svd": sd, "unet_embedding": sd, "embeeding": sd, "alpha": t, "beta": t}``
  (``embedding`` / ``text_embedding`` accepted as aliases of the misspelt ``embeeding``);
* community safetensors: flat ``unet_svd.*``, ``unet_embedding.*``, ``embeeding.*`` or
  ``text_embedding.*``, ``alpha``, ``beta``;
* ours (``save_safetensors``): the flat layout with ``embeeding.*`` and the ``NPNetConfig`` as JSON in
  the safetensors metadata (key ``npnet_config``).

A checkpoint is untrusted input: only safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from npnet.errors import UserError
from npnet.io import atomic_write_with
from npnet.model import NPNET_PRESETS, NPNet, NPNetConfig, describe_text_width, models_for_text_width

OFFICIAL_REPO = "Klayand/GoldenNoiseModel"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_TOP_KEYS = ("unet_svd", "unet_embedding", "embeeding")
_ALIASES = {"text_embedding": "embeeding", "embedding": "embeeding", "_alpha": "alpha", "_beta": "beta"}


@dataclass(frozen=True)
class HubCheckpoint:
    """One released NPNet file on the hub and the model family it was trained for."""

    repo_id: str
    filename: str
    family: str  # NPNET_PRESETS key: "sdxl" or "dit"
    description: str


HUB_CHECKPOINTS: dict[str, HubCheckpoint] = {
    "sdxl": HubCheckpoint(OFFICIAL_REPO, "sdxl.pth", "sdxl", "official, SDXL"),
    "dreamshaper": HubCheckpoint(
        OFFICIAL_REPO, "dreamshaper.pth", "sdxl", "official, DreamShaper-xl-v2-turbo"
    ),
    "dit": HubCheckpoint(OFFICIAL_REPO, "dit.pth", "dit", "official, Hunyuan-DiT"),
    "lucipher-sdxl": HubCheckpoint(
        "LucipherDev/Golden-Noise-NPNets", "sdxl.safetensors", "sdxl", "community"
    ),
    "lucipher-dreamshaper": HubCheckpoint(
        "LucipherDev/Golden-Noise-NPNets", "dreamshaper.safetensors", "sdxl", "community"
    ),
    "lucipher-dit": HubCheckpoint("LucipherDev/Golden-Noise-NPNets", "dit.safetensors", "dit", "community"),
    "asagi4-sdxl": HubCheckpoint("asagi4/NPNet", "npnet-sdxl.safetensors", "sdxl", "community"),
    "asagi4-dreamshaper": HubCheckpoint("asagi4/NPNet", "npnet-dreamshaper.safetensors", "sdxl", "community"),
    "asagi4-dit": HubCheckpoint("asagi4/NPNet", "npnet-dit.safetensors", "dit", "community"),
}


# -- resolution --------------------------------------------------------------------------------
def resolve_checkpoint(spec: str | os.PathLike, filename: str | None = None) -> Path:
    """Local file/folder, a ``HUB_CHECKPOINTS`` name, ``owner/repo`` + filename, or ``owner/repo/file``."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        return _checkpoint_in_folder(path) if filename is None else _existing(path / filename)
    spec = str(spec)
    if spec.startswith(("/", "./", "../", "~")) or os.sep + os.sep in spec:
        raise UserError(f"NPNet checkpoint file {spec} does not exist")
    if filename is None and spec in HUB_CHECKPOINTS:
        entry = HUB_CHECKPOINTS[spec]
        return _download(entry.repo_id, entry.filename)
    parts = spec.split("/")
    if len(parts) == 2 and all(parts):
        return _download(spec, filename) if filename else _raise_listing(spec, None)
    if len(parts) > 2 and filename is None and spec.endswith(CHECKPOINT_SUFFIXES):
        return _download("/".join(parts[:2]), "/".join(parts[2:]))
    names = ", ".join(HUB_CHECKPOINTS)
    raise UserError(
        f"NPNet checkpoint {spec!r} is neither a local file or folder, nor a known name ({names}), "
        "nor a hub id like 'owner/repo' with filename=... or 'owner/repo/file.safetensors'"
    )


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"NPNet checkpoint file {path} does not exist")
    return path


def _checkpoint_in_folder(folder: Path) -> Path:
    preferred = folder / "npnet.safetensors"
    if preferred.is_file():
        return preferred
    found = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise UserError(
        f"folder {folder} holds {len(found)} checkpoint files ({[p.name for p in found]}); "
        "pass the file itself or filename=..."
    )


def _download(repo_id: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename))
    except LocalEntryNotFoundError as err:
        raise UserError(
            f"NPNet checkpoint {repo_id}/{filename} is not in the local cache and the hub cannot be reached "
            f"(HF_HUB_OFFLINE or no network). Download it where the hub is reachable with "
            f"`huggingface-cli download {repo_id} {filename}`, or pass a local path."
        ) from err
    except RepositoryNotFoundError as err:
        raise UserError(f"hub repository {repo_id!r} does not exist or is private") from err
    except EntryNotFoundError:
        return _raise_listing(repo_id, filename)


def _raise_listing(repo_id: str, filename: str | None) -> Path:
    from huggingface_hub import list_repo_files

    try:
        files = [f for f in list_repo_files(repo_id) if f.endswith(CHECKPOINT_SUFFIXES)]
    except Exception as err:  # offline or unreachable: say what we know
        known = [f"{k} -> {v.filename}" for k, v in HUB_CHECKPOINTS.items() if v.repo_id == repo_id]
        raise UserError(
            f"cannot list {repo_id!r} ({type(err).__name__}); known files: {known or 'none'}. "
            "Pass filename=... or a local path"
        ) from err
    missing = f"{filename!r} is not in" if filename else "choose a checkpoint file from"
    raise UserError(f"{missing} {repo_id}: found {files}")


# -- reading -----------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely read any layout into (flat state dict, metadata); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"NPNet checkpoint file {path} does not exist")
    raw, meta = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pickle(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path} holds a {type(raw).__name__}, not an NPNet state dict")
    return _flatten(raw, meta), meta


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:
        raise UserError(f"{path} is not a readable safetensors file (corrupt or truncated?): {err}") from err
    if "npnet_config" in meta:
        meta["npnet_config"] = json.loads(meta["npnet_config"])
    return tensors, meta


def _read_pickle(path: Path) -> tuple[Any, dict[str, Any]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path} contains objects other than tensors and plain containers; refusing to "
            f"unpickle it (weights_only=True): {err}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {err}"
        ) from err
    meta = {}
    if isinstance(obj, dict) and isinstance(obj.get("npnet_config"), dict):
        meta["npnet_config"] = obj.pop("npnet_config")
    return obj, meta


def _flatten(raw: dict[str, Any], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        top, _, rest = key.partition(".")
        top = _ALIASES.get(top, top)
        if isinstance(value, dict):
            flat.update({f"{top}.{k}": v for k, v in value.items()})
        elif isinstance(value, torch.Tensor):
            flat[f"{top}.{rest}" if rest else top] = value
        elif isinstance(value, (int, float)) and top in ("alpha", "beta"):
            flat[top] = torch.tensor([float(value)])
        elif key != "npnet_config":
            raise UserError(f"unexpected entry {key!r} of type {type(value).__name__} in the checkpoint")
    for name in ("alpha", "beta"):
        if name in flat:
            flat[name] = flat[name].reshape(1).float()
    return flat


# -- config inference ----------------------------------------------------------------------------
def infer_config(flat: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> NPNetConfig:
    """The architecture from the metadata if present, else from tensor shapes (official 77-token layout)."""
    if meta and meta.get("npnet_config"):
        return NPNetConfig.from_dict(meta["npnet_config"])
    if "embeeding.linear.weight" not in flat:
        raise UserError(
            "no text embedding weights (embeeding.linear.weight) found: not an NPNet checkpoint; "
            f"keys start with {sorted({k.split('.')[0] for k in flat})}"
        )
    in_features = flat["embeeding.linear.weight"].shape[1]
    if in_features % 77:
        raise UserError(
            f"text embedding input {in_features} is not 77 x text width: not an NPNet checkpoint"
        )
    fields: dict[str, Any] = {"text_dim": in_features // 77}
    fields.update(_infer_svd(flat))
    fields.update(_infer_backbone(flat))
    return NPNetConfig(**fields)


def _infer_svd(flat: dict[str, torch.Tensor]) -> dict[str, Any]:
    if "unet_svd.mlp1.0.weight" not in flat:
        return {"use_svd_branch": False}
    hidden, dim = flat["unet_svd.mlp1.0.weight"].shape
    fields = {
        "latent_size": dim // 2,
        "svd_hidden": hidden,
        "svd_mlp4_hidden": flat["unet_svd.mlp4.0.weight"].shape[0],
    }
    fields["attn_heads"] = 8 if dim % 8 == 0 else 1
    return fields


def _infer_backbone(flat: dict[str, torch.Tensor]) -> dict[str, Any]:
    if "unet_embedding.upconv.weight" not in flat:
        return {"use_residual_branch": False}
    img_size = 32 * flat["unet_embedding.upconv.weight"].shape[1]
    embed_dim = flat["unet_embedding.swin.patch_embed.proj.weight"].shape[0]
    depths, heads, window = [], [], 7
    for layer in range(4):
        blocks = {
            k.split(".")[5] for k in flat if k.startswith(f"unet_embedding.swin.layers.{layer}.blocks.")
        }
        depths.append(len(blocks))
        table = flat[f"unet_embedding.swin.layers.{layer}.blocks.0.attn.relative_position_bias_table"]
        heads.append(table.shape[1])
        if layer == 0:
            window = (round(table.shape[0] ** 0.5) + 1) // 2
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


# -- loading -----------------------------------------------------------------------------------
def load_npnet(
    spec: str | os.PathLike,
    filename: str | None = None,
    device="cpu",
    expect: str | NPNetConfig | int | None = None,
    **options,
) -> NPNet:
    """Resolve, read, validate and load an NPNet in float32 (its SVD has no half kernels; the forward
    returns the input's dtype); ``expect`` (preset, config or text width) checks the model family."""
    path = resolve_checkpoint(spec, filename)
    flat, meta = read_checkpoint(path)
    config = infer_config(flat, meta)
    check_family(config, expect, path)
    net = NPNet(config, **options)
    _load_validated(net, flat, path)
    return net.to(device=device).eval()


def check_family(
    config: NPNetConfig, expect: str | NPNetConfig | int | None, source: Any = "checkpoint"
) -> None:
    """Raise a ValueError naming the right model family when text widths disagree."""
    if expect is None:
        return
    if isinstance(expect, str):
        expect = NPNET_PRESETS[expect]
    want = expect if isinstance(expect, int) else expect.text_dim
    if config.text_dim != want:
        raise UserError(
            f"{source}: text embedding is {config.text_len}x{config.text_dim}: this is "
            f"{describe_text_width(config.text_dim)}; the chosen model needs the NPNet of "
            f"{models_for_text_width(want)}. Choose a matching model or NPNet checkpoint"
        )


def _load_validated(net: NPNet, flat: dict[str, torch.Tensor], path: Path) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    wrong = [
        f"{k}: file {tuple(flat[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in flat and flat[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        raise UserError(
            f"{path} does not match the NPNet architecture {net.config}: "
            f"missing keys {_few(missing)}; unexpected keys {_few(unexpected)}; "
            f"wrong shapes {_few(wrong)}"
        )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in flat.items()}, strict=True)


def _few(items: list[str], n: int = 8) -> str:
    return "none" if not items else f"{items[:n]}" + (f" (+{len(items) - n} more)" if len(items) > n else "")


# -- saving ------------------------------------------------------------------------------------
def save_npnet(net: NPNet, path: str | os.PathLike) -> Path:
    """Flat layout (``unet_svd.*``, ``unet_embedding.*``, ``embeeding.*``, alpha, beta) + config metadata."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / "npnet.safetensors"
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    meta = {"format": "npnet-studio-flat-v1", "npnet_config": json.dumps(net.config.to_dict())}
    return atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def save_official(net: NPNet, path: str | os.PathLike) -> Path:
    """The official ``.pth`` layout; the config is added only when shapes cannot tell it."""
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    obj: dict[str, Any] = {top: {} for top in _TOP_KEYS if any(k.startswith(top + ".") for k in state)}
    for key, value in state.items():
        top, _, rest = key.partition(".")
        if rest:
            obj[top][rest] = value
        else:
            obj[top] = value
    if infer_config(state) != net.config:
        obj["npnet_config"] = net.config.to_dict()
    return atomic_write_with(Path(path), lambda tmp: torch.save(obj, tmp))
