"""``python -m cli micro-turbo``: golden noise at the few-step micro preset, against honest controls.

    python -m cli micro-turbo evaluate --npnet assets/micro/npnet-turbo.safetensors --out assets/micro/turbo
    python -m cli micro-turbo evaluate --npnet assets/micro/npnet-turbo.safetensors --steps 4 --out assets/micro/turbo/steps-4
    python -m cli micro-turbo curve assets/micro/turbo assets/micro/turbo/steps-4 ... --out assets/micro/turbo/steps.md
    python -m cli micro-turbo agreement --data runs/micro_turbo/npd --npnet runs/micro_turbo/npnet/best/npnet.safetensors
    python -m cli micro-turbo ablations --data runs/micro_turbo/npd --runs runs/micro_turbo/ablations --out assets/micro/turbo/ablations

``evaluate`` scores, on the held-out captions x seeds (never used to choose anything), with the micro
verifier (correct iff score > 0.5), per (caption, seed):

* standard: x_T at the preset's settings (5 DDIM steps, trailing; ``--steps`` for the steps curve, the same
  NPNet at every step count); standard +1 step (compute-matched: one NPNet forward costs about one micro
  UNet step);
* inversion: x'_T by re-denoise sampling at the preset's w_l (NPNet's teacher and upper bound);
* npnet: NPNet(x_T, c);
* random-direction: x_T + r ||NPNet(x_T) - x_T|| / ||r||, r Gaussian (seeded): the same change norm,
  no learned direction;
* scaled-noise: x_T ||NPNet(x_T)|| / ||x_T||: the NPNet's norm, x_T's direction.

Accuracy with prompt-clustered CIs, rescued/broken vs standard and exact McNemar tests come from
``eval.stats.binary_stats``; every per-sample score is written to ``rows.csv``. ``ablations`` (Table 4's
rows: no SVD branch, no residual branch, with / without data selection) lives in ``cli.micro_ablations``;
the token-conditioned NPNet's commands (``token-candidates``, ``compare``, ``compute-matched``) in
``cli.micro_tokens``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from cli.common import run_command
from cli.micro_ablations import (
    ablation_config,
    ablation_markdown,
    add_ablation_parser,
    run_ablations,
    validation_agreement,
)
from cli.micro_tokens import add_token_parsers, run_token_command
from eval.stats import accuracy_ci, binary_stats
from npnet.checkpoints import load_npnet
from npnet.diffusion.presets import get_model_preset
from npnet.diffusion.sampling import encode_prompt, run_pipeline, with_scheduler
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.errors import OneLineParser
from npnet.io import atomic_write_json, atomic_write_text
from npnet.worlds.micro.grammar import heldout_captions
from npnet.worlds.micro.verifier import MicroVerifier

MODEL = "micro-turbo"
ARMS = ("standard", "standard+1", "inversion", "npnet", "random-direction", "scaled-noise")


def control_latents(x: torch.Tensor, golden: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The same-norm controls of NPNet's change for one x_T (1, 4, h, w)."""
    r = torch.randn(x.shape, generator=torch.Generator().manual_seed(10_000 + seed))  # (1, 4, h, w)
    return {
        "random-direction": x + r * (golden - x).norm() / r.norm(),
        "scaled-noise": x * golden.norm() / x.norm(),
    }


def score_sample(
    service: GoldenNoiseService, verifier, prompt: str, seed: int, npnet: str, steps: int | None = None
) -> dict[str, float]:
    """Every arm's verifier score for one (caption, seed); ``steps`` None: the preset's."""
    methods = ("standard", "inversion", "npnet")
    request = GenerationRequest(MODEL, prompt, seed=seed, steps=steps, methods=methods, npnet=npnet)
    result = service.generate(request)
    s = result.settings
    extra = control_latents(result.latents["standard"], result.latents["npnet"], seed)
    with service.lease(MODEL, with_npnet=False) as loaded:
        view = with_scheduler(loaded.pipe, s["scheduler"], progress=False)
        embeds = encode_prompt(loaded.pipe, prompt)
        controls = run_pipeline(view, embeds, torch.cat(list(extra.values())), s["steps"], s["guidance_scale"],
                                s["width"], s["height"], seed=seed)  # fmt: skip
        plus_one = run_pipeline(view, embeds, result.latents["standard"], s["steps"] + 1, s["guidance_scale"],
                                s["width"], s["height"], seed=seed)  # fmt: skip
    images = [
        result.images["standard"],
        plus_one[0],
        result.images["inversion"],
        result.images["npnet"],
        *controls,
    ]
    return dict(zip(ARMS, verifier.score(images, [prompt] * len(images)).tolist()))


def evaluate(
    npnet: str, out: Path, seeds: tuple[int, ...], limit: int | None, steps: int | None = None
) -> dict:
    captions = heldout_captions()[:limit] if limit else heldout_captions()
    service, verifier = GoldenNoiseService(device="cpu", offline=True, progress=False), MicroVerifier()
    rows = [
        {
            "prompt_index": p,
            "prompt": caption,
            "seed": seed,
            **score_sample(service, verifier, caption, seed, npnet, steps),
        }  # fmt: skip
        for p, caption in enumerate(captions)
        for seed in seeds
    ]
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "rows.csv", frame.to_csv(index=False))
    steps = steps or get_model_preset(MODEL).steps
    results = summarize_arms(frame) | {
        "npnet": npnet,
        "seeds": list(seeds),
        "captions": len(captions),
        "steps": steps,
    }
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    return results


