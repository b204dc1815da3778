"""NPNet forward latency and parameter memory, and where the time goes (Swin vs SVD vs text linear).

    python benchmarks/npnet_overhead.py --preset sdxl --repeats 20 --threads 2
    python benchmarks/npnet_overhead.py --preset sdxl-tokens    # the token-conditioned variant vs the official
    python benchmarks/npnet_overhead.py --preset micro-tokens   # vs one micro UNet step (shipped generator)

Random weights with the official architecture (timing does not depend on the values).  Prints a
markdown table; medians of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npnet.model import NPNET_PRESETS, NPNet  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _param_mb(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20


def profile(net: NPNet, batch: int, repeats: int) -> dict[str, float]:
    """Median ms of the whole forward and of each part on one batch."""
    cfg = net.config
    noise = torch.randn(batch, 4, cfg.latent_size, cfg.latent_size)
    embeds = torch.randn(1, cfg.text_len, cfg.text_dim)
    cond = net.condition(embeds, batch)
    tokens = cond.reshape(batch, cfg.text_len, cfg.text_dim)  # (B, 77, D)
    extra = {"token branch": lambda: net.token_branch(noise, tokens)} if cfg.uses_tokens else {}
    with torch.inference_mode():
        return {
            "total": _median_ms(lambda: net(noise, embeds), repeats),
            **{name: _median_ms(fn, repeats) for name, fn in extra.items()},
            "svd branch": _median_ms(lambda: net.unet_svd(noise), repeats),
            "  torch.linalg.svd": _median_ms(
                lambda: torch.linalg.svd(noise.reshape(batch, 2 * cfg.latent_size, -1)), repeats
            ),
            "residual branch (Swin)": _median_ms(lambda: net.unet_embedding(noise), repeats),
            "text AdaGroupNorm": _median_ms(lambda: net.embeeding(noise, cond), repeats),
        }


SDXL_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (architecture only)
    sample_size=128,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    use_linear_projection=True,
    norm_num_groups=32,
)


def forward_gflops(net: NPNet) -> float:
    """GFLOPs of one batch-1 NPNet forward at its native size (torch's counter: the SVD is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = net.config
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.randn(1, 4, cfg.latent_size, cfg.latent_size), torch.randn(1, cfg.text_len, cfg.text_dim))
    return counter.get_total_flops() / 1e9


def micro_unet_step_gflops() -> float:
    """GFLOPs of one CFG step (batch 2) of the shipped micro generator's UNet."""
    from torch.utils.flop_counter import FlopCounterMode

    from npnet.worlds.micro.pipeline import load_micro_pipeline

    pipe = load_micro_pipeline()
    side = pipe.unet.config.sample_size
    x, emb = torch.randn(2, 4, side, side), torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    added = {"text_embeds": torch.randn(2, pipe.text_encoder_2.config.projection_dim), "time_ids": torch.randn(2, 6)}
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        pipe.unet(x, torch.tensor([999]), encoder_hidden_states=emb, added_cond_kwargs=added)
    return counter.get_total_flops() / 1e9


def print_costs(net: NPNet) -> None:
    """FLOPs of this NPNet, of the official architecture of the same size, and of one UNet step."""
    cfg = net.config
    ours = forward_gflops(net)
    lines = [f"\nFLOPs (SVD not counted): this NPNet {ours * 1e3:.1f} MFLOPs"]
    if cfg.uses_tokens:
        official = forward_gflops(NPNet(dataclasses.replace(cfg, text_conditioning="official")).eval())
        lines.append(f"; the official architecture {official * 1e3:.1f} MFLOPs ({ours / official:.2f}x)")
    if cfg.text_dim == 2048 and cfg.latent_size == 128:
        step = flops_versus_sdxl(net, 1)[1]
        lines.append(f"; one SDXL CFG UNet step (batch 2, 1024 px) {step:.0f} GFLOPs: NPNet = {ours / step * 100:.4f}%")
    if cfg.text_dim == 64 and cfg.latent_size == 8:
        step = micro_unet_step_gflops()
        lines.append(f"; one micro CFG UNet step {step * 1e3:.1f} MFLOPs: NPNet = {ours / step * 100:.1f}% of a step")
    print("".join(lines))


def flops_versus_sdxl(net: NPNet, steps: int) -> tuple[float, float]:
    """GFLOPs of one NPNet forward and of a ``steps``-step CFG SDXL UNet run (UNet built on the meta device)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.randn(1, 4, 128, 128), torch.randn(1, 77, net.config.text_dim))
    npnet_flops = counter.get_total_flops()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
        x, emb = torch.randn(2, 4, 128, 128), torch.randn(2, 77, 2048)
        added = {"text_embeds": torch.randn(2, 1280), "time_ids": torch.randn(2, 6)}
        with FlopCounterMode(display=False) as counter:
            unet(x, torch.tensor([999]), encoder_hidden_states=emb, added_cond_kwargs=added)
    return npnet_flops / 1e9, counter.get_total_flops() * steps / 1e9


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = NPNet(NPNET_PRESETS[args.preset]).eval()
    parts = {
        "svd branch": net.unet_svd,
        "residual branch (Swin)": net.unet_embedding,
        "text AdaGroupNorm": net.embeeding,
        **({"token branch": net.token_branch} if net.config.uses_tokens else {}),
    }
    print(
        f"NPNet `{args.preset}` on CPU, {args.threads} threads, median of {args.repeats} "
        f"(torch {torch.__version__})\n"
    )
    print(
        f"Parameters: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M, {_param_mb(net):.0f} MB fp32 "
        + ", ".join(f"{k} {_param_mb(m):.1f} MB" for k, m in parts.items())
        + "\n"
    )
    results = {b: profile(net, b, args.repeats) for b in args.batches}
    print("| part | " + " | ".join(f"batch {b} (ms)" for b in args.batches) + " |")
    print("|---|" + "---|" * len(args.batches))
    for name in results[args.batches[0]]:
        print(f"| {name} | " + " | ".join(f"{results[b][name]:.1f}" for b in args.batches) + " |")
    if args.flops:
        print_costs(net)
    if args.flops and net.config.text_dim == 2048:
        npnet_gf, sdxl_gf = flops_versus_sdxl(net, args.steps)
        print(
            f"\nFLOPs: NPNet forward {npnet_gf:.1f} GFLOPs (SVD not counted by the flop counter) vs "
            f"SDXL UNet x{args.steps} steps with CFG (batch 2) at 1024 px {sdxl_gf / 1e3:.0f} TFLOPs: "
            f"NPNet = {npnet_gf / sdxl_gf * 100:.4f}% of the UNet work"
        )
    if args.generation_seconds:
        share = results[1]["total"] / 1e3 / args.generation_seconds * 100 if 1 in results else float("nan")
        print(
            f"\nNPNet batch-1 forward on this CPU = {share:.2f}% of the paper's {args.generation_seconds:.2f} s "
            "RTX 4090 SDXL generation (different devices: an upper bound on the share)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sdxl", choices=sorted(NPNET_PRESETS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--flops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count FLOPs of NPNet vs a full SDXL UNet run (meta device, no weights)",
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--generation-seconds",
        type=float,
        default=11.69,
        help="reference generation time to compare with (paper Table 11: SDXL, 50 DDIM steps, "
        "RTX 4090, 11.69 s)",
    )
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
