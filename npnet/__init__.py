"""NPNet Studio: golden noise for diffusion models (Zhou et al., arXiv 2411.09502).

The public face::

    from npnet import NPNet, NPNetConfig, load_npnet, save_npnet, save_official, GoldenNoiseService, GenerationRequest

Names are imported on first use, so ``import npnet.io`` does not pull in torch or diffusers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "NPNet": "npnet.checkpoints",
    "NPNetConfig": "npnet.model",
    "NPNET_PRESETS": "npnet.model",
    "load_npnet": "npnet.checkpoints",
    "save_npnet": "npnet.checkpoints",
    "save_official": "npnet.checkpoints",
    "GoldenNoiseService": "npnet.engine",
    "GenerationRequest": "npnet.engine",
    "GenerationResult": "npnet.engine",
    "MODEL_PRESETS": "npnet.diffusion.presets",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'npnet' has no attribute {name!r}")
