"""``python -m cli generate``: one PNG per method and a meta.json (settings, versions, timings).

python -m cli generate --model tiny-sdxl --prompt "a red cube" --seed 0 --out runs/demo
python -m cli generate --model sdxl --prompt "..." --seed 0,1,2 --method standard,npnet,inversion --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import LazyHelp, check_writable, run_standalone, seed_list

if TYPE_CHECKING:  # npnet.engine loads diffusers: imported when a command runs, not to parse its flags
    from npnet.engine import GenerationRequest, GenerationResult


def _models_help() -> str:
    from npnet.diffusion.presets import MODEL_PRESETS

    return f"model preset: {', '.join(MODEL_PRESETS)}"


def _schedulers_help() -> str:
    from npnet.diffusion.schedulers import scheduler_names

    return f"one of {', '.join(scheduler_names())}"


def _methods_help() -> str:
    from npnet.engine import METHODS

    return f"comma list of {', '.join(METHODS)}"


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"size must look like 1024x1024 (WIDTHxHEIGHT); got {text!r}"
        ) from err
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, help=LazyHelp(_models_help))
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument(
        "--seed", type=seed_list, default=(0,), help="seed, comma list or range: 0, 0,1,2 or 0-7 (default 0)"
    )
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's)")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale w (diffusers convention)")
    parser.add_argument("--inversion-cfg", type=float, default=None, help="re-denoise inversion CFG w_w")
    parser.add_argument("--scheduler", default=None, help=LazyHelp(_schedulers_help))
    parser.add_argument("--size", type=_size, default=None, help="WIDTHxHEIGHT, multiples of 8")
    parser.add_argument("--npnet", default=None, help="NPNet checkpoint: path, hub id or known name")
    parser.add_argument("--method", default="standard,npnet", help=LazyHelp(_methods_help))
    parser.add_argument("--redenoise-mode", default="correct", choices=("correct", "official"))
    parser.add_argument(
        "--redenoise-steps", type=int, default=None, help="re-denoise DDIM step size 1000/N (default: sampling steps)"
    )
    parser.add_argument("--redenoise-cfg", type=float, default=None, help="re-denoise w_l (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: per device)")
    parser.add_argument("--offline", action="store_true", help="never use the hub (also HF_HUB_OFFLINE=1)")
    parser.add_argument("--cpu-offload", action="store_true", help="enable_model_cpu_offload on CUDA")
    parser.add_argument("--vae-tiling", action="store_true", help="tiled VAE decoding for large sizes")
    parser.add_argument("--sequential", action="store_true", help="one pipeline call per image (no batching)")
    parser.add_argument("--no-progress", action="store_true", help="hide the sampling progress bars")
    parser.add_argument("--out", required=True, help="output directory")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate", help="standard / golden / inversion images for a prompt and seed"
    )
    return add_arguments(parser)


def request_from_args(args: argparse.Namespace, seed: int) -> GenerationRequest:
    from npnet.engine import GenerationRequest

    width, height = args.size if args.size else (None, None)
    return GenerationRequest(
        model=args.model,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=seed,
        steps=args.steps,
        guidance_scale=args.cfg,
        scheduler=args.scheduler,
        width=width,
        height=height,
        methods=tuple(m.strip() for m in args.method.split(",") if m.strip()),
        npnet=args.npnet,
        inversion_guidance_scale=args.inversion_cfg,
        batched=not args.sequential,
        redenoise_mode=args.redenoise_mode,
        redenoise_steps=args.redenoise_steps,
        redenoise_guidance_scale=args.redenoise_cfg,
    )


def write_result(result: GenerationResult, folder: Path) -> dict[str, str]:
    """One PNG per method in ``folder``; returns method -> file name."""
    from npnet.io import atomic_write_with

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for method, image in result.images.items():
        files[method] = f"{method}.png"
        atomic_write_with(folder / files[method], lambda tmp, im=image: im.save(tmp, format="PNG"))
    return files


def main(args: argparse.Namespace) -> int:
    check_writable(args.out, "output folder", folder=True)  # before any model loads
    from tqdm.auto import tqdm

    from npnet.engine import GoldenNoiseService
    from npnet.io import atomic_write_json, versions

    service = GoldenNoiseService(
        device=args.device,
        dtype=args.dtype,
        offline=True if args.offline else None,
        cpu_offload=args.cpu_offload,
        vae_tiling=args.vae_tiling,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    runs = []
    for seed in tqdm(args.seed, desc="seeds", disable=args.no_progress or len(args.seed) == 1):
        result = service.generate(request_from_args(args, seed))
        folder = out if len(args.seed) == 1 else out / f"seed{seed}"
        files = write_result(result, folder)
        runs.append(
            {
                "seed": seed,
                "dir": str(folder.relative_to(out)) if folder != out else ".",
                "files": files,
                "settings": result.settings,
                "timings": result.timings,
                "peak_memory": result.peak_memory,
            }
        )
        print(f"seed {seed}: wrote {', '.join(str(folder / f) for f in files.values())}")
    meta = {"command": "generate", "versions": versions(), **runs[0], "runs": runs}
    atomic_write_json(out / "meta.json", meta)
    print(f"wrote {out / 'meta.json'}")
    return 0


if __name__ == "__main__":
    run_standalone(add_arguments, main, __doc__)
