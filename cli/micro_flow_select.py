"""Choosing the micro-flow preset's settings on TRAINING captions only (held-out captions stay untouched).

* ``choose_steps``: standard accuracy by step count (and static scheduler shift) on training captions x
  seeds; for each step count the shift that gives standard sampling its best accuracy (as micro-turbo chose
  its sampler), then the step count whose best accuracy is nearest ``target`` (standard fails often but not
  always: the few-step regime where golden noise can matter; ties: fewer steps).
* ``choose_wl``: re-denoise (the inversion arm, NPNet's teacher) accuracy for each candidate w_l at the
  chosen steps on training captions x seeds distinct from collection's; the best w_l (ties: the smaller).
* ``choose_npnet``: NPNet-arm accuracy of each candidate checkpoint (training variants) on training captions x
  seeds distinct from collection's; the best (ties: the one listed first).
"""

from __future__ import annotations

import dataclasses
import functools

from npnet.diffusion.presets import MODEL_PRESETS, ModelPreset
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.worlds.micro.quality import CORRECT_THRESHOLD, split_captions
from npnet.worlds.micro.verifier import MicroVerifier
from npnet.worlds.micro_flow.pipeline import load_micro_flow_pipeline
from npnet.worlds.micro_flow.quality import check_flow_generator

MODEL = "micro-flow"


def flow_presets(generator: str | None = None, **changes) -> dict[str, ModelPreset]:
    """The preset registry with micro-flow loading ``generator`` (None: the shipped folder) and ``changes``."""
    preset = MODEL_PRESETS[MODEL]
    if generator is not None:
        changes["builder"] = functools.partial(load_micro_flow_pipeline, path=generator)
    return {**MODEL_PRESETS, MODEL: dataclasses.replace(preset, **changes)}


def pick_steps(table: dict[int, dict[float, float]], target: float) -> tuple[int, float]:
    """(steps, shift) from {steps: {shift: standard accuracy}} by the module's rule."""
    best = {n: max(by_shift.items(), key=lambda kv: (kv[1], -abs(kv[0] - 1.0))) for n, by_shift in table.items()}
    steps = min(best, key=lambda n: (abs(best[n][1] - target), n))
    return steps, best[steps][0]


def choose_steps(
    generator: str | None,
    steps: list[int],
    shifts: list[float],
    prompts: int = 120,
    seeds: int = 2,
    target: float = 0.35,
) -> dict:
    """Standard accuracy for every (steps, shift) on the first ``prompts`` training captions x seeds 0..seeds-1."""
    table: dict[int, dict[float, float]] = {n: {} for n in steps}
    for shift in shifts:
        report = check_flow_generator(generator, prompts, seeds, steps, shift=shift, split="train")
        for r in report["by_steps"]:
            table[r["steps"]][shift] = r["accuracy"]
    chosen, shift = pick_steps(table, target)
    return {"split": "train", "prompts": prompts, "seeds": seeds, "target": target,
            "accuracy": {str(n): {str(s): a for s, a in v.items()} for n, v in table.items()},
            "steps": chosen, "shift": shift}  # fmt: skip


def pick_wl(accuracy: dict[float, float]) -> float:
    """The w_l with the best re-denoise accuracy (ties: the smaller)."""
    return max(accuracy, key=lambda w: (accuracy[w], -w))


def _score_options(
    method: str,
    options: dict,
    prompts: int,
    seeds: tuple[int, ...],
    steps: int | None,
    service: GoldenNoiseService | None,
    threshold: float,
) -> tuple[dict, dict]:
    """(report fields, {key: accuracy of ``method`` with GenerationRequest options ``options[key]``}) on the first
    ``prompts`` (shuffled) training captions x ``seeds``; the fields carry standard sampling's accuracy."""
    service = service or GoldenNoiseService(device="cpu", offline=True, progress=False)
    pairs = [(c, s) for c in split_captions("train")[:prompts] for s in seeds]

    def accuracy(arm: str, **kw) -> float:
        requests = [GenerationRequest(MODEL, c, seed=s, steps=steps, methods=(arm,), **kw) for c, s in pairs]
        results = service.generate_many(requests, samples_per_call=service.preset(MODEL).batch_size)
        images = [r.images[arm] for r in results]  # one method per request
        return float((MicroVerifier().score(images, [c for c, _ in pairs]) > threshold).float().mean())

    fields = {"split": "train", "prompts": len(pairs) // len(seeds), "seeds": list(seeds),
              "steps": steps or service.preset(MODEL).steps, "standard": accuracy("standard")}  # fmt: skip
    return fields, {key: accuracy(method, **kw) for key, kw in options.items()}


def choose_wl(
    candidates: list[float],
    prompts: int = 80,
    seeds: tuple[int, ...] = (200, 201),
    steps: int | None = None,
    service: GoldenNoiseService | None = None,
    threshold: float = CORRECT_THRESHOLD,
) -> dict:
    """Inversion-arm accuracy per w_l (and standard's) on the first ``prompts`` training captions x ``seeds``."""
    options = {float(w): {"redenoise_guidance_scale": float(w)} for w in candidates}
    fields, by_wl = _score_options("inversion", options, prompts, seeds, steps, service, threshold)
    return fields | {"inversion_by_wl": {str(w): a for w, a in by_wl.items()}, "w_l": pick_wl(by_wl)}


def pick_npnet(accuracy: dict[str, float]) -> str:
    """The candidate with the best NPNet accuracy (ties: the one listed first)."""
    return max(accuracy, key=accuracy.get)


def choose_npnet(
    candidates: dict[str, str],
    prompts: int = 120,
    seeds: tuple[int, ...] = (200, 201),
    steps: int | None = None,
    service: GoldenNoiseService | None = None,
    threshold: float = CORRECT_THRESHOLD,
) -> dict:
    """NPNet-arm accuracy of each {name: checkpoint} (and standard's) on training captions x ``seeds``."""
    options = {name: {"npnet": path} for name, path in candidates.items()}
    fields, by_name = _score_options("npnet", options, prompts, seeds, steps, service, threshold)
    return fields | {"checkpoints": candidates, "npnet_by_candidate": by_name, "chosen": pick_npnet(by_name)}
