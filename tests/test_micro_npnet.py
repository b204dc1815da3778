"""Micro NPNet: collect -> train -> evaluate end to end on the shipped micro world, shipped weights, results."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cli import micro_stages
from cli.micro_experiments import ASSET_NPNET, gather, write_results
from cli.micro_stages import StageSettings, train_config
from npnet.checkpoints import load_npnet
from npnet.data.dataset import read_manifest
from npnet.diffusion.presets import get_model_preset
from npnet.model import NPNET_PRESETS
from npnet.worlds.micro.grammar import train_captions
from npnet.worlds.micro.pipeline import GENERATOR_DIR

RESULTS = ASSET_NPNET.parent / "results"
needs_generator = pytest.mark.skipif(
    not (GENERATOR_DIR / "model_index.json").exists(),
    reason=f"no shipped micro generator at {GENERATOR_DIR} (python -m cli micro train-generator ...)",
)
needs_npnet = pytest.mark.skipif(
    not ASSET_NPNET.is_file(),
    reason=f"no shipped micro NPNet at {ASSET_NPNET} (python -m cli micro-npnet all/export)",
)


def test_training_captions_exclude_the_heldout_set_and_presets_match():
    from eval.prompts import load_prompts

    train, heldout = train_captions(), load_prompts("micro-heldout")
    assert train == load_prompts("micro-train")
    assert len(train) > 400 and not set(train) & set(heldout)
    assert get_model_preset("micro").npnet_preset == "micro"


def test_ablation_configs_change_exactly_one_thing():
    settings = StageSettings(run="unused")
    full = train_config(settings, "full")
    assert full.preset == "micro" and full.select
    no_svd, no_res = train_config(settings, "no-svd"), train_config(settings, "no-residual")
    assert no_svd.preset == dataclasses.replace(NPNET_PRESETS["micro"], use_svd_branch=False)
    assert no_res.preset == dataclasses.replace(NPNET_PRESETS["micro"], use_residual_branch=False)
    no_select = train_config(settings, "no-select")
    assert no_select.preset == "micro" and not no_select.select
    with pytest.raises(ValueError, match="unknown variant"):
        train_config(settings, "no-such-thing")


@needs_generator
def test_collect_train_evaluate_end_to_end(tmp_path):
    start = time.process_time()  # CPU seconds of this process: the budget on an uncontended CPU
    settings = StageSettings(
        run=str(tmp_path / "run"),
        seeds_per_prompt=2,
        prompt_limit=6,
        collect_steps=4,
        shard_size=6,
        epochs=2,
        batch_size=8,
        eval_limit=3,
        eval_seeds=(0,),
    )
    data = micro_stages.collect_stage(settings, progress=False)
    rows = read_manifest(settings.npd)
    assert data["pairs"] == len(rows) == 12
    assert all(r["kept"] == (r["score_standard"] + settings.margin < r["score_inversion"]) for r in rows)
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("score_standard", "score_inversion"))
    # a 12-pair NPD may keep too few pairs for a train/val split: train the "w/o selection" variant
    trained = micro_stages.train_stage(settings, "no-select", log=lambda _: None)
    assert trained["epochs"] == 2
    net = load_npnet(str(settings.npnet_path("no-select")))
    assert net.config == NPNET_PRESETS["micro"]
    summary = micro_stages.evaluate_stage(
        settings, "no-select", steps=4, methods=("standard", "inversion", "npnet")
    )
    assert list(summary["method"]) == ["standard", "inversion", "npnet"]
    assert (summary["n"] == 3).all() and summary["mean"].between(0, 1).all()
    npnet_row = summary.set_index("method").loc["npnet"]
    assert npnet_row["wins"] + npnet_row["ties"] + npnet_row["losses"] == 3
    report = gather(settings)
    out = write_results(report, tmp_path / "results")
    assert json.loads((out / "results.json").read_text())["collect"]["pairs"] == 12
    assert "| no-select | 4 | npnet | 3 |" in (out / "results.md").read_text()
    assert time.process_time() - start < 120


@needs_generator
@needs_npnet
def test_shipped_pipeline_and_npnet_generate_deterministically_offline():
    from npnet.engine import GenerationRequest, GoldenNoiseService

    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    assert "micro" in service.available_models()
    request = GenerationRequest(model="micro", prompt="a red circle above a blue square", seed=11, steps=8)
    first, second = service.generate(request), service.generate(request)
    for method in ("standard", "npnet"):
        assert first.images[method].size == (64, 64)
        assert first.images[method].tobytes() == second.images[method].tobytes()
        assert torch.equal(first.latents[method], second.latents[method])
    assert first.images["npnet"].tobytes() != first.images["standard"].tobytes()
    assert not torch.equal(first.latents["npnet"], first.latents["standard"])
    loaded = service.load("micro")
    assert loaded.npnets["assets/micro/npnet.safetensors"].config == NPNET_PRESETS["micro"]


@pytest.mark.skipif(not (RESULTS / "results.json").exists(), reason="no shipped micro results yet")
def test_shipped_results_are_recomputed_from_the_shipped_rows():
    """summary.csv recomputed from rows.csv by hand: means, and paired win/tie/loss counts vs standard.

    A pair is one (prompt_index, seed) of the same (variant, steps) run; npnet (or inversion) wins when
    its micro score is strictly higher than standard's, and ties stay in the win rate's denominator.
    """
    shipped = pd.read_csv(RESULTS / "summary.csv")
    rows = pd.read_csv(RESULTS / "rows.csv")
    assert set(shipped["metric"]) == {"micro"}
    runs = sorted(rows.groupby(["variant", "steps", "method"]).groups)
    assert sorted(shipped.groupby(["variant", "steps", "method"]).groups) == runs
    for record in shipped.itertuples(index=False):
        run = rows[(rows["variant"] == record.variant) & (rows["steps"] == record.steps)]
        # one cell per sample; pivot raises on a duplicate (prompt_index, seed, method)
        scores = run.pivot(index=["prompt_index", "seed"], columns="method", values="micro")
        mine = scores[record.method].dropna().to_numpy()
        assert record.n == len(mine)
        assert record.mean == pytest.approx(mine.mean(), rel=1e-12, abs=1e-12)
        assert record.std == pytest.approx(mine.std(ddof=1), rel=1e-9)
        if record.method == "standard":
            assert np.isnan(record.win_rate)
            continue
        pairs = scores[[record.method, "standard"]].dropna().to_numpy()
        wins = int((pairs[:, 0] > pairs[:, 1]).sum())
        ties = int((pairs[:, 0] == pairs[:, 1]).sum())
        losses = int((pairs[:, 0] < pairs[:, 1]).sum())
        assert (record.n_pairs, record.wins, record.ties, record.losses) == (len(pairs), wins, ties, losses)
        assert record.win_rate == pytest.approx(wins / len(pairs), rel=1e-12)
        assert record.tie_rate == pytest.approx(ties / len(pairs), rel=1e-12)
        assert record.mean_diff == pytest.approx((pairs[:, 0] - pairs[:, 1]).mean(), rel=1e-9, abs=1e-12)
    main = shipped[(shipped["variant"] == "full") & (shipped["method"] == "npnet")]
    assert (main["n_pairs"] >= 200).all()
    total = sum(f.stat().st_size for f in ASSET_NPNET.parent.rglob("*") if f.is_file())
    assert total < 40 * 2**20  # the budget of tests/test_micro_shipped.py


def test_a_run_uses_the_generator_folder_it_names(tmp_path):
    """The stages build their pipeline from ``settings.generator`` (passed, not patched into a global)."""
    fake = tmp_path / "generator"
    fake.mkdir()
    (fake / "weights.safetensors").write_bytes(b"not a real generator")
    settings = StageSettings(run=str(tmp_path / "run"), generator=str(fake))
    service = micro_stages._service(settings)
    with pytest.raises(ValueError, match=f"no micro generator at {fake}"):
        service.load("micro", with_npnet=False)
    assert json.loads((tmp_path / "run" / "world.json").read_text())["generator"] == str(fake)
    assert get_model_preset("micro").builder is not service.preset("micro").builder  # the registry is untouched


def test_variant_errors_are_clear(tmp_path):
    settings = StageSettings(run=str(tmp_path))
    with pytest.raises(ValueError, match="no trained NPNet"):
        micro_stages.evaluate_stage(settings, "full")
    assert Path(settings.npnet_path("full")).name == "npnet.safetensors"
