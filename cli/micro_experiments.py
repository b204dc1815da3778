"""The micro NPNet experiment end to end: collect -> train (+ Table 4 ablations) -> evaluate (+ steps, Fig. 4).

    python -m cli micro-npnet all --run runs/micro_npnet --seeds-per-prompt 6 --epochs 30
    python -m cli micro-npnet collect --run runs/micro_npnet      # one stage at a time, each resumes
    python -m cli micro-npnet train --run runs/micro_npnet --variant no-svd
    python -m cli micro-npnet evaluate --run runs/micro_npnet --variant full --steps 10
    python -m cli micro-npnet report --run runs/micro_npnet --out assets/micro/results
    python -m cli micro-npnet export --run runs/micro_npnet      # -> assets/micro/npnet.safetensors

Every stage calls the general code (``npnet.data.collect``, ``npnet.training.train``, ``eval.benchmark``, ``eval.stats``);
see ``cli.micro_stages``. Results (``results.json``, ``summary.csv``, ``results.md``) are what was
measured: nothing is filtered or chosen after the fact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from cli.common import positive_int, run_command, seed_list, whole_number
from cli.micro_stages import (
    VARIANTS,
    StageSettings,
    collect_stage,
    cost_stage,
    evaluate_stage,
    npd_record,
    perturbation_control,
    residual_agreement,
    summarize_run,
    threads,
    train_stage,
    training_summary,
)
from eval.report import run_rows
from npnet.checkpoints import load_npnet
from npnet.diffusion.presets import get_model_preset
from npnet.errors import OneLineParser
from npnet.io import atomic_write_json, atomic_write_text
from npnet.worlds.micro.pipeline import NPNET_FILE

ASSET_NPNET = NPNET_FILE
ABLATIONS = ("no-svd", "no-residual", "no-select")
ROW_COLUMNS = ["steps", "prompt_index", "prompt", "seed", "method", "micro"]


def evaluate_all(
    settings: StageSettings, variants: tuple[str, ...], steps_curve: tuple[int, ...], log=print
) -> None:
    """The main evaluation (preset steps), each ablation, and the full model at other step counts."""
    for variant in variants:
        log(f"evaluate {variant} at the preset's steps")
        evaluate_stage(settings, variant)
    for steps in steps_curve:
        log(f"evaluate full at {steps} steps")
        evaluate_stage(settings, "full", steps=steps, methods=("standard", "npnet"))


def run_all(
    settings: StageSettings,
    variants: tuple[str, ...] = ("full", *ABLATIONS),
    steps_curve: tuple[int, ...] = (10, 40),
    results: str | Path | None = None,
    log=print,
) -> dict[str, Any]:
    """Every stage in order (each resumes); writes the results folder when ``results`` is given."""
    log(json.dumps(collect_stage(settings, progress=sys.stderr.isatty())))
    for variant in variants:
        log(json.dumps({variant: train_stage(settings, variant, log=log)}))
    evaluate_all(settings, variants, steps_curve, log=log)
    atomic_write_json(settings.root / "control.json", perturbation_control(settings))
    report = gather(settings, cost=cost_stage(settings))
    if results:
        write_results(report, results)
    return report


# -- results ----------------------------------------------------------------------------------------------
def gather(settings: StageSettings, cost: dict[str, float] | None = None) -> dict[str, Any]:
    """Everything measured in a run folder: data, training, every evaluation's summary."""
    import pandas as pd

    root = settings.root
    summaries, rows = [], []
    for run_dir in sorted((root / "eval").glob("*-steps*")):
        summaries.append(summarize_run(run_dir))
        rows.append(run_rows(run_dir)[ROW_COLUMNS].assign(variant=summaries[-1]["variant"].iloc[0]))
    summary = order_summary(pd.concat(summaries, ignore_index=True)) if summaries else pd.DataFrame()
    training = {
        v: training_summary(settings.npnet_dir(v)) | {"residual_agreement": residual_agreement(settings, v)}
        for v in VARIANTS
        if settings.npnet_path(v).is_file()
    }
    return {
        "settings": {**dataclasses.asdict(settings), "eval_seeds": list(settings.eval_seeds)},
        "world": json.loads((root / "world.json").read_text()),
        "collect": collect_record(settings),
        "npd_config": json.loads((settings.npd / "config.json").read_text()),
        "training": training,
        "cost_seconds": cost,
        "perturbation_control": _read_json(root / "control.json"),
        "summary": summary,
        "rows": pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=[*ROW_COLUMNS, "variant"]),
    }


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def collect_record(settings: StageSettings) -> dict[str, Any]:
    """The NPD's pairs, kept fraction and scores; collection time of each process (from its own call)."""
    calls = [json.loads(p.read_text()) for p in sorted(settings.root.glob("collect.rank*.json"))]
    return npd_record(settings.npd) | {
        "processes": len(calls),
        "seconds_per_process": [c["seconds_this_call"] for c in calls],
        "seconds_per_pair_per_process": [c["seconds_per_pair"] for c in calls],
    }


