"""A check shared by the micro-turbo and micro-flow tests: a shipped six-arm table is recomputed from its rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli.micro_arms import ARMS


def assert_table_is_its_rows(folder: Path) -> dict:
    """results.json's accuracy and rescued / broken per arm equal the counts in rows.csv (85 x seeds 0-2)."""
    rows = pd.read_csv(folder / "rows.csv")
    results = json.loads((folder / "results.json").read_text())
    assert len(rows) == results["pairs"] == 85 * 3 and set(rows["seed"]) == {0, 1, 2}
    correct = rows[list(ARMS)] > 0.5  # the micro verifier's decision
    for arm in ARMS:
        assert results["arms"][arm]["accuracy"] == pytest.approx(correct[arm].mean())
        if arm != "standard":
            vs = results["arms"][arm]["vs_standard"]
            assert vs["rescued"] == int((correct[arm] & ~correct["standard"]).sum())
            assert vs["broken"] == int((~correct[arm] & correct["standard"]).sum())
    return results
