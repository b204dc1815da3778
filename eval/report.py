"""Report for one or more benchmark runs: summary statistics, charts (HTML + figure JSON), row exports.

    python -m eval report RUN_DIR            # writes RUN_DIR/report/{report.html, summary.csv, rows.csv, ...}

Several run directories (e.g. the same model at 10/30/50 steps) are merged with ``dataset`` and
``steps`` columns, so the win-rate chart facets by dataset and the metric-vs-steps curves appear.
Binary verifiers (``eval.stats.BINARY_METRICS``, e.g. the micro verifier) add an accuracy chart and a
rescued/broken table; with several seeds per prompt the CIs resample prompts (see ``eval.stats``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eval.benchmark import load_rows
from eval.charts import report_figures, write_report
from eval.stats import summarize
from npnet.errors import UserError
from npnet.io import atomic_write_text, atomic_write_with


@dataclass
class Report:
    summary: pd.DataFrame
    rows: pd.DataFrame
    figures: dict
    html_path: Path
    csv_path: Path
    rows_csv_path: Path
    parquet_path: Path | None


def run_rows(run_dir: str | Path) -> pd.DataFrame:
    """Finished rows of one run, with ``dataset`` and ``steps`` from its manifest."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise UserError(
            f"{run_dir} is not a benchmark run (no manifest.json); run `python -m eval run` first"
        )
    manifest = json.loads(manifest_path.read_text())
    rows = load_rows(run_dir)
    if rows.empty:
        raise UserError(f"{run_dir} has no finished rows yet")
    prompts = manifest["config"]["prompts"]
    rows["dataset"] = prompts if isinstance(prompts, str) else "custom"
    rows["steps"] = manifest.get("settings", {}).get("steps", manifest["config"].get("steps"))
    if "error" in rows:
        rows = rows[~rows["error"].apply(lambda e: isinstance(e, str) and bool(e))]
    return rows


def build_report(
    run_dirs: str | Path | list,
    out: str | Path | None = None,
    tie_margin: float | Mapping[str, float] = 0.0,
    binary_metrics: Mapping[str, float] | None = None,
) -> Report:
    """Summarise runs and write the report files (under ``<first run>/report`` by default).

    ``tie_margin`` and ``binary_metrics`` go to ``eval.stats.summarize`` (defaults: strict wins, the
    micro verifier as the binary metric at threshold 0.5).
    """
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    rows = pd.concat([run_rows(d) for d in run_dirs], ignore_index=True)
    manifests = [json.loads((Path(d) / "manifest.json").read_text()) for d in run_dirs]
    metrics = list(dict.fromkeys(m for man in manifests for m in man["config"]["metrics"]))
    metrics = [m for m in metrics if m in rows]
    summary = summarize(rows, metrics=metrics, tie_margin=tie_margin, binary_metrics=binary_metrics)
    out = Path(out) if out else Path(run_dirs[0]) / "report"
    paths = write_report(summary, rows, out)
    rows_csv = atomic_write_text(out / "rows.csv", rows.to_csv(index=False))
    parquet = _write_parquet(rows, out / "rows.parquet")
    return Report(
        summary=summary,
        rows=rows,
        figures=report_figures(summary, rows),
        html_path=paths["html"],
        csv_path=paths["csv"],
        rows_csv_path=rows_csv,
        parquet_path=parquet,
    )


def _write_parquet(rows: pd.DataFrame, path: Path) -> Path | None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    return atomic_write_with(path, lambda tmp: rows.to_parquet(tmp, index=False))
