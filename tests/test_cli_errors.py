"""Every command line answers bad input with one stderr line, no traceback, and a fixed exit status.

2: bad usage (argparse, ``UserError`` / ``ValueError``); 1: a failure (``OSError``: unwritable output, missing
input file; a run whose every sample failed); 130: interrupted. All cases fail during validation, before any
model loads. One case per entry point (``python -m cli``, ``python -m eval``, ``python app.py``) runs as a real
subprocess, so the interpreter's own exit path is checked; the others run the same ``__main__`` in this
interpreter (``runpy``, argv and stdio swapped), which is the same code without ~3 s of imports each.
"""

import contextlib
import io
import os
import runpy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli.common import RunFailed, run_command

ROOT = Path(__file__).resolve().parents[1]
NPNET = "assets/micro/npnet.safetensors"
GEN = ["generate", "--model", "tiny-sdxl", "--prompt", "a cube", "--no-progress"]
COLLECT = ["collect", "--model", "tiny-sdxl", "--prompts", "examples", "--scorer", "toy-brightness"]
EVAL = ["run", "--model", "tiny-sdxl", "--prompts", "examples", "--metrics", "toy-brightness", "--offline"]
USAGE, FAILURE = 2, 1

# (id, argv after the interpreter ({tmp}: a folder with prepared files), exit status, a piece of the line)
CASES = [
    ("cli-no-command", ["-m", "cli"], USAGE, "choose a command"),
    ("cli-unknown-command", ["-m", "cli", "paint"], USAGE, "invalid choice"),
    ("generate-huge-range", ["-m", "cli", *GEN, "--out", "{tmp}/g", "--seed", "0-999999999"], USAGE, "at most"),
    ("collect-zero-seeds", ["-m", "cli", *COLLECT, "--out", "{tmp}/c", "--seeds-per-prompt", "0"], USAGE, ">= 1"),
    ("collect-missing-prompts", ["-m", "cli", *COLLECT[:4], "{tmp}/none.txt", *COLLECT[5:], "--out", "{tmp}/c"],
     USAGE, "none.txt"),
    ("collect-unwritable-out", ["-m", "cli", *COLLECT, "--out", "/proc/npnet-out"], FAILURE, "/proc/npnet-out"),
    ("train-missing-data", ["-m", "cli", "train", "--data", "{tmp}/none", "--out", "{tmp}/t"], FAILURE,
     "does not exist"),
    ("convert-unwritable-target", ["-m", "cli", "convert", NPNET, "/proc/x.safetensors"], FAILURE, "cannot write"),
    ("convert-target-under-file", ["-m", "cli", "convert", NPNET, "{tmp}/afile/x.safetensors"], FAILURE,
     "not a folder"),
    ("convert-text-as-pth", ["-m", "cli", "convert", "{tmp}/x.pth", "{tmp}/o.safetensors"], USAGE,
     "not an NPNet checkpoint"),
    ("convert-bad-layout", ["-m", "cli", "convert", NPNET, "{tmp}/o.x", "--to", "onnx"], USAGE, "--to"),
    ("import-missing-npz-dir", ["-m", "cli", "import-official", "--npz-dir", "{tmp}/none", "--jsonl",
     "{tmp}/junk.jsonl", "--out", "{tmp}/npd"], FAILURE, "--npz-dir"),
    ("import-missing-jsonl", ["-m", "cli", "import-official", "--npz-dir", "{tmp}/empty", "--jsonl",
     "{tmp}/none.jsonl", "--out", "{tmp}/npd"], FAILURE, "--jsonl"),
    ("import-zero-shard-size", ["-m", "cli", "import-official", "--npz-dir", "{tmp}/empty", "--jsonl",
     "{tmp}/junk.jsonl", "--out", "{tmp}/npd", "--shard-size", "0"], USAGE, "--shard-size"),
    ("micro-no-subcommand", ["-m", "cli", "micro"], USAGE, "required"),
    ("micro-zero-threads", ["-m", "cli", "micro", "--threads", "0", "check-generator"], USAGE, "--threads"),
    ("micro-npnet-negative-seed", ["-m", "cli", "micro-npnet", "evaluate", "--run", "{tmp}/r", "--eval-seeds",
     "-1"], USAGE, "negative"),
    ("eval-negative-seed", ["-m", "eval", *EVAL, "--out", "{tmp}/e", "--seeds", "-1"], USAGE, "negative"),
    ("eval-huge-range", ["-m", "eval", *EVAL, "--out", "{tmp}/e", "--seeds", "0-999999999"], USAGE, "at most"),
    ("eval-bad-size", ["-m", "eval", *EVAL, "--out", "{tmp}/e", "--size", "64x"], USAGE, "WIDTHxHEIGHT"),
    ("eval-unknown-preset", ["-m", "eval", "run", "--preset", "nope", "--out", "{tmp}/e"], USAGE, "nope"),
    ("eval-unwritable-out", ["-m", "eval", *EVAL, "--out", "/proc/npnet-run"], FAILURE, "/proc/npnet-run"),
    ("eval-no-out", ["-m", "eval", *EVAL], USAGE, "--out"),
    ("eval-report-no-run", ["-m", "eval", "report", "{tmp}/none"], USAGE, "not a benchmark run"),
    ("eval-report-no-arg", ["-m", "eval", "report"], USAGE, "run_dir"),
    ("app-queue-size-0", ["app.py", "--queue-size", "0"], USAGE, "--queue-size"),
    ("app-bad-npnet", ["app.py", "--offline", "--device", "cpu", "--npnet", "{tmp}/x.pth"], USAGE, "x.pth"),
]


