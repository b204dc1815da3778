"""Seeded caption grammar of the micro world: coloured shapes, counts and relative positions.

Three caption kinds, GenEval's categories in miniature:
- ``single``:   "a red circle"
- ``count``:    "three green squares"           (2-4 objects of one colour and shape)
- ``relation``: "a blue square to the left of a yellow triangle"  (left of / right of / above / below)

A fixed held-out set of captions (attribute combinations) never appears in training.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from npnet.errors import UserError

IMAGE_SIZE = 64
BACKGROUND = (255, 255, 255)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
RELATION_PHRASES: dict[str, str] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
KINDS: tuple[str, ...] = ("single", "count", "relation")
KIND_WEIGHTS: tuple[float, ...] = (0.3, 0.3, 0.4)
SPLITS: tuple[str, ...] = ("train", "heldout")
# Single-object captions held out explicitly; count and relation captions are held out by a stable hash.
HELDOUT_SINGLES: frozenset[tuple[str, str]] = frozenset({("green", "triangle"), ("blue", "circle")})
HELDOUT_PERCENT = 15


@dataclass(frozen=True)
class SceneObject:
    """One flat-colour object: shape, colour name, centre (x, y) and size in pixels (64x64 canvas)."""

    shape: str
    colour: str
    x: float
    y: float
    size: float


@dataclass(frozen=True)
class CaptionSpec:
    """What a caption asks for: a kind, the (colour, shape) of each object and an optional relation.

    For ``relation`` captions ``relation`` describes ``objects[0]`` relative to ``objects[1]``.
    """

    kind: str
    objects: tuple[tuple[str, str], ...]
    relation: str | None = None


@dataclass(frozen=True)
class Scene:
    """A caption, its structured meaning and one concrete layout of the objects."""

    caption: str
    spec: CaptionSpec
    objects: tuple[SceneObject, ...]


def plural(shape: str) -> str:
    return shape + "s"


def caption_of(spec: CaptionSpec) -> str:
    """The canonical caption string of a spec."""
    if spec.kind == "single":
        colour, shape = spec.objects[0]
        return f"a {colour} {shape}"
    if spec.kind == "count":
        colour, shape = spec.objects[0]
        return f"{COUNT_WORDS[len(spec.objects)]} {colour} {plural(shape)}"
    (c1, s1), (c2, s2) = spec.objects
    return f"a {c1} {s1} {RELATION_PHRASES[spec.relation]} a {c2} {s2}"


def _stable_percent(text: str) -> int:
    return int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % 100


def is_heldout(spec: CaptionSpec) -> bool:
    """True when the caption belongs to the fixed held-out set (never used for training)."""
    if spec.kind == "single":
        return spec.objects[0] in HELDOUT_SINGLES
    return _stable_percent(caption_of(spec)) < HELDOUT_PERCENT


@cache
def all_specs() -> tuple[CaptionSpec, ...]:
    """Every caption the grammar can produce, in a fixed order."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    specs = [CaptionSpec("single", (p,)) for p in pairs]
    specs += [CaptionSpec("count", (p,) * n) for n in COUNT_WORDS for p in pairs]
    specs += [
        CaptionSpec("relation", (a, b), rel) for a in pairs for b in pairs if a != b for rel in RELATIONS
    ]
    return tuple(specs)


@cache
def specs_for(split: str) -> dict[str, tuple[CaptionSpec, ...]]:
    """Captions of one split, grouped by kind."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {SPLITS}, got {split!r}")
    want = split == "heldout"
    return {kind: tuple(s for s in all_specs() if s.kind == kind and is_heldout(s) == want) for kind in KINDS}


def heldout_captions() -> list[str]:
    """The fixed held-out captions (all kinds), in a fixed order."""
    return [caption_of(s) for kind in KINDS for s in specs_for("heldout")[kind]]


def train_captions() -> list[str]:
    """Every training-split caption, in a fixed order (held-out captions excluded): the micro NPD's prompts."""
    return [caption_of(s) for kind in KINDS for s in specs_for("train")[kind]]


def vocabulary() -> list[str]:
    """All words the grammar uses, sorted."""
    words: set[str] = set()
    for spec in all_specs():
        words.update(caption_of(spec).split())
    return sorted(words)


_COUNT_BY_WORD = {w: n for n, w in COUNT_WORDS.items()}
_OBJ = r"(?P<{c}>" + "|".join(COLOURS) + r") (?P<{s}>" + "|".join(SHAPES) + ")"
_SINGLE_RE = re.compile(r"^an? " + _OBJ.format(c="c1", s="s1") + "$")
_COUNT_RE = re.compile(
    r"^(?P<n>"
    + "|".join(_COUNT_BY_WORD)
    + ") (?P<c1>"
    + "|".join(COLOURS)
    + r") (?P<s1>"
    + "|".join(plural(s) for s in SHAPES)
    + ")$"
)
_REL_RE = re.compile(
    r"^an? "
    + _OBJ.format(c="c1", s="s1")
    + r" (?P<rel>"
    + "|".join(RELATION_PHRASES.values())
    + r") an? "
    + _OBJ.format(c="c2", s="s2")
    + "$"
)
_REL_BY_PHRASE = {p: r for r, p in RELATION_PHRASES.items()}


