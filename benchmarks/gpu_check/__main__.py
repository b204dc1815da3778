"""One-command GPU check: SDXL + the official NPNet in fp16, golden vs fp32, six metrics, timing, a 10-prompt eval.

    python -m benchmarks.gpu_check --out runs/gpu-check          # CUDA + hub: SDXL and the official NPNet
    python -m benchmarks.gpu_check --model tiny-sdxl --device cpu --random-scorers tiny --out /tmp/gpu-check

Stages, all through the project's own code (GoldenNoiseService, eval.metrics.get_scorer, eval.benchmark):
1. pairs: a standard and a golden image for 4 fixed (prompt, seed) pairs in ``--dtype`` (float16 on CUDA),
   saved under ``OUT/images``; the latents must have the model's shape ((1, 4, 128, 128) for SDXL at 1024 px);
2. golden vs fp32: each golden latent against a second, independently loaded float32 NPNet's forward on
   the same x_T and prompt embeddings (see ``GOLDEN_RTOL``);
3. timing and memory: one NPNet forward vs one CFG UNet step (medians, device-synchronised), NPNet's
   memory, the generation peak (CUDA max allocated; on CPU the process peak RSS, labelled as such);
4. scores: the paper's six metrics on the pairs (``--random-scorers SIZE``: random weights written by
   ``eval.metrics.random_weights``, so the plumbing runs offline; those scores mean nothing);
5. eval: the Table 2 SDXL Pick-a-Pic preset on its first 10 prompts (tiny-sdxl: the offline plumbing
   preset on 10 prompts) through ``eval.benchmark.run_benchmark``: means and win rates vs standard.
Writes ``OUT/report.json`` and ``OUT/report.md`` (atomically) with the paper's Table 2 / Table 11 figures
beside ours. Exit status: 0 every judged check passed, 1 one failed, 2 bad usage (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `python benchmarks/gpu_check` too

from benchmarks.gpu_check.checks import (  # noqa: E402
    DTYPE_CHOICES,
    EVAL_PRESET_FOR,
    RANDOM_SIZES,
    CheckConfig,
    check_golden_vs_fp32,
    check_pairs,
    choose_device,
    choose_dtype,
    generate_pairs,
    generation_memory,
    memory_mb,
    time_npnet_vs_unet,
)
from benchmarks.gpu_check.report import environment, paper_figures, verdict, write_report  # noqa: E402
from benchmarks.gpu_check.scoring import (  # noqa: E402
    eval_config,
    preflight_prompts,
    run_eval,
    score_pairs,
    scorer_factory,
    scorer_kwargs,
)
from npnet.errors import EXIT_FAILURE, EXIT_USAGE, UserError, one_line  # noqa: E402


# -- the check -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """What every stage shares: the device, dtype, service (one pipeline), preset and eval config."""

    device: torch.device
    dtype: torch.dtype
    service: Any
    preset: Any
    settings: dict[str, Any]
    eval_preset: str
    bench: Any  # eval.benchmark.BenchmarkConfig


def prepare(config: CheckConfig) -> Setup:
    """Validate, choose the device (NO_CUDA first, before heavy imports) and fail fast on missing downloads."""
    if config.model not in EVAL_PRESET_FOR:
        raise UserError(
            f"unknown model {config.model!r} for the GPU check; choose {', '.join(EVAL_PRESET_FOR)}"
        )
    if config.random_scorers not in (None, *RANDOM_SIZES):
        raise UserError(
            f"--random-scorers must be one of {', '.join(RANDOM_SIZES)}; got {config.random_scorers!r}"
        )
    device = choose_device(config.device)
    from npnet.engine import GoldenNoiseService, resolve_sampling

    dtype = choose_dtype(config.dtype, config.model, device)
    service = GoldenNoiseService(device=str(device), dtype=dtype, offline=config.offline, progress=False)
    preset = service.preset(config.model)  # hub offline and the model not cached: says what to download
    eval_preset, bench = eval_config(config, device)
    preflight_prompts(bench)
    settings = resolve_sampling(preset, steps=config.steps, scheduler=bench.scheduler)
    return Setup(device, dtype, service, preset, settings, eval_preset, bench)


def run_stages(config: CheckConfig, setup: Setup) -> tuple[dict, dict, dict]:
    """The five stages in order; returns (checks, memory, wall seconds per stage)."""
    from npnet.diffusion.sampling import free_memory, latent_shape
    from npnet.engine import PeakMemory

    service, device, preset, out = setup.service, setup.device, setup.preset, Path(config.out)
    stages: dict[str, float] = {}
    results = _timed(stages, "pairs", generate_pairs, service, config, setup.settings["scheduler"], out)
    memory = generation_memory(results, device)
    with service.lease(config.model) as loaded:
        shape = (1, *latent_shape(loaded.pipe, preset.width, preset.height))  # (1, 4, h, w)
    checks = {"pairs": check_pairs(results, shape, (preset.width, preset.height))}
    checks["golden_vs_fp32"] = _timed(
        stages, "golden_vs_fp32", check_golden_vs_fp32, service, config, results, device
    )
    checks["timing"] = _timed(
        stages, "timing", time_npnet_vs_unet, service, config, device, setup.settings["steps"]
    )
    checks["npnet_memory"] = checks["timing"].pop("npnet_memory")
    factory = scorer_factory(config, device, _timed(stages, "random_scorers", scorer_kwargs, config, out))
    with PeakMemory(device) as peak:
        checks["scores"] = _timed(stages, "scores", score_pairs, results, factory)
        checks["eval"] = _timed(stages, "eval", run_eval, service, factory, setup.bench, setup.eval_preset)
    memory["scores_and_eval"] = memory_mb(peak.result, device)
    free_memory()
    return checks, memory, stages


def run_check(config: CheckConfig) -> dict[str, Any]:
    """All five stages; returns the report (also written to OUT/report.json and OUT/report.md)."""
    setup = prepare(config)
    checks, memory, stages = run_stages(config, setup)
    judged = [c["passed"] for c in checks.values() if c.get("passed") is not None]
    report = {
        "passed": all(judged),
        "model": config.model,
        "steps": setup.settings["steps"],
        "scheduler": setup.settings["scheduler"],
        "config": asdict(config),
        "environment": environment(setup.device, setup.dtype),
        "scores_meaningless": bool(config.random_scorers),
        "checks": checks,
        "memory": memory,
        "stage_seconds": stages,
        "paper": paper_figures(setup.settings["scheduler"]),
    }
    write_report(report, Path(config.out))
    return report


def _timed(stages: dict[str, float], name: str, fn: Callable, *args):
    """``fn(*args)``, its wall time recorded in ``stages[name]`` (seconds, including model loading)."""
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        stages[name] = time.perf_counter() - start


def config_from_args(args: argparse.Namespace) -> CheckConfig:
    return CheckConfig(
        out=args.out,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        random_scorers=args.random_scorers,
        repeats=args.repeats,
        eval_limit=args.eval_limit,
        steps=args.steps,
        scheduler=args.scheduler,
        offline=True if args.offline else None,
    )


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the check from parsed flags; prints where the report is and the verdict of each check."""
    report = run_check(config_from_args(args))
    for name, check in report["checks"].items():
        print(f"{name}: {verdict(check.get('passed'))}")
    print(f"{verdict(report['passed'])}: wrote {Path(args.out) / 'report.md'} and report.json")
    return report


