"""The six evaluation arms of a few-step micro preset (micro-turbo, micro-flow), with honest controls.

Per (held-out caption, seed), scored by the micro verifier (correct iff score > 0.5):

* standard: x_T at the preset's settings (``steps`` for the steps curve, the same NPNet at every step count);
  standard +1 step (compute-matched: one NPNet forward costs about one micro denoiser step);
* inversion: x'_T by re-denoise sampling at the preset's w_l (NPNet's teacher and upper bound);
* npnet: NPNet(x_T, c);
* random-direction: x_T + r ||NPNet(x_T) - x_T|| / ||r||, r Gaussian (seeded): the same change norm,
  no learned direction;
* scaled-noise: x_T ||NPNet(x_T)|| / ||x_T||: the NPNet's norm, x_T's direction.

Accuracy with prompt-clustered CIs, rescued/broken vs standard and exact McNemar tests come from
``eval.stats.binary_stats``; every per-sample score is written to ``rows.csv``. Everything goes through the
model's family (SDXL-class UNet or SD3-class flow transformer), so one code path serves both presets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from eval.stats import accuracy_ci, binary_stats
from npnet.diffusion.presets import get_model_preset
from npnet.diffusion.sampling import encode_prompt, run_pipeline, with_scheduler
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.io import atomic_write_json, atomic_write_text
from npnet.worlds.micro.grammar import heldout_captions
from npnet.worlds.micro.verifier import MicroVerifier

ARMS = ("standard", "standard+1", "inversion", "npnet", "random-direction", "scaled-noise")


def control_latents(x: torch.Tensor, golden: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The same-norm controls of NPNet's change for one x_T (1, C, h, w)."""
    r = torch.randn(x.shape, generator=torch.Generator().manual_seed(10_000 + seed))  # (1, C, h, w)
    return {
        "random-direction": x + r * (golden - x).norm() / r.norm(),
        "scaled-noise": x * golden.norm() / x.norm(),
    }


def score_sample(
    service: GoldenNoiseService,
    verifier,
    prompt: str,
    seed: int,
    npnet: str | None,
    steps: int | None = None,
    model: str = "micro-turbo",
) -> dict[str, float]:
    """Every arm's verifier score for one (caption, seed); ``steps`` None: the preset's."""
    methods = ("standard", "inversion", "npnet")
    request = GenerationRequest(model, prompt, seed=seed, steps=steps, methods=methods, npnet=npnet)
    result = service.generate(request)
    s = result.settings
    extra = control_latents(result.latents["standard"], result.latents["npnet"], seed)
    with service.lease(model, with_npnet=False) as loaded:
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
    npnet: str | None,
    out: Path,
    seeds: tuple[int, ...],
    limit: int | None,
    steps: int | None = None,
    model: str = "micro-turbo",
    service: GoldenNoiseService | None = None,
) -> dict:
    """Every arm on the held-out captions x ``seeds``: rows.csv, results.json, results.md under ``out``."""
    captions = heldout_captions()[:limit] if limit else heldout_captions()
    service = service or GoldenNoiseService(device="cpu", offline=True, progress=False)
    verifier = MicroVerifier()
    rows = [
        {
            "prompt_index": p,
            "prompt": caption,
            "seed": seed,
            **score_sample(service, verifier, caption, seed, npnet, steps, model),
        }  # fmt: skip
        for p, caption in enumerate(captions)
        for seed in seeds
    ]
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "rows.csv", frame.to_csv(index=False))
    steps = steps or service.preset(model).steps
    results = summarize_arms(frame) | {
        "model": model,
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
        f"# {results.get('model', 'micro-turbo')}, {results.get('steps', 5)} steps: {results['captions']} "
        f"held-out captions x seeds {results['seeds']} = {results['pairs']} samples\n",
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


def steps_curve(folders: list[Path], model: str = "micro-turbo") -> str:
    """One markdown row per ``evaluate`` folder (one step count): accuracy of each arm, NPNet's gain."""
    default = get_model_preset(model).steps  # results written before "steps" was recorded ran at the preset's
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


def write_curve(folders: list[str], out: str | None, model: str = "micro-turbo") -> str:
    table = steps_curve([Path(f) for f in folders], model)
    if out:
        atomic_write_text(Path(out), table)
    return table