def _fmt(value: float, digits: int = 3) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def _ci(row, key: str, low: str, high: str, scale: float = 1.0, digits: int = 3) -> str:
    return f"{_fmt(row[key] * scale, digits)} [{_fmt(row[low] * scale, digits)}, {_fmt(row[high] * scale, digits)}]"


def markdown_table(summary) -> str:
    """Mean micro score with 95% t-CI; vs standard: win / tie / loss, win rate with bootstrap CI, sign test."""
    head = (
        "| NPNet | steps | method | n | mean micro score [95% CI] | win rate % [95% CI] | W / T / L | "
        "mean diff [95% CI] | sign-test p |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for _, r in summary.iterrows():
        vs = r["method"] != "standard"
        win = _ci(r, "win_rate", "win_rate_ci_low", "win_rate_ci_high", 100, 1) if vs else "-"
        wtl = f"{int(r['wins'])} / {int(r['ties'])} / {int(r['losses'])}" if vs else "-"
        diff = _ci(r, "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high", 1, 4) if vs else "-"
        p = f"{r['sign_p']:.2g}" if vs else "-"
        mean = _ci(r, "mean", "ci_low", "ci_high")
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['method']} | {r['n']} | {mean} | {win} | {wtl} | {diff} | {p} |"
        )
    return head + "\n".join(lines) + "\n"


def order_summary(summary):
    """Main run (full NPNet, preset steps) first, then the ablations, then the full NPNet at other steps."""
    default = get_model_preset("micro").steps
    rank = {v: i for i, v in enumerate(("full", *ABLATIONS))}
    keys = summary.apply(lambda r: (r["steps"] != default, r["steps"], rank.get(r["variant"], 99)), axis=1)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: keys.iloc[i])].reset_index(drop=True)


def section_tables(summary) -> list[str]:
    """Markdown: the main comparison, the Table 4 ablations, and the effect of steps (Fig. 4)."""
    if summary.empty:
        return ["(no evaluation yet)\n"]
    default = get_model_preset("micro").steps
    summary = order_summary(summary)
    at_default = summary["steps"] == default
    main = summary[at_default & (summary["variant"] == "full")]
    ablations = summary[at_default & (summary["method"] == "npnet")]
    steps = summary[(summary["variant"] == "full") & summary["method"].isin(["standard", "npnet"])]
    steps = steps.sort_values(["steps", "method"], ascending=[True, False], kind="stable")
    other = summary.drop(index=main.index.union(ablations.index).union(steps.index))
    other = other[~other.index.isin(summary.index[at_default & (summary["method"] == "standard")])]
    extra = ["\n## Other evaluations\n", markdown_table(other)] if not other.empty else []
    return [
        f"\n## Held-out prompts x seeds, preset settings ({default} steps)\n",
        markdown_table(main),
        "\n## Ablations (paper Table 4): NPNet variants vs standard\n",
        markdown_table(ablations),
        "\n## Sampling steps (paper Fig. 4): full NPNet vs standard\n",
        markdown_table(steps),
        *extra,
    ]


