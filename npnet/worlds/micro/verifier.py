"""Programmatic image-caption verifier of the micro world (the role HPSv2 / GenEval play for SDXL).

The caption is parsed with the grammar; objects are detected by colour segmentation (connected components of
pixels nearest each palette colour), each component's shape is classified softly from its bounding-box fill ratio
and its top/bottom width profile and corner fill, then object presence, count and relative position are scored with partial
credit. Score = presence x count x relation, each in [0, 1], so it is continuous and 1 for a perfect image:
presence is the matched components' probability of the asked shape (product over the two objects of a relation,
mean over the copies of a count), count = exp(-|#detected - #asked|), relation a sigmoid of the centre offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from npnet.errors import UserError
from npnet.worlds.micro.grammar import BACKGROUND, COLOURS, PALETTE, SHAPES, CaptionSpec, parse_caption

_REFS = np.array([PALETTE[c] for c in COLOURS] + [BACKGROUND], dtype=np.float32)  # (C+1, 3)
# Typical (fill ratio, top-width / bottom-width, top-corner fill, bottom-corner fill) of each shape.
_SHAPE_PROTOTYPES = {
    "circle": (0.78, 1.0, 0.3, 0.3),
    "square": (1.0, 1.0, 1.0, 1.0),
    "triangle": (0.52, 0.22, 0.0, 0.75),
}
_SHAPE_SCALE = np.array([0.08, 0.15, 0.2, 0.2], dtype=np.float32)


@dataclass(frozen=True)
class Detection:
    """One connected component of a palette colour."""

    colour: str
    x: float
    y: float
    area: int
    shape_probs: dict[str, float]


def _shape_features(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding-box fill ratio, top-third / bottom-third width, and fill of the top and bottom bbox corners."""
    rows, cols = np.nonzero(mask)
    box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # (h, w)
    height, width = box.shape
    fill = box.mean()
    third = max(1, height // 3)
    widths = box.sum(axis=1).astype(np.float32)  # (h,)
    ratio = min(widths[:third].mean() / max(widths[-third:].mean(), 1.0), 1.5)
    ch, cw = max(1, round(height / 4)), max(1, round(width / 4))
    top = (box[:ch, :cw].mean() + box[:ch, -cw:].mean()) / 2
    bottom = (box[-ch:, :cw].mean() + box[-ch:, -cw:].mean()) / 2
    return float(fill), float(ratio), float(top), float(bottom)


def _shape_probs(mask: np.ndarray) -> dict[str, float]:
    """Soft-max over negative scaled distances to each shape's prototype features."""
    feats = np.array(_shape_features(mask), dtype=np.float32)
    logits = {
        s: -float((((feats - np.array(p)) / _SHAPE_SCALE) ** 2).sum()) / 2
        for s, p in _SHAPE_PROTOTYPES.items()
    }
    top = max(logits.values())
    exp = {s: np.exp(v - top) for s, v in logits.items()}
    total = sum(exp.values())
    return {s: float(exp[s] / total) for s in SHAPES}


class MicroVerifier:
    """``score(images, prompts) -> Tensor[B]`` in [0, 1]: does the image show what the caption says?"""

    name = "micro"
    higher_is_better = True
    units = "score in [0, 1]"

    def __init__(self, colour_tolerance: float = 90.0, min_area: int = 12, relation_softness: float = 2.0):
        self.colour_tolerance = colour_tolerance
        self.min_area = min_area
        self.relation_softness = relation_softness

    def __call__(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        return self.score(images, prompts)

    def score(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        if len(images) != len(prompts):
            raise UserError(
                f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image"
            )
        return torch.tensor([self.score_one(im, p) for im, p in zip(images, prompts)], dtype=torch.float32)

    def detect(self, image: Image.Image) -> list[Detection]:
        """Connected components of each palette colour (pixels nearest that colour within the tolerance)."""
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
        dist = np.linalg.norm(pixels[:, :, None, :] - _REFS[None, None], axis=-1)  # (H, W, C+1)
        label = dist.argmin(-1)
        label[dist.min(-1) > self.colour_tolerance] = len(_REFS) - 1
        found = []
        for ci, colour in enumerate(COLOURS):
            components, n = ndimage.label(label == ci)
            for k in range(1, n + 1):
                mask = components == k
                area = int(mask.sum())
                if area < self.min_area:
                    continue
                ys, xs = np.nonzero(mask)
                found.append(Detection(colour, float(xs.mean()), float(ys.mean()), area, _shape_probs(mask)))
        return found

    def score_one(self, image: Image.Image, prompt: str) -> float:
        spec = parse_caption(prompt)
        found = self.detect(image)
        matches = _match(spec, found)
        probs = [
            0.0 if m is None else found[m].shape_probs[shape] for m, (_, shape) in zip(matches, spec.objects)
        ]
        # Two different objects must both be right; copies of one object earn credit per copy found.
        presence = float(np.prod(probs)) if spec.kind == "relation" else float(np.mean(probs))
        count = float(np.exp(-abs(len(found) - len(spec.objects))))
        relation = 1.0
        if spec.relation is not None:
            a, b = matches
            relation = 0.0 if a is None or b is None else self._relation(spec.relation, found[a], found[b])
        return presence * count * relation

    def _relation(self, relation: str, a: Detection, b: Detection) -> float:
        """Soft check that ``a`` is ``relation`` ``b`` (sigmoid of the signed centre offset in pixels)."""
        offset = {"left of": b.x - a.x, "right of": a.x - b.x, "above": b.y - a.y, "below": a.y - b.y}[
            relation
        ]
        return float(1.0 / (1.0 + np.exp(-(offset - 2.0) / self.relation_softness)))


def _match(spec: CaptionSpec, found: list[Detection]) -> list[int | None]:
    """Greedy one-to-one assignment of caption objects to detections of the same colour (best shape first)."""
    pairs = sorted(
        (
            (det.shape_probs[shape], i, j)
            for i, (colour, shape) in enumerate(spec.objects)
            for j, det in enumerate(found)
            if det.colour == colour
        ),
        reverse=True,
    )
    assigned: list[int | None] = [None] * len(spec.objects)
    used: set[int] = set()
    for _, i, j in pairs:
        if assigned[i] is None and j not in used:
            assigned[i], used = j, used | {j}
    return assigned
