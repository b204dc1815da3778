"""Benchmark runner on tiny-sdxl: caching, resume after a crash, sharding, per-sample errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from counting import CountingService, Crash, crashing_factory

from eval.benchmark import BenchmarkConfig, load_rows, parse_method, run_benchmark
from eval.metrics import get_scorer
from eval.seeds import candidate_seeds
from npnet.engine import GoldenNoiseService

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("a red cube on a table", "two cats", "a watercolor lighthouse")
COMPARE = [
    "prompt_index",
    "prompt",
    "seed",
    "method",
    "chosen_seed",
    "generations",
    "toy-brightness",
    "toy-colorfulness",
]


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", offline=True, progress=False)


def _config(out, **kw) -> BenchmarkConfig:
    base = dict(
        model="tiny-sdxl",
        prompts=PROMPTS,
        out=str(out),
        seeds=(0, 1),
        steps=2,
        methods=("standard", "npnet", "inversion"),
        metrics=("toy-brightness", "toy-colorfulness"),
        device="cpu",
        offline=True,
    )
    base.update(kw)
    return BenchmarkConfig(**base)


def test_method_names_and_candidate_seeds():
    assert parse_method("npnet+best-of-4") == ("npnet", 4)
    assert parse_method("best-of-2") == ("standard", 2)
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("golden")
    seeds = candidate_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4 and seeds == candidate_seeds(7, 4)


def test_standard_image_is_generated_once_and_shared(tmp_path, service):
    counting = CountingService(service)
    cfg = _config(
        tmp_path / "run",
        prompts=PROMPTS[:1],
        seeds=(0,),
        methods=("standard", "npnet", "best-of-2", "npnet+best-of-2"),
    )
    rows = run_benchmark(cfg, service=counting).rows
    # standard@0, npnet@0, standard@c1, npnet@c1: 4 images for 4 methods needing 6 candidate images
    assert counting.images == 4
    assert set(rows["method"]) == set(cfg.methods) and rows["error"].isna().all()
    bon = rows.set_index("method")
    best = bon.loc["best-of-2", "toy-brightness"]
    assert best == max(bon.loc["standard", "toy-brightness"], best)
    again = CountingService(service)
    run_benchmark(
        _config(
            tmp_path / "run",
            prompts=PROMPTS[:1],
            seeds=(0,),
            methods=("standard", "best-of-2"),
            metrics=("toy-brightness", "toy-colorfulness"),
        ),
        service=again,
    )
    assert again.images == 0  # everything came from the cache


def test_resume_after_a_crash_gives_the_uninterrupted_rows(tmp_path, service):
    straight = run_benchmark(_config(tmp_path / "straight"), service=service).rows
    with pytest.raises(Crash):
        run_benchmark(
            _config(tmp_path / "crashed"), service=service, scorer_factory=crashing_factory(after=5)
        )
    partial = load_rows(tmp_path / "crashed")
    assert 0 < len(partial) < len(straight)
    with open(tmp_path / "crashed" / "rows.rank0.jsonl", "a") as handle:
        handle.write('{"key": "torn')  # a kill in the middle of an append
    resumed = run_benchmark(_config(tmp_path / "crashed"), service=service)
    assert resumed.counts["skipped"] == len(partial) // 3
    assert resumed.rows[COMPARE].equals(straight[COMPARE])


def test_per_sample_errors_are_recorded_and_retried(tmp_path, service):
    def factory(name):
        scorer = get_scorer(name)
        inner = scorer.score

        def score(images, prompts):
            if "cats" in prompts[0]:
                raise RuntimeError("scorer exploded")
            return inner(images, prompts)

        scorer.score = score
        return scorer

    result = run_benchmark(_config(tmp_path / "err", seeds=(0,)), service=service, scorer_factory=factory)
    errors = result.rows[result.rows["error"].notna()]
    assert set(errors["prompt"]) == {"two cats"} and result.counts["errors"] == 1
    assert "scorer exploded" in errors["error"].iloc[0]
    fixed = run_benchmark(_config(tmp_path / "err", seeds=(0,)), service=service)
    assert fixed.rows["error"].isna().all() and fixed.counts["computed"] == 1


def test_changed_generation_settings_refuse_to_resume(tmp_path, service):
    run_benchmark(
        _config(tmp_path / "r", prompts=PROMPTS[:1], seeds=(0,), methods=("standard",)), service=service
    )
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark(
            _config(tmp_path / "r", prompts=PROMPTS[:1], seeds=(0,), steps=3, methods=("standard",)),
            service=service,
        )


def test_ranks_from_the_launcher_environment_split_the_run_like_one_process(tmp_path, service, monkeypatch):
    """RANK / WORLD_SIZE as ``torchrun`` / ``accelerate launch`` set them choose each process's share; the
    merged rows equal one process's (in this interpreter; the two-process version is ``-m slow``)."""
    single = run_benchmark(_config(tmp_path / "one"), service=service).rows
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        part = run_benchmark(_config(tmp_path / "two"), service=service).rows
        assert set(part["rank"]) <= {0, 1}
    merged = load_rows(tmp_path / "two")
    assert set(merged["rank"]) == {0, 1}
    assert merged[COMPARE].equals(single[COMPARE])


