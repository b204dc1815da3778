"""Resumable, shardable benchmark runs: methods x prompts x seeds -> images (cached) -> per-sample scores.

A run directory holds ``manifest.json`` (config, versions, git commit), ``rows.rank<r>.jsonl``
(one fsync-ed row per (prompt, seed, method); the latest row for a key wins) and ``images/``.
Killing a run loses at most the sample in flight; running the same command again resumes.  Under
``accelerate launch`` / ``torchrun`` each process takes samples ``rank, rank + world, ...`` and
``load_rows`` merges the rank files into exactly the single-process table.

Seeds (``seed_scheme``): "fixed" runs every prompt with every seed of ``seeds``; "paper" draws each
prompt's test seed uniformly in [0, 100] (paper App. D.5 / Table 19), one per base seed b of ``seeds``:
``numpy.random.default_rng([b, prompt_index]).integers(0, 101)`` (``paper_seed``; repeats within a
prompt dropped). Rows are keyed by (prompt index, drawn seed, method), so a run resumes either way.

Methods: ``standard``, ``npnet``, ``inversion`` (re-denoise), ``best-of-N`` (N seeds, the first being
the sample's own, the best by the verifier metric: N generations of compute) and ``npnet+best-of-N``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from eval.seeds import SEED_SCHEMES, _validate_seeds, candidate_seeds, prompt_seeds
from npnet.errors import UserError, check_whole_number
from npnet.io import JsonlTable, atomic_write_json, dist_rank_world, git_commit, shard, versions

if TYPE_CHECKING:
    import pandas as pd

# torch and pandas (eval.cache, load_rows) are imported where used: argument parsers import this module.
log = logging.getLogger(__name__)
BASE_METHODS = ("standard", "npnet", "inversion")
_BON = re.compile(r"^(npnet\+)?best-of-(\d+)$")
FAILURE_PREFIX = 40  # characters of an error message that make two failures "the same kind"
# Settings that change the images: a resumed run must agree on them.
GENERATION_FIELDS = (
    "model",
    "prompts",
    "column",
    "negative_prompt",
    "steps",
    "guidance_scale",
    "scheduler",
    "width",
    "height",
    "npnet",
    "inversion_guidance_scale",
    "redenoise_guidance_scale",
    "redenoise_steps",
)


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark run; ``None`` generation settings take the model preset's defaults."""

    model: str
    prompts: str | tuple[str, ...]
    out: str
    limit: int | None = None
    column: str | None = None
    seeds: tuple[int, ...] = (0,)  # "fixed": the seeds; "paper": base seeds of the per-prompt draws
    seed_scheme: str = "fixed"  # "fixed" | "paper" (one seed per prompt and base seed, in [0, 100])
    methods: tuple[str, ...] = ("standard", "npnet")
    metrics: tuple[str, ...] = ("hpsv2",)
    verifier: str | None = None  # best-of-N selection metric; default: the first metric
    negative_prompt: str = ""
    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    width: int | None = None
    height: int | None = None
    npnet: str | None = None
    inversion_guidance_scale: float | None = None
    redenoise_guidance_scale: float | None = None  # w_l; None: the preset's, else the sampling CFG
    redenoise_steps: int | None = None  # DDIM step size 1000/N; None: the sampling schedule
    device: str = "auto"
    offline: bool | None = None
    cpu_offload: bool = False  # enable_model_cpu_offload on CUDA (SD3.5 / Flux on smaller GPUs); not a generation setting
    # Stop after this many consecutive samples fail with the same kind of error (0: never stop).
    max_consecutive_failures: int = 5
    # Samples per pipeline call (their methods' images share it); None: the model preset's batch_size.
    batch_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["prompts"] = list(self.prompts) if isinstance(self.prompts, tuple) else self.prompts
        return data


@dataclass
class BenchmarkResult:
    run_dir: Path
    rows: pd.DataFrame
    stopped: bool = False  # should_stop() asked to stop
    counts: dict[str, int] = field(default_factory=dict)
    # Set when every attempted sample failed, or the run stopped after repeated failures of one kind.
    failure: str | None = None


