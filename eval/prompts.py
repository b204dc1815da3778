"""Prompt sets: the project's examples, local files, and the paper's benchmark sets from the hub.

``load_prompts(spec, limit=None, column=None) -> list[str]`` where ``spec`` is
- a registered set name (``available_prompt_sets()``): "examples", "micro-heldout", "drawbench" (all 200),
  "pickapic" (Pick-a-Pic test, first 100), "hpdv2" (HPD v2 test, first 100), "geneval" (553),
  "t2i-compbench" (the six validation sets);
- a local file: .txt (one per line, '#' comments), .csv (header required; the official repo's
  ``Prompts,Category`` and ``序号,caption,caption_zh,备注`` files, BOM or not), .json, .jsonl, .parquet;
- ``NAME=PATH``: a registered set read from a local copy, with that set's slicing (e.g.
  ``pickapic=test_unique_caption_zh.csv`` gives its first 100 prompts);
- ``hub:owner/name[@revision]:path-or-glob`` for any hub dataset file (``column`` picks the field).
Prompts are stripped, empty ones dropped, duplicates removed (first occurrence kept), then sliced.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

from npnet.errors import UserError
from npnet.paths import ASSETS_DIR

ASSETS = ASSETS_DIR / "prompts"
PROMPT_COLUMNS = ("prompt", "prompts", "caption", "captions", "text", "sentence", "query")
_HUB_ERRORS = (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError)
_COMPBENCH = "https://raw.githubusercontent.com/Karine-Huang/T2I-CompBench/main/examples/dataset"


@dataclass(frozen=True)
class PromptSet:
    """A named prompt source with the paper's slicing (``limit``) and the field holding the prompt."""

    name: str
    description: str
    kind: str  # "asset" | "hub" | "url" | "python"
    location: str  # asset file name, hub dataset id, base URL, or "module:function" returning prompts
    files: tuple[str, ...]  # files (or globs) inside the hub repo / URL base
    column: str | None = None
    limit: int | None = None
    revision: str | None = None


PROMPT_SETS: dict[str, PromptSet] = {
    s.name: s
    for s in (
        PromptSet("examples", "31 project-authored prompts: counting, colours, spatial relations, styles",
                  "asset", "examples.txt", ()),
        PromptSet("micro-heldout", "the micro world's held-out captions (offline; npnet.worlds.micro.grammar)",
                  "python", "npnet.worlds.micro.grammar:heldout_captions", ()),
        PromptSet("micro-train", "the micro world's training captions (offline; the micro NPD)",
                  "python", "npnet.worlds.micro.grammar:train_captions", ()),
        PromptSet("drawbench", "DrawBench, all 200 prompts (Saharia et al. 2022)", "hub", "shunk031/DrawBench",
                  ("default/test/*.parquet",), "prompts", 200, "refs/convert/parquet"),
        PromptSet("pickapic", "Pick-a-Pic v1 unique test captions, first 100 (as the paper)", "hub",
                  "yuvalkirstain/pickapic_v1_no_images", ("data/test_unique-*.parquet",), "caption", 100),
        PromptSet("hpdv2", "HPD v2 test prompts, first 100 (as the paper)", "hub", "zhwang/HPDv2",
                  ("test.json",), "prompt", 100),
        PromptSet("geneval", "GenEval, all 553 prompts (Ghosh et al. 2023)", "url",
                  "https://raw.githubusercontent.com/djghosh13/geneval/main/prompts",
                  ("evaluation_metadata.jsonl",), "prompt", 553),
        PromptSet("t2i-compbench", "T2I-CompBench validation prompts: colour, shape, texture, spatial, "
                  "non-spatial, complex (Huang et al. 2023)", "url", _COMPBENCH,
                  tuple(f"{c}_val.txt" for c in ("color", "shape", "texture", "spatial", "non_spatial", "complex"))),
    )
}  # fmt: skip


@dataclass(frozen=True)
class PromptLoad:
    """Loaded prompts plus what cleaning removed (for run manifests)."""

    prompts: tuple[str, ...]
    source: str
    raw_count: int
    empty_dropped: int
    duplicates_dropped: int


def available_prompt_sets() -> list[str]:
    return list(PROMPT_SETS)


def load_prompts(
    spec: str | os.PathLike, limit: int | None = None, column: str | int | None = None
) -> list[str]:
    """Prompts for ``spec`` (set name, local file or ``hub:`` spec); see the module docstring."""
    return list(resolve_prompts(spec, limit=limit, column=column).prompts)