@pytest.mark.slow  # covered by the test above (same split, same rows) without two interpreter start-ups
def test_two_process_sharded_run_equals_one_process(tmp_path, service):
    single = run_benchmark(_config(tmp_path / "one"), service=service).rows
    cmd = [
        sys.executable,
        "-m",
        "eval",
        "run",
        "--model",
        "tiny-sdxl",
        "--prompts",
        str(tmp_path / "p.txt"),
        "--seeds",
        "0,1",
        "--steps",
        "2",
        "--methods",
        "standard,npnet,inversion",
        "--metrics",
        "toy-brightness,toy-colorfulness",
        "--device",
        "cpu",
        "--offline",
        "--out",
        str(tmp_path / "two"),
    ]
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    env = {**os.environ, "WORLD_SIZE": "2", "HF_HUB_OFFLINE": "1"}  # same thread count as this process
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for r in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    merged = load_rows(tmp_path / "two")
    assert set(merged["rank"]) == {0, 1}
    assert merged[COMPARE].equals(single[COMPARE])


def test_bad_configurations_fail_early(tmp_path, service):
    with pytest.raises(ValueError, match="unknown method"):
        run_benchmark(_config(tmp_path / "b", methods=("standard", "magic")), service=service)
    with pytest.raises(ValueError, match="pairwise"):
        run_benchmark(_config(tmp_path / "b", methods=("best-of-2",), metrics=("mps",)), service=service)
    with pytest.raises(ValueError, match="unknown scorer"):
        run_benchmark(_config(tmp_path / "b", metrics=("nope",)), service=service)
    assert torch.is_tensor(get_scorer("toy-brightness").score([], []))


def test_cli_run_and_report_end_to_end(tmp_path):
    from eval.__main__ import main

    out = tmp_path / "cli"
    main(
        [
            "run",
            "--preset",
            "Offline — tiny SDXL plumbing check (toy metrics)",
            "--limit",
            "2",
            "--seeds",
            "0",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--offline",
            "--out",
            str(out),
        ]
    )
    report = main(["report", str(out)])
    assert set(report.summary["method"]) == {"standard", "inversion", "npnet"}
    assert {"metric_table", "win_rates"} <= set(report.figures)
    for path in (report.html_path, report.csv_path, report.rows_csv_path, out / "report" / "figures"):
        assert Path(path).exists()
    manifest = (out / "manifest.json").read_text()
    assert '"git_commit"' in manifest and '"diffusers"' in manifest


