"""Command line: ``python -m eval run ...`` (resumable, shardable benchmark) and ``python -m eval report RUN_DIR``.

    python -m eval run --model sdxl --prompts pickapic --limit 100 --seeds 0,1 \
        --methods standard,inversion,npnet --metrics hpsv2,pickscore,aes,imagereward,clipscore,mps --out runs/sdxl
    accelerate launch --num_processes 2 -m eval run ...      # deterministic split by sample index
    python -m eval report runs/sdxl
"""

from __future__ import annotations

import argparse
import logging

from npnet.errors import UserError


def _csv(kind=str):
    def parse(text: str):
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        return items

    return parse


def add_run_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="generate and score methods x prompts x seeds (resumes in --out)")
    p.add_argument("--model", help="model preset (python -m cli generate --help lists them)")
    p.add_argument("--prompts", help="prompt-set name, local CSV/JSON/JSONL/TXT file, or hub:owner/repo:file")
    p.add_argument("--preset", help="an eval preset name (eval/presets.py); other flags override it")
    p.add_argument("--column", default=None, help="prompt column in a table file")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seeds", type=_csv(int), default=None, help="comma-separated (default 0)")
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
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--cfg", type=float, default=None, dest="guidance_scale")
    p.add_argument("--inversion-cfg", type=float, default=None, dest="inversion_guidance_scale")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--size", default=None, help="WIDTHxHEIGHT (multiples of 8)")
    p.add_argument("--npnet", default=None, help="NPNet checkpoint override (path, hub id or name)")
    p.add_argument("--device", default="auto")
    p.add_argument("--offline", action="store_true", help="never contact the hub")
    p.add_argument("--out", required=True, help="run directory (created, or resumed)")
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
    width = height = None
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
    given = {
        "model": args.model,
        "prompts": args.prompts,
        "column": args.column,
        "limit": args.limit,
        "seeds": args.seeds,
        "methods": args.methods,
        "metrics": args.metrics,
        "verifier": args.verifier,
        "negative_prompt": args.negative_prompt,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "inversion_guidance_scale": args.inversion_guidance_scale,
        "scheduler": args.scheduler,
        "width": width,
        "height": height,
        "npnet": args.npnet,
        "device": args.device,
        "offline": True if args.offline else None,
        "out": args.out,
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


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_run_parser(subparsers)
    add_report_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
