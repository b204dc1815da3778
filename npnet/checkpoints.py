"""NPNet checkpoint formats and loading: official ``.pth``, community safetensors, ours; ``NPNet`` with the
Hugging Face convention (``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``); safe loading.

Layouts read (all normalised to the flat keys of ``NPNet.state_dict()``):

* official ``.pth``: ``{"unet_svd": sd, "unet_embedding": sd, "embeeding": sd, "alpha": t, "beta": t}``
  (``embedding`` / ``text_embedding`` accepted as aliases of the misspelt ``embeeding``);
* community safetensors: flat ``unet_svd.*``, ``unet_embedding.*``, ``embeeding.*`` or
  ``text_embedding.*``, ``alpha``, ``beta``;
* ours (``save_npnet``): the flat layout with ``embeeding.*`` and the ``NPNetConfig`` as JSON in
  the safetensors metadata (key ``npnet_config``);
* the Hugging Face ``save_pretrained`` folder (``NPNet.save_pretrained``, ``push_to_hub``): ours as
  ``model.safetensors`` beside a ``config.json`` holding the ``__init__`` arguments (``config``,
  ``size_strategy``, ``long_prompt``); a ``model.safetensors`` without metadata takes its architecture
  from that ``config.json``.

Where a spec points (local path, released name, hub repo) is ``npnet.hub``; what architecture a file
declares and whether its shapes match is ``npnet.architecture``. A checkpoint is untrusted input: only
safetensors or ``torch.load(weights_only=True)``, and the architecture is checked before anything is built.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import safe_open
from safetensors.torch import save_file

from npnet import model as bare
from npnet.architecture import (  # noqa: F401 - re-exported: the checkpoint API in one module
    BACKBONE_LIMITS,
    CONFIG_LIMITS,
    WHAT_IS_A_CHECKPOINT,
    Shape,
    bad_config,
    checked_config,
    few,
    infer_config,
    not_npnet,
)
from npnet.errors import UserError
from npnet.hub import (  # noqa: F401 - re-exported
    CHECKPOINT_SUFFIXES,
    CONFIG_NAME,
    HUB_CHECKPOINTS,
    OFFICIAL_REPO,
    WEIGHTS_NAME,
    HubCheckpoint,
    HubOptions,
    pretrained_config,
    resolve_checkpoint,
)
from npnet.io import atomic_write_json, atomic_write_with
from npnet.model import NPNET_PRESETS, NPNetConfig, describe_text_width, models_for_text_width

PAPER_URL = "https://arxiv.org/abs/2411.09502"
PRETRAINED_FORMAT = "npnet-studio-pretrained-v1"
_TOP_KEYS = ("unet_svd", "unet_embedding", "embeeding", "token_branch")  # token_branch: token variants
_ALIASES = {"text_embedding": "embeeding", "embedding": "embeeding", "_alpha": "alpha", "_beta": "beta"}
_OPTIONS = {"size_strategy": bare.SIZE_STRATEGIES, "long_prompt": bare.LONG_PROMPT_STRATEGIES}
MODEL_CARD = """---
{{ card_data }}
---

# NPNet (golden noise)

A noise prompt network from "Golden Noise for Diffusion Models: A Learning Framework" ({{ paper_url }}):
it turns a random Gaussian latent x_T and the prompt embedding into a golden latent for the diffusion
model's `latents=`. Load it with NPNet Studio: `from npnet import NPNet; net = NPNet.from_pretrained("<this repo>")`.
"""


class NPNet(
    bare.NPNet,
    PyTorchModelHubMixin,
    library_name="npnet-studio",
    paper_url=PAPER_URL,
    tags=["npnet", "golden-noise", "text-to-image"],
    model_card_template=MODEL_CARD,
):
    """``npnet.model.NPNet`` with the Hugging Face convention; ``load_npnet`` returns one.

    ``NPNet.from_pretrained(spec)`` takes everything ``load_npnet`` takes (a ``save_pretrained`` folder or
    hub repo, an official ``.pth``, a community or our safetensors file, a released name, ``owner/repo/file``)
    plus ``hf_hub_download``'s ``revision``, ``cache_dir``, ``token``, ``force_download`` and
    ``local_files_only``. ``save_pretrained(folder)`` writes ``model.safetensors`` (our layout, config in
    its metadata), ``config.json`` and a model card; ``push_to_hub(repo_id)`` uploads that folder.
    Weights load only in ``from_pretrained``, never in ``__init__``.
    """

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        filename: str | None = None,
        device="cpu",
        expect: str | NPNetConfig | int | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        **options,
    ) -> NPNet:
        hub = HubOptions(revision, cache_dir, token, force_download, local_files_only)
        return _load(cls, pretrained_model_name_or_path, filename, device, expect, hub, options)

    def _save_pretrained(self, save_directory: Path) -> None:
        save_npnet(self, Path(save_directory) / WEIGHTS_NAME)
        atomic_write_json(Path(save_directory) / CONFIG_NAME, self.init_arguments())

    def init_arguments(self) -> dict[str, Any]:
        """What ``config.json`` holds: the ``__init__`` arguments, the architecture as a plain dict."""
        return {
            "format": PRETRAINED_FORMAT,
            "config": self.config.to_dict(),
            "size_strategy": self.size_strategy,
            "long_prompt": self.long_prompt,
        }


# -- reading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint holds, read without building its network: flat keys -> shapes, metadata, the
    architecture (from the metadata, a save_pretrained ``config.json``, or the shapes), checked against
    every tensor shape, and the ``NPNet`` options its ``config.json`` sets."""

    path: Path
    shapes: dict[str, Shape]
    meta: dict[str, Any]
    config: NPNetConfig
    options: dict[str, str] = field(default_factory=dict)


