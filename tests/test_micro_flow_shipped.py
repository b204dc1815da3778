"""micro-flow as shipped: the trained generator and its NPNet load offline, the table is its rows, the examples hold."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from arm_tables import assert_table_is_its_rows

from npnet.diffusion.presets import get_model_preset
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.model import NPNET_PRESETS
from npnet.paths import MICRO_ASSETS
from npnet.worlds.micro.verifier import MicroVerifier

SHIPPED = MICRO_ASSETS / "npnet-flow.safetensors"
RESULTS = MICRO_ASSETS / "flow"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped micro-flow NPNet")


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", offline=True, progress=False)


def test_shipped_flow_npnet_loads_offline_and_is_deterministic(service):
    assert "micro-flow" in service.available_models()
    preset = get_model_preset("micro-flow")
    request = GenerationRequest("micro-flow", "a red circle above a blue square", seed=3, methods=("standard", "npnet"))
    first, second = service.generate(request), service.generate(request)
    assert first.settings["steps"] == preset.steps and first.latents["standard"].shape == (1, 16, 8, 8)
    for method in ("standard", "npnet"):
        assert torch.equal(first.latents[method], second.latents[method])
        assert first.images[method].tobytes() == second.images[method].tobytes()
    assert not torch.equal(first.latents["npnet"], first.latents["standard"])
    assert service.npnet("micro-flow").config == NPNET_PRESETS["micro-flow"]


def test_shipped_flow_table_is_recomputed_from_its_rows():
    results = assert_table_is_its_rows(RESULTS)
    assert results["model"] == "micro-flow" and results["steps"] == get_model_preset("micro-flow").steps


def test_app_examples_are_held_out_seeds_the_shipped_flow_npnet_rescues(service):
    """The micro-flow examples come from the shipped rows (standard wrong, NPNet right) and still do that."""
    from studio.examples import example_prompts

    rows = pd.read_csv(RESULTS / "rows.csv").set_index(["prompt", "seed"])
    examples = example_prompts("micro-flow")
    assert examples and all(rows.loc[e, "standard"] <= 0.5 < rows.loc[e, "npnet"] for e in examples)
    requests = [GenerationRequest("micro-flow", p, seed=s, methods=("standard", "npnet")) for p, s in examples]
    results = service.generate_many(requests)
    images = [image for r in results for image in (r.images["standard"], r.images["npnet"])]
    scores = MicroVerifier().score(images, [p for p, _ in examples for _ in range(2)]).view(-1, 2)
    assert ((scores[:, 0] <= 0.5) & (scores[:, 1] > 0.5)).all(), scores
