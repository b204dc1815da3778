"""Noise prompt datasets (NPD, paper Sec. 3.1) on disk, and reading them for training (Alg. 2).

An NPD folder::

    config.json                      collection settings (model, steps, cfg, scorer, ...) + format version
    shards/{block:06d}.safetensors   ``x_T`` and ``x_prime_T`` (N, 4, h, w) fp16, ``index`` (N,) int64; the
                                     sample rows as JSON in the metadata key "npd" (self-describing)
    manifest.rank{r}.jsonl           append-only log of process r: one row per sample, kept or not,
                                     appended only after the sample's shard is durable
    manifest.jsonl                   the merged view, sorted by index, rebuilt from the shards by ``merge``
    embeds/{key}.safetensors         optional prompt-embedding cache: ``prompt_embeds`` (77, D) fp16,
                                     ``key = prompt_key(prompt)``

Block ``b`` holds the samples with global index in ``[b * shard_size, (b + 1) * shard_size)`` whichever
process wrote it, so shard files and the merged manifest are identical for any number of processes.
A row: index, prompt, prompt_index, k, seed, score_standard, score_inversion, kept, shard, offset,
model, steps, cfg, redenoise_cfg (w_l), redenoise_steps, inversion_cfg (w_w), scheduler, scorer, margin,
embed (prompt key or null).

The data-selection rule ``s_0 + m < s'_0`` (Sec. 3.1) is re-applicable at read time with ``margin=``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from npnet.errors import UserError
from npnet.io import atomic_write_json, atomic_write_text, atomic_write_with, read_jsonl

FORMAT = "npnet-npd-v1"
SPLITS = ("all", "train", "val")
SPLIT_BY = ("sample", "prompt")
_META_KEY = "npd"  # one metadata key only: safetensors writes several keys in a random order


# -- naming --------------------------------------------------------------------------------------
def prompt_key(prompt: str) -> str:
    """Stable file key of a prompt (sha256 prefix)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24]


def shard_relpath(block: int) -> str:
    return f"shards/{block:06d}.safetensors"


def is_kept(row: dict[str, Any], margin: float | None = None) -> bool:
    """Data selection of Sec. 3.1: keep iff s_0 + m < s'_0 (``margin=None``: the stored decision)."""
    if margin is None:
        return bool(row["kept"])
    if row.get("score_standard") is None or row.get("score_inversion") is None:
        raise UserError(f"sample {row['index']} has no scores; read it with margin=None or select=False")
    return float(row["score_standard"]) + float(margin) < float(row["score_inversion"])


