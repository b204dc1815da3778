"""Reading the scorer-parity fixtures (tests/fixtures/parity/*.json, written by scripts/parity/*_ref.py in
throwaway reference venvs), shared by tests/test_parity_hfclip.py and tests/test_parity_openclip.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from eval.metrics.parity import image_sha256, parity_image

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
TOLERANCE = 1e-4  # in the reference's units


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_images(fixture: dict) -> list:
    """The fixture's synthetic images, regenerated; their pixels must be the ones the reference scored."""
    images = [parity_image(spec["kind"], spec["width"], spec["height"]) for spec in fixture["images"]]
    assert [image_sha256(image) for image in images] == [spec["sha256"] for spec in fixture["images"]], (
        "parity_image no longer draws the fixture's images; regenerate the fixtures (scripts/parity)"
    )
    return images


def max_abs_diff(ours: torch.Tensor, reference) -> float:
    return (ours.double() - torch.tensor(reference, dtype=torch.float64)).abs().max().item()
