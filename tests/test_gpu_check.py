"""benchmarks/gpu_check/: the CPU plumbing run on tiny-sdxl end to end, the golden-vs-fp32 comparison,
the error messages, and (marker ``gpu``) the real SDXL check on a CUDA machine with the hub files cached."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check.__main__ import build_parser, main, run_check
from eval.metrics import PAPER_METRICS
from npnet.diffusion.presets import MODEL_PRESETS, is_cached
from npnet.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CHECKS = {"pairs", "golden_vs_fp32", "timing", "npnet_memory", "scores", "eval"}
SDXL_REPO = MODEL_PRESETS["sdxl"].hub_id


def _args(out: Path, *extra: str):
    return build_parser().parse_args(["--out", str(out), *extra])


@pytest.fixture(scope="module")
def plumbing(tmp_path_factory):
    """One CPU plumbing run: tiny-sdxl, random-weight scorers, 2 steps, the 10-prompt eval preset."""
    out = tmp_path_factory.mktemp("gpu-check")
    args = _args(out, "--model", "tiny-sdxl", "--device", "cpu", "--random-scorers", "tiny")
    args.repeats, args.steps = 2, 2
    return out, main(args)


def test_plumbing_run_writes_the_report_with_every_check(plumbing):
    out, report = plumbing
    saved = json.loads((out / "report.json").read_text())
    assert saved["passed"] is True and report["passed"] is True
    assert set(saved["checks"]) == CHECKS
    env = saved["environment"]
    assert env["device"] == "cpu" and env["dtype"] == "float32" and env["device_name"]
    assert {"torch", "diffusers"} <= set(env["versions"])
    assert saved["scores_meaningless"] is True
    assert len(list((out / "images").glob("pair*-*.png"))) == 2 * len(gpu_check.PAIRS)
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# NPNet GPU check: PASS") and "meaningless" in markdown
    assert "Table 11" in markdown and "Table 2" in markdown


def test_plumbing_checks_pass_with_the_expected_contents(plumbing):
    _, report = plumbing
    checks = report["checks"]
    assert checks["pairs"]["expected_latent_shape"] == [1, 4, 8, 8]
    golden = checks["golden_vs_fp32"]
    assert golden["passed"] and golden["engine_npnet_dtype"] == "torch.float32"
    assert golden["max_abs_diff"] <= gpu_check.GOLDEN_ATOL
    assert set(checks["scores"]["metrics"]) == set(PAPER_METRICS)
    assert "npnet_preference_pct" in checks["scores"]["metrics"]["mps"]
    timing = checks["timing"]
    assert timing["npnet_forward_ms"] > 0 and timing["unet_cfg_step_ms"] > 0
    assert timing["passed"] is None  # not judged on the random-weight model
    assert "process_peak_rss" in report["memory"]["kind"] and report["memory"]["generation_peak_mb"] > 0
    ev = checks["eval"]
    assert ev["passed"] and ev["limit"] == 10 and ev["rows"] == 10 * len(ev["methods"])
    npnet_rows = [r for r in ev["summary"] if r["method"] == "npnet"]
    assert {r["metric"] for r in npnet_rows} == set(ev["metrics"])
    assert all(r["win_rate"] is not None for r in npnet_rows if r["metric"] != "mps")


def test_report_cites_the_paper_figures(plumbing):
    paper = plumbing[1]["paper"]
    assert paper["table2_sdxl"]["pickapic"]["npnet"]["imagereward"] == 65.01
    assert paper["table2_sdxl"]["pickapic"]["standard"]["clipscore"] == 0.8204
    assert paper["table11"]["ddim"]["standard"]["time_s"] == 11.69
    assert paper["table11"]["dpm++2m"]["npnet"]["time_s"] == 10.43
    assert paper["npnet_memory_mb"] == 500 and "Table 11" in paper["sources"]["table11"]


def test_golden_comparison_passes_exact_and_fp16_rounded_and_fails_perturbed():
    golden = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert gpu_check.compare_golden(golden, golden.clone())["bitwise_equal"]
    rounded = gpu_check.compare_golden(golden.half().float(), golden)  # an fp16 cast of the output
    assert rounded["passed"] and not rounded["bitwise_equal"]
    perturbed = golden.clone()
    perturbed[2, 1, 3, 5] += 1e-2  # one element off by 1e-2
    result = gpu_check.compare_golden(perturbed, golden)
    assert not result["passed"] and result["max_abs_diff"] == pytest.approx(1e-2, rel=1e-3)
    assert not gpu_check.compare_golden(golden * (1 + 5e-3), golden)["passed"]
    assert not gpu_check.compare_golden(golden[:2], golden)["passed"]  # shapes differ


def test_cuda_requested_without_cuda_says_to_pass_the_cpu_plumbing_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0", None):
        with pytest.raises(UserError, match="--device cpu --model tiny-sdxl"):
            gpu_check.choose_device(device)
    with pytest.raises(UserError, match="--device cpu --model tiny-sdxl"):
        main(_args(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # failed before any work


def test_float16_on_the_cpu_is_refused():
    with pytest.raises(UserError, match="float16"):
        gpu_check.choose_dtype("float16", "tiny-sdxl", torch.device("cpu"))
    assert gpu_check.choose_dtype(None, "tiny-sdxl", torch.device("cpu")) == torch.float32


@pytest.mark.skipif(is_cached(SDXL_REPO), reason="SDXL is cached here: the check would load it")
def test_hub_offline_names_the_repo_to_download(tmp_path):
    config = gpu_check.CheckConfig(out=str(tmp_path), model="sdxl", device="cpu", offline=True)
    with pytest.raises(UserError, match=f"huggingface-cli download {SDXL_REPO}"):
        run_check(config)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the default device would start the real check")
def test_command_line_without_cuda_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: CUDA is not available")


def _gpu_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if not is_cached(SDXL_REPO):
        return (
            "needs the hub files cached (tests run offline): run python -m benchmarks.gpu_check once online, "
            f"or huggingface-cli download {SDXL_REPO}"
        )
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_skip_reason() is not None, reason=_gpu_skip_reason() or "")
def test_real_sdxl_check_on_cuda(tmp_path):
    report = main(_args(tmp_path))
    checks = report["checks"]
    assert report["environment"]["dtype"] == "float16"
    assert checks["pairs"]["expected_latent_shape"] == [1, 4, 128, 128]
    assert checks["golden_vs_fp32"]["passed"], checks["golden_vs_fp32"]
    assert report["passed"], {name: check.get("passed") for name, check in checks.items()}
