"""Test seeds per the paper (App. D.5: one per prompt in [0, 100]) and the Table 2 presets' settings."""

import json

import pytest

from eval.__main__ import build_parser, config_from_args
from eval.benchmark import BenchmarkConfig, load_rows, run_benchmark
from eval.presets import EVAL_PRESETS, PRESET_NOTES
from eval.seeds import paper_seed, prompt_seeds
from npnet.engine import GoldenNoiseService
from npnet.errors import UserError

PROMPTS = ("a red cube on a table", "two cats", "a watercolor lighthouse", "a blue bird")


def _config(out, **kw) -> BenchmarkConfig:
    base = dict(
        model="tiny-sdxl", prompts=PROMPTS, out=str(out), seeds=(0, 1), seed_scheme="paper", steps=2,
        methods=("standard", "npnet"), metrics=("toy-brightness",), device="cpu", offline=True, batch_size=1,
    )  # fmt: skip
    return BenchmarkConfig(**{**base, **kw})


def test_paper_seeds_are_drawn_in_0_100_per_prompt_and_base_seed_deterministically():
    draws = [paper_seed(base, i) for base in range(20) for i in range(50)]
    assert all(0 <= s <= 100 for s in draws) and len(set(draws)) > 60  # spread over the range
    assert paper_seed(3, 7) == paper_seed(3, 7) and [paper_seed(0, i) for i in range(4)] != [
        paper_seed(1, i) for i in range(4)
    ]
    config = _config("unused")
    for i in range(len(PROMPTS)):
        assert prompt_seeds(config, i) == list(dict.fromkeys([paper_seed(0, i), paper_seed(1, i)]))
    assert prompt_seeds(_config("unused", seed_scheme="fixed"), 2) == [0, 1]
    with pytest.raises(UserError, match="unknown seed_scheme 'lucky'"):
        run_benchmark(_config("unused", seed_scheme="lucky"))


def test_a_paper_scheme_run_records_its_seeds_and_resumes(tmp_path):
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] > 3

    first = run_benchmark(_config(tmp_path / "run"), service=service, should_stop=stop_after_three)
    assert first.stopped and first.counts["computed"] == 3
    resumed = run_benchmark(_config(tmp_path / "run"), service=service)
    assert resumed.counts["skipped"] == 3 and resumed.counts["computed"] == resumed.counts["samples"] - 3
    rows = load_rows(tmp_path / "run")
    expected = {(i, s) for i in range(len(PROMPTS)) for s in prompt_seeds(_config("x"), i)}
    assert set(zip(rows["prompt_index"], rows["seed"])) == expected
    assert len(rows) == 2 * len(expected) and set(rows["seed_scheme"]) == {"paper"}
    assert rows["error"].isna().all() and rows["toy-brightness"].notna().all()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["seed_scheme"] == "paper" and manifest["config"]["seeds"] == [0, 1]
    again = run_benchmark(_config(tmp_path / "run"), service=service)
    assert again.counts["computed"] == 0 and len(load_rows(tmp_path / "run")) == len(rows)


def test_the_command_line_takes_the_scheme_and_the_table2_presets_use_ddim_and_paper_seeds(tmp_path):
    parse = build_parser().parse_args
    args = parse(
        [
            "run",
            "--model",
            "tiny-sdxl",
            "--prompts",
            "examples",
            "--seed-scheme",
            "paper",
            "--out",
            str(tmp_path),
        ]
    )
    assert config_from_args(args).seed_scheme == "paper"
    args = parse(["run", "--model", "tiny-sdxl", "--prompts", "examples", "--out", str(tmp_path)])
    assert config_from_args(args).seed_scheme == "fixed"
    with pytest.raises(SystemExit):
        parse(["run", "--seed-scheme", "lucky", "--out", str(tmp_path)])
    table2_sdxl = [name for name, fields in EVAL_PRESETS.items() if name.startswith("Table 2 — SDXL")]
    assert len(table2_sdxl) == 3
    for name in table2_sdxl:
        config = config_from_args(parse(["run", "--preset", name, "--out", str(tmp_path)]))
        assert (config.model, config.scheduler, config.seed_scheme) == ("sdxl", "ddim", "paper")
        assert "DDIM" in PRESET_NOTES[name] and "[0, 100]" in PRESET_NOTES[name]
    assert set(PRESET_NOTES) == set(EVAL_PRESETS)
    assert EVAL_PRESETS["Table 2 — DreamShaper-xl-v2-turbo, Pick-a-Pic first 100"].get("scheduler") is None
    assert all(
        fields.get("seed_scheme") == "paper"
        for name, fields in EVAL_PRESETS.items()
        if name.startswith("Table")
    )