def summarize_arms(frame: pd.DataFrame) -> dict:
    """Accuracy [95% CI] per arm; rescued / broken / McNemar / pp gain vs standard and vs random-direction."""
    clusters = frame["prompt_index"].to_numpy()
    arms = {}
    for arm in ARMS:
        acc, low, high = accuracy_ci(frame[arm], clusters=clusters)
        arms[arm] = {"accuracy": acc, "ci": [low, high]}
        if arm != "standard":
            arms[arm]["vs_standard"] = binary_stats(frame[arm], frame["standard"], clusters=clusters)
    arms["npnet"]["vs_random_direction"] = binary_stats(
        frame["npnet"], frame["random-direction"], clusters=clusters
    )
    return {"pairs": len(frame), "arms": arms}


def markdown(results: dict) -> str:
    lines = [
        f"# micro-turbo, {results.get('steps', 5)} steps: {results['captions']} held-out captions x seeds "
        f"{results['seeds']} = {results['pairs']} samples\n",
        "| arm | accuracy [95% CI] | rescued / broken vs standard | McNemar p | gain pp [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for arm, r in results["arms"].items():
        acc = f"{100 * r['accuracy']:.1f}% [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]"
        v = r.get("vs_standard")
        if v is None:
            lines.append(f"| {arm} | {acc} | | | |")
            continue
        gain = f"{v['accuracy_diff_pp']:+.1f} [{v['accuracy_diff_pp_ci_low']:+.1f}, {v['accuracy_diff_pp_ci_high']:+.1f}]"
        lines.append(f"| {arm} | {acc} | {v['rescued']} / {v['broken']} | {v['mcnemar_p']:.2g} | {gain} |")
    c = results["arms"]["npnet"]["vs_random_direction"]
    lines.append(
        f"\nNPNet vs the same-norm random direction: {c['rescued']} rescued / {c['broken']} broken, exact McNemar "
        f"p = {c['mcnemar_p']:.2g}, {c['accuracy_diff_pp']:+.1f} pp [{c['accuracy_diff_pp_ci_low']:+.1f}, "
        f"{c['accuracy_diff_pp_ci_high']:+.1f}]."
    )
    return "\n".join(lines) + "\n"


def steps_curve(folders: list[Path]) -> str:
    """One markdown row per ``evaluate`` folder (one step count): accuracy of each arm, NPNet's gain."""
    default = get_model_preset(MODEL).steps  # results written before "steps" was recorded ran at the preset's
    runs = [{"steps": default} | json.loads((Path(f) / "results.json").read_text()) for f in folders]
    runs.sort(key=lambda r: r["steps"])
    head = " | ".join(ARMS)
    lines = [f"| steps | {head} | NPNet gain pp [95% CI] | rescued / broken | McNemar p |",
             "|---" * (len(ARMS) + 4) + "|"]  # fmt: skip
    for r in runs:
        accs = " | ".join(f"{100 * r['arms'][arm]['accuracy']:.1f}%" for arm in ARMS)
        v = r["arms"]["npnet"]["vs_standard"]
        gain = f"{v['accuracy_diff_pp']:+.1f} [{v['accuracy_diff_pp_ci_low']:+.1f}, {v['accuracy_diff_pp_ci_high']:+.1f}]"
        lines.append(
            f"| {r['steps']} | {accs} | {gain} | {v['rescued']} / {v['broken']} | {v['mcnemar_p']:.2g} |"
        )
    return "\n".join(lines) + "\n"


def write_curve(folders: list[str], out: str | None) -> str:
    table = steps_curve([Path(f) for f in folders])
    if out:
        atomic_write_text(Path(out), table)
    return table


def agreement(data: str, npnet: str, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """On the NPD's validation pairs (all, kept or not): cosine and explained energy of NPNet(x_T) - x_T
    against the re-denoise change x'_T - x_T (the issue's measure of whether NPNet learned its target)."""
    return validation_agreement(data, load_npnet(npnet), val_fraction, seed)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m cli micro-turbo", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="every arm on the held-out captions x seeds")
    ev.add_argument("--npnet", required=True, help="the micro-turbo NPNet checkpoint")
    ev.add_argument("--out", required=True, help="results folder (rows.csv, results.json, results.md)")
    ev.add_argument("--seeds", default="0,1,2", help="comma list (default 0,1,2)")
    ev.add_argument("--limit", type=int, default=None, help="first N held-out captions")
    ev.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's 5)")
    ag = sub.add_parser("agreement", help="NPNet(x_T) - x_T vs x'_T - x_T on the NPD's validation pairs")
    ag.add_argument("--data", required=True)
    ag.add_argument("--npnet", required=True)
    ag.add_argument("--val-fraction", type=float, default=0.1)
    cu = sub.add_parser("curve", help="a steps-curve table from several evaluate folders")
    cu.add_argument("folders", nargs="+", help="evaluate --out folders (one per step count)")
    cu.add_argument("--out", default=None, help="also write the table to this markdown file")
    add_ablation_parser(sub)
    add_token_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.command == "ablations":
        return run_command(lambda: print(ablation_markdown(run_ablations(ablation_config(args)))))
    if args.command in ("token-candidates", "compare", "compute-matched"):
        return run_command(lambda: print(run_token_command(args)))
    if args.command == "curve":
        return run_command(lambda: print(write_curve(args.folders, args.out)))
    if args.command == "agreement":
        return run_command(lambda: print(json.dumps(agreement(args.data, args.npnet, args.val_fraction))))
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    return run_command(
        lambda: print(markdown(evaluate(args.npnet, Path(args.out), seeds, args.limit, args.steps)))
    )


if __name__ == "__main__":
    sys.exit(main())
