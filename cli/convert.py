"""Convert NPNet checkpoints between the official ``.pth`` layout and safetensors.

python -m cli.convert sdxl.pth npnet-sdxl.safetensors
python -m cli.convert npnet-sdxl.safetensors sdxl.pth --to official
"""

from __future__ import annotations

import argparse

from cli.common import check_writable, run_standalone
from npnet.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("source", help="checkpoint path, HUB_CHECKPOINTS name or hub id (owner/repo/file)")
    parser.add_argument("target", help="output file (.safetensors or .pth)")
    parser.add_argument(
        "--to",
        choices=("auto", "safetensors", "official"),
        default="auto",
        help="output layout; auto picks by the target's suffix",
    )
    parser.add_argument("--filename", default=None, help="file inside a hub repo given as owner/repo")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reload the written file and compare outputs on a random input",
    )
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("convert", help="convert NPNet checkpoints between layouts")
    return add_arguments(parser)


def main(args: argparse.Namespace) -> str:
    check_writable(args.target, "target")  # before the source is loaded (or downloaded)
    from npnet.checkpoints import load_npnet, save_npnet, save_official  # imports torch: after the check

    net = load_npnet(args.source, filename=args.filename)
    layout = (
        args.to
        if args.to != "auto"
        else ("safetensors" if args.target.endswith(".safetensors") else "official")
    )
    save = save_npnet if layout == "safetensors" else save_official
    written = str(save(net, args.target))
    if args.check:
        _check_same(net, load_npnet(written))
    print(
        f"wrote {layout} checkpoint {written} ({net.config.text_dim}-wide text, "
        f"{net.config.latent_size}x{net.config.latent_size} latents)"
    )
    return written


def _check_same(a, b) -> None:
    import torch

    cfg = a.config
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 4, cfg.latent_size, cfg.latent_size, generator=gen)
    embeds = torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen)
    with torch.inference_mode():
        if not torch.equal(a(noise, embeds), b(noise, embeds)):
            raise UserError("the converted checkpoint does not reproduce the source's outputs")


if __name__ == "__main__":
    run_standalone(add_arguments, main, __doc__)