def resolve_prompts(
    spec: str | os.PathLike, limit: int | None = None, column: str | int | None = None
) -> PromptLoad:
    """Like ``load_prompts`` but also reports the source and how many entries were dropped."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"limit must be a positive integer or None, got {limit!r}")
    text = str(spec)
    if text in PROMPT_SETS:
        prompt_set = PROMPT_SETS[text]
        raw = _load_set(prompt_set, column if column is not None else prompt_set.column)
        limit = limit if limit is not None else prompt_set.limit
        source = f"{prompt_set.name}: {prompt_set.location}"
    elif text.partition("=")[0] in PROMPT_SETS:
        name, _, file = text.partition("=")
        path = Path(file).expanduser()
        if not path.is_file():
            raise UserError(f"{text!r}: local file {path} for prompt set {name!r} does not exist")
        raw, source = read_prompt_file(path, column), f"{name}: {path.resolve()}"
        limit = limit if limit is not None else PROMPT_SETS[name].limit
    elif text.startswith("hub:"):
        raw, source = _load_hub_spec(text, column), text
    elif Path(text).expanduser().is_file():
        path = Path(text).expanduser()
        raw, source = read_prompt_file(path, column), str(path.resolve())
    else:
        raise UserError(
            f"unknown prompt set or missing file {text!r}; use one of {', '.join(PROMPT_SETS)}, a local "
            ".txt/.csv/.json/.jsonl/.parquet file, or hub:owner/name:path-in-repo"
        )
    return _clean(raw, limit, source)


def _clean(raw: Sequence[object], limit: int | None, source: str) -> PromptLoad:
    cleaned = [str(item).strip() for item in raw if item is not None]
    non_empty = [prompt for prompt in cleaned if prompt]
    unique = list(dict.fromkeys(non_empty))
    if not unique:
        raise UserError(f"{source} contains no non-empty prompts")
    return PromptLoad(
        prompts=tuple(unique[:limit] if limit is not None else unique),
        source=source,
        raw_count=len(raw),
        empty_dropped=len(raw) - len(non_empty),
        duplicates_dropped=len(non_empty) - len(unique),
    )


# ---------------------------------------------------------------- files


def read_prompt_file(path: Path, column: str | int | None = None) -> list[str]:
    """All prompt entries of a local file, in order (uncleaned)."""
    suffix = path.suffix.lower()
    readers = {".txt": _read_txt, ".csv": _read_csv, ".json": _read_json, ".jsonl": _read_jsonl}
    if suffix == ".parquet":
        return _read_parquet(path, column)
    if suffix not in readers:
        raise UserError(
            f"{path}: unsupported prompt file type {suffix!r}; use .txt, .csv, .json, .jsonl or .parquet"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err}); re-save it as UTF-8") from err
    return readers[suffix](text, column, path)


def _read_txt(text: str, column, path: Path) -> list[str]:
    if column is not None:
        raise UserError(f"{path}: a .txt file has one prompt per line; drop the column option")
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def pick_column(columns: Sequence[str], column: str | int | None, where: str) -> int:
    """Index of the prompt column: explicit name/index, else a known prompt-like name, else the only one."""
    names = [str(name).strip() for name in columns]
    if isinstance(column, int):
        if not 0 <= column < len(names):
            raise UserError(f"{where}: column index {column} out of range (columns: {names})")
        return column
    if column is not None:
        if column not in names:
            raise UserError(f"{where}: no column {column!r}; columns are {names}")
        return names.index(column)
    lowered = [name.lower() for name in names]
    for candidate in PROMPT_COLUMNS:
        if candidate in lowered:
            return lowered.index(candidate)
    if len(names) == 1:
        return 0
    raise UserError(f"{where}: cannot tell which column holds the prompts ({names}); pass column=NAME")


def _read_csv(text: str, column, path: Path) -> list[str]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise UserError(f"{path}: empty CSV file")
    header, body = rows[0], [row for row in rows[1:] if any(cell.strip() for cell in row)]
    index = pick_column(header, column, str(path))
    ragged = [n + 2 for n, row in enumerate(body) if len(row) != len(header)]
    if not ragged:
        return [row[index] for row in body]
    loose = _read_indexed_lines(text, index)
    if loose is not None:
        return loose
    raise UserError(
        f"{path}: malformed CSV — line(s) {ragged[:5]} have a different number of fields than the header "
        f"({len(header)}); quote fields that contain commas"
    )


_INDEXED = re.compile(r"^\s*\d+\s*,(.*)$")


def _read_indexed_lines(text: str, index: int) -> list[str] | None:
    """The official HPD v2 file: ``index,caption`` lines whose captions contain unquoted commas.

    Only used when the prompt column is the second one and every data line starts with an integer
    index; the caption is the rest of the line (one pair of enclosing quotes removed).
    """
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    matches = [_INDEXED.match(line) for line in lines]
    if index != 1 or not lines or not all(matches):
        return None
    captions = []
    for match in matches:
        caption = match.group(1).strip()
        if (
            len(caption) >= 2
            and caption[0] == caption[-1] == '"'
            and '"' not in caption[1:-1].replace('""', "")
        ):
            caption = caption[1:-1].replace('""', '"')
        captions.append(caption)
    return captions


def _from_records(records: list, column, where: str) -> list[str]:
    if all(isinstance(item, str) for item in records):
        if column is not None:
            raise UserError(f"{where}: entries are plain strings; drop the column option")
        return records
    if not all(isinstance(item, dict) for item in records):
        raise UserError(f"{where}: expected a list of strings or of objects with a prompt field")
    keys = list(dict.fromkeys(key for item in records for key in item))
    key = keys[pick_column(keys, column, where)]
    missing = [n for n, item in enumerate(records) if key not in item]
    if missing:
        raise UserError(f"{where}: entries {missing[:5]} have no {key!r} field")
    return [item[key] for item in records]


def _read_json(text: str, column, path: Path) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON ({err})") from err
    if isinstance(data, dict):
        lists = [key for key in ("prompts", "data", "items") if isinstance(data.get(key), list)]
        if not lists:
            raise UserError(f"{path}: a JSON object needs a 'prompts' (or 'data'/'items') list")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of prompts")
    return _from_records(data, column, str(path))


def _read_jsonl(text: str, column, path: Path) -> list[str]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: line {number} is not valid JSON ({err})") from err
    return _from_records(records, column, str(path))


def _read_parquet(path: Path, column) -> list[str]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read parquet ({err})") from err
    return frame.iloc[:, pick_column(list(frame.columns), column, str(path))].tolist()


# ---------------------------------------------------------------- hub and URL sets


def _offline_message(name: str, where: str, err: Exception) -> str:
    mode = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "download failed"
    return (
        f"prompt set {name!r} needs {where} ({mode}: {type(err).__name__}). Run once online to cache it, "
        "or download the file and pass its local path (.csv/.json/.jsonl/.txt/.parquet) instead"
    )


def _hub_files(name: str, repo_id: str, patterns: Sequence[str], revision: str | None) -> list[Path]:
    where = f"hub dataset {repo_id} ({', '.join(patterns)})"
    try:
        if not any(ch in pattern for pattern in patterns for ch in "*?["):
            return [
                Path(hf_hub_download(repo_id, p, repo_type="dataset", revision=revision)) for p in patterns
            ]
        root = Path(
            snapshot_download(repo_id, repo_type="dataset", allow_patterns=list(patterns), revision=revision)
        )
    except _HUB_ERRORS as err:
        raise UserError(_offline_message(name, where, err)) from err
    files = sorted({path for pattern in patterns for path in root.glob(pattern) if path.is_file()})
    if not files:
        raise UserError(f"prompt set {name!r}: {where} matched no files")
    return files


def _url_files(name: str, base: str, files: Sequence[str]) -> list[Path]:
    from npnet.io import atomic_write_bytes

    cache = Path(os.environ.get("NPNET_PROMPT_CACHE", Path.home() / ".cache" / "npnet-studio" / "prompts"))
    paths = []
    for filename in files:
        url = f"{base}/{filename}"
        path = cache / hashlib.sha256(url.encode()).hexdigest()[:16] / filename
        if not path.is_file():
            try:
                if constants.HF_HUB_OFFLINE:
                    raise OfflineModeIsEnabled("offline mode")
                with urllib.request.urlopen(url, timeout=30) as response:
                    atomic_write_bytes(path, response.read())
            except (OSError, urllib.error.URLError) as err:
                raise UserError(_offline_message(name, url, err)) from err
        paths.append(path)
    return paths


def _load_set(prompt_set: PromptSet, column) -> list[str]:
    if prompt_set.kind == "asset":
        return read_prompt_file(ASSETS / prompt_set.location, column)
    if prompt_set.kind == "python":
        return _call_source(prompt_set)
    if prompt_set.kind == "hub":
        paths = _hub_files(prompt_set.name, prompt_set.location, prompt_set.files, prompt_set.revision)
    else:
        paths = _url_files(prompt_set.name, prompt_set.location, prompt_set.files)
    return [prompt for path in paths for prompt in read_prompt_file(path, column)]


def _call_source(prompt_set: PromptSet) -> list[str]:
    import importlib

    module_name, function = prompt_set.location.split(":")
    try:
        source = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise UserError(
            f"prompt set {prompt_set.name!r} needs {prompt_set.location}, which is unavailable: {err}"
        ) from err
    return list(source())


_HUB_SPEC = re.compile(r"^hub:(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[^:]+))?:(?P<files>.+)$")


def _load_hub_spec(spec: str, column) -> list[str]:
    match = _HUB_SPEC.match(spec)
    if not match:
        raise UserError(
            f"bad hub spec {spec!r}; write hub:owner/name[@revision]:path-or-glob, e.g. hub:zhwang/HPDv2:test.json"
        )
    paths = _hub_files(spec, match["repo"], [match["files"]], match["rev"])
    return [prompt for path in paths for prompt in read_prompt_file(path, column)]
