"""Where an NPNet checkpoint comes from: a local file or folder, a released name, or a hub repository.

``resolve_checkpoint`` turns a spec into one local weights file:

* a local file, or a folder (its ``npnet.safetensors``, else ``model.safetensors``, else its one
  checkpoint file);
* a ``HUB_CHECKPOINTS`` name (the official and community releases);
* ``owner/repo`` with ``filename=...``, or ``owner/repo/path/file.safetensors``;
* ``owner/repo`` alone: the Hugging Face ``save_pretrained`` layout that ``NPNet.save_pretrained`` and
  ``push_to_hub`` write (``config.json`` + ``model.safetensors``, both downloaded into one snapshot
  folder). The release repos of ``HUB_CHECKPOINTS`` hold several files; alone they are listed instead.

Hub access goes through ``hf_hub_download`` (cache first; ``HF_HUB_OFFLINE`` is honoured), with the
``HubOptions`` of ``from_pretrained`` (revision, cache_dir, token, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download, list_repo_files

from npnet.errors import UserError

OFFICIAL_REPO = "Klayand/GoldenNoiseModel"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
WEIGHTS_NAME = "model.safetensors"  # huggingface_hub's SAFETENSORS_SINGLE_FILE: the save_pretrained weights
CONFIG_NAME = "config.json"  # huggingface_hub's CONFIG_NAME: the save_pretrained config
OURS_NAME = "npnet.safetensors"  # save_npnet(net, folder)


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
RELEASE_REPOS = frozenset(entry.repo_id for entry in HUB_CHECKPOINTS.values())


@dataclass(frozen=True)
class HubOptions:
    """How to reach the hub: ``hf_hub_download``'s revision, cache folder, token and cache policy."""

    revision: str | None = None
    cache_dir: str | os.PathLike | None = None
    token: str | bool | None = None
    force_download: bool = False
    local_files_only: bool = False

    def download(self, repo_id: str, filename: str) -> Path:
        return Path(
            hf_hub_download(
                repo_id, filename, revision=self.revision, cache_dir=self.cache_dir, token=self.token,
                force_download=self.force_download, local_files_only=self.local_files_only,
            )
        )  # fmt: skip

    def list(self, repo_id: str) -> list[str]:
        return list_repo_files(repo_id, revision=self.revision, token=self.token)


def resolve_checkpoint(
    spec: str | os.PathLike, filename: str | None = None, hub: HubOptions | None = None
) -> Path:
    """Local file/folder, a ``HUB_CHECKPOINTS`` name, ``owner/repo`` (+ filename), or ``owner/repo/file``."""
    hub = hub or HubOptions()
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
        return _download(entry.repo_id, entry.filename, hub, entry)
    parts = spec.split("/")
    if len(parts) == 2 and all(parts):
        if filename:
            return _download(spec, filename, hub)
        return _raise_listing(spec, None, hub) if spec in RELEASE_REPOS else _download_pretrained(spec, hub)
    if len(parts) > 2 and filename is None and spec.endswith(CHECKPOINT_SUFFIXES):
        return _download("/".join(parts[:2]), "/".join(parts[2:]), hub)
    names = ", ".join(HUB_CHECKPOINTS)
    raise UserError(
        f"NPNet checkpoint {spec!r} is neither a local file or folder, nor a known name ({names}), "
        "nor a hub id like 'owner/repo' (a save_pretrained repo), 'owner/repo' with filename=... or "
        "'owner/repo/file.safetensors'"
    )


def pretrained_config(weights: Path) -> Path | None:
    """The ``config.json`` that belongs to ``weights``: beside it, when it is a save_pretrained
    ``model.safetensors`` (a local folder or a downloaded snapshot); None otherwise."""
    config = weights.with_name(CONFIG_NAME)
    return config if weights.name == WEIGHTS_NAME and config.is_file() else None


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"NPNet checkpoint file {path} does not exist")
    return path


def _checkpoint_in_folder(folder: Path) -> Path:
    for name in (OURS_NAME, WEIGHTS_NAME):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    raise UserError(
        f"folder {folder} holds {len(found)} checkpoint files ({[p.name for p in found]}); "
        "pass the file itself or filename=..."
    )


def _offline_error(repo_id: str, files: tuple[str, ...]) -> UserError:
    what = f"{repo_id}/{files[0]}" if len(files) == 1 else f"{repo_id} ({', '.join(files)})"
    return UserError(
        f"NPNet checkpoint {what} is not in the local cache and the hub cannot be reached "
        f"(HF_HUB_OFFLINE or no network). Download it where the hub is reachable with "
        f"`huggingface-cli download {repo_id} {' '.join(files)}`, or pass a local path."
    )


def _download(
    repo_id: str,
    filename: str,
    hub: HubOptions,
    entry: HubCheckpoint | None = None,
    files: tuple[str, ...] = (),
) -> Path:
    """``hf_hub_download``; a file missing from the repo is matched by family (``entry``) or listed.
    ``files``: every file of the download, named by the offline instruction (default: ``filename``)."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return hub.download(repo_id, filename)
    except LocalEntryNotFoundError as err:  # offline / unreachable (before EntryNotFoundError: a subclass)
        raise _offline_error(repo_id, files or (filename,)) from err
    except RepositoryNotFoundError as err:
        raise UserError(f"hub repository {repo_id!r} does not exist or is private") from err
    except EntryNotFoundError:  # RemoteEntryNotFoundError: the repo has no such file
        if entry is None:
            return _raise_listing(repo_id, filename, hub)
        return _download(repo_id, _family_match(entry, filename, hub), hub)


def _download_pretrained(repo_id: str, hub: HubOptions) -> Path:
    """A save_pretrained repo: ``config.json`` (optional: without it the weights' metadata or shapes give
    the architecture) then ``model.safetensors``, into one snapshot folder."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    files = (WEIGHTS_NAME, CONFIG_NAME)
    try:
        hub.download(repo_id, CONFIG_NAME)
    except LocalEntryNotFoundError as err:
        raise _offline_error(repo_id, files) from err
    except RepositoryNotFoundError as err:
        raise UserError(f"hub repository {repo_id!r} does not exist or is private") from err
    except EntryNotFoundError:
        pass
    return _download(repo_id, WEIGHTS_NAME, hub, files=files)


def _family_match(entry: HubCheckpoint, missing: str, hub: HubOptions) -> str:
    """The one checkpoint file of ``entry.repo_id`` whose name names the family (``entry.match``)."""
    files = _checkpoint_files(entry.repo_id, hub)
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


def _checkpoint_files(repo_id: str, hub: HubOptions) -> list[str]:
    """The repo's checkpoint files (``list_repo_files``); a listing failure says what to pass instead."""
    try:
        files: Any = hub.list(repo_id)
    except Exception as err:  # offline or unreachable: say what we know
        known = [f"{k} -> {v.filename}" for k, v in HUB_CHECKPOINTS.items() if v.repo_id == repo_id]
        raise UserError(
            f"cannot list {repo_id!r} ({type(err).__name__}); known files: {known or 'none'}. "
            "Pass filename=... or a local path"
        ) from err
    return sorted(f for f in files if f.endswith(CHECKPOINT_SUFFIXES))


def _raise_listing(repo_id: str, filename: str | None, hub: HubOptions) -> Path:
    files = _checkpoint_files(repo_id, hub)
    missing = f"{filename!r} is not in" if filename else "choose a checkpoint file from"
    raise UserError(f"{missing} {repo_id}: found {files}")
