"""``python -m cli generate``: PNGs per method, meta.json, subcommand registry, clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import cli.__main__ as cli

ROOT = Path(__file__).resolve().parents[1]


def test_generate_writes_one_png_per_method_and_meta(tmp_path):
    argv = ["generate", "--model", "tiny-sdxl", "--prompt", "a red cube", "--seed", "3", "--steps", "2"]
    argv += ["--method", "standard,npnet,inversion", "--cfg", "4.5", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    for method in ("standard", "npnet", "inversion"):
        with Image.open(tmp_path / f"{method}.png") as image:
            assert image.size == (64, 64)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["settings"]["steps"] == 2 and meta["settings"]["guidance_scale"] == 4.5
    assert meta["settings"]["methods"] == ["standard", "npnet", "inversion"]
    assert {"torch", "diffusers", "npnet", "transformers"} <= set(meta["versions"])
    assert {"encode", "npnet", "redenoise", "denoise", "total"} <= set(meta["timings"])
    assert meta["peak_memory"]["rss_high_water"] > 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_several_seeds_write_one_folder_each(tmp_path):
    argv = ["generate", "--model", "tiny-hunyuan-dit", "--prompt", "a cat", "--seed", "0,1", "--steps", "2"]
    argv += [
        "--size",
        "64x64",
        "--scheduler",
        "euler",
        "--sequential",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(argv) == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert [run["seed"] for run in meta["runs"]] == [0, 1]
    assert meta["runs"][1]["settings"]["batched_used"] is False
    for seed in (0, 1):
        assert {p.name for p in (tmp_path / f"seed{seed}").iterdir()} == {"standard.png", "npnet.png"}


def test_bad_inputs_exit_2_with_the_reason(tmp_path, capsys):
    base = ["generate", "--model", "tiny-sdxl", "--prompt", "a cube", "--out", str(tmp_path), "--no-progress"]
    assert cli.main([*base, "--size", "64x65"]) == 2
    assert "height 65 -> use 64 or 72" in capsys.readouterr().err
    assert cli.main([*base, "--scheduler", "dpm9"]) == 2
    assert "unknown scheduler 'dpm9'" in capsys.readouterr().err
    assert cli.main([*base[:2], "sdxl", *base[3:]]) == 2
    assert "tiny-sdxl" in capsys.readouterr().err
    assert not (tmp_path / "meta.json").exists()


def test_seed_lists_and_ranges_are_checked_before_they_are_built(tmp_path, capsys):
    base = ["generate", "--model", "tiny-sdxl", "--prompt", "a cube", "--out", str(tmp_path), "--no-progress"]
    parser = cli.build_parser(base)
    assert parser.parse_args([*base, "--seed", "0-3,2,7"]).seed == (0, 1, 2, 3, 7)
    for seed, reason in [
        ("-1", "negative"),
        ("1.5", "not a whole number"),
        ("3-1", "runs backwards"),
        ("0-999999999", "at most 10000"),  # counted, not expanded
        ("9" * 40, "too large"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*base, "--seed", seed])
        lines = capsys.readouterr().err.splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1 and reason in lines[0], lines


def test_an_unwritable_output_fails_with_status_1_before_any_model_loads(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    argv = ["generate", "--model", "tiny-sdxl", "--prompt", "a cube", "--out", str(tmp_path / "afile" / "out")]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write output folder {tmp_path / 'afile' / 'out'}: {tmp_path / 'afile'} is a file, not a folder"
    )


def test_only_the_chosen_command_gets_its_full_parser():
    parser = cli.build_parser(["generate", "--help"])
    choices = parser._subparsers._group_actions[0].choices
    assert "--method" in choices["generate"].format_help()
    assert "--scorer" not in choices["collect"].format_help()  # collect's module was not imported


def test_module_entry_point_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and all(c in out.stdout for c in cli.COMMANDS)


def test_the_old_entry_point_says_where_the_commands_went():
    out = subprocess.run([sys.executable, "-m", "npnet", "generate"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and "python -m cli" in out.stderr
