"""``python -m cli import-official``: the official .npz + JSONL noise pairs as an NPD folder.

python -m cli import-official --npz-dir noise_pairs/ --jsonl SDXL_step_10_training.json --out NPD_DIR
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cli.common import check_writable, positive_int, require_dir, require_file, run_standalone

if TYPE_CHECKING:
    from npnet.data.official import ImportResult


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--npz-dir", required=True, help="folder of {index}_{seed}.npz files (searched recursively)"
    )
    parser.add_argument("--jsonl", required=True, help="official JSONL: index, seed, caption, score lists")
    parser.add_argument("--out", required=True, help="NPD folder to write")
    parser.add_argument("--model", default="sdxl", help="model preset the pairs came from (recorded)")
    parser.add_argument("--score-index", type=int, default=0, help="entry of the score lists (0: HPSv2)")
    parser.add_argument("--margin", type=float, default=0.0, help="keep iff s_0 + margin < s'_0")
    parser.add_argument("--scorer", default="hpsv2", help="name of the scorer behind the score lists")
    parser.add_argument("--shard-size", type=positive_int, default=256)
    parser.add_argument(
        "--encode-with", default=None, help="model preset to encode captions with (prompt-embedding cache)"
    )
    parser.add_argument("--device", default="auto", help="device for --encode-with")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("import-official", help="import official .npz + JSONL noise pairs")
    return add_arguments(parser)


def main(args: argparse.Namespace) -> ImportResult:
    require_dir(args.npz_dir, "--npz-dir")
    require_file(args.jsonl, "--jsonl")
    check_writable(args.out, "--out", folder=True)
    from npnet.data.collect import service_prompt_encoder  # heavy imports after the cheap checks
    from npnet.data.official import import_official

    encode = service_prompt_encoder(args.encode_with, device=args.device) if args.encode_with else None
    result = import_official(
        args.npz_dir,
        args.jsonl,
        args.out,
        model=args.model,
        score_index=args.score_index,
        margin=args.margin,
        scorer=args.scorer,
        shard_size=args.shard_size,
        encode_prompts=encode,
    )
    print(
        f"imported {result.imported} pairs ({result.kept} kept at margin {args.margin}) into {result.out}; "
        f"{len(result.missing_caption)} npz without a JSONL row, {result.missing_npz} rows without an npz"
    )
    return result


if __name__ == "__main__":
    run_standalone(add_arguments, main, __doc__)
