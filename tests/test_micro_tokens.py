"""The shipped token-conditioned micro-turbo NPNet: loads offline as an alternative of the preset, its tables
are recomputed from the shipped rows, and the paired comparisons count what the rows say."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cli.micro_tokens import compare, compute_matched, read_rows
from cli.micro_turbo import ARMS
from npnet.checkpoints import load_npnet
from npnet.diffusion.presets import get_model_preset
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.errors import UserError
from npnet.model import NPNET_PRESETS
from npnet.paths import MICRO_ASSETS

SHIPPED = MICRO_ASSETS / "npnet-turbo-tokens.safetensors"
RESULTS = MICRO_ASSETS / "turbo-tokens"
OFFICIAL = MICRO_ASSETS / "turbo"
shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped token-conditioned NPNet")


def _rows(folder, npnet, standard, seed_count=2):
    n = len(npnet)
    frame = pd.DataFrame(
        {
            "prompt_index": np.arange(n) // seed_count,
            "prompt": [f"p{i // seed_count}" for i in range(n)],
            "seed": np.arange(n) % seed_count,
            "standard": standard,
            "npnet": npnet,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "rows.csv", index=False)
    return folder


def test_compare_counts_rescued_and_broken_between_two_npnets(tmp_path):
    standard = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    a = _rows(tmp_path / "a", [0.9, 0.9, 0.9, 0.1, 0.2, 0.8], standard)
    b = _rows(tmp_path / "b", [0.1, 0.9, 0.2, 0.8, 0.9, 0.8], standard)
    result = compare(str(a), str(b))
    assert (result["rescued"], result["broken"], result["pairs"]) == (2, 2, 6)
    c = _rows(tmp_path / "c", [0.1] * 6, [0.9] * 6)
    with pytest.raises(UserError, match="standard arms differ"):
        compare(str(a), str(c))


def test_compute_matched_pairs_npnet_at_n_with_standard_at_n_plus_one(tmp_path):
    four = _rows(tmp_path / "s4", [0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1])
    five = _rows(tmp_path / "s5", [0.9, 0.9, 0.9, 0.9], [0.1, 0.9, 0.9, 0.9])
    for folder, steps in ((four, 4), (five, 5)):
        (folder / "results.json").write_text(json.dumps({"steps": steps}))
    (row,) = compute_matched([str(five), str(four)])
    assert (row["npnet_steps"], row["standard_steps"]) == (4, 5)
    assert (row["rescued"], row["broken"]) == (1, 2)  # npnet@4 right where standard@5 wrong, and vice versa
    assert row["npnet_accuracy"] == 0.5 and row["standard_accuracy"] == 0.75
    with pytest.raises(UserError, match="consecutive"):
        compute_matched([str(five)])


@shipped
def test_shipped_token_npnet_is_an_offered_alternative_and_loads_offline():
    preset = get_model_preset("micro-turbo")
    assert "assets/micro/npnet-turbo-tokens.safetensors" in preset.npnet_alternatives
    net = load_npnet(SHIPPED)
    assert net.config == NPNET_PRESETS["micro-tokens"]
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    request = GenerationRequest("micro-turbo", "a red circle", seed=1, methods=("npnet",), npnet=str(SHIPPED))
    first, second = service.generate(request), service.generate(request)
    assert torch.equal(first.latents["npnet"], second.latents["npnet"])


@shipped
def test_shipped_token_table_is_recomputed_from_its_rows():
    rows = read_rows(RESULTS)
    results = json.loads((RESULTS / "results.json").read_text())
    assert len(rows) == results["pairs"] == 85 * 3 and results["npnet"].endswith("npnet-turbo-tokens.safetensors")
    correct = rows[list(ARMS)] > 0.5
    for arm in ARMS:
        assert results["arms"][arm]["accuracy"] == pytest.approx(correct[arm].mean())
    official = read_rows(OFFICIAL)
    np.testing.assert_allclose(rows["standard"], official["standard"], atol=1e-6)  # the same samples
    saved = json.loads((RESULTS / "vs_official.json").read_text())
    assert saved["rescued"] == int((correct["npnet"] & ~(official["npnet"] > 0.5)).sum())
    assert saved["broken"] == int((~correct["npnet"] & (official["npnet"] > 0.5)).sum())