def inspect_checkpoint(
    spec: str | os.PathLike, filename: str | None = None, hub: HubOptions | None = None
) -> CheckpointHeader:
    """Resolve ``spec`` and check its header (shapes, metadata, architecture) without building the NPNet.

    Cheap: safetensors tensors are not read; a ``.pth`` is read (its size bounds what that allocates).
    Raises a UserError naming the file for anything that ``load_npnet`` would refuse before loading.
    """
    return _header(resolve_checkpoint(spec, filename, hub))[0]


def _header(path: Path) -> tuple[CheckpointHeader, Callable[[], dict[str, torch.Tensor]]]:
    """The checked header of ``path`` and a function reading its tensors (see ``_open``)."""
    shapes, meta, tensors = _open(path)
    settings = _pretrained_settings(path)
    config = checked_config(shapes, meta, path) if meta.get("npnet_config") or not settings else None
    if settings.get("config") is not None:  # a save_pretrained config.json: it must agree with the file
        declared = checked_config(shapes, {"npnet_config": settings["config"]}, settings["path"])
        if config is not None and meta.get("npnet_config") and config != declared:
            raise UserError(
                f"{settings['path']} declares the NPNet architecture {declared}, but {path.name} beside it "
                f"declares {config}; save the folder again with NPNet.save_pretrained"
            )
        meta, config = {**meta, "npnet_config": settings["config"]}, declared
    if config is None:
        config = checked_config(shapes, meta, path)
    return CheckpointHeader(path, shapes, meta, config, settings.get("options", {})), tensors


def _pretrained_settings(weights: Path) -> dict[str, Any]:
    """A save_pretrained ``config.json`` beside ``weights`` read and checked: {"path", "config" (the
    architecture dict or None), "options" (size_strategy / long_prompt)}; {} when there is none."""
    path = pretrained_config(weights)
    if path is None:
        return {}
    fix = "NPNet.save_pretrained writes it; fix or delete it to use the weights' own metadata"
    if path.stat().st_size > 2**20:
        raise UserError(f"{path} is {path.stat().st_size} bytes, too large for an NPNet config.json; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a readable JSON config ({err}); {fix}") from err
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), (dict, type(None))):
        raise UserError(f"{path} must be a JSON object whose 'config' is the NPNet architecture; {fix}")
    options = {}
    for name, choices in _OPTIONS.items():
        if name in data:
            if data[name] not in choices:
                raise UserError(
                    f"{path}: {name} {data[name]!r:.80} is not one of {', '.join(choices)}; {fix}"
                )
            options[name] = data[name]
    return {"path": path, "config": data.get("config"), "options": options}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Safely read any layout into (flat state dict, metadata); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"NPNet checkpoint file {path} does not exist")
    _, meta, tensors = _open(path)
    return tensors(), meta


