"""The Generate form: the settings a user enters, turned into one validated ``GenerationRequest``.

The Generate button, the cached examples and the Seeds tab all build their requests here, so a field
is added, checked or defaulted in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from npnet.engine import GenerationRequest
from npnet.errors import UserError
from studio.service import StudioService
from studio.sessions import NO_SESSION


def whole_number(name: str, value: Any, low: int = 0) -> int:
    """A form value that must be a whole number >= ``low`` (Gradio sends floats); ValueError saying the fix."""
    if value is None or value == "" or isinstance(value, bool):
        raise UserError(f"{name} is empty; enter a whole number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number; got {value!r}") from None
    if not math.isfinite(number) or number != int(number) or number < low:
        raise UserError(f"{name} must be a whole number >= {low}; got {value}")
    return int(number)


@dataclass(frozen=True)
class GenerateForm:
    """The Generate tab's fields as Gradio delivers them (unvalidated), in the tab's input order."""

    prompt: Any
    negative_prompt: Any
    seed: Any
    model: Any
    npnet: Any
    scheduler: Any
    steps: Any
    guidance_scale: Any
    width: Any
    height: Any
    redenoise_cfg: Any = None  # w_l of the re-denoise DDIM step (inversion method); empty: the preset's
    inversion_cfg: Any = None  # w_w of the inversion step; empty: the preset's (1.0)
    redenoise_steps: Any = None  # DDIM step size 1000/N; empty: the sampling schedule

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls, service: StudioService, model: str, prompt: str, seed: int) -> GenerateForm:
        """The form as a fresh page shows it for ``model``: its preset's settings and default NPNet."""
        p = service.preset(model)
        return cls(prompt, "", seed, model, service.default_npnet(model), p.scheduler, p.steps,
                   p.guidance_scale, p.width, p.height)  # fmt: skip

    def request(self, service: StudioService, methods, session: str = NO_SESSION) -> GenerationRequest:
        """Validate the form and build the request (UserError with the fix on bad input)."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UserError("the prompt is empty: describe the image you want, e.g. 'a red circle'")
        models = service.models()
        if self.model not in models:
            raise UserError(f"model {self.model!r} is not available here; choose one of {', '.join(models)}")
        if not methods:
            raise UserError("choose at least one method (standard, npnet, inversion) under Advanced options")
        return GenerationRequest(
            model=self.model,
            prompt=self.prompt.strip(),
            negative_prompt=self.negative_prompt or "",
            seed=whole_number("seed", 0 if self.seed is None else self.seed),
            steps=whole_number("steps", self.steps, 1),
            guidance_scale=finite_number("guidance scale", self.guidance_scale),
            scheduler=self.scheduler or None,
            width=whole_number("width", self.width, 1),
            height=whole_number("height", self.height, 1),
            methods=tuple(methods),
            npnet=service.npnet_override(self.model, self.npnet, session),
            redenoise_guidance_scale=_optional(finite_number, "re-denoise CFG w_l", self.redenoise_cfg),
            inversion_guidance_scale=_optional(finite_number, "inversion CFG w_w", self.inversion_cfg),
            redenoise_steps=_optional(whole_number, "re-denoise steps", self.redenoise_steps, 2),
        )



def finite_number(name: str, value: Any) -> float:
    """A form value that must be a finite number; UserError saying so otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise UserError(f"{name} must be a finite number; got {value}")
    return number


def _optional(parse, name: str, value: Any, *args):
    """None for an empty optional field (the preset's default), else the parsed value."""
    return None if value is None or value == "" else parse(name, value, *args)
