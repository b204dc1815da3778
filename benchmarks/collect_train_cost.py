"""What noise-pair collection (Alg. 1) and NPNet training (Alg. 2) cost: measured here, estimated on a GPU.

    python benchmarks/collect_train_cost.py --pairs 8 --train-steps 5 --threads 1

Measured on this machine (CPU): seconds per collected pair with the offline tiny-sdxl backend
(``npnet.data.collect.collect`` end to end: generation, scoring, shard writes), the per-call costs behind
it (one CFG UNet evaluation, one VAE decode) to check the cost model, and seconds per training step
(``npnet.training.train``'s step: forward, MSE, backward, AdamW) for the tiny and the full SDXL NPNet.

Cost model of one pair: ``steps`` CFG UNet calls on the two latents x_T and x'_T (the service denoises
both images as one batch) + 2 single-latent CFG calls (re-denoise: the DDIM step and the inversion
step; each evaluates the conditional and unconditional branch) + 2 VAE decodes + 2 scorer calls + 1 prompt encode. It is checked against
the measured tiny-sdxl pair time. Estimated for SDXL on one GPU from the same model and STATED
per-call costs (flags below), counting a two-latent call as two calls (1024 px is compute-bound).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npnet.data.collect import CollectConfig, collect  # noqa: E402
from npnet.model import NPNET_PRESETS, NPNet  # noqa: E402

PROMPTS = ["a red cube on a wooden table", "a cat wearing a hat", "a lighthouse at dusk", "two apples"]


def brightness(images, prompts) -> torch.Tensor:
    """Offline stand-in for a preference model (mean pixel value); its cost is negligible."""
    return torch.tensor([float(np.asarray(image, dtype=np.float64).mean()) for image in images])


def _median_s(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_collection(pairs: int, steps: int) -> dict[str, float]:
    """Seconds per pair of ``collect`` on tiny-sdxl, and one CFG UNet call and one VAE decode."""
    from npnet.diffusion.redenoise import guided_output
    from npnet.diffusion.sampling import encode_prompt
    from npnet.engine import GoldenNoiseService

    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    pipe = service.load("tiny-sdxl").pipe
    embeds = encode_prompt(pipe, PROMPTS[0])
    x = torch.randn(1, 4, 8, 8)  # (1, 4, h, w) tiny-sdxl latents (64 px)
    x2 = torch.randn(2, 4, 8, 8)  # the standard and inversion images are denoised as one batch
    with torch.inference_mode():
        t_cfg = _median_s(lambda: guided_output(pipe, x, 500, embeds, 5.5), 10)
        t_cfg2 = _median_s(lambda: guided_output(pipe, x2, 500, embeds, 5.5), 10)
        t_vae2 = _median_s(lambda: pipe.vae.decode(x2 / pipe.vae.config.scaling_factor), 10)
        t_enc = _median_s(lambda: encode_prompt(pipe, PROMPTS[1]), 10)
    per_prompt = math.ceil(pairs / len(PROMPTS))
    with tempfile.TemporaryDirectory() as tmp:
        warm = CollectConfig("tiny-sdxl", str(Path(tmp) / "warm"), 1, steps=steps)
        collect(service, warm, PROMPTS[:1], brightness, progress=False)
        prompts = PROMPTS[: math.ceil(pairs / per_prompt)]
        config = CollectConfig("tiny-sdxl", str(Path(tmp) / "npd"), per_prompt, steps=steps, shard_size=pairs)
        result = collect(service, config, prompts, brightness, progress=False)
    times = {"cfg": t_cfg, "cfg2": t_cfg2, "vae2": t_vae2, "enc": t_enc}
    return {"pair": result.seconds_per_sample, "pairs": result.collected, **times}


def measure_train_step(config, batch: int, repeats: int) -> float:
    """Median seconds of one training step (Eq. 8 loss, backward, AdamW) at ``batch``."""
    torch.manual_seed(0)
    net = NPNet(config).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 4, config.latent_size, config.latent_size)  # (B, 4, S, S)
    target = x + 0.1 * torch.randn_like(x)
    cond = torch.randn(batch, config.text_len, config.text_dim)  # (B, 77, D)

    def step():
        loss = torch.nn.functional.mse_loss(net(x, cond), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _median_s(step, repeats)


def train_gflop_per_sample(config) -> float:
    """Forward + backward GFLOPs of one sample (torch's FLOP counter; SVD itself is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = NPNet(config)
    x = torch.randn(1, 4, config.latent_size, config.latent_size)
    with FlopCounterMode(display=False) as counter:
        net(x, torch.randn(1, config.text_len, config.text_dim)).square().mean().backward()
    return counter.get_total_flops() / 1e9


def estimate_gpu(args) -> dict[str, float]:
    """SDXL 1024 px on one GPU from the stated per-call costs (an ESTIMATE, not a measurement)."""
    pair = (
        (2 * args.steps + 2) * args.gpu_cfg_s + 2 * args.gpu_vae_s + 2 * args.gpu_score_s + args.gpu_encode_s
    )
    train_steps = math.ceil(1000 / 64) * args.epochs
    return {
        "pair": pair,
        "collect_1k_min": 1000 * pair / 60,
        "train_1k_min": train_steps * args.gpu_step_s / 60,
    }


def table(m: dict[str, float], args) -> str:
    cm = m["collect"]
    model = args.steps * cm["cfg2"] + 2 * cm["cfg"] + cm["vae2"] + cm["enc"]
    tiny_epoch = math.ceil(1000 / 64) * m["tiny_step"]
    est = estimate_gpu(args)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    cpu = f"this CPU ({os.cpu_count()} cores, {args.threads} torch thread(s), load avg {load})"
    rows = [
        ("Collection, tiny-sdxl 64 px, "
         f"{args.steps} steps", cpu, f"{cm['pair']:.2f} s/pair ({1000 * cm['pair'] / 60:.1f} min per 1k pairs)",
         f"measured: `collect` over {cm['pairs']} pairs incl. scoring and shard writes"),
        ("  cost model check", cpu, f"{model:.2f} s/pair predicted",
         f"{args.steps} x {cm['cfg2'] * 1e3:.1f} ms CFG UNet on both latents + 2 x {cm['cfg'] * 1e3:.1f} ms "
         f"re-denoise CFG calls + {cm['vae2'] * 1e3:.1f} ms VAE (2 images) + {cm['enc'] * 1e3:.1f} ms encode "
         "(measured calls)"),
        ("Training step, tiny NPNet, batch 64", cpu, f"{m['tiny_step']:.3f} s/step "
         f"({args.epochs * tiny_epoch / 60:.1f} min per 1k pairs x {args.epochs} epochs)", "measured"),
        (f"Training step, SDXL NPNet (30.5 M), batch {args.full_batch}", cpu, f"{m['full_step']:.2f} s/step "
         f"(~{m['full_step'] * 64 / args.full_batch:.0f} s per batch of 64 if linear)",
         f"measured; {m['gflop']:.1f} GFLOP per sample fwd+bwd (SVD not counted)"),
        (f"Collection, SDXL 1024 px, {args.steps} steps", "one GPU (ESTIMATE)",
         f"{est['pair']:.2f} s/pair, **{est['collect_1k_min']:.0f} min per 1k pairs**",
         f"assumed {args.gpu_cfg_s} s per CFG UNet call, {args.gpu_vae_s} s per VAE decode, "
         f"{args.gpu_score_s} s per scorer call, {args.gpu_encode_s} s per encode"),
        (f"Training, SDXL NPNet, batch 64, {args.epochs} epochs", "one GPU (ESTIMATE)",
         f"**{est['train_1k_min']:.1f} min per 1k pairs**",
         f"assumed {args.gpu_step_s} s per step of 64 ({m['gflop'] * 64 / 1e3:.1f} TFLOP + batched SVDs)"),
    ]  # fmt: skip
    lines = ["| What | Where | Cost | How |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=8, help="pairs collected for the CPU measurement")
    p.add_argument("--steps", type=int, default=10, help="sampling / re-denoise steps (paper: 10)")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps (median)")
    p.add_argument("--full-batch", type=int, default=4, help="batch for the SDXL NPNet step on CPU")
    p.add_argument("--epochs", type=int, default=30, help="epochs for the per-1k-pairs training figures")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the CPU measurements")
    p.add_argument("--gpu-cfg-s", type=float, default=0.13, help="ASSUMED s per SDXL CFG UNet call, fp16")
    p.add_argument("--gpu-vae-s", type=float, default=0.25, help="ASSUMED s per SDXL VAE decode at 1024 px")
    p.add_argument("--gpu-score-s", type=float, default=0.03, help="ASSUMED s per HPSv2 image score")
    p.add_argument("--gpu-encode-s", type=float, default=0.02, help="ASSUMED s per SDXL prompt encode")
    p.add_argument("--gpu-step-s", type=float, default=0.35, help="ASSUMED s per SDXL NPNet step of 64")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    measured = {
        "collect": measure_collection(args.pairs, args.steps),
        "tiny_step": measure_train_step(NPNET_PRESETS["tiny"], 64, args.train_steps),
        "full_step": measure_train_step(
            NPNET_PRESETS["sdxl"], args.full_batch, max(2, args.train_steps // 2)
        ),
        "gflop": train_gflop_per_sample(NPNET_PRESETS["sdxl"]),
    }
    text = table(measured, args)
    print(text)
    print(
        "\nGPU rows are estimates: per-call costs are assumptions for an RTX 4090 / A100-class GPU "
        "(SDXL fp16 ~7.5 CFG it/s; VAE decoded in fp32 as SDXL's VAE upcasts), not measurements; "
        "pass measured values with --gpu-*-s. The cost model is checked against the tiny backend above."
    )
    return text


if __name__ == "__main__":
    main(parse_args())
