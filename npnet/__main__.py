"""``python -m npnet <command>``: generate, collect, train, convert, import-official.

Each command lives in its own module ``npnet.<command>`` exposing ``add_parser(subparsers)`` (which
registers the sub-parser and returns it) and ``main(args)``. Only the chosen command's module is
imported; commands whose module is not installed are not offered.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("npnet.generate", "standard / golden / inversion images for a prompt and seed"),
    "collect": ("npnet.collect", "collect noise pairs by re-denoise sampling (Alg. 1)"),
    "train": ("npnet.train", "train an NPNet on collected noise pairs (Alg. 2)"),
    "convert": ("npnet.convert", "convert NPNet checkpoints between layouts"),
    "import-official": ("npnet.importer", "import official .npz + JSONL noise pairs"),
}


def available_commands() -> dict[str, tuple[str, str]]:
    """Commands whose module exists (found without importing it)."""
    return {name: entry for name, entry in COMMANDS.items() if importlib.util.find_spec(entry[0]) is not None}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Top-level parser; the command named in ``argv`` gets its module's full sub-parser."""
    parser = argparse.ArgumentParser(prog="python -m npnet", description="NPNet Studio command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, summary) in available_commands().items():
        if name == chosen:
            importlib.import_module(module_name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(available_commands()[args.command][0])
    try:
        result = module.main(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
