"""micro-turbo ablations (Table 4): each variant changes one thing; the table is its rows; runs resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cli.micro_ablations import TURBO_VARIANTS, AblationConfig, run_ablations, summarize, train_config
from npnet.analysis import change_agreement
from npnet.model import NPNET_PRESETS
from npnet.worlds.micro.pipeline import GENERATOR_DIR

needs_generator = pytest.mark.skipif(
    not (GENERATOR_DIR / "model_index.json").exists(), reason=f"no shipped micro generator at {GENERATOR_DIR}"
)


def test_each_variant_changes_one_thing_from_the_shipped_recipe():
    config = AblationConfig("npd", "runs", "out")
    full = train_config(config, "full")
    assert full.preset == NPNET_PRESETS["micro"] and not full.select and full.init == "random"
    assert full.lr == 1e-3 and full.epochs == 30
    expected = {
        "no-svd": {"preset": dataclasses.replace(NPNET_PRESETS["micro"], use_svd_branch=False)},
        "no-residual": {"preset": dataclasses.replace(NPNET_PRESETS["micro"], use_residual_branch=False)},
        "selection": {"select": True},
    }
    for name, change in expected.items():
        assert train_config(config, name) == dataclasses.replace(full, out=f"runs/{name}", **change)
    assert set(TURBO_VARIANTS) == {"full", *expected}


def test_change_agreement_closed_form():
    x = torch.zeros(2, 4, 2, 2)
    target = torch.ones(2, 4, 2, 2)
    exact = change_agreement(x, target, target)
    assert exact["cosine_mean"] == pytest.approx(1) and exact["explained_energy"] == pytest.approx(1)
    half = change_agreement(x, target, 0.5 * target)  # same direction, half the norm: 1 - 0.25 explained
    assert half["cosine_mean"] == pytest.approx(1) and half["explained_energy"] == pytest.approx(0.75)
    assert half["norm_ratio"] == pytest.approx(0.5)
    opposite = change_agreement(x, target, -target)
    assert opposite["cosine_mean"] == pytest.approx(-1) and opposite["explained_energy"] == pytest.approx(-3)


def test_summary_counts_match_the_rows():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "prompt_index": np.repeat(np.arange(10), 3),
            **{name: rng.uniform(size=30) for name in ("standard", "full", "no-svd")},
        }
    )
    agreement = {name: {"cosine_mean": 0.5, "explained_energy": 0.2} for name in ("full", "no-svd")}
    table = summarize(frame, agreement)["variants"]
    correct = frame[["standard", "full", "no-svd"]] > 0.5
    assert table["standard"]["accuracy"] == pytest.approx(correct["standard"].mean())
    vs_full = table["no-svd"]["vs_full"]
    assert vs_full["rescued"] == int((correct["no-svd"] & ~correct["full"]).sum())
    assert vs_full["broken"] == int((~correct["no-svd"] & correct["full"]).sum())
    assert table["full"]["vs_standard"]["rescued"] == int((correct["full"] & ~correct["standard"]).sum())


@needs_generator
def test_ablations_run_end_to_end_and_resume(tmp_path):
    from eval.metrics import get_scorer
    from npnet.data.collect import CollectConfig, collect
    from npnet.engine import GoldenNoiseService
    from npnet.worlds.micro.grammar import train_captions

    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    npd = tmp_path / "npd"
    collect(service, CollectConfig("micro-turbo", str(npd), seeds_per_prompt=2, steps=5), train_captions()[:8],
            get_scorer("micro"), progress=False)  # fmt: skip
    config = AblationConfig(
        str(npd), str(tmp_path / "runs"), str(tmp_path / "out"), epochs=1, limit=2, seeds=(0,)
    )
    results = run_ablations(config)
    assert set(results["variants"]) == {"standard", *TURBO_VARIANTS} and results["pairs"] == 2
    assert all(
        -1 <= r["agreement"]["cosine_mean"] <= 1 for n, r in results["variants"].items() if n != "standard"
    )
    rows = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert list(rows.columns[3:]) == ["standard", *TURBO_VARIANTS]
    best = {
        n: (tmp_path / "runs" / n / "best" / "npnet.safetensors").stat().st_mtime_ns for n in TURBO_VARIANTS
    }
    again = run_ablations(config)  # finished trainings are reused, not redone
    assert {
        n: (tmp_path / "runs" / n / "best" / "npnet.safetensors").stat().st_mtime_ns for n in TURBO_VARIANTS
    } == best
    assert again["variants"] == results["variants"]


SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "micro" / "turbo"


@pytest.mark.skipif(not (SHIPPED / "ablations" / "results.json").is_file(), reason="no shipped ablation results")
def test_shipped_ablation_and_steps_tables_are_their_rows():
    import json

    from cli.micro_turbo import ARMS

    rows = pd.read_csv(SHIPPED / "ablations" / "rows.csv")
    results = json.loads((SHIPPED / "ablations" / "results.json").read_text())
    assert len(rows) == results["pairs"] == 255
    correct = rows[["standard", *TURBO_VARIANTS]] > 0.5
    for name, r in results["variants"].items():
        assert r["accuracy"] == pytest.approx(correct[name].mean())
    for steps in (4, 6, 8):
        run = json.loads((SHIPPED / f"steps-{steps}" / "results.json").read_text())
        step_rows = pd.read_csv(SHIPPED / f"steps-{steps}" / "rows.csv")
        assert run["steps"] == steps and len(step_rows) == 255
        for arm in ARMS:
            assert run["arms"][arm]["accuracy"] == pytest.approx((step_rows[arm] > 0.5).mean())
