"""Model families, one registered object each (see ``base.Family``); ``family_of(pipe)`` finds a pipeline's."""

from __future__ import annotations

from npnet.diffusion.families.base import FLOW, NOISE, Family
from npnet.diffusion.families.flux import FLUX
from npnet.diffusion.families.hunyuan_dit import HUNYUAN_DIT
from npnet.diffusion.families.sd3 import SD3
from npnet.diffusion.families.sd15 import SD15
from npnet.diffusion.families.sdxl import SDXL
from npnet.errors import UserError

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to the registry (by its name); returns it."""
    FAMILIES[family.name] = family
    return family


for _family in (SDXL, HUNYUAN_DIT, SD15, SD3, FLUX):
    register(_family)


def get_family(name: str) -> Family:
    if name in FAMILIES:
        return FAMILIES[name]
    raise UserError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")


def family_of(pipe) -> Family:
    """The family driving ``pipe``'s class (or a base class of it)."""
    for cls in type(pipe).__mro__:
        for family in FAMILIES.values():
            if cls.__name__ in family.pipeline_classes:
                return family
    supported = ", ".join(c for f in FAMILIES.values() for c in f.pipeline_classes)
    raise UserError(f"{type(pipe).__name__} is not a supported pipeline; supported: {supported}")


__all__ = ["FAMILIES", "FLOW", "NOISE", "Family", "family_of", "get_family", "register"]
