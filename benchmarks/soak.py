"""Memory under a long day: the server's resident memory over many /generate calls on micro-turbo.

    python benchmarks/soak.py                                  # 500 sequential + 200 concurrent calls
    python benchmarks/soak.py --sequential 60 --concurrent 20  # a quick look
    python benchmarks/soak.py --app-arg=--max-sessions=10000   # Gradio's own session capacity (before the bound)

Starts ``python app.py --offline --device cpu --model micro-turbo`` on a free port of 127.0.0.1, warms it up,
then (1) makes ``--sequential`` /generate calls one after another and (2) ``--concurrent`` calls at once,
each through ``POST /gradio_api/call/generate`` as a hand-written client or curl sends it (so every call
is a new Gradio session, as a new visitor's is). The server's RSS (``VmRSS`` of its process) is read after
every sequential call and every 0.2 s during the burst. Prints, and writes to ``--out``, the
least-squares slope of RSS against the call number (MB per call) over the sequential calls after the
first ``--skip`` and over each half (a bound on kept sessions shows as a flat second half), RSS at
each stage, latencies and errors. Every loop is bounded (a count of calls, each
with a timeout), so the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CALL_TIMEOUT_S = 300.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def generate(url: str, seed: int) -> float:
    """One /generate call (standard + NPNet, the preset's 64x64 and 5 steps, the micro verifier); its seconds."""
    from rawhttp import call, result

    data = ["a red circle to the left of a blue square", "", seed, "micro-turbo", "", "ddim", 5, 5.0, 64, 64,
            ["standard", "npnet"], ["micro"], None, None, None]  # fmt: skip
    tick = time.perf_counter()
    stream = result(url, "generate", call(url, "generate", data), timeout=CALL_TIMEOUT_S)
    if "event: complete" not in stream:
        raise RuntimeError(f"call with seed {seed} failed: {stream[-300:]}")
    return time.perf_counter() - tick


def slope(values: list[float]) -> float:
    """Least-squares MB per call of a series sampled once per call."""
    return float(np.polyfit(np.arange(len(values)), np.asarray(values), 1)[0]) if len(values) > 1 else 0.0


def burst(url: str, pid: int, count: int) -> tuple[list[float], list[float], list[str]]:
    """``count`` concurrent calls; (latencies, RSS samples every 0.2 s, errors)."""
    samples, errors, done = [], [], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append(rss_mb(pid))

    def one(seed: int) -> float | None:
        try:
            return generate(url, seed)
        except Exception as err:  # counted in the report
            errors.append(str(err)[:200])
            return None

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(max_workers=count) as pool:
        latencies = [t for t in pool.map(one, range(10_000, 10_000 + count)) if t is not None]
    done.set()
    sampler.join(timeout=5)
    return latencies, samples, errors


def main(args: argparse.Namespace) -> dict:
    import tempfile

    from devserver import running_app

    server_args = ["--offline", "--device", "cpu", "--model", "micro-turbo", "--cache-examples", "off",
                   "--queue-size", str(max(16, args.concurrent + 8)), *args.app_arg]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="npnet-soak-") as tmp, running_app(Path(tmp), *server_args) as (url, proc):
        for seed in range(args.warmup):
            generate(url, seed)
        start = rss_mb(proc.pid)
        rss, latencies = [], []
        for i in range(args.sequential):
            latencies.append(generate(url, 100 + i))
            rss.append(rss_mb(proc.pid))
        concurrent_latencies, during, errors = burst(url, proc.pid, args.concurrent)
        after_burst = rss_mb(proc.pid)
        time.sleep(args.rest)
        rested = rss_mb(proc.pid)
    skip = min(args.skip, len(rss) // 2)
    kept = rss[skip:]
    report = {
        "app_args": args.app_arg,
        "sequential_calls": args.sequential,
        "concurrent_calls": args.concurrent,
        "rss_mb_after_warmup": round(start, 1),
        "rss_mb_after_sequential": round(rss[-1], 1) if rss else None,
        "slope_mb_per_call": round(slope(kept), 4),
        "slope_over_calls": f"{skip + 1}-{args.sequential}",
        "slope_first_half_mb_per_call": round(slope(rss[: len(rss) // 2]), 4),
        "slope_second_half_mb_per_call": round(slope(rss[len(rss) // 2 :]), 4),
        "sequential_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "rss_mb_peak_during_burst": round(max(during), 1) if during else None,
        "rss_mb_after_burst": round(after_burst, 1),
        "rss_mb_after_rest": round(rested, 1),
        "burst_growth_mb_per_call": round((after_burst - (rss[-1] if rss else start)) / max(1, args.concurrent), 4),
        "concurrent_p50_s": round(statistics.median(concurrent_latencies), 2) if concurrent_latencies else None,
        "errors": len(errors),
        "first_errors": errors[:3],
    }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({**report, "rss_mb_sequential": [round(v, 2) for v in rss]}, indent=1))
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequential", type=int, default=500, help="calls one after another")
    p.add_argument("--concurrent", type=int, default=200, help="calls at once, after the sequential ones")
    p.add_argument("--warmup", type=int, default=5, help="calls before the baseline (model loading, first use)")
    p.add_argument("--skip", type=int, default=50, help="sequential calls left out of the slope (allocator warm-up)")
    p.add_argument("--rest", type=float, default=5.0, help="seconds to wait before the last sample")
    p.add_argument("--app-arg", action="append", default=[], help="an extra app.py flag, e.g. --app-arg=--max-sessions=64")
    p.add_argument("--out", default=None, help="write the report and the per-call RSS series as JSON here")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
