"""Import the official noise-pair layout into an NPD folder, so existing collections can be reused.

Official layout (xie-lab-ml/Golden-Noise-for-Diffusion-Models, ``training/``):

* one ``{index}_{seed}.npz`` (or ``{index}.npz``) per sample, possibly in several sub-folders, holding
  ``arr_0`` = x_T (1, 4, h, w), ``arr_1`` = x'_T (1, 4, h, w), ``arr_2`` = the sample index;
* a JSONL file, one object per line: ``index``, ``seed``, ``caption``, ``original_score_list``,
  ``optimized_score_list`` (scores of the images from x_T and x'_T; entry 0 is HPSv2 in their script).

``python -m cli import-official --npz-dir noise_pairs/ --jsonl SDXL_step_10_training.json --out NPD_DIR``
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npnet.data.dataset import embed_path, is_kept, merge, prompt_key, write_config, write_embed, write_shard
from npnet.errors import UserError

_NAME = re.compile(r"^(?P<index>\d+)(?:_(?P<seed>\d+))?\.npz$")


@dataclass(frozen=True)
class ImportResult:
    out: Path
    imported: int
    kept: int
    missing_caption: tuple[str, ...]  # npz files whose index has no JSONL row (skipped)
    missing_npz: int  # JSONL rows without an npz file


def read_official_jsonl(path: str | Path) -> dict[int, dict[str, Any]]:
    """index -> row; lines are JSON (or Python dict literals, as the official reader ``eval``-s them)."""
    rows: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            try:
                row = ast.literal_eval(line)
            except (ValueError, SyntaxError) as err:
                raise UserError(f"{path}:{n} is neither JSON nor a Python dict literal") from err
        missing = {"index", "caption"} - set(row)
        if missing:
            raise UserError(
                f"{path}:{n} lacks {sorted(missing)}; official rows have index, seed, caption, ..."
            )
        rows[int(row["index"])] = row
    return rows


def find_npz(npz_dir: str | Path) -> dict[int, Path]:
    """index -> file over ``npz_dir`` and its sub-folders; a repeated index is a ValueError."""
    found: dict[int, Path] = {}
    for path in sorted(Path(npz_dir).rglob("*.npz")):
        match = _NAME.match(path.name)
        if match is None:
            continue
        index = int(match["index"])
        if index in found:
            raise UserError(
                f"index {index} appears twice ({found[index]} and {path}): the official multi-GPU collection "
                "needs per-GPU index offsets; import the folders separately"
            )
        found[index] = path
    if not found:
        raise UserError(f"no {{index}}_{{seed}}.npz files under {npz_dir}")
    return found


def _read_pair(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    with np.load(path, allow_pickle=False) as data:
        if not {"arr_0", "arr_1"} <= set(data.files):
            raise UserError(f"{path} lacks arr_0 / arr_1 (x_T, x'_T); found {data.files}")
        x = torch.from_numpy(np.asarray(data["arr_0"], dtype=np.float32)).reshape(
            -1, *data["arr_0"].shape[-3:]
        )
        xp = torch.from_numpy(np.asarray(data["arr_1"], dtype=np.float32)).reshape(x.shape)
        index = int(data["arr_2"]) if "arr_2" in data.files else -1
    if x.shape[0] != 1:
        raise UserError(f"{path} holds {x.shape[0]} latents; expected one pair per file")
    return x[0], xp[0], index  # (4, h, w), (4, h, w)


def import_official(
    npz_dir: str | Path,
    jsonl: str | Path,
    out: str | Path,
    model: str = "sdxl",
    score_index: int = 0,
    margin: float = 0.0,
    scorer: str = "hpsv2",
    steps: int = 10,
    cfg: float | None = 5.5,
    inversion_cfg: float = 1.0,
    shard_size: int = 256,
    encode_prompts: Callable[[list[str]], torch.Tensor] | None = None,
) -> ImportResult:
    """Convert to an NPD folder; ``encode_prompts(list[str]) -> (B, 77, D)`` fills the embedding cache."""
    captions = read_official_jsonl(jsonl)
    files = find_npz(npz_dir)
    usable = {i: p for i, p in files.items() if i in captions}
    if not usable:
        raise UserError(f"none of the {len(files)} npz files has a row in {jsonl} (index mismatch?)")
    if shard_size < 1:
        raise UserError(f"shard_size must be >= 1; got {shard_size}")
    settings = {
        "model": model,
        "steps": steps,
        "cfg": cfg,
        "inversion_cfg": inversion_cfg,
        "scorer": scorer,
        "margin": margin,
        "source": "official",
        "shard_size": shard_size,
    }
    write_config(out, settings)
    blocks: dict[int, list[int]] = {}
    for index in sorted(usable):
        blocks.setdefault(index // shard_size, []).append(index)
    kept = 0
    for block, indices in blocks.items():  # streamed: one block of pairs in memory at a time
        rows, xs, xps = [], [], []
        for index in indices:
            x, xp, stored = _read_pair(usable[index])
            if stored not in (-1, index):
                raise UserError(f"{usable[index]}: file name says index {index}, arr_2 says {stored}")
            row = _row(
                index,
                usable[index],
                captions[index],
                score_index,
                margin,
                model,
                scorer,
                steps,
                cfg,
                inversion_cfg,
            )
            if encode_prompts is not None:
                row["embed"] = _cache_embed(out, row["prompt"], encode_prompts)
            rows.append(row)
            xs.append(x)
            xps.append(xp)
        write_shard(out, block, rows, torch.stack(xs), torch.stack(xps))  # (N, 4, h, w) each
        kept += sum(row["kept"] for row in rows)
    merge(out)
    return ImportResult(
        out=Path(out),
        imported=len(usable),
        kept=kept,
        missing_caption=tuple(sorted(p.name for i, p in files.items() if i not in captions)),
        missing_npz=len(set(captions) - set(files)),
    )


def _row(
    index, path, official, score_index, margin, model, scorer, steps, cfg, inversion_cfg
) -> dict[str, Any]:
    match = _NAME.match(path.name)
    seed = official.get("seed", match["seed"])
    if match["seed"] is not None and seed is not None and int(seed) != int(match["seed"]):
        raise UserError(f"{path}: file name seed {match['seed']} differs from the JSONL seed {seed}")
    scores = [official.get("original_score_list"), official.get("optimized_score_list")]
    s0, s1 = (float(s[score_index]) if s else None for s in scores)
    row = {
        "index": index,
        "prompt": official["caption"],
        "prompt_index": None,
        "k": None,
        "seed": None if seed is None else int(seed),
        "score_standard": s0,
        "score_inversion": s1,
        "model": model,
        "steps": steps,
        "cfg": cfg,
        "inversion_cfg": inversion_cfg,
        "scheduler": "ddim",
        "scorer": scorer,
        "margin": margin,
        "source": str(path.name),
        "embed": None,
    }
    row["kept"] = s0 is not None and s1 is not None and is_kept({**row, "index": index}, margin)
    return row


def _cache_embed(out, prompt: str, encode_prompts) -> str:
    if not embed_path(out, prompt).exists():
        return write_embed(out, prompt, encode_prompts([prompt])[0])  # (77, D)
    return prompt_key(prompt)