def build_parser() -> argparse.ArgumentParser:
    from npnet.errors import OneLineParser

    parser = OneLineParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sdxl", choices=sorted(EVAL_PRESET_FOR))
    parser.add_argument(
        "--device",
        default=None,
        help="default: cuda when available (else an error naming the CPU plumbing run)",
    )
    parser.add_argument(
        "--dtype", default=None, choices=DTYPE_CHOICES, help="default: float16 on CUDA, else float32"
    )
    parser.add_argument(
        "--out", default="runs/gpu-check", help="folder for images/, eval/, report.json, report.md"
    )
    parser.add_argument(
        "--random-scorers",
        default=None,
        choices=RANDOM_SIZES,
        metavar="SIZE",
        help="score with random-weight scorers of this size (offline plumbing; the scores mean nothing)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per median")
    parser.add_argument("--eval-limit", type=int, default=10, help="prompts of the eval preset")
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: the preset's, SDXL 50)"
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="sampler (default: the eval preset's, Table 2 SDXL: ddim, else the model's)",
    )
    parser.add_argument("--offline", action="store_true", help="never contact the hub")
    return parser


def exit_status(args: argparse.Namespace) -> int:
    """``main(args)`` as a command: 0 all judged checks passed, 1 one failed or a file/OS failure, 2 bad
    usage or a missing download (a ValueError: UserError and the scorers' offline messages), one line."""
    try:
        return 0 if main(args)["passed"] else EXIT_FAILURE
    except ValueError as err:
        return _say(f"error: {one_line(err)}", EXIT_USAGE)
    except OSError as err:
        return _say(f"error: {one_line(err) or type(err).__name__}", EXIT_FAILURE)


def _say(line: str, status: int) -> int:
    print(line, file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(exit_status(build_parser().parse_args()))
