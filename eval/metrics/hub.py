"""Resolve scorer weights from a local path or the Hugging Face Hub, with clear offline errors.

Every scorer accepts either a hub repo id or a local directory/file laid out like the hub repo, so
the same loading code runs on downloaded weights and on the tiny random weights the tests write.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from npnet.errors import UserError

CONFIG_PATTERNS = ("*.json", "*.txt")
SAFETENSORS_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")
BIN_PATTERNS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")
_HUB_ERRORS = (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError)


def _download_hint(repo_id: str, files: Sequence[str], repo_type: str) -> str:
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    if any(ch in name for name in files for ch in "*?["):
        return f"hf download {repo_id}{kind} " + " ".join(f"--include '{name}'" for name in files)
    return f"hf download {repo_id} {' '.join(files)}{kind}"


def _offline_error(
    what: str, repo_id: str, files: Sequence[str], repo_type: str, err: Exception
) -> ValueError:
    mode = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "the hub could not be reached"
    return ValueError(
        f"{what}: cannot get {', '.join(files)} from the hub repo '{repo_id}' ({mode}: "
        f"{type(err).__name__}). Download them once while online, e.g. "
        f"`{_download_hint(repo_id, files, repo_type)}`, or pass a local path laid out like that repo."
    )


def resolve_file(
    source: str | Path,
    filename: str,
    *,
    what: str,
    repo_type: str = "model",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Return a local path for ``filename``: ``source`` is a file, a directory holding it, or a hub repo id."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / filename
        if candidate.is_file():
            return candidate
        raise UserError(f"{what}: local directory {path} has no '{filename}'; put the file there")
    if str(source).startswith((".", "/", "~")) or str(source).count("/") > 1:
        raise UserError(f"{what}: local path {source} does not exist")
    try:
        local = hf_hub_download(
            str(source), filename, repo_type=repo_type, revision=revision, cache_dir=cache_dir
        )
    except _HUB_ERRORS as err:
        raise _offline_error(what, str(source), [filename], repo_type, err) from err
    return Path(local)


def resolve_dir(
    source: str | Path,
    *,
    what: str,
    required: Sequence[str] = ("config.json",),
    weights: bool = True,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Return a local directory holding a transformers-style checkpoint (configs, tokenizer, weights).

    From the hub only configs/tokenizer files and ``model.safetensors`` (else ``pytorch_model.bin``)
    are fetched, never the duplicate open_clip or flax weights some repos also carry.
    """
    path = Path(source)
    if path.is_dir():
        missing = [name for name in required if not (path / name).is_file()]
        if weights and not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            missing.append("model.safetensors (or pytorch_model.bin)")
        if missing:
            raise UserError(f"{what}: local directory {path} lacks {', '.join(missing)}")
        return path
    if str(source).startswith((".", "/", "~")) or str(source).count("/") > 1:
        raise UserError(f"{what}: local directory {source} does not exist")
    patterns = list(CONFIG_PATTERNS) + (list(SAFETENSORS_PATTERNS) if weights else [])
    local = _snapshot(str(source), patterns, what, revision, cache_dir)
    if weights and not any(local.glob("*.safetensors")):
        local = _snapshot(str(source), list(CONFIG_PATTERNS) + list(BIN_PATTERNS), what, revision, cache_dir)
    missing = [name for name in required if not (local / name).is_file()]
    if weights and not any(local.glob("*.safetensors")) and not any(local.glob("*.bin")):
        missing += list(SAFETENSORS_PATTERNS[:1]) + list(BIN_PATTERNS[:1])
    if missing:
        raise _offline_error(what, str(source), missing, "model", FileNotFoundError(", ".join(missing)))
    return local


def _snapshot(repo_id: str, patterns: list[str], what: str, revision: str | None, cache_dir) -> Path:
    try:
        return Path(
            snapshot_download(repo_id, allow_patterns=patterns, revision=revision, cache_dir=cache_dir)
        )
    except _HUB_ERRORS as err:
        raise _offline_error(what, repo_id, patterns, "model", err) from err