def write_results(report: dict[str, Any], out: str | Path) -> Path:
    """results.json (settings, data, training, cost, summary records), summary.csv, rows.csv, results.md."""
    out = Path(out)
    summary = report["summary"]
    data = {k: v for k, v in report.items() if k not in ("summary", "rows")}
    data["summary"] = json.loads(summary.to_json(orient="records"))
    atomic_write_json(out / "results.json", data)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "rows.csv", report["rows"].to_csv(index=False))  # per-sample scores
    collect = report["collect"] or {}
    text = [
        "# Micro NPNet results (generated by `python -m cli micro-npnet report`)\n",
        f"Generator fingerprint {report['world']['fingerprint']}; NPD: {collect.get('pairs')} pairs, "
        f"{collect.get('kept')} kept ({_fmt(collect.get('kept_fraction'))}); training selection margin: "
        f"{report['settings'].get('train_margin') if report['settings'].get('train_margin') is not None else 'as collected'}"
        ".\n",
        *section_tables(summary),
        "\n## Training (validation split of the NPD)\n",
        "cos / explained: agreement of NPNet(x_T) - x_T with x'_T - x_T on all validation pairs.\n",
        "| NPNet | best epoch | val MSE | identity MSE | zero MSE | alpha | beta | cos | explained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, t in report["training"].items():
        b, a = t["best"], t["residual_agreement"]
        text.append(
            f"| {variant} | {int(b['epoch'])}/{t['epochs']} | {b['val_loss']:.5f} | {b['val_identity']:.5f} | "
            f"{b['val_zero']:.3f} | {b['alpha']:+.3f} | {b['beta']:+.3f} | {a['cosine_mean']:.3f} | "
            f"{a['explained_energy']:.3f} |"
        )
    if report.get("cost_seconds"):
        text.append(
            "\nCost (s, CPU): " + json.dumps({k: round(v, 4) for k, v in report["cost_seconds"].items()})
        )
    control = report.get("perturbation_control")
    if control:
        text.append(
            f"\nPerturbation control ({control['pairs']} held-out pairs, standard mean "
            f"{control['mean_standard']:.3f}): "
            + "; ".join(
                f"{k} mean {control[k]['mean']:.3f}, W/T/L {control[k]['wins']}/{control[k]['ties']}/"
                f"{control[k]['losses']}"
                for k in ("inversion", "control")
            )
            + " (control: x_T + a random direction with the norm of x'_T - x_T)"
        )
    atomic_write_text(out / "results.md", "\n".join(text) + "\n")
    return out


def export(settings: StageSettings, variant: str = "full", to: str | Path = ASSET_NPNET) -> Path:
    """Copy the variant's best checkpoint (safetensors, config in its metadata) to the shipped asset path."""
    source = settings.npnet_path(variant)
    load_npnet(source)  # refuse to ship a file that does not load
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(to)
    return to


# -- CLI ---------------------------------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers >= 1 (step counts)."""
    values = tuple(positive_int(v.strip()) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated whole numbers >= 1, e.g. 10,40")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    return names


def _settings(args: argparse.Namespace) -> StageSettings:
    fields = {f.name for f in dataclasses.fields(StageSettings)}
    return StageSettings(**{k: v for k, v in vars(args).items() if k in fields and v is not None})


def build_parser() -> argparse.ArgumentParser:
    d = StageSettings(run="")
    parser = OneLineParser(prog="python -m cli micro-npnet", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=("collect", "train", "evaluate", "cost", "control", "report", "export", "all")
    )
    parser.add_argument("--run", required=True, help="experiment folder (created, or resumed)")
    parser.add_argument(
        "--generator", default=None, help="micro pipeline folder (default assets/micro/generator)"
    )
    parser.add_argument("--seeds-per-prompt", type=positive_int, default=d.seeds_per_prompt)
    parser.add_argument("--prompt-limit", type=positive_int, default=None, help="first N training captions")
    parser.add_argument("--collect-steps", type=positive_int, default=d.collect_steps)
    parser.add_argument("--cfg", type=float, default=None, help="w_l (default: the micro preset's CFG)")
    parser.add_argument("--inversion-cfg", type=float, default=d.inversion_cfg, help="w_w")
    parser.add_argument("--margin", type=float, default=d.margin)
    parser.add_argument(
        "--train-margin", type=float, default=None, help="train: re-apply s_0 + m < s'_0 with this margin"
    )
    parser.add_argument("--epochs", type=positive_int, default=d.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="training batch size")
    parser.add_argument(
        "--sampling-batch-size", type=positive_int, default=None,
        help="samples per pipeline call when collecting and evaluating (default: the micro preset's)",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--train-seed", type=whole_number(0), default=d.train_seed)
    parser.add_argument("--eval-limit", type=positive_int, default=None, help="first N held-out captions")
    parser.add_argument("--eval-seeds", type=seed_list, default=d.eval_seeds)
    parser.add_argument(
        "--variant", default="full", choices=tuple(VARIANTS), help="train/evaluate/cost/export"
    )
    parser.add_argument("--variants", type=_names, default=("full", *ABLATIONS), help="for `all`")
    parser.add_argument("--steps", type=positive_int, default=None, help="evaluate: sampling steps (default preset's)")
    parser.add_argument(
        "--methods", default=None, help="evaluate: e.g. standard,npnet (default: + inversion for full)"
    )
    parser.add_argument("--steps-curve", type=_ints, default=(10, 40), help="for `all`: extra step counts")
    parser.add_argument("--out", default=None, help="report: results folder; export: target file")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> Any:
    args = build_parser().parse_args(argv)
    threads(args.threads)
    settings = _settings(args)
    if args.command == "collect":
        return print(json.dumps(collect_stage(settings, progress=sys.stderr.isatty())))
    if args.command == "train":
        return print(json.dumps(train_stage(settings, args.variant)))
    if args.command == "evaluate":
        methods = tuple(m.strip() for m in args.methods.split(",")) if args.methods else None
        return print(evaluate_stage(settings, args.variant, args.steps, methods).to_string(index=False))
    if args.command == "cost":
        return print(json.dumps(cost_stage(settings, args.variant)))
    if args.command == "control":
        record = perturbation_control(settings)
        atomic_write_json(settings.root / "control.json", record)
        return print(json.dumps(record))
    if args.command == "export":
        return print(export(settings, args.variant, args.out or ASSET_NPNET))
    if args.command == "report":
        report = gather(settings, cost=cost_stage(settings))
        print(markdown_table(report["summary"]))
        return print(write_results(report, args.out or settings.root / "results"))
    report = run_all(settings, args.variants, args.steps_curve, args.out or settings.root / "results")
    return print(markdown_table(report["summary"]))


if __name__ == "__main__":
    sys.exit(run_command(lambda: main(sys.argv[1:])))