def parse_method(method: str) -> tuple[str, int]:
    """(latent kind, number of candidate seeds) for a method name."""
    if method in BASE_METHODS:
        return method, 1
    match = _BON.match(method)
    if not match or int(match.group(2)) < 1:
        raise UserError(
            f"unknown method {method!r}; use {', '.join(BASE_METHODS)}, best-of-N or npnet+best-of-N"
        )
    return ("npnet" if match.group(1) else "standard"), int(match.group(2))


def _validate(config: BenchmarkConfig) -> None:
    for method in config.methods:
        parse_method(method)
    if not config.methods or not config.metrics or not config.seeds:
        raise UserError("a benchmark needs at least one method, one metric and one seed")
    _validate_seeds(tuple(config.seeds))
    if config.seed_scheme not in SEED_SCHEMES:
        raise UserError(
            f"unknown seed_scheme {config.seed_scheme!r}; choose fixed (every prompt uses --seeds) or paper "
            "(one seed per prompt drawn in [0, 100], App. D.5)"
        )
    check_whole_number("max_consecutive_failures", config.max_consecutive_failures, 0, " (0: never stop)")
    if config.batch_size is not None:
        check_whole_number("batch_size", config.batch_size, 1, " (samples per pipeline call)")
    if len(set(config.methods)) != len(config.methods):
        raise UserError(f"methods repeat: {config.methods}")
    verifier = config.verifier or config.metrics[0]
    if any(parse_method(m)[1] > 1 for m in config.methods) and verifier == "mps":
        raise UserError(
            "MPS is pairwise and cannot pick best-of-N alone; pass --verifier with another metric"
        )