def _open(path: Path) -> tuple[dict[str, Shape], dict[str, Any], Callable[[], dict[str, torch.Tensor]]]:
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
    raise not_npnet(path, f"it is neither a safetensors nor a PyTorch file (it starts with {head[:8]!r})")


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
        raise UserError(  # PyTorch's own paragraph (err) goes to the traceback, not the message
            f"{path}: not a safetensors/.pth state dict; pickled code is refused (it holds objects other "
            f"than tensors and plain containers). {WHAT_IS_A_CHECKPOINT}"
        ) from err
    except Exception as err:  # the unpickler raises KeyError, IndexError, ... on foreign bytes
        raise _unreadable_torch(path, err) from err
    if not isinstance(obj, dict):
        raise not_npnet(path, f"it holds a {type(obj).__name__}, not a dict of tensors")
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
        raise not_npnet(
            path,
            f"its zip archive declares {declared} bytes in a {path.stat().st_size}-byte file"
            + (f" and compressed records {few(compressed, 3)}" if compressed else "")
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
        raise bad_config(
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
            raise not_npnet(path, f"it has a key {key!r} that is not a string")
        if isinstance(value, dict):
            top = _flat_key(key)
            for sub, tensor in value.items():
                if not isinstance(sub, str) or not isinstance(tensor, torch.Tensor):
                    raise not_npnet(path, f"entry {key}.{sub} is a {type(tensor).__name__}, not a tensor")
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
            raise not_npnet(path, f"it has an unexpected entry {key!r} of type {type(value).__name__}")
    return _scalar_tensors(flat)


def _scalar_tensors(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for name in ("alpha", "beta"):  # stored as () or (1,); other sizes are reported as wrong shapes
        if name in flat and flat[name].numel() == 1:
            flat[name] = flat[name].reshape(1).float()
    return flat


def _scalar_shapes(shapes: dict[str, Shape]) -> dict[str, Shape]:
    for name in ("alpha", "beta"):
        if name in shapes and math.prod(shapes[name]) == 1:
            shapes[name] = (1,)
    return shapes


# -- loading -----------------------------------------------------------------------------------
def load_npnet(
    spec: str | os.PathLike,
    filename: str | None = None,
    device="cpu",
    expect: str | NPNetConfig | int | None = None,
    hub: HubOptions | None = None,
    **options,
) -> NPNet:
    """Resolve, read, validate and load an NPNet in float32 (its SVD has no half kernels; the forward
    returns the input's dtype); ``expect`` (preset, config or text width) checks the model family.
    The function form of ``NPNet.from_pretrained``; ``options`` (``size_strategy``, ``long_prompt``)
    override those of a save_pretrained ``config.json``.

    The architecture is checked against the file's tensor shapes (and ``CONFIG_LIMITS``) before the
    network is built or a safetensors tensor is read."""
    return _load(NPNet, spec, filename, device, expect, hub, options)


def _load(cls, spec, filename, device, expect, hub: HubOptions | None, options: dict[str, Any]) -> NPNet:
    header, tensors = _header(resolve_checkpoint(spec, filename, hub))
    check_family(header.config, expect, header.path)
    flat = tensors()
    net = cls(header.config, **{**header.options, **options})
    _load_validated(net, flat, header.path)
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
    if isinstance(expect, NPNetConfig) and expect.family and config.family and expect.family != config.family:
        raise UserError(
            f"{source}: this NPNet was trained for the {config.family!r} model family "
            f"({config.text_len}x{config.text_dim} text, {config.latent_channels}-channel latents); the chosen "
            f"model needs one for {expect.family!r}. Choose a matching model or NPNet checkpoint"
        )


def _load_validated(net: bare.NPNet, flat: dict[str, torch.Tensor], path: Path) -> None:
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
            f"missing keys {few(missing)}; unexpected keys {few(unexpected)}; "
            f"wrong shapes {few(wrong)}"
        )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in flat.items()}, strict=True)


# -- saving ------------------------------------------------------------------------------------
def save_npnet(net: bare.NPNet, path: str | os.PathLike) -> Path:
    """Flat layout (``unet_svd.*``, ``unet_embedding.*``, ``embeeding.*``, alpha, beta) + config metadata."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / "npnet.safetensors"
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    meta = {"format": "npnet-studio-flat-v1", "npnet_config": json.dumps(net.config.to_dict())}
    return atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def save_official(net: bare.NPNet, path: str | os.PathLike) -> Path:
    """The official ``.pth`` layout; the config is added only when shapes cannot tell it."""
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    obj: dict[str, Any] = {top: {} for top in _TOP_KEYS if any(k.startswith(top + ".") for k in state)}
    for key, value in state.items():
        top, _, rest = key.partition(".")
        if rest:
            obj[top][rest] = value
        else:
            obj[top] = value
    if not _shapes_tell(state, net.config):
        obj["npnet_config"] = net.config.to_dict()
    return atomic_write_with(Path(path), lambda tmp: torch.save(obj, tmp))


def _shapes_tell(state: dict[str, torch.Tensor], config: NPNetConfig) -> bool:
    """Whether the tensor shapes alone give back ``config`` (the released 77-token layouts do)."""
    try:
        return infer_config(state) == config
    except UserError:  # e.g. pooled text (in_features not 77 x width)
        return False
