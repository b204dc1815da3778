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
import math
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download, list_repo_files
from safetensors import safe_open
from safetensors.torch import save_file

from npnet.errors import UserError
from npnet.io import atomic_write_with
from npnet.model import NPNET_PRESETS, NPNet, NPNetConfig, describe_text_width, models_for_text_width

OFFICIAL_REPO = "Klayand/GoldenNoiseModel"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_TOP_KEYS = ("unet_svd", "unet_embedding", "embeeding", "token_branch")  # token_branch: token variants
_ALIASES = {"text_embedding": "embeeding", "embedding": "embeeding", "_alpha": "alpha", "_beta": "beta"}


@dataclass(frozen=True)
class HubCheckpoint:
    """One released NPNet file on the hub and the model family it was trained for.

    ``match``: name fragments (lower case) that identify the file when ``filename`` is not in the repo
    (the official file names were never checked against the hub): ``resolve_checkpoint`` then lists the
    repo and downloads the one checkpoint file whose name contains a fragment and none of ``exclude``.
    """

    repo_id: str
    filename: str
    family: str  # NPNET_PRESETS key: "sdxl" or "dit"
    description: str
    match: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


HUB_CHECKPOINTS: dict[str, HubCheckpoint] = {
    "sdxl": HubCheckpoint(
        OFFICIAL_REPO, "sdxl.pth", "sdxl", "official, SDXL", ("sdxl", "xl"), ("dreamshaper", "dit", "hunyuan")
    ),
    "dreamshaper": HubCheckpoint(
        OFFICIAL_REPO, "dreamshaper.pth", "sdxl", "official, DreamShaper-xl-v2-turbo", ("dreamshaper",)
    ),
    "dit": HubCheckpoint(OFFICIAL_REPO, "dit.pth", "dit", "official, Hunyuan-DiT", ("dit", "hunyuan")),
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
        return _download(entry.repo_id, entry.filename, entry)
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


def _download(repo_id: str, filename: str, entry: HubCheckpoint | None = None) -> Path:
    """``hf_hub_download``; a file missing from the repo is matched by family (``entry``) or listed."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename))
    except LocalEntryNotFoundError as err:  # offline / unreachable (before EntryNotFoundError: a subclass)
        raise UserError(
            f"NPNet checkpoint {repo_id}/{filename} is not in the local cache and the hub cannot be reached "
            f"(HF_HUB_OFFLINE or no network). Download it where the hub is reachable with "
            f"`huggingface-cli download {repo_id} {filename}`, or pass a local path."
        ) from err
    except RepositoryNotFoundError as err:
        raise UserError(f"hub repository {repo_id!r} does not exist or is private") from err
    except EntryNotFoundError:  # RemoteEntryNotFoundError: the repo has no such file
        if entry is None:
            return _raise_listing(repo_id, filename)
        return _download(repo_id, _family_match(entry, filename))


def _family_match(entry: HubCheckpoint, missing: str) -> str:
    """The one checkpoint file of ``entry.repo_id`` whose name names the family (``entry.match``)."""
    files = _checkpoint_files(entry.repo_id)
    found = [f for f in files if _names_family(f, entry)]
    if len(found) == 1:
        return found[0]
    what = "several files match" if found else "no file matches"
    raise UserError(
        f"{missing!r} is not in {entry.repo_id} and {what} the {entry.description} checkpoint "
        f"(a name containing {' or '.join(map(repr, entry.match))}): "
        f"{found or files}. Pass the file as '{entry.repo_id}/<file>' or a local path"
    )


def _names_family(filename: str, entry: HubCheckpoint) -> bool:
    name = filename.rsplit("/", 1)[-1].lower()
    return any(m in name for m in entry.match) and not any(x in name for x in entry.exclude)


def _checkpoint_files(repo_id: str) -> list[str]:
    """The repo's checkpoint files (``list_repo_files``); a listing failure says what to pass instead."""
    try:
        files = list_repo_files(repo_id)
    except Exception as err:  # offline or unreachable: say what we know
        known = [f"{k} -> {v.filename}" for k, v in HUB_CHECKPOINTS.items() if v.repo_id == repo_id]
        raise UserError(
            f"cannot list {repo_id!r} ({type(err).__name__}); known files: {known or 'none'}. "
            "Pass filename=... or a local path"
        ) from err
    return sorted(f for f in files if f.endswith(CHECKPOINT_SUFFIXES))


def _raise_listing(repo_id: str, filename: str | None) -> Path:
    files = _checkpoint_files(repo_id)
    missing = f"{filename!r} is not in" if filename else "choose a checkpoint file from"
    raise UserError(f"{missing} {repo_id}: found {files}")


# -- reading -----------------------------------------------------------------------------------
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
    "latent_channels": 4,
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
BACKBONE_LIMITS: dict[str, int] = {"window_size": 16, "number": 4096, "list": 16, "name": 200}
_SHAPE = tuple[int, ...]


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint holds, read without building its network: flat keys -> shapes, metadata, and the
    architecture (from the metadata or the shapes), checked against every tensor shape."""

    path: Path
    shapes: dict[str, _SHAPE]
    meta: dict[str, Any]
    config: NPNetConfig


def _not_npnet(path: Any, detail: str) -> UserError:
    return UserError(f"{path} is not an NPNet checkpoint: {detail}. {WHAT_IS_A_CHECKPOINT}")


def inspect_checkpoint(spec: str | os.PathLike, filename: str | None = None) -> CheckpointHeader:
    """Resolve ``spec`` and check its header (shapes, metadata, architecture) without building the NPNet.

    Cheap: safetensors tensors are not read; a ``.pth`` is read (its size bounds what that allocates).
    Raises a UserError naming the file for anything that ``load_npnet`` would refuse before loading.
    """
    path = resolve_checkpoint(spec, filename)
    shapes, meta, _ = _open(path)
    return CheckpointHeader(path, shapes, meta, _checked_config(shapes, meta, path))


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely read any layout into (flat state dict, metadata); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"NPNet checkpoint file {path} does not exist")
    _, meta, tensors = _open(path)
    return tensors(), meta


def _open(path: Path) -> tuple[dict[str, _SHAPE], dict[str, Any], Callable[[], dict[str, torch.Tensor]]]:
    """(flat key -> shape, metadata, a function reading the flat tensors); nothing big is allocated."""
    kind = _file_kind(path)
    if kind == "safetensors":
        return _open_safetensors(path)
    flat, meta = _read_torch(path, kind)
    return {k: tuple(v.shape) for k, v in flat.items()}, meta, lambda: flat


def _file_kind(path: Path) -> str:
    """The format from the first bytes: "safetensors", "zip" (torch.save) or "pickle" (legacy torch.save)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as err:
        raise UserError(f"cannot read NPNet checkpoint {path}: {err}") from err
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0:
        return "safetensors"  # 8-byte little-endian header length, then the JSON header
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle PROTO opcode
        return "pickle"
    raise _not_npnet(path, f"it is neither a safetensors nor a PyTorch file (it starts with {head[:8]!r})")


def _open_safetensors(path: Path):
    def unreadable(err: Exception) -> UserError:
        return UserError(
            f"{path} is not a readable safetensors file (corrupt or truncated?): {err}. {WHAT_IS_A_CHECKPOINT}"
        )

    try:  # the header only: names, shapes (bounded by the file size) and metadata
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = dict(handle.metadata() or {})
            raw = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:
        raise unreadable(err) from err
    names = {key: _flat_key(key) for key in raw}
    shapes = _scalar_shapes({names[k]: shape for k, shape in raw.items()})

    def tensors() -> dict[str, torch.Tensor]:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                flat = {names[key]: handle.get_tensor(key) for key in names}
        except Exception as err:
            raise unreadable(err) from err
        return _scalar_tensors(flat)

    return shapes, _parse_meta(meta, path), tensors


def _read_torch(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        if kind == "zip":
            _check_zip(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise _unreadable_torch(path, err) from err
        raise UserError(
            f"{path} contains objects other than tensors and plain containers; refusing to "
            f"unpickle it (weights_only=True): {err}. {WHAT_IS_A_CHECKPOINT}"
        ) from err
    except Exception as err:  # the unpickler raises KeyError, IndexError, ... on foreign bytes
        raise _unreadable_torch(path, err) from err
    if not isinstance(obj, dict):
        raise _not_npnet(path, f"it holds a {type(obj).__name__}, not a dict of tensors")
    meta = {}
    if "npnet_config" in obj:
        meta["npnet_config"] = obj.pop("npnet_config")
    return _flatten(obj, path), _parse_meta(meta, path)


def _unreadable_torch(path: Path, err: Exception) -> UserError:
    detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return UserError(
        f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {detail}. {WHAT_IS_A_CHECKPOINT}"
    )


def _check_zip(path: Path) -> None:
    """torch.save's zip stores records uncompressed; their sizes must fit in the file (no zip bombs)."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    declared = sum(info.file_size for info in infos)
    compressed = [info.filename for info in infos if info.compress_type != zipfile.ZIP_STORED]
    if compressed or declared > path.stat().st_size:
        raise _not_npnet(
            path,
            f"its zip archive declares {declared} bytes in a {path.stat().st_size}-byte file"
            + (f" and compressed records {_few(compressed, 3)}" if compressed else "")
            + " (torch.save writes uncompressed records)",
        )


def _parse_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The metadata with ``npnet_config`` (a JSON string in safetensors, a dict in .pth) as a dict."""
    if "npnet_config" not in meta:
        return meta
    config = meta["npnet_config"]
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path}: its metadata 'npnet_config' (the NPNet architecture) is not valid JSON ({err}). "
                f"{WHAT_IS_A_CHECKPOINT}; re-save it, or drop that metadata key so the architecture is read "
                "from the tensor shapes"
            ) from err
    if not isinstance(config, dict):
        raise _bad_config(
            path,
            "declared in its metadata",
            f"'npnet_config' is a {type(config).__name__}, not a JSON object",
        )
    return {**meta, "npnet_config": config}


def _flat_key(key: str) -> str:
    top, _, rest = key.partition(".")
    top = _ALIASES.get(top, top)
    return f"{top}.{rest}" if rest else top


def _flatten(raw: dict[Any, Any], path: Any = "checkpoint") -> dict[str, torch.Tensor]:
    """Official nested / flat layouts -> the flat keys of ``NPNet.state_dict()``."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise _not_npnet(path, f"it has a key {key!r} that is not a string")
        if isinstance(value, dict):
            top = _flat_key(key)
            for sub, tensor in value.items():
                if not isinstance(sub, str) or not isinstance(tensor, torch.Tensor):
                    raise _not_npnet(path, f"entry {key}.{sub} is a {type(tensor).__name__}, not a tensor")
                flat[f"{top}.{sub}"] = tensor
        elif isinstance(value, torch.Tensor):
            flat[_flat_key(key)] = value
        elif (
            _flat_key(key) in ("alpha", "beta")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            flat[_flat_key(key)] = torch.tensor([float(value)])
        else:
            raise _not_npnet(path, f"it has an unexpected entry {key!r} of type {type(value).__name__}")
    return _scalar_tensors(flat)


def _scalar_tensors(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for name in ("alpha", "beta"):  # stored as () or (1,); other sizes are reported as wrong shapes
        if name in flat and flat[name].numel() == 1:
            flat[name] = flat[name].reshape(1).float()
    return flat


def _scalar_shapes(shapes: dict[str, _SHAPE]) -> dict[str, _SHAPE]:
    for name in ("alpha", "beta"):
        if name in shapes and math.prod(shapes[name]) == 1:
            shapes[name] = (1,)
    return shapes


# -- architecture ------------------------------------------------------------------------------
def infer_config(flat: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> NPNetConfig:
    """The architecture from the metadata if present, else from tensor shapes (official 77-token layout)."""
    if meta and meta.get("npnet_config"):
        return NPNetConfig.from_dict(meta["npnet_config"])
    return _infer_from_shapes({k: tuple(v.shape) for k, v in flat.items()}, "checkpoint")


def _checked_config(shapes: dict[str, _SHAPE], meta: dict[str, Any], path: Path) -> NPNetConfig:
    """The declared (metadata) or inferred architecture, within ``CONFIG_LIMITS`` and matching every shape.

    Builds the NPNet on the meta device only (no memory), so a file that declares a huge architecture
    is refused before anything is allocated.
    """
    declared = meta.get("npnet_config")
    if declared is not None:
        origin = "declared in its metadata ('npnet_config')"
        if "text_dim" not in declared:
            raise _bad_config(
                path, origin, "it has no text_dim (the prompt-embedding width, e.g. 2048 for SDXL)"
            )
        _check_config_values(declared, path, origin)
        try:
            config = NPNetConfig.from_dict(declared)
        except (TypeError, ValueError) as err:
            raise _bad_config(path, origin, str(err)) from err
    else:
        origin = "inferred from its tensor shapes"
        config = _infer_from_shapes(shapes, path)
        _check_config_values(config.to_dict(), path, origin)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in NPNet(config).state_dict().items()}
    except Exception as err:  # timm: unknown backbone name or keyword
        raise _bad_config(path, origin, f"{config} cannot be built ({type(err).__name__}: {err})") from err
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [
        f"{k}: file {shapes[k]} vs model {v}" for k, v in expected.items() if k in shapes and shapes[k] != v
    ]
    if missing or unexpected or wrong:
        raise UserError(
            f"{path} does not match the NPNet architecture {origin} {config}: "
            f"missing keys {_few(missing)}; unexpected keys {_few(unexpected)}; wrong shapes {_few(wrong)}. "
            f"{WHAT_IS_A_CHECKPOINT}"
        )
    return config


def _bad_config(path: Any, origin: str, detail: str) -> UserError:
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
            raise _bad_config(path, origin, f"{name} must be an integer; got {value!r}")
        if not 1 <= value <= limit:
            raise _bad_config(path, origin, f"{name}={value} is outside the limit 1..{limit}")
    for name in ("use_svd_branch", "use_residual_branch", "token_into_residual"):
        if name in data and not isinstance(data[name], bool):
            raise _bad_config(path, origin, f"{name} must be true or false; got {data[name]!r}")
    backbone = data.get("backbone", "")
    if not isinstance(backbone, str) or len(backbone) > BACKBONE_LIMITS["name"]:
        raise _bad_config(path, origin, f"backbone must be a timm model name; got {backbone!r:.80}")
    kwargs = data.get("backbone_kwargs", ())
    if not isinstance(kwargs, (list, tuple)) or len(kwargs) > BACKBONE_LIMITS["list"]:
        raise _bad_config(
            path, origin, f"backbone_kwargs must be a short list of [name, value] pairs; got {kwargs!r:.80}"
        )
    for pair in kwargs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise _bad_config(path, origin, f"backbone_kwargs entry {pair!r:.80} is not a [name, value] pair")
        name, value = pair
        values = value if isinstance(value, (list, tuple)) else [value]
        limit = BACKBONE_LIMITS["window_size" if name == "window_size" else "number"]
        ok = len(values) <= BACKBONE_LIMITS["list"] and all(
            isinstance(v, (bool, str))
            or (isinstance(v, (int, float)) and math.isfinite(v) and abs(v) <= limit)
            for v in values
        )
        if not ok:
            raise _bad_config(
                path,
                origin,
                f"backbone_kwargs {name}={value!r:.80} is outside the limits (numbers up to {limit})",
            )


def _infer_from_shapes(shapes: dict[str, _SHAPE], path: Any) -> NPNetConfig:
    if "embeeding.linear.weight" not in shapes:
        raise _not_npnet(
            path,
            "no text embedding weights (embeeding.linear.weight) found; "
            f"keys start with {_few(sorted({k.split('.')[0] for k in shapes}))}",
        )
    try:
        in_features = shapes["embeeding.linear.weight"][1]
        if in_features % 77:
            raise _not_npnet(path, f"text embedding input {in_features} is not 77 x text width")
        fields: dict[str, Any] = {"text_dim": in_features // 77}
        fields.update(_infer_svd(shapes))
        fields.update(_infer_backbone(shapes))
        return NPNetConfig(**fields)
    except UserError:
        raise
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as err:
        raise _not_npnet(path, f"its tensors do not form an NPNet ({type(err).__name__}: {err})") from err


def _infer_svd(shapes: dict[str, _SHAPE]) -> dict[str, Any]:
    if "unet_svd.mlp1.0.weight" not in shapes:
        return {"use_svd_branch": False}
    hidden, dim = shapes["unet_svd.mlp1.0.weight"]
    fields = {
        "latent_size": dim // 2,
        "svd_hidden": hidden,
        "svd_mlp4_hidden": shapes["unet_svd.mlp4.0.weight"][0],
    }
    fields["attn_heads"] = 8 if dim % 8 == 0 else 1
    return fields


def _infer_backbone(shapes: dict[str, _SHAPE]) -> dict[str, Any]:
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


# -- loading -----------------------------------------------------------------------------------
def load_npnet(
    spec: str | os.PathLike,
    filename: str | None = None,
    device="cpu",
    expect: str | NPNetConfig | int | None = None,
    **options,
) -> NPNet:
    """Resolve, read, validate and load an NPNet in float32 (its SVD has no half kernels; the forward
    returns the input's dtype); ``expect`` (preset, config or text width) checks the model family.

    The architecture is checked against the file's tensor shapes (and ``CONFIG_LIMITS``) before the
    network is built or a safetensors tensor is read."""
    path = resolve_checkpoint(spec, filename)
    shapes, meta, tensors = _open(path)
    config = _checked_config(shapes, meta, path)
    check_family(config, expect, path)
    flat = tensors()
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
