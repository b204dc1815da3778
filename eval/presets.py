"""One-click evaluation presets reproducing the paper's settings (Table 2, Table 3) and offline runs.

The Table 2 SDXL presets sample with DDIM (``scheduler="ddim"``): Table 11's DDIM row equals Table 2's
SDXL Pick-a-Pic row, so the headline numbers used DDIM, while the ``sdxl`` model preset keeps DPM-Solver++
2M of the official inference script. The paper presets draw one test seed per prompt uniformly in
[0, 100] (``seed_scheme="paper"``, App. D.5 / Table 19; the paper's own seed list is not released), with
base seed 0 (``seeds=(0,)``); ``PRESET_NOTES`` says so per preset (shown with the preset).
"""

from __future__ import annotations

from typing import Any

PAPER_SIX = ("pickscore", "hpsv2", "aes", "imagereward", "clipscore", "mps")
_PAPER = {
    "seeds": (0,),
    "seed_scheme": "paper",
    "methods": ("standard", "inversion", "npnet"),
    "metrics": PAPER_SIX,
}
_TABLE2_SDXL = {"model": "sdxl", "scheduler": "ddim", **_PAPER}
_DDIM = "DDIM sampling (Table 11's DDIM row = Table 2's SDXL row; the model preset's default is DPM++ 2M)"
_PAPER_SEEDS = "one seed per prompt drawn in [0, 100] (App. D.5; base seed 0)"
_TABLE2_SDXL_NOTE = f"{_DDIM}, 50 steps, CFG 5.5; {_PAPER_SEEDS}"

EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "Table 2 — SDXL, Pick-a-Pic first 100, six metrics": {
        "prompts": "pickapic",
        "limit": 100,
        **_TABLE2_SDXL,
    },
    "Table 2 — SDXL, DrawBench 200, six metrics": {
        "prompts": "drawbench",
        "limit": 200,
        **_TABLE2_SDXL,
    },
    "Table 2 — SDXL, HPD v2 first 100, six metrics": {
        "prompts": "hpdv2",
        "limit": 100,
        **_TABLE2_SDXL,
    },
    "Table 2 — DreamShaper-xl-v2-turbo, Pick-a-Pic first 100": {
        "model": "dreamshaper-xl-v2-turbo",
        "prompts": "pickapic",
        "limit": 100,
        **_PAPER,
    },
    "Table 3 — Hunyuan-DiT, Pick-a-Pic first 100": {
        "model": "hunyuan-dit",
        "prompts": "pickapic",
        "limit": 100,
        **_PAPER,
    },
    "Best-of-4 vs NPNet — SDXL, Pick-a-Pic first 100 (HPSv2 verifier)": {
        "model": "sdxl",
        "prompts": "pickapic",
        "limit": 100,
        "seeds": (0,),
        "methods": ("standard", "npnet", "best-of-4", "npnet+best-of-4"),
        "metrics": ("hpsv2", "pickscore"),
        "verifier": "hpsv2",
    },
    "Offline — micro-turbo (5 steps), held-out prompts, micro verifier": {
        "model": "micro-turbo",
        "prompts": "micro-heldout",
        "limit": 85,
        "seeds": (0, 1, 2),
        "methods": ("standard", "inversion", "npnet"),
        "metrics": ("micro",),
    },
    "Offline — micro world, held-out prompts, micro verifier": {
        "model": "micro",
        "prompts": "micro-heldout",
        "limit": 50,
        "seeds": (0, 1, 2, 3),
        "methods": ("standard", "inversion", "npnet"),
        "metrics": ("micro",),
    },
    "Offline — tiny SDXL plumbing check (toy metrics)": {
        "model": "tiny-sdxl",
        "prompts": "examples",
        "limit": 4,
        "seeds": (0, 1),
        "methods": ("standard", "inversion", "npnet"),
        "metrics": ("toy-brightness", "toy-colorfulness"),
        "steps": 4,
    },
}

# What each preset reproduces and how (sampler, seeds); keys are EVAL_PRESETS names (stable identifiers).
PRESET_NOTES: dict[str, str] = {
    "Table 2 — SDXL, Pick-a-Pic first 100, six metrics": _TABLE2_SDXL_NOTE,
    "Table 2 — SDXL, DrawBench 200, six metrics": _TABLE2_SDXL_NOTE,
    "Table 2 — SDXL, HPD v2 first 100, six metrics": _TABLE2_SDXL_NOTE,
    "Table 2 — DreamShaper-xl-v2-turbo, Pick-a-Pic first 100": f"the model preset's sampler; {_PAPER_SEEDS}",
    "Table 3 — Hunyuan-DiT, Pick-a-Pic first 100": f"the model preset's sampler; {_PAPER_SEEDS}",
    "Best-of-4 vs NPNet — SDXL, Pick-a-Pic first 100 (HPSv2 verifier)": "DPM++ 2M (model preset); seed 0 "
    "for every prompt, best-of-4 adds 3 derived seeds",
    "Offline — micro-turbo (5 steps), held-out prompts, micro verifier": "5 DDIM steps (trailing), CFG 5, "
    "re-denoise w_l 12; seeds 0-2 for every prompt (fixed): the setting of assets/micro/turbo/results.md",
    "Offline — micro world, held-out prompts, micro verifier": "seeds 0-3 for every prompt (fixed)",
    "Offline — tiny SDXL plumbing check (toy metrics)": "seeds 0, 1 for every prompt (fixed)",
}
