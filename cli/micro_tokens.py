"""The token-conditioned micro-turbo NPNet (issue 21): design choice, paired comparisons, compute matching.

    python -m cli micro-turbo token-candidates --data runs/micro_turbo/npd --runs runs/micro_turbo/token-candidates \\
        --out assets/micro/turbo-tokens/candidates.json
    python -m cli micro-turbo compare assets/micro/turbo-tokens assets/micro/turbo --out assets/micro/turbo-tokens/vs_official.json
    python -m cli micro-turbo compute-matched assets/micro/turbo-tokens assets/micro/turbo-tokens/steps-{4,6,8} \\
        --out assets/micro/turbo-tokens/compute_matched.md

* ``token-candidates`` trains each design of the token path (``cli.micro_ablations.TOKEN_CANDIDATES``) with
  the shipped micro-turbo recipe and reports only its agreement with x'_T - x_T on the NPD's validation
  pairs (training captions): the design is chosen there, never on held-out captions.
* ``compare`` pairs two ``evaluate`` folders on the same held-out (caption, seed) samples: their ``npnet``
  arms against each other (rescued / broken, exact McNemar), after checking that their ``standard`` arms
  are the same scores (the same generator, captions and seeds).
* ``compute-matched``: NPNet at n steps against standard at n + 1 steps, from ``evaluate`` folders at
  several step counts; a fair budget whenever one NPNet forward costs at most one UNet step (FLOPs in
  ``benchmarks/npnet_overhead.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cli.micro_ablations import AblationConfig, trained, validation_agreement
from eval.stats import binary_stats
from npnet.checkpoints import load_npnet
from npnet.errors import UserError
from npnet.io import atomic_write_json, atomic_write_text


def train_candidates(data: str, runs: str, only: tuple[str, ...] = (), epochs: int = 30) -> dict[str, dict]:
    """Train (or reuse) each token-path design and measure its validation agreement."""
    config = AblationConfig(
        data, runs, "", preset="micro-tokens", epochs=epochs, variant_set="token-candidates"
    )
    names = only or tuple(config.variants)
    unknown = sorted(set(names) - set(config.variants))
    if unknown:
        raise UserError(f"unknown token candidates {unknown}; choose from {', '.join(config.variants)}")
    return {
        name: validation_agreement(data, load_npnet(trained(config, name)), config.val_fraction)
        for name in names
    }


def read_rows(folder: str | Path) -> pd.DataFrame:
    path = Path(folder) / "rows.csv"
    if not path.is_file():
        raise UserError(f"{path} not found: pass a folder written by `python -m cli micro-turbo evaluate`")
    return pd.read_csv(path).sort_values(["prompt_index", "seed"]).reset_index(drop=True)


def _paired(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    keys = ["prompt_index", "prompt", "seed"]
    if not a[keys].equals(b[keys]):
        raise UserError(f"{what}: the two folders score different (caption, seed) samples")


def compare(folder: str, baseline: str) -> dict:
    """``folder``'s NPNet arm against ``baseline``'s on the same samples (standard arms must agree)."""
    a, b = read_rows(folder), read_rows(baseline)
    _paired(a, b, "compare")
    if not np.allclose(a["standard"], b["standard"], atol=1e-6):
        raise UserError("compare: the standard arms differ, so the samples are not the same images")
    stats = binary_stats(a["npnet"], b["npnet"], clusters=a["prompt_index"].to_numpy())
    return {"npnet": folder, "baseline": baseline, "pairs": len(a), **stats}


def compute_matched(folders: list[str]) -> list[dict]:
    """NPNet at n steps vs standard at n + 1 steps, for each pair of ``evaluate`` folders n, n + 1."""
    by_steps = {json.loads((Path(f) / "results.json").read_text())["steps"]: f for f in folders}
    rows = []
    for n in sorted(by_steps):
        if n + 1 not in by_steps:
            continue
        a, b = read_rows(by_steps[n]), read_rows(by_steps[n + 1])
        _paired(a, b, "compute-matched")
        stats = binary_stats(a["npnet"], b["standard"], clusters=a["prompt_index"].to_numpy())
        rows.append({"npnet_steps": n, "standard_steps": n + 1, "npnet_accuracy": float((a["npnet"] > 0.5).mean()),
                     "standard_accuracy": float((b["standard"] > 0.5).mean()), **stats})  # fmt: skip
    if not rows:
        raise UserError(
            "compute-matched needs evaluate folders at two consecutive step counts (e.g. 4 and 5)"
        )
    return rows


def compute_matched_markdown(rows: list[dict]) -> str:
    lines = [
        "| NPNet + n steps | standard, n + 1 steps | NPNet accuracy | standard accuracy | rescued / broken | "
        "McNemar p | pp [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = f"{r['accuracy_diff_pp']:+.1f} [{r['accuracy_diff_pp_ci_low']:+.1f}, {r['accuracy_diff_pp_ci_high']:+.1f}]"
        lines.append(
            f"| {r['npnet_steps']} | {r['standard_steps']} | {100 * r['npnet_accuracy']:.1f}% | "
            f"{100 * r['standard_accuracy']:.1f}% | {r['rescued']} / {r['broken']} | {r['mcnemar_p']:.2g} | {gain} |"
        )
    return "\n".join(lines) + "\n"


def candidates_markdown(results: dict[str, dict]) -> str:
    lines = ["| token path | val cosine | explained energy | norm ratio |", "|---|---|---|---|"]
    for name, a in results.items():
        lines.append(
            f"| {name} | {a['cosine_mean']:.3f} | {100 * a['explained_energy']:.1f}% | {a['norm_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def add_token_parsers(sub) -> None:
    ca = sub.add_parser("token-candidates", help="token-path designs: validation agreement only")
    ca.add_argument("--data", required=True, help="the micro-turbo NPD (python -m cli collect)")
    ca.add_argument("--runs", required=True, help="folder for the candidates' training runs")
    ca.add_argument("--only", default="", help="comma list of candidates (default: all)")
    ca.add_argument("--epochs", type=int, default=30)
    ca.add_argument("--out", default=None, help="also write the agreement JSON here")
    co = sub.add_parser("compare", help="two evaluate folders' NPNet arms on the same samples")
    co.add_argument("folder", help="evaluate folder of the NPNet under test")
    co.add_argument("baseline", help="evaluate folder of the NPNet to beat")
    co.add_argument("--out", default=None, help="also write the JSON here")
    cm = sub.add_parser("compute-matched", help="NPNet at n steps vs standard at n + 1 steps")
    cm.add_argument("folders", nargs="+", help="evaluate folders at consecutive step counts")
    cm.add_argument("--out", default=None, help="also write the markdown table here")


def run_token_command(args) -> str:
    """The text to print for one of the commands above (writing ``--out`` when given)."""
    if args.command == "token-candidates":
        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        results = train_candidates(args.data, args.runs, only, args.epochs)
        if args.out:
            atomic_write_json(Path(args.out), results)
        return candidates_markdown(results)
    if args.command == "compare":
        result = compare(args.folder, args.baseline)
        if args.out:
            atomic_write_json(Path(args.out), result)
        return json.dumps(result, indent=1)
    table = compute_matched_markdown(compute_matched(args.folders))
    if args.out:
        atomic_write_text(Path(args.out), table)
    return table