def _ids(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "afile").write_text("not a folder\n")
    (tmp / "x.pth").write_text("hello, not a checkpoint\n")
    (tmp / "junk.jsonl").write_text("not json\n")
    (tmp / "empty").mkdir()
    return tmp


# real subprocesses: one per entry point (the app ones would start a server if validation let them through)
SUBPROCESS = {"cli-no-command", "eval-no-out", "app-queue-size-0", "app-bad-npnet"}


def _in_process(argv: list[str]) -> SimpleNamespace:
    """Run ``python -m MODULE args`` in this interpreter; the exit status as the interpreter would give it."""
    assert argv[0] == "-m", argv
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = [argv[1], *argv[2:]]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit_:
                code = 0 if exit_.code is None else exit_.code
                if not isinstance(code, int):  # sys.exit("message"): the interpreter prints it, exits 1
                    print(code, file=sys.stderr)
                    code = 1
    finally:
        sys.argv = saved
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(scope="module")
def results(request, workdir):
    """The selected subprocess cases started up front, two at a time; in-process cases run when asked."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    selected = {
        item.callspec.params["case_id"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_bad_input_is_one_line_and_an_exit_status"
    }

    def argv_of(argv):
        return [a.replace("{tmp}", str(workdir)) for a in argv]

    def run(argv):
        cmd = [sys.executable, *argv_of(argv)]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    pool = ThreadPoolExecutor(max_workers=2)
    futures = {}
    for case in CASES:
        case_id, argv = (case.values if hasattr(case, "values") else case)[:2]
        if case_id in selected and case_id in SUBPROCESS:
            futures[case_id] = pool.submit(run, argv)
    yield lambda case_id, argv: futures[case_id].result() if case_id in SUBPROCESS else _in_process(argv_of(argv))
    pool.shutdown(wait=True)


@pytest.mark.parametrize(("case_id", "argv", "status", "fragment"), CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_is_one_line_and_an_exit_status(results, case_id, argv, status, fragment, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = results(case_id, argv)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.returncode == status, out.stderr
    assert len(lines) == 1, out.stderr
    assert "error" in lines[0] and fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (ValueError("bad\nvalue"), 2, "error: bad; value"),
        (FileNotFoundError(2, "No such file or directory", "/x/y"), 1, "error: No such file or directory: /x/y"),
        (PermissionError("cannot write /x"), 1, "error: cannot write /x"),
        (RunFailed("every sample failed"), 1, "error: every sample failed"),
    ],
)
def test_run_command_maps_exceptions_to_one_line(capsys, error, status, line):
    def fail():
        raise error

    assert run_command(fail) == status
    assert capsys.readouterr().err == line + "\n"


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        run_command(lambda: {}["missing"])


def test_every_subprocess_case_exists():
    assert SUBPROCESS <= {_ids(case) for case in CASES}
