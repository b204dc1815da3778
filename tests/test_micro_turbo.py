"""micro-turbo: the shipped few-step NPNet loads offline and is deterministic; the shipped table is its rows."""

from __future__ import annotations

import json

import pytest
import torch
from arm_tables import assert_table_is_its_rows

from cli.micro_turbo import ARMS, control_latents
from npnet.diffusion.presets import get_model_preset
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.model import NPNET_PRESETS
from npnet.paths import MICRO_ASSETS

SHIPPED = MICRO_ASSETS / "npnet-turbo.safetensors"
RESULTS = MICRO_ASSETS / "turbo"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped micro-turbo NPNet")


def test_shipped_turbo_npnet_loads_offline_and_is_deterministic():
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    assert "micro-turbo" in service.available_models()
    preset = get_model_preset("micro-turbo")
    request = GenerationRequest("micro-turbo", "a red circle above a blue square", seed=3, methods=("standard", "npnet", "inversion"))
    first, second = service.generate(request), service.generate(request)
    assert first.settings["steps"] == preset.steps == 5 and first.settings["scheduler"] == "ddim"
    assert first.settings["redenoise_guidance_scale"] == preset.redenoise_guidance_scale
    assert first.settings["redenoise_start"] == 999  # trailing spacing: the sampler starts at t = 999
    for method in ("standard", "npnet", "inversion"):
        assert torch.equal(first.latents[method], second.latents[method])
        assert first.images[method].tobytes() == second.images[method].tobytes()
    assert not torch.equal(first.latents["npnet"], first.latents["standard"])
    assert service.npnet("micro-turbo").config == NPNET_PRESETS["micro"]


def test_controls_keep_the_npnet_change_norm():
    x, golden = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    controls = control_latents(x, golden, seed=0)
    torch.testing.assert_close((controls["random-direction"] - x).norm(), (golden - x).norm())
    torch.testing.assert_close(controls["scaled-noise"].norm(), golden.norm())


def test_shipped_table_is_recomputed_from_its_rows():
    assert_table_is_its_rows(RESULTS)


def test_app_examples_are_seeds_the_shipped_npnet_rescues():
    """The Generate tab opens on micro-turbo examples where standard noise fails and golden noise succeeds."""
    from npnet.worlds.micro.verifier import MicroVerifier
    from studio.examples import example_prompts

    service, verifier = GoldenNoiseService(device="cpu", offline=True, progress=False), MicroVerifier()
    for prompt, seed in example_prompts("micro-turbo"):
        result = service.generate(GenerationRequest("micro-turbo", prompt, seed=seed, methods=("standard", "npnet")))
        standard, golden = verifier.score([result.images["standard"], result.images["npnet"]], [prompt] * 2).tolist()
        assert standard <= 0.5 < golden, (prompt, seed, standard, golden)


def test_steps_curve_rows_come_from_each_results_file(tmp_path):
    from cli.micro_turbo import steps_curve

    shipped = json.loads((RESULTS / "results.json").read_text())
    other = tmp_path / "steps-8"
    other.mkdir()
    (other / "results.json").write_text(json.dumps(shipped | {"steps": 8}))
    lines = steps_curve([other, RESULTS]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 5", "| 8"]  # sorted by step count
    cells = lines[2].split(" | ")
    assert cells[ARMS.index("npnet") + 1] == f"{100 * shipped['arms']['npnet']['accuracy']:.1f}%"
    vs = shipped["arms"]["npnet"]["vs_standard"]
    assert f"{vs['rescued']} / {vs['broken']}" in cells
