"""The GPU check's report: the paper's figures, the environment, and report.json / report.md."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check.checks import MAX_NPNET_MB, MAX_NPNET_SHARE

# The paper's figures (arXiv 2411.09502). Metric units as the project's scorers report them (PickScore,
# HPSv2 x100, AES, ImageReward x100, CLIPScore, MPS preference % vs standard).
PAPER_TABLE2_SDXL: dict[str, dict[str, dict[str, float | None]]] = {
    # Table 2, model SDXL (50 steps, CFG 5.5, 1x RTX 4090); rows Standard / Inversion / NPNet per dataset
    "pickapic": {
        "standard": dict(pickscore=21.69, hpsv2=28.48, aes=6.0373, imagereward=58.01, clipscore=0.8204, mps=None),
        "inversion": dict(pickscore=21.71, hpsv2=28.57, aes=6.0503, imagereward=63.27, clipscore=0.8250, mps=51.41),
        "npnet": dict(pickscore=21.86, hpsv2=28.68, aes=6.0540, imagereward=65.01, clipscore=0.8408, mps=52.14),
    },
    "drawbench": {
        "standard": dict(pickscore=22.31, hpsv2=26.72, aes=5.5952, imagereward=62.21, clipscore=0.8077, mps=None),
        "inversion": dict(pickscore=22.37, hpsv2=26.91, aes=5.6017, imagereward=67.09, clipscore=0.8081, mps=51.98),
        "npnet": dict(pickscore=22.38, hpsv2=27.14, aes=5.6034, imagereward=70.67, clipscore=0.8153, mps=53.70),
    },
    "hpdv2": {
        "standard": dict(pickscore=22.88, hpsv2=29.71, aes=5.9985, imagereward=96.63, clipscore=0.8734, mps=None),
        "inversion": dict(pickscore=22.89, hpsv2=29.78, aes=5.9948, imagereward=97.39, clipscore=0.8708, mps=53.03),
        "npnet": dict(pickscore=22.94, hpsv2=29.88, aes=5.9922, imagereward=98.81, clipscore=0.8813, mps=56.02),
    },
}  # fmt: skip
PAPER_TABLE11: dict[str, dict[str, dict[str, float]]] = {
    # Appendix Table 11, SDXL on Pick-a-Pic, 50 steps, 1x RTX 4090; keyed by npnet.diffusion.schedulers name;
    # time_s is seconds per image
    "ddim": {
        "standard": dict(pickscore=21.69, hpsv2=28.48, aes=6.0373, imagereward=58.01, time_s=11.69),
        "npnet": dict(pickscore=21.86, hpsv2=28.68, aes=6.0540, imagereward=65.01, time_s=12.10),
    },
    "dpm++2m": {
        "standard": dict(pickscore=21.66, hpsv2=28.41, aes=5.9513, imagereward=55.01, time_s=9.84),
        "npnet": dict(pickscore=21.72, hpsv2=28.81, aes=5.9744, imagereward=67.30, time_s=10.43),
    },
    "ddpm": {
        "standard": dict(pickscore=21.78, hpsv2=28.72, aes=6.1353, imagereward=72.91, time_s=10.86),
        "npnet": dict(pickscore=21.91, hpsv2=29.24, aes=6.1505, imagereward=78.50, time_s=11.43),
    },
    "euler-a": {
        "standard": dict(pickscore=21.72, hpsv2=28.66, aes=6.0740, imagereward=67.01, time_s=10.28),
        "npnet": dict(pickscore=21.84, hpsv2=28.96, aes=6.0886, imagereward=85.05, time_s=10.86),
    },
    "pndm": {
        "standard": dict(pickscore=21.78, hpsv2=29.35, aes=5.9809, imagereward=62.81, time_s=11.40),
        "npnet": dict(pickscore=21.81, hpsv2=29.74, aes=6.0256, imagereward=67.58, time_s=11.82),
    },
    "kdpm2-a": {
        "standard": dict(pickscore=21.81, hpsv2=29.22, aes=6.0382, imagereward=77.59, time_s=16.25),
        "npnet": dict(pickscore=21.93, hpsv2=29.62, aes=6.0951, imagereward=84.78, time_s=16.73),
    },
    "heun": {
        "standard": dict(pickscore=21.83, hpsv2=28.71, aes=6.0705, imagereward=64.33, time_s=16.74),
        "npnet": dict(pickscore=21.86, hpsv2=28.98, aes=6.0892, imagereward=73.31, time_s=17.04),
    },
}
PAPER_NPNET_MEMORY_MB = 500  # Appendix Fig. 15 / Sec. 4 "Efficiency Analysis"
PAPER_SOURCES = {
    "table2_sdxl": "Table 2 (main experiments), SDXL rows: Pick-a-Pic / DrawBench / HPD, 50 steps, CFG 5.5",
    "table11": "Appendix Table 11 (samplers vs time cost), SDXL on Pick-a-Pic, 50 steps, 1x RTX 4090",
    "memory": "Appendix Fig. 15: NPNet needs about 500 MB",
}


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    from npnet.io import git_commit, versions

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    return {
        "device": str(device),
        "device_name": name,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "dtype": str(dtype).replace("torch.", ""),
        "versions": versions(),
        "git_commit": git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def paper_figures(scheduler: str) -> dict[str, Any]:
    """The paper's figures to compare with: Table 2 SDXL, Table 11 (all rows, ours marked), memory."""
    return {
        "sources": PAPER_SOURCES,
        "table2_sdxl": PAPER_TABLE2_SDXL,
        "table11": PAPER_TABLE11,
        "table11_row_for_this_scheduler": scheduler if scheduler in PAPER_TABLE11 else None,
        "npnet_memory_mb": PAPER_NPNET_MEMORY_MB,
    }


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def verdict(passed) -> str:
    """PASS or FAIL for a judged check, n/a for one that is not judged (None)."""
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def markdown(report: dict[str, Any]) -> str:
    """report.md: environment, checks, timings, memory, scores and the paper's figures beside them."""
    env, checks = report["environment"], report["checks"]
    lines = [f"# NPNet GPU check: {verdict(report['passed'])}", ""]
    lines += [
        f"- model `{report['model']}`, device `{env['device']}` ({env['device_name']}), dtype {env['dtype']}"
    ]
    lines += ["- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())]
    lines += [f"- git commit {env['git_commit']}, {env['time']}"]
    if report["scores_meaningless"]:
        lines += ["- **scores come from random-weight scorers (`--random-scorers`): they are meaningless**"]
    lines += ["", "| check | result | details |", "|---|---|---|"]
    for name, check in checks.items():
        lines.append(f"| {name} | {verdict(check.get('passed'))} | {_details(name, check)} |")
    lines += ["", *_timing_lines(report), "", *_score_lines(report), "", *_paper_lines(report)]
    return "\n".join(lines) + "\n"


def _details(name: str, check: dict) -> str:
    if name == "golden_vs_fp32":
        return (
            f"max abs diff {_fmt(check.get('max_abs_diff'))}, relative error {_fmt(check.get('relative_error'))}, "
            f"tolerance atol = rtol = {_fmt(check.get('rtol'))}; engine NPNet {check.get('engine_npnet_dtype')}"
        )
    if name == "pairs":
        return f"{len(check['pairs'])} pairs, latents {check['expected_latent_shape']}, images in images/"
    if name == "timing":
        return f"NPNet {check['npnet_share_of_denoising'] * 100:.2f}% of {check['steps']} UNet steps (max {MAX_NPNET_SHARE:.0%})"
    if name == "npnet_memory":
        return f"{_fmt(check.get('total_mb'))} MB (weights {_fmt(check['weights_mb'])} MB; max {MAX_NPNET_MB:.0f})"
    if name == "scores":
        return f"six metrics on {check['pairs']} pairs, all finite: {check['passed']}"
    if name == "eval":
        return f"{check['preset']}: {check['rows']}/{check['expected_rows']} rows in {check['run_dir']}"
    return ""


def _timing_lines(report: dict[str, Any]) -> list[str]:
    t, mem = report["checks"]["timing"], report["memory"]
    paper = PAPER_TABLE11.get(report["scheduler"])
    lines = [
        "## Timing and memory",
        "",
        f"- one NPNet forward: {t['npnet_forward_ms']:.2f} ms; one CFG UNet step: {t['unet_cfg_step_ms']:.2f} ms "
        f"(ratio {t['npnet_over_unet_step']:.3f}; medians of {t['repeats']}, device-synchronised)",
        f"- generation per pair (standard + golden, {report['steps']} steps, {report['scheduler']}): "
        + ", ".join(f"{p['seconds']:.2f} s" for p in report["checks"]["pairs"]["pairs"]),
        f"- memory: generation peak {mem['generation_peak_mb']:.0f} MB ({mem['kind']}); "
        f"scores + eval stages peak {mem['scores_and_eval']['mb']:.0f} MB ({mem['scores_and_eval']['kind']}; "
        "pipeline, NPNet and six scorers resident)",
    ]
    if t.get("note"):
        lines.append(f"- {t['note']}")
    if paper:
        extra = paper["npnet"]["time_s"] - paper["standard"]["time_s"]
        lines.append(
            f"- paper (Table 11, {report['scheduler']}, RTX 4090): {paper['standard']['time_s']} s standard, "
            f"{paper['npnet']['time_s']} s with NPNet per image (+{extra:.2f} s, "
            f"{extra / paper['standard']['time_s']:.1%}); NPNet memory ~{PAPER_NPNET_MEMORY_MB} MB (Fig. 15)"
        )
    return lines


def _score_lines(report: dict[str, Any]) -> list[str]:
    scores, ev = report["checks"]["scores"]["metrics"], report["checks"]["eval"]
    lines = [
        "## Scores on the 4 pairs",
        "",
        "| metric | standard | NPNet | NPNet wins / 4 |",
        "|---|---|---|---|",
    ]
    for name, m in scores.items():
        golden = m.get("npnet_preference_pct")
        npnet = f"{_fmt(m['npnet_mean'])}" + (f" (preference {golden:.1f}%)" if golden is not None else "")
        lines.append(f"| {name} | {_fmt(m['standard_mean'])} | {npnet} | {m['npnet_wins']} |")
    paper = PAPER_TABLE2_SDXL.get(ev["prompts"], {})  # the paper's rows for this prompt set (SDXL)
    lines += [
        "",
        f"## Eval: {ev['preset']}, first {ev['limit']} prompts, seeds {ev['seeds']} ({ev['seed_scheme']})",
        "",
    ]
    lines += ["| metric | method | mean | win rate vs standard | preference % | paper (Table 2, SDXL) |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in ev["summary"]:
        cells = [r["metric"], r["method"], _fmt(r["mean"]), _fmt(r["win_rate"], 3), _fmt(r["preference"], 4)]
        cells.append(_fmt(paper.get(r["method"], {}).get(r["metric"]), 6))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Full report: `python -m eval report {ev['run_dir']}`"]
    return lines


def _paper_lines(report: dict[str, Any]) -> list[str]:
    metrics = ("pickscore", "hpsv2", "aes", "imagereward", "clipscore", "mps")
    lines = [
        "## The paper's figures (arXiv 2411.09502)",
        "",
        f"{PAPER_SOURCES['table2_sdxl']}; 10 prompts give wide intervals, the paper averages 100 (Pick-a-Pic, HPD) "
        "or 200 (DrawBench) prompts.",
        "",
        "| dataset | method | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for dataset, rows in PAPER_TABLE2_SDXL.items():
        for method, values in rows.items():
            lines.append(
                f"| {dataset} | {method} | " + " | ".join(_fmt(values[m], 6) for m in metrics) + " |"
            )
    lines += ["", f"{PAPER_SOURCES['table11']} (seconds per image):", ""]
    lines += ["| scheduler | standard (s) | NPNet (s) | extra |", "|---|---|---|---|"]
    for name, rows in PAPER_TABLE11.items():
        mark = " (this run)" if name == report["scheduler"] else ""
        extra = rows["npnet"]["time_s"] - rows["standard"]["time_s"]
        lines.append(
            f"| {name}{mark} | {rows['standard']['time_s']} | {rows['npnet']['time_s']} | +{extra:.2f} s |"
        )
    return lines


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    from npnet.io import atomic_write_json, atomic_write_text

    json_path = atomic_write_json(out / "report.json", report)
    return json_path, atomic_write_text(out / "report.md", markdown(report))