# -- config --------------------------------------------------------------------------------------
def write_config(folder: str | os.PathLike, settings: dict[str, Any]) -> dict[str, Any]:
    """Create ``config.json`` or check that an existing one has the same settings (resume)."""
    path = Path(folder) / "config.json"
    settings = {"format": FORMAT, **settings}
    if path.exists():
        existing = read_config(folder)
        diff = {k: (existing.get(k), v) for k, v in settings.items() if existing.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: folder has {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise UserError(
                f"{folder} already holds a collection with other settings ({shown}); resume with the same "
                "settings or choose a new output folder"
            )
        return existing
    atomic_write_json(path, settings)
    return settings


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError(
            f"{folder} is not a noise prompt dataset (no config.json); collect or import one first"
        )
    return json.loads(path.read_text(encoding="utf-8"))


# -- shards --------------------------------------------------------------------------------------
def write_shard(
    folder: str | os.PathLike,
    block: int,
    rows: list[dict[str, Any]],
    x_T: torch.Tensor,
    x_prime_T: torch.Tensor,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Atomically write one block: noise pairs (N, 4, h, w) plus the rows as metadata."""
    if x_T.shape != x_prime_T.shape or x_T.shape[0] != len(rows):
        raise UserError(
            f"shard {block}: {len(rows)} rows, x_T {tuple(x_T.shape)}, x_prime_T {tuple(x_prime_T.shape)}"
        )
    rel = shard_relpath(block)
    rows = [{**row, "shard": rel, "offset": i} for i, row in enumerate(rows)]
    tensors = {
        "x_T": x_T.detach().to("cpu", dtype).contiguous(),  # (N, 4, h, w)
        "x_prime_T": x_prime_T.detach().to("cpu", dtype).contiguous(),  # (N, 4, h, w)
        "index": torch.tensor([row["index"] for row in rows], dtype=torch.int64),  # (N,)
    }
    meta = {_META_KEY: json.dumps(rows, sort_keys=True)}
    return atomic_write_with(Path(folder) / rel, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_shard_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The sample rows stored in a shard's metadata."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
    except Exception as err:
        raise UserError(f"{path} is not a readable NPD shard (corrupt or truncated?): {err}") from err
    if _META_KEY not in meta:
        raise UserError(f"{path} has no '{_META_KEY}' metadata: not an NPD shard")
    return json.loads(meta[_META_KEY])


def shard_paths(folder: str | os.PathLike) -> list[Path]:
    return sorted((Path(folder) / "shards").glob("*.safetensors"))


# -- prompt embedding cache ------------------------------------------------------------------------
def embed_path(folder: str | os.PathLike, prompt: str) -> Path:
    return Path(folder) / "embeds" / f"{prompt_key(prompt)}.safetensors"


def write_embed(folder: str | os.PathLike, prompt: str, embeds: torch.Tensor) -> str:
    """Cache one prompt's (77, D) or (1, 77, D) embedding in fp16; returns its key."""
    emb = embeds.detach().to("cpu", torch.float16)
    emb = emb[0] if emb.ndim == 3 else emb  # (77, D)
    if emb.ndim != 2:
        raise UserError(f"prompt embeddings must be (L, D) or (1, L, D); got {tuple(embeds.shape)}")
    path = embed_path(folder, prompt)
    if not path.exists():
        tensors = {"prompt_embeds": emb.contiguous()}
        atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata={_META_KEY: prompt}))
    return prompt_key(prompt)


def load_embed(folder: str | os.PathLike, prompt: str) -> torch.Tensor:
    path = embed_path(folder, prompt)
    if not path.is_file():
        raise UserError(
            f"no cached prompt embedding for {prompt!r} in {folder}/embeds; collect with cache_embeds=True "
            "or pass an encode_prompts callable to the trainer"
        )
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return handle.get_tensor("prompt_embeds")  # (77, D) fp16


# -- manifest ------------------------------------------------------------------------------------
def read_manifest(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Union of ``manifest.jsonl`` and every process log, one row per index, sorted by index."""
    folder = Path(folder)
    rows: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("manifest*.jsonl")):
        for row in read_jsonl(path):
            rows.setdefault(int(row["index"]), row)
    return [rows[i] for i in sorted(rows)]


def merge(folder: str | os.PathLike) -> Path:
    """Rebuild ``manifest.jsonl`` from the shards (under a lock, so concurrent ranks never go stale)."""
    folder = Path(folder)
    with _locked(folder / ".merge.lock"):
        rows = [row for path in shard_paths(folder) for row in read_shard_rows(path)]
        rows.sort(key=lambda row: row["index"])
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        return atomic_write_text(folder / "manifest.jsonl", text)


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): single-process use only
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_dataset(
    folder: str | os.PathLike,
    rows: list[dict[str, Any]],
    x_T: torch.Tensor,
    x_prime_T: torch.Tensor,
    settings: dict[str, Any],
    embeds: dict[str, torch.Tensor] | None = None,
    shard_size: int = 256,
) -> Path:
    """Write a whole NPD at once (importers, synthetic data): rows with ``index``, pairs (N, 4, h, w).

    ``embeds`` maps prompt -> (77, D) embedding to cache; rows get ``embed`` set accordingly.
    """
    if shard_size < 1:
        raise UserError(f"shard_size must be >= 1; got {shard_size}")
    write_config(folder, {**settings, "shard_size": shard_size})
    embeds = embeds or {}
    keys = {prompt: write_embed(folder, prompt, emb) for prompt, emb in embeds.items()}
    order = sorted(range(len(rows)), key=lambda i: rows[i]["index"])
    blocks: dict[int, list[int]] = {}
    for i in order:
        blocks.setdefault(int(rows[i]["index"]) // shard_size, []).append(i)
    for block, members in blocks.items():
        block_rows = [{**rows[i], "embed": keys.get(rows[i]["prompt"])} for i in members]
        write_shard(folder, block, block_rows, x_T[members], x_prime_T[members])
    return merge(folder)


# -- split ---------------------------------------------------------------------------------------
def split_keys(
    rows: list[dict[str, Any]], val_fraction: float, seed: int, split_by: str = "sample"
) -> set[Any]:
    """Validation members: the ``round(n * val_fraction)`` lowest hashes of (seed, sample or prompt).

    Computed over all rows before selection, so changing the margin never moves a sample across splits.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1); got {val_fraction}")
    if split_by not in SPLIT_BY:
        raise UserError(f"unknown split_by {split_by!r}; choose one of {', '.join(SPLIT_BY)}")
    keys = sorted({_split_key(row, split_by) for row in rows}, key=str)
    ranked = sorted(keys, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    return set(ranked[: round(len(ranked) * val_fraction)])


def _split_key(row: dict[str, Any], split_by: str) -> Any:
    return row["prompt"] if split_by == "prompt" else int(row["index"])


class NoisePairDataset(Dataset):
    """(x_T, x'_T, prompt_embeds | prompt) triples of an NPD folder (the D of Eq. 5).

    ``margin``: re-apply the selection ``s_0 + margin < s'_0``; None keeps the stored decision;
    ``select=False`` reads every sample (the "w/o data selection" ablation). Noise comes back as float32
    (4, h, w); the condition is the cached (77, D) float32 embedding, or the prompt string when the
    folder has no embedding cache (``embeds="auto"``) or ``embeds=False``.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        margin: float | None = None,
        split: str = "all",
        val_fraction: float = 0.1,
        seed: int = 0,
        select: bool = True,
        split_by: str = "sample",
        embeds: bool | str = "auto",
    ):
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.folder = Path(folder)
        self.config = read_config(folder)
        all_rows = read_manifest(folder)
        val = split_keys(all_rows, val_fraction, seed, split_by) if split != "all" else set()
        rows = [r for r in all_rows if split == "all" or (_split_key(r, split_by) in val) == (split == "val")]
        self.rows = [r for r in rows if not select or is_kept(r, margin)]
        has_cache = all(r.get("embed") for r in self.rows)
        if embeds is True and not has_cache:
            raise UserError(f"{folder} has no prompt-embedding cache for every sample; use embeds='auto'")
        self.use_embeds = has_cache if embeds == "auto" else bool(embeds)
        self._handles: dict[tuple[int, str], Any] = {}
        self._embeds: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | str]:
        row = self.rows[i]
        handle = self._handle(row["shard"])
        x = handle.get_slice("x_T")[row["offset"]].float()  # (4, h, w)
        xp = handle.get_slice("x_prime_T")[row["offset"]].float()  # (4, h, w)
        return x, xp, (self._embed(row["prompt"]) if self.use_embeds else row["prompt"])

    @property
    def prompts(self) -> list[str]:
        return [row["prompt"] for row in self.rows]

    def _handle(self, rel: str):
        key = (os.getpid(), rel)  # safetensors handles are per process (DataLoader workers fork)
        if key not in self._handles:
            self._handles[key] = safe_open(str(self.folder / rel), framework="pt", device="cpu")
        return self._handles[key]

    def _embed(self, prompt: str, capacity: int = 512) -> torch.Tensor:
        if prompt in self._embeds:
            self._embeds.move_to_end(prompt)
        else:
            self._embeds[prompt] = load_embed(self.folder, prompt)
            if len(self._embeds) > capacity:
                self._embeds.popitem(last=False)
        return self._embeds[prompt].float()  # (77, D)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state