def write_manifest(config: BenchmarkConfig, run_dir: Path, extra: dict[str, Any]) -> None:
    """Create the manifest, or check a resumed run's generation settings agree with it."""
    path = run_dir / "manifest.json"
    if path.exists():
        import json

        old = json.loads(path.read_text())["config"]
        new = config.to_dict()
        diff = [k for k in GENERATION_FIELDS if old.get(k) != new.get(k)]
        if diff:
            raise UserError(
                f"{run_dir} holds a run with other settings ({', '.join(diff)}: "
                f"{[old.get(k) for k in diff]}); use a new --out or the same settings to resume"
            )
    atomic_write_json(
        path,
        {
            "config": config.to_dict(),
            "versions": versions(),
            "git_commit": git_commit(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **extra,
        },
    )


def load_rows(run_dir: str | Path) -> pd.DataFrame:
    """All ranks' rows merged, latest row per (prompt_index, seed, method), sorted by that key."""
    import pandas as pd

    rows = []
    for path in sorted(Path(run_dir).glob("rows.rank*.jsonl")):
        rows.extend(JsonlTable(path).rows())
    if not rows:
        return pd.DataFrame(columns=["prompt_index", "prompt", "seed", "method"])
    frame = pd.DataFrame(rows).sort_values("finished").drop_duplicates("key", keep="last")
    return frame.sort_values(["prompt_index", "seed", "method"]).reset_index(drop=True)


class _Context:
    """What one process needs during a run: service, scorers, cache, resolved settings."""

    def __init__(self, config: BenchmarkConfig, service, scorer_factory: Callable):
        from eval.cache import ImageCache

        self.config = config
        self.service = service
        self.scorers = {name: scorer_factory(name) for name in config.metrics}
        verifier = config.verifier or config.metrics[0]
        self.verifier = self.scorers.get(verifier) or scorer_factory(verifier)
        self.cache = ImageCache(Path(config.out) / "images")
        self.npnet_hash = self._npnet_hash()
        self.batch_size = config.batch_size or service.preset(config.model).batch_size
        self.fresh: dict[str, Any] = {}  # images of the current batch by cache key (also in the cache)

    def _plans(self, seed: int, methods) -> dict[str, tuple[str, list[int]]]:
        return {m: (parse_method(m)[0], candidate_seeds(seed, parse_method(m)[1])) for m in methods}

    def prefetch(self, samples: list[tuple[int, str, int, list[str]]]) -> None:
        """Generate the missing images of a batch of samples, ``batch_size`` samples per pipeline call.

        Every image goes to the cache at once (a kill later in the batch loses none) and to ``fresh``,
        which ``images`` reads first. Calls are padded to the full batch, so an image does not depend on
        which samples share its batch (resume and sharding give the same floats). A failure here is
        only logged: the samples then generate one by one and record their own errors.
        """
        from eval.cache import image_key

        self.fresh = {}
        groups: dict[tuple[str, ...], dict[str, tuple]] = {}  # kinds -> cache keys by (prompt, seed)
        for _, prompt, seed, methods in samples:
            base = self.settings_for_key(prompt, 0)
            wanted = {(k, s) for k, seeds in self._plans(seed, methods).values() for s in seeds}
            missing: dict[int, list[tuple[str, str]]] = {}
            for kind, s in sorted(wanted):
                key = image_key(self.config.model, kind, prompt, s, base, self.npnet_hash)
                if not self.cache.path(key).exists():
                    missing.setdefault(s, []).append((kind, key))
            for s, items in missing.items():
                kinds = tuple(k for k, _ in items)
                groups.setdefault(kinds, {}).setdefault(f"{prompt}\0{s}", (prompt, s, items))
        for kinds, entries in groups.items():
            todo = list(entries.values())
            try:
                results = self.service.generate_many(
                    [self.request(prompt, s, kinds) for prompt, s, _ in todo],
                    samples_per_call=self.batch_size,
                    pad=True,
                )
            except Exception as err:  # noqa: BLE001 - the samples retry one by one and record errors
                log.warning("batch of %d samples failed (%s); generating them one by one", len(todo), err)
                continue
            for (_, _, items), result in zip(todo, results):
                for kind, key in items:
                    self.cache.put(key, result.images[kind])
                    self.fresh[key] = result.images[kind]

    def _npnet_hash(self) -> str | None:
        from eval.cache import module_hash

        if not any(parse_method(m)[0] == "npnet" for m in self.config.methods):
            return None
        return module_hash(self.service.npnet(self.config.model, self.config.npnet))

    def request(self, prompt: str, seed: int, kinds: tuple[str, ...]):
        from npnet.engine import GenerationRequest

        c = self.config
        return GenerationRequest(
            model=c.model,
            prompt=prompt,
            negative_prompt=c.negative_prompt,
            seed=int(seed),
            steps=c.steps,
            guidance_scale=c.guidance_scale,
            scheduler=c.scheduler,
            width=c.width,
            height=c.height,
            methods=kinds,
            npnet=c.npnet,
            inversion_guidance_scale=c.inversion_guidance_scale,
            redenoise_guidance_scale=c.redenoise_guidance_scale,
            redenoise_steps=c.redenoise_steps,
        )

    def settings_for_key(self, prompt: str, seed: int) -> dict[str, Any]:
        from npnet.engine import resolve_settings

        settings = resolve_settings(
            self.request(prompt, seed, ("standard",)), self.service.preset(self.config.model)
        )
        drop = ("prompt", "seed", "methods", "batched", "npnet", "model")
        return {k: v for k, v in settings.items() if k not in drop}

    def images(
        self, prompt: str, wanted: set[tuple[str, int]], base: dict[str, Any], timings: dict
    ) -> dict[tuple[str, int], Any]:
        """Images for (kind, seed) pairs (``base``: settings_for_key): cached, else one batched call per seed."""
        from eval.cache import image_key

        found, missing = {}, {}
        for kind, seed in sorted(wanted):
            key = image_key(self.config.model, kind, prompt, seed, base, self.npnet_hash)
            image = self.fresh.pop(key, None)
            image = self.cache.get(key) if image is None else image
            if image is None:
                missing.setdefault(seed, []).append((kind, key))
            else:
                found[(kind, seed)] = image
        for seed, items in missing.items():
            result = self.service.generate(self.request(prompt, seed, tuple(k for k, _ in items)))
            timings["generations"] = timings.get("generations", 0) + len(items)
            timings["seconds"] = timings.get("seconds", 0.0) + result.timings.get("total", 0.0)
            for kind, key in items:
                self.cache.put(key, result.images[kind])
                found[(kind, seed)] = result.images[kind]
        return found

    def pick(self, prompt: str, candidates: list) -> int:
        """Index of the verifier's best candidate."""
        scores = self.verifier.score(candidates, [prompt] * len(candidates))
        return int(scores.argmax() if self.verifier.higher_is_better else scores.argmin())


def _run_sample(
    ctx: _Context, index: int, prompt: str, seed: int, methods: list[str], rank: int
) -> list[dict]:
    from eval.cache import image_key

    plans = ctx._plans(seed, methods)
    wanted = {(kind, s) for kind, seeds in plans.values() for s in seeds}
    timings: dict[str, float] = {}
    base = ctx.settings_for_key(prompt, 0)  # resolved once per sample: the cache key's settings
    pool = ctx.images(prompt, wanted, base, timings)
    chosen = {}
    for method, (kind, seeds) in plans.items():
        candidates = [pool[(kind, s)] for s in seeds]
        best = ctx.pick(prompt, candidates) if len(candidates) > 1 else 0
        chosen[method] = (seeds[best], candidates[best], kind)
    images = [chosen[m][1] for m in methods]
    scores = {
        name: scorer.score(images, [prompt] * len(images)).tolist() for name, scorer in ctx.scorers.items()
    }
    rows = []
    for i, method in enumerate(methods):
        chosen_seed, _, kind = chosen[method]
        key = image_key(ctx.config.model, kind, prompt, chosen_seed, base, ctx.npnet_hash)
        rows.append(
            {
                "key": f"{index}:{seed}:{method}",
                "prompt_index": index,
                "prompt": prompt,
                "seed": int(seed),
                "method": method,
                "seed_scheme": ctx.config.seed_scheme,
                "model": ctx.config.model,
                "chosen_seed": chosen_seed,
                "generations": len(plans[method][1]),
                "image": str(ctx.cache.path(key)),
                "error": None,
                "rank": rank,
                "finished": time.time(),
                **{k: v[i] for k, v in scores.items()},
            }
        )
    return rows


def _error_rows(
    index: int, prompt: str, seed: int, methods: list[str], err: Exception, rank: int
) -> list[dict]:
    return [
        {
            "key": f"{index}:{seed}:{m}",
            "prompt_index": index,
            "prompt": prompt,
            "seed": int(seed),
            "method": m,
            "error": f"{type(err).__name__}: {err}",
            "rank": rank,
            "finished": time.time(),
        }
        for m in methods
    ]


def _complete(row: dict, metrics: tuple[str, ...]) -> bool:
    """A row counts when it has no error and a finite value for every metric (NaN = missing in pandas)."""
    has_error = isinstance(row.get("error"), str) and bool(row["error"])
    return bool(row) and not has_error and all(_finite(row.get(m)) for m in metrics)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and value == value


def _todo(config: BenchmarkConfig, done: dict[str, dict], index: int, seed: int) -> list[str]:
    return [m for m in config.methods if not _complete(done.get(f"{index}:{seed}:{m}", {}), config.metrics)]


def benchmark_prompts(config: BenchmarkConfig) -> list[str]:
    """The run's prompts: the given list (stripped, none empty) or the named set, cut to ``limit``."""
    if isinstance(config.prompts, (tuple, list)):
        prompts = [p.strip() for p in config.prompts]
        if not all(prompts):
            raise UserError("empty prompt in the prompt list")
    else:
        from eval.prompts import load_prompts

        prompts = load_prompts(config.prompts, limit=config.limit, column=config.column)
    return prompts[: config.limit] if config.limit else prompts


def run_benchmark(
    config: BenchmarkConfig,
    service=None,
    scorer_factory: Callable | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    rank: int | None = None,
    world: int | None = None,
) -> BenchmarkResult:
    """Run (or resume) a benchmark; returns the merged rows of every rank finished so far."""
    _validate(config)
    prompts = benchmark_prompts(config)
    run_dir = _make_run_dir(config.out)
    if service is None:
        from npnet.engine import GoldenNoiseService

        service = GoldenNoiseService(
            device=config.device, offline=config.offline, cpu_offload=config.cpu_offload, progress=False
        )
    if scorer_factory is None:
        from eval.metrics import get_scorer

        def scorer_factory(name):
            return get_scorer(name, device=str(service.device))

    env_rank, env_world = dist_rank_world()
    rank, world = (env_rank if rank is None else rank), (env_world if world is None else world)
    ctx = _Context(config, service, scorer_factory)
    if rank == 0:
        settings = ctx.settings_for_key(prompts[0], 0) if prompts else {}
        extra = {
            "world_size": world,
            "n_prompts": len(prompts),
            "npnet_hash": ctx.npnet_hash,
            "settings": settings,
            "batch_size": ctx.batch_size,
        }
        write_manifest(config, run_dir, extra)
    samples = [(i, p, s) for i, p in enumerate(prompts) for s in prompt_seeds(config, i)]
    mine = list(shard(samples, rank, world))
    done = {row["key"]: row for row in load_rows(run_dir).to_dict("records")}
    table = JsonlTable(run_dir / f"rows.rank{rank}.jsonl")
    counts = {"samples": len(mine), "computed": 0, "skipped": 0, "errors": 0}
    stopped, failure = False, None
    streak, streak_kind, last_error = 0, None, ""
    bar = tqdm(mine, desc=f"benchmark {config.model} (rank {rank}/{world})", disable=None)
    window = ctx.batch_size  # batches are fixed windows of this process's samples (same on resume)
    for n, (_, (index, prompt, seed)) in enumerate(bar):
        if should_stop is not None and should_stop():
            stopped = True
            break
        todo = _todo(config, done, index, seed)
        if n % window == 0 and window > 1:
            batch = [(i, p, s, _todo(config, done, i, s)) for _, (i, p, s) in mine[n : n + window]]
            batch = [item for item in batch if item[3]]
            if batch:
                ctx.prefetch(batch)
        if not todo:
            counts["skipped"] += 1
        else:
            try:
                rows = _run_sample(ctx, index, prompt, seed, todo, rank)
                counts["computed"] += 1
                streak, streak_kind = 0, None
            except Exception as err:  # recorded per sample, retried on resume
                log.warning("sample %s seed %s failed: %s", index, seed, err)
                rows = _error_rows(index, prompt, seed, todo, err, rank)
                counts["errors"] += 1
                kind = _failure_kind(err)
                streak = streak + 1 if kind == streak_kind else 1
                streak_kind, last_error = kind, _error_text(err)
            for row in rows:
                table.append(row)
            limit = config.max_consecutive_failures
            if limit and streak >= limit:
                failure = (
                    f"stopped after {streak} samples in a row failed the same way ({last_error}); "
                    f"{len(mine) - n - 1} samples not run. Fix the cause and run again to resume in {run_dir}"
                )
                log.error(failure)
                break
        if progress is not None:
            progress(n + 1, len(mine), f"{prompt[:40]} (seed {seed})")
    if failure is None and counts["errors"] and not counts["computed"]:
        failure = f"all {counts['errors']} samples attempted failed; the last error: {last_error}"
        log.error(failure)
    return BenchmarkResult(
        run_dir=run_dir, rows=load_rows(run_dir), stopped=stopped, counts=counts, failure=failure
    )


def _make_run_dir(out: str | Path) -> Path:
    """Create the run folder before any model loads; an ``OSError`` says which folder cannot be made."""
    run_dir = Path(out)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(run_dir, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(run_dir))
    except OSError as err:
        raise type(err)(f"cannot use {run_dir} as the run folder: {err.strerror or err}") from err
    return run_dir


def _error_text(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _failure_kind(err: BaseException) -> tuple[str, str]:
    """Two failures are of the same kind when type and message start agree (seeds, sizes may differ)."""
    return type(err).__name__, " ".join(str(err).split())[:FAILURE_PREFIX]