class FailingService(CountingService):
    """Every generation fails; ``messages(n)`` gives the n-th error message."""

    def __init__(self, service, messages):
        super().__init__(service)
        self.messages, self.calls = messages, 0

    def generate(self, request):
        self.calls += 1
        raise RuntimeError(self.messages(self.calls))

    def generate_many(self, requests, *args, **kw):  # a failed batch: its samples then fail one by one
        raise RuntimeError(self.messages(self.calls + 1))


def test_repeated_failures_of_one_kind_stop_the_run_and_resume_later(tmp_path, service):
    config = _config(tmp_path / "oom", methods=("standard",), max_consecutive_failures=3)
    # Same type and message start, different details: one kind of failure.
    failing = FailingService(service, lambda n: f"the device ran out of memory while sampling (request {n})")
    result = run_benchmark(config, service=failing)
    assert failing.calls == 3 and result.counts["errors"] == 3 and result.counts["computed"] == 0
    assert result.failure.startswith("stopped after 3 samples in a row failed the same way (RuntimeError: ")
    assert "3 samples not run" in result.failure and not result.stopped
    assert result.rows["error"].notna().sum() == 3  # the failed samples are recorded, as before
    resumed = run_benchmark(config, service=service)
    assert resumed.failure is None and resumed.counts["computed"] == 6 and resumed.rows["error"].isna().all()


def test_a_run_whose_every_sample_failed_says_so(tmp_path, service):
    kinds = ["first kind of failure, long enough to compare", "second kind of failure, long enough too"]
    failing = FailingService(service, lambda n: kinds[n % 2])  # alternating kinds never make a streak of 2
    config = _config(tmp_path / "all", methods=("standard",), max_consecutive_failures=2)
    result = run_benchmark(config, service=failing)
    assert failing.calls == 6 and result.counts["errors"] == 6
    assert result.failure.startswith("all 6 samples attempted failed; the last error: RuntimeError: ")
    never = FailingService(service, lambda n: kinds[0])
    config = _config(tmp_path / "never", methods=("standard",), max_consecutive_failures=0)
    assert run_benchmark(config, service=never).counts["errors"] == 6  # 0: never stop early


def test_seeds_and_the_failure_limit_are_checked_up_front(tmp_path, service):
    from eval.seeds import parse_seeds

    assert parse_seeds("3, 0-2,1") == (3, 0, 1, 2)
    for text, reason in [("-1", "negative"), ("0-999999999", "at most"), ("x", "whole number"), ("", "no seeds")]:
        with pytest.raises(ValueError, match=reason):
            parse_seeds(text)
    for kw, reason in [
        ({"seeds": (-1,)}, "whole numbers"),
        ({"seeds": (0, 0)}, "repeat"),
        ({"seeds": (True,)}, "whole numbers"),
        ({"max_consecutive_failures": -1}, "max_consecutive_failures"),
    ]:
        with pytest.raises(ValueError, match=reason):
            run_benchmark(_config(tmp_path / "bad", **kw), service=service)
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made


def test_cli_exit_status_is_1_when_the_run_failed(tmp_path, monkeypatch, capsys):
    import pandas as pd

    import eval.benchmark
    from eval.__main__ import cli_main

    def failed_run(config):
        assert config.seeds == (0, 1, 2) and config.max_consecutive_failures == 4
        return eval.benchmark.BenchmarkResult(
            run_dir=Path(config.out), rows=pd.DataFrame(), failure="all 3 samples attempted failed; the last: X"
        )

    monkeypatch.setattr(eval.benchmark, "run_benchmark", failed_run)
    argv = ["run", "--model", "tiny-sdxl", "--prompts", "examples", "--seeds", "0-2", "--out", str(tmp_path)]
    assert cli_main([*argv, "--max-consecutive-failures", "4"]) == 1
    assert capsys.readouterr().err.splitlines() == ["error: all 3 samples attempted failed; the last: X"]
    assert cli_main(["run", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown eval preset 'nope'")
