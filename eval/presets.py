"""One-click evaluation presets reproducing the paper's settings (Table 2, Table 3) and offline runs."""

from __future__ import annotations

from typing import Any

PAPER_SIX = ("pickscore", "hpsv2", "aes", "imagereward", "clipscore", "mps")
_PAPER = {"seeds": (0,), "methods": ("standard", "inversion", "npnet"), "metrics": PAPER_SIX}

EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "Table 2 — SDXL, Pick-a-Pic first 100, six metrics": {
        "model": "sdxl",
        "prompts": "pickapic",
        "limit": 100,
        **_PAPER,
    },
    "Table 2 — SDXL, DrawBench 200, six metrics": {
        "model": "sdxl",
        "prompts": "drawbench",
        "limit": 200,
        **_PAPER,
    },
    "Table 2 — SDXL, HPD v2 first 100, six metrics": {
        "model": "sdxl",
        "prompts": "hpdv2",
        "limit": 100,
        **_PAPER,
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
