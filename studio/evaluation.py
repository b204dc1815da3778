"""Evaluation runs for the app: presets, custom configs, caps, resumable run dirs, tables and downloads.

Runs go through ``eval.benchmark.run_benchmark`` with the app's own engine (models loaded once) and
scorers; each run lives in ``<runs_dir>/eval/<time>-<label>-<id>/`` and can be resumed from the tab.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from npnet.errors import UserError
from studio.service import StudioService

PROMPT_FILE_SUFFIXES = (".txt", ".csv", ".json", ".jsonl", ".parquet")
MAX_PROMPT_FILE_MB = 20
SUMMARY_COLUMNS = [
    "metric", "method", "n", "mean", "ci_low", "ci_high", "win_rate", "win_rate_ci_low", "win_rate_ci_high",
    "wins", "ties", "losses", "sign_p", "mean_diff", "preference",
]  # fmt: skip


@dataclass
class EvalOutcome:
    """What the Evaluate tab shows after a run (or a stop)."""

    run_dir: Path
    status: str
    summary: pd.DataFrame
    win_rates: Any  # plotly Figure or None
    per_prompt: pd.DataFrame
    files: list[str]
    rows: pd.DataFrame


def eval_root(service: StudioService) -> Path:
    return service.config.runs_path / "eval"


def new_run_dir(service: StudioService, label: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "run"
    # time for sorting, a random suffix so two runs started in the same second never share a folder
    return eval_root(service) / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:6]}"


def check_prompt_file(path: str, max_mb: int = MAX_PROMPT_FILE_MB) -> Path:
    """An uploaded prompt file with a supported suffix and a sane size (the caller checks it is an upload)."""
    file = Path(path)
    if file.suffix.lower() not in PROMPT_FILE_SUFFIXES:
        raise UserError(f"{file.name}: upload prompts as {', '.join(PROMPT_FILE_SUFFIXES)}")
    if file.stat().st_size > max_mb * 2**20:
        raise UserError(f"{file.name} is larger than {max_mb} MB; upload a smaller prompt file")
    return file


def parse_seeds(text: str, max_count: int = 32) -> tuple[int, ...]:
    """ "0,1,2" or "0-3" (the command lines' syntax, ``eval.seeds.parse_seeds``), at most ``max_count``."""
    from eval.seeds import parse_seeds as parse

    return parse(str(text)[:1000], max_count=max_count)


def apply_caps(service: StudioService, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Limit prompts and seeds on shared deployments; returns the fields and a note saying what was cut."""
    cap, notes = service.config.eval_prompt_cap, []
    fields = dict(fields)
    if cap is not None:
        prompts = fields["prompts"]
        if isinstance(prompts, tuple) and len(prompts) > cap:
            fields["prompts"] = prompts[:cap]
            notes.append(f"prompts capped to {cap}")
        elif not isinstance(prompts, tuple) and (fields.get("limit") is None or fields["limit"] > cap):
            fields["limit"] = cap
            notes.append(f"prompt limit capped to {cap}")
    seeds = tuple(fields.get("seeds", (0,)))
    if len(seeds) > service.config.max_seeds:
        fields["seeds"] = seeds[: service.config.max_seeds]
        notes.append(f"seeds capped to {service.config.max_seeds}")
    note = f" ({'; '.join(notes)} on this server; run locally for the full setting)" if notes else ""
    return fields, note


def config_for(service: StudioService, fields: dict[str, Any], out: Path):
    """A BenchmarkConfig on the app's device and hub mode."""
    from eval.benchmark import BenchmarkConfig

    if fields.get("npnet") is None and fields.get("model") == service.default_model and service.config.npnet:
        fields = {**fields, "npnet": service.config.npnet}  # --npnet applies to the default model
    known = {f.name for f in dataclasses.fields(BenchmarkConfig)}
    extra = sorted(set(fields) - known)
    if extra:
        raise UserError(f"unknown evaluation settings {extra}")
    return BenchmarkConfig(
        **{**fields, "out": str(out), "device": str(service.engine.device), "offline": service.offline}
    )


def config_from_run(service: StudioService, run_dir: Path):
    """The BenchmarkConfig stored in a run directory's manifest (to resume it)."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not an evaluation run (no manifest.json); pick one from the list")
    stored = json.loads(path.read_text())["config"]
    for key in ("seeds", "methods", "metrics"):
        stored[key] = tuple(stored[key])
    if isinstance(stored["prompts"], list):
        stored["prompts"] = tuple(stored["prompts"])
    stored = {k: v for k, v in stored.items() if k not in ("out", "device", "offline")}
    return config_for(service, stored, Path(run_dir))


def per_prompt_table(rows: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per (prompt, seed): each method's score per metric and NPNet minus standard."""
    ok = rows[rows["error"].isna()] if "error" in rows else rows
    present = [m for m in metrics if m in ok]
    if ok.empty or not present:
        return pd.DataFrame(columns=["prompt_index", "seed", "prompt"])
    wide = ok.pivot_table(index=["prompt_index", "seed", "prompt"], columns="method", values=present)
    wide.columns = [f"{metric}: {method}" for metric, method in wide.columns]
    for metric in present:
        if f"{metric}: npnet" in wide and f"{metric}: standard" in wide:
            wide[f"{metric}: NPNet - standard"] = wide[f"{metric}: npnet"] - wide[f"{metric}: standard"]
    return wide.reset_index().round(5)


def sample_images(rows: pd.DataFrame, prompt_index: int, seed: int) -> list[tuple[Any, str]]:
    """(image, caption) of every method for one (prompt, seed) of a run (images, not server paths)."""
    from PIL import Image

    pick = rows[(rows["prompt_index"] == prompt_index) & (rows["seed"] == seed)]
    if "image" not in pick:
        return []
    return [
        (Image.open(r["image"]).convert("RGB"), f"{r['method']} · seed {seed}")
        for _, r in pick.iterrows()
        if isinstance(r["image"], str) and Path(r["image"]).is_file()
    ]


def stopped_early(run_dir: Path, note: str = "") -> EvalOutcome:
    """A run cancelled before its first sample finished (its directory can still be resumed)."""
    return EvalOutcome(
        run_dir=Path(run_dir),
        status=f"**Stopped** before the first sample finished{note}. Resume it from `{run_dir}`.",
        summary=pd.DataFrame(columns=["metric", "method"]),
        win_rates=None,
        per_prompt=pd.DataFrame(columns=["prompt_index", "seed", "prompt"]),
        files=[],
        rows=pd.DataFrame(),
    )


def run_evaluation(
    service: StudioService,
    config,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    note: str = "",
) -> EvalOutcome:
    """Run or resume ``config`` and build the report, tables and downloads."""
    from eval.benchmark import run_benchmark
    from eval.report import build_report

    result = run_benchmark(
        config,
        service=service.engine,
        scorer_factory=service.scorer,
        progress=progress,
        should_stop=should_stop,
    )
    rows = result.rows
    errors = rows["error"].dropna() if "error" in rows else pd.Series(dtype=object)
    if rows.empty and result.stopped:
        return stopped_early(result.run_dir, note)
    if rows.empty or len(errors) == len(rows):
        first = errors.iloc[0] if len(errors) else "no samples were run"
        raise UserError(f"the evaluation produced no scores: {first}")
    report = build_report(result.run_dir)
    downloads = [report.csv_path, report.rows_csv_path, report.parquet_path, report.html_path]
    summary = report.summary[[c for c in SUMMARY_COLUMNS if c in report.summary]].round(4)
    counts = result.counts
    status = (
        f"{'**Stopped**' if result.stopped else '**Done**'}: {counts.get('computed', 0)} samples computed, "
        f"{counts.get('skipped', 0)} resumed from disk, {counts.get('errors', 0)} errors, of "
        f"{counts.get('samples', 0)}{note}. Run id: `{result.run_dir}`"
    )
    return EvalOutcome(
        run_dir=Path(result.run_dir),
        status=status,
        summary=summary,
        win_rates=report.figures.get("win_rates") or report.figures.get("metric_table"),
        per_prompt=per_prompt_table(rows, tuple(config.metrics)),
        files=[str(p) for p in downloads if p is not None],
        rows=rows,
    )
