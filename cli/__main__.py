"""``python -m cli <command>``: generate, collect, train, convert, import-official, micro, micro-npnet,
micro-turbo, micro-flow.

Each command module exposes ``add_parser(subparsers)`` and ``main(args)``; ``micro`` and ``micro-npnet``
have sub-commands of their own and take the rest of the command line. Only the chosen command's
module is imported, so ``--help`` stays fast.

Every command reports bad input and failures as one line on stderr (``cli.common``): exit status 2 for
bad usage (argparse, ``UserError`` / ``ValueError``), 1 for failures (``OSError``, ``RunFailed``), 130 when
interrupted. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cli.common import run_command
from npnet.errors import OneLineParser

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("cli.generate", "standard / golden / inversion images for a prompt and seed"),
    "collect": ("cli.collect", "collect noise pairs by re-denoise sampling (Alg. 1)"),
    "train": ("cli.train", "train an NPNet on collected noise pairs (Alg. 2)"),
    "convert": ("cli.convert", "convert NPNet checkpoints between layouts"),
    "import-official": ("cli.import_official", "import official .npz + JSONL noise pairs"),
    "micro": ("cli.micro", "the micro world's generator: train-generator, check-generator"),
    "micro-npnet": ("cli.micro_experiments", "the micro NPNet experiment: collect, train, evaluate, report"),
    "micro-turbo": ("cli.micro_turbo", "golden noise at 5 steps vs controls: evaluate, agreement"),
    "micro-flow": ("cli.micro_flow", "the micro flow-matching (SD3-class) world: train/check-generator, choose-steps/-wl, evaluate, curve"),
}
PASSTHROUGH = ("micro", "micro-npnet", "micro-turbo", "micro-flow")  # modules with their own sub-command parsers


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Top-level parser; the command named in ``argv`` gets its module's full sub-parser."""
    parser = OneLineParser(prog="python -m cli", description="NPNet Studio command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, summary) in COMMANDS.items():
        if name == chosen and name not in PASSTHROUGH:
            importlib.import_module(module_name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: _dispatch(argv))


def _dispatch(argv: list[str]):
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in PASSTHROUGH:
        rest = argv[argv.index(chosen) + 1 :]
        return importlib.import_module(COMMANDS[chosen][0]).main(rest)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join(COMMANDS)}")
    return importlib.import_module(COMMANDS[args.command][0]).main(args)


if __name__ == "__main__":
    sys.exit(main())
