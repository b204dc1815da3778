"""The micro world's verifier as a scorer: fraction of the prompt's facts the image satisfies, in [0, 1].

A thin wrapper over ``npnet.worlds.micro.verifier.MicroVerifier`` (offline, no weights), so micro-world
benchmarks run with the same runner, statistics and charts as the real metrics.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from PIL import Image

from eval.metrics.base import Scorer
from npnet.errors import UserError


class MicroScorer(Scorer):
    """Scores micro-world images against their prompts with the rule-based MicroVerifier."""

    name: ClassVar[str] = "micro"
    units: ClassVar[str] = "micro-world verifier score in [0, 1]"

    def _load(self) -> None:
        try:
            from npnet.worlds.micro.verifier import MicroVerifier
        except ImportError as err:
            raise UserError(
                "scorer 'micro' needs npnet.worlds.micro.verifier.MicroVerifier, which could not be imported "
                f"({err}); use a checkout that includes the micro world (npnet/micro/verifier.py)"
            ) from err
        self.verifier = MicroVerifier()

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        return torch.as_tensor(self.verifier.score(images, prompts), dtype=torch.float32).reshape(-1)