def parse_caption(caption: str) -> CaptionSpec:
    """Parse a grammar caption back into its spec; ValueError for text outside the grammar."""
    text = " ".join(caption.lower().strip().rstrip(".").split())
    if m := _SINGLE_RE.match(text):
        return CaptionSpec("single", ((m["c1"], m["s1"]),))
    if m := _COUNT_RE.match(text):
        return CaptionSpec("count", ((m["c1"], m["s1"][:-1]),) * _COUNT_BY_WORD[m["n"]])
    if m := _REL_RE.match(text):
        return CaptionSpec("relation", ((m["c1"], m["s1"]), (m["c2"], m["s2"])), _REL_BY_PHRASE[m["rel"]])
    raise UserError(
        f"caption {caption!r} is outside the micro grammar; use e.g. 'a red circle', 'three blue squares' "
        "or 'a red circle to the left of a blue square' (colours: "
        f"{', '.join(COLOURS)}; shapes: {', '.join(SHAPES)})"
    )


def _no_overlap(
    x: float, y: float, size: float, placed: list[tuple[float, float, float]], gap: float
) -> bool:
    return all(max(abs(x - px), abs(y - py)) > (size + ps) / 2 + gap for px, py, ps in placed)


def _scatter(rng: np.random.Generator, sizes: list[float], gap: float = 4.0) -> list[tuple[float, float]]:
    """Random non-overlapping centres for objects of the given sizes (rejection sampling)."""
    for _ in range(200):
        placed: list[tuple[float, float, float]] = []
        for size in sizes:
            lo, hi = size / 2 + 2, IMAGE_SIZE - size / 2 - 2
            for _ in range(100):
                x, y = rng.uniform(lo, hi, size=2)
                if _no_overlap(x, y, size, placed, gap):
                    placed.append((x, y, size))
                    break
        if len(placed) == len(sizes):
            return [(x, y) for x, y, _ in placed]
    raise RuntimeError("could not place objects without overlap")


def _relation_layout(
    rng: np.random.Generator, relation: str, s1: float, s2: float
) -> list[tuple[float, float]]:
    """Centres for object 1 and object 2 such that object 1 is ``relation`` object 2."""
    half = IMAGE_SIZE / 2
    along_gap = rng.uniform(3, 8)
    d1 = s1 / 2 + along_gap / 2 + rng.uniform(0, 3)
    d2 = s2 / 2 + along_gap / 2 + rng.uniform(0, 3)
    centre = half + rng.uniform(-3, 3)
    across = [half + rng.uniform(-12, 12) + rng.uniform(-3, 3) for _ in range(2)]
    first, second = centre - d1, centre + d2  # object 1 at the smaller coordinate
    if relation in ("right of", "below"):
        first, second = centre + d1, centre - d2
    if relation in ("left of", "right of"):
        return [(first, across[0]), (second, across[1])]
    return [(across[0], first), (across[1], second)]


def layout(rng: np.random.Generator, spec: CaptionSpec) -> tuple[SceneObject, ...]:
    """A random concrete layout consistent with the caption spec."""
    if spec.kind == "single":
        (colour, shape), size = spec.objects[0], rng.uniform(16, 26)
        centres = _scatter(rng, [size])
        return (SceneObject(shape, colour, *centres[0], size),)
    if spec.kind == "count":
        sizes = list(rng.uniform(10, 15, size=len(spec.objects)))
        centres = _scatter(rng, sizes)
    else:
        sizes = list(rng.uniform(13, 20, size=2))
        centres = _relation_layout(rng, spec.relation, *sizes)
    return tuple(
        SceneObject(shape, colour, float(x), float(y), float(size))
        for (colour, shape), (x, y), size in zip(spec.objects, centres, sizes)
    )


def sample_spec(rng: np.random.Generator, split: str = "train") -> CaptionSpec:
    """A random caption spec of the split (kind drawn with ``KIND_WEIGHTS``)."""
    groups = specs_for(split)
    kind = KINDS[rng.choice(len(KINDS), p=np.asarray(KIND_WEIGHTS))]
    options = groups[kind]
    return options[rng.integers(len(options))]


def sample_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """A random scene (caption + layout) from the split; deterministic given the generator state."""
    spec = sample_spec(rng, split)
    return make_scene(rng, spec)


def make_scene(rng: np.random.Generator, spec: CaptionSpec) -> Scene:
    return Scene(caption_of(spec), spec, layout(rng, spec))
