"""Command line: ``python -m eval run ...`` (resumable, shardable benchmark) and ``python -m eval report RUN_DIR``.

    python -m eval run --model sdxl --prompts pickapic --limit 100 --seeds 0,1 \
        --methods standard,inversion,npnet --metrics hpsv2,pickscore,aes,imagereward,clipscore,mps --out runs/sdxl
    accelerate launch --num_processes 2 -m eval run ...      # deterministic split by sample index
    python -m eval report runs/sdxl

Exit status: 0 done; 2 bad usage (a flag or value to change); 1 a failure (an unwritable or missing file,
every sample failed, or the run stopped after repeated failures); 130 interrupted. Errors are one line on
stderr. (The same rules as ``python -m cli``; ``eval`` does not import ``cli``, so they are repeated here.)
"""

from __future__ import annotations

import argparse
import logging
import sys

from npnet.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, UserError, one_line


def _csv(kind=str):
    def parse(text: str):
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return items

    return parse


def _seeds(text: str) -> tuple[int, ...]:
    from eval.seeds import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must look like 1024x1024 (WIDTHxHEIGHT); got {text!r}"
        ) from None
    return width, height


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {text!r}")
        return value

    return parse


def add_run_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="generate and score methods x prompts x seeds (resumes in --out)")
    p.add_argument("--model", help="model preset (python -m cli generate --help lists them)")
    p.add_argument("--prompts", help="prompt-set name, local CSV/JSON/JSONL/TXT file, or hub:owner/repo:file")
    p.add_argument("--preset", help="an eval preset name (eval/presets.py); other flags override it")
    p.add_argument("--column", default=None, help="prompt column in a table file")
    p.add_argument("--limit", type=_whole(1), default=None, help="use the first N prompts")
    p.add_argument(
        "--seeds", type=_seeds, default=None, help="e.g. 0, 0,1,2 or the range 0-7 (inclusive; default 0)"
    )
    p.add_argument(
        "--seed-scheme",
        choices=("fixed", "paper"),
        default=None,
        help="fixed: every prompt runs with every --seeds seed (default); paper: one seed per prompt drawn "
        "uniformly in [0, 100] (App. D.5), keyed on each --seeds value (a base seed) and the prompt index",
    )
    p.add_argument(
        "--methods",
        type=_csv(),
        default=None,
        help="standard, npnet, inversion, best-of-N, npnet+best-of-N (default standard,npnet)",
    )
    p.add_argument(
        "--metrics", type=_csv(), default=None, help="e.g. hpsv2,pickscore,aes,imagereward,clipscore,mps"
    )
    p.add_argument("--verifier", default=None, help="best-of-N selection metric (default: first metric)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=_whole(1), default=None)
    p.add_argument("--cfg", type=float, default=None, dest="guidance_scale")
    p.add_argument("--inversion-cfg", type=float, default=None, dest="inversion_guidance_scale")
    p.add_argument("--redenoise-cfg", type=float, default=None, dest="redenoise_guidance_scale", help="w_l")
    p.add_argument("--redenoise-steps", type=int, default=None, help="DDIM step size 1000/N")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--size", type=_size, default=None, help="WIDTHxHEIGHT (multiples of 8)")
    p.add_argument("--npnet", default=None, help="NPNet checkpoint override (path, hub id or name)")
    p.add_argument("--device", default="auto")
    p.add_argument("--offline", action="store_true", help="never contact the hub")
    p.add_argument(
        "--cpu-offload", action="store_true", help="enable_model_cpu_offload on CUDA (SD3.5 / Flux on smaller GPUs)"
    )
    p.add_argument("--out", required=True, help="run directory (created, or resumed)")
    p.add_argument(
        "--max-consecutive-failures",
        type=_whole(0),
        default=None,
        help="stop after this many samples in a row fail the same way (default 5; 0: never stop)",
    )
    p.add_argument(
        "--batch-size",
        type=_whole(1),
        default=None,
        help="samples per pipeline call (default: the model preset's; 1: one sample at a time)",
    )
    p.set_defaults(func=run_main)


def add_report_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="statistics, win rates with CIs, charts (HTML + JSON) for a run")
    p.add_argument("run_dir")
    p.set_defaults(func=report_main)


def config_from_args(args: argparse.Namespace):
    from eval.benchmark import BenchmarkConfig
    from eval.presets import EVAL_PRESETS

    if args.preset and args.preset not in EVAL_PRESETS:
        raise UserError(f"unknown eval preset {args.preset!r}; choose from {list(EVAL_PRESETS)}")
    fields = dict(EVAL_PRESETS[args.preset]) if args.preset else {}
    width, height = args.size if args.size else (None, None)
    given = {
        "model": args.model,
        "prompts": args.prompts,
        "column": args.column,
        "limit": args.limit,
        "seeds": args.seeds,
        "seed_scheme": args.seed_scheme,
        "methods": args.methods,
        "metrics": args.metrics,
        "verifier": args.verifier,
        "negative_prompt": args.negative_prompt,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "inversion_guidance_scale": args.inversion_guidance_scale,
        "redenoise_guidance_scale": args.redenoise_guidance_scale,
        "redenoise_steps": args.redenoise_steps,
        "scheduler": args.scheduler,
        "width": width,
        "height": height,
        "npnet": args.npnet,
        "device": args.device,
        "offline": True if args.offline else None,
        "cpu_offload": True if args.cpu_offload else None,
        "out": args.out,
        "max_consecutive_failures": args.max_consecutive_failures,
        "batch_size": args.batch_size,
    }
    fields.update({k: v for k, v in given.items() if v is not None})
    if not fields.get("prompts") or not fields.get("model"):
        raise UserError("pass --model and --prompts (a prompt-set name or file), or --preset")
    return BenchmarkConfig(**fields)


def run_main(args: argparse.Namespace):
    from eval.benchmark import run_benchmark

    result = run_benchmark(config_from_args(args))
    print(f"{result.run_dir}: {result.counts}; {len(result.rows)} rows in total")
    return result


def report_main(args: argparse.Namespace):
    from eval.report import build_report

    report = build_report(args.run_dir)
    print(report.summary.to_string(index=False))
    print(f"\nwrote {report.html_path} and {report.csv_path}")
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m eval", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_run_parser(subparsers)
    add_report_parser(subparsers)
    return parser


def main(argv=None):
    """Parse ``argv`` and run the command; returns its result (``BenchmarkResult`` or ``Report``).

    Bad flags exit through argparse (status 2, one line); other errors propagate: see ``cli_main``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


def cli_main(argv=None) -> int:
    """``python -m eval``: ``main`` with one-line errors and the exit statuses in the module docstring."""
    try:
        result = main(argv)
    except KeyboardInterrupt:
        return _say("interrupted", EXIT_INTERRUPTED)
    except ValueError as err:  # UserError and other bad values
        return _say(f"error: {one_line(err)}", EXIT_USAGE)
    except OSError as err:
        text = f"{err.strerror}: {err.filename}" if err.strerror and err.filename is not None else str(err)
        return _say(f"error: {one_line(text) or type(err).__name__}", EXIT_FAILURE)
    failure = getattr(result, "failure", None)
    return _say(f"error: {one_line(failure)}", EXIT_FAILURE) if failure else 0


def _say(line: str, status: int) -> int:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass
    return status


if __name__ == "__main__":
    sys.exit(cli_main())
