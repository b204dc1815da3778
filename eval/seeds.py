"""Seeds of a benchmark: the ``0,1,5`` / ``0-7`` syntax, validation, best-of-N candidates and the paper's
per-prompt seed scheme (App. D.5: one test seed per prompt and base seed, uniform in [0, 100])."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any

from npnet.errors import UserError

MAX_SEED = 2**63 - 1  # the engine's seeds are in [0, 2**63)
MAX_SEEDS = 10_000  # seeds in one list: more is a typo, not a benchmark
_SEED_ITEM = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")
SEED_SCHEMES = ("fixed", "paper")
PAPER_SEED_RANGE = (0, 100)  # App. D.5 / Table 19: test seeds per prompt in [0, 100] (inclusive)


def candidate_seeds(seed: int, n: int) -> list[int]:
    """The sample's own seed, then n-1 seeds derived from it (deterministic)."""
    derived = [int(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:8], 16) for k in range(1, n)]
    return [int(seed), *derived]


def parse_seeds(text: str, max_count: int = MAX_SEEDS) -> tuple[int, ...]:
    """Seeds from ``"0"``, ``"0,1,5"`` or inclusive ranges ``"0-7"`` (repeats dropped, order kept).

    ``UserError`` for negative, non-integer or too many seeds; ranges are counted before they are expanded,
    so ``0-999999999`` allocates nothing. The app's ``studio.evaluation.parse_seeds`` reads the same syntax."""
    spans: list[tuple[int, int]] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        match = _SEED_ITEM.match(item)
        if not match:
            if re.fullmatch(r"-[0-9]+", item):
                raise UserError(f"seed {item} is negative; seeds are whole numbers >= 0 (e.g. 0,1,2 or 0-7)")
            raise UserError(f"seed {item[:40]!r} is not a whole number >= 0 or a range like 0-7")
        if max(len(match[1]), len(match[2] or "")) > 19:  # int() of thousands of digits is slow
            raise UserError(f"seed {item[:40]} is too large; seeds are below 2**63")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high > MAX_SEED:
            raise UserError(f"seed {high} is too large; seeds are below 2**63")
        if high < low:
            raise UserError(f"seed range {item} runs backwards; write {high}-{low}")
        spans.append((low, high))
    if not spans:
        raise UserError("no seeds given; pass e.g. 0, 0,1,2 or 0-7")
    count = sum(high - low + 1 for low, high in spans)
    if count > max_count:
        raise UserError(f"{count} seeds are too many (at most {max_count}); pass a shorter list or range")
    return tuple(dict.fromkeys(seed for low, high in spans for seed in range(low, high + 1)))


def _validate_seeds(seeds) -> None:
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"seeds must be whole numbers in [0, 2**63); got {bad[:5]}")
    repeated = sorted(seed for seed, n in Counter(seeds).items() if n > 1)
    if repeated:
        raise UserError(f"seeds repeat: {repeated[:5]}; list each seed once")


def paper_seed(base: int, prompt_index: int) -> int:
    """The paper scheme's test seed of one prompt: uniform in [0, 100], keyed on (base, prompt index)."""
    import numpy as np

    low, high = PAPER_SEED_RANGE
    return int(np.random.default_rng([int(base), int(prompt_index)]).integers(low, high + 1))


def prompt_seeds(config: Any, prompt_index: int) -> list[int]:  # config: a BenchmarkConfig
    """The seeds prompt ``prompt_index`` runs with under ``config.seed_scheme`` (see the module docstring)."""
    if config.seed_scheme == "fixed":
        return list(config.seeds)
    return list(dict.fromkeys(paper_seed(base, prompt_index) for base in config.seeds))
