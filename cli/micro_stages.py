"""The micro world's NPNet stages, run through the project's general code paths (no micro-only path).

A composition root: it wires the micro verifier (the scorer) and the micro captions (the prompts) into
the library's collection and training, and the eval benchmark into the evaluation.

* collect  -> ``npnet.data.collect.collect`` (paper Alg. 1) with the micro preset and ``MicroVerifier`` as the filter
* train    -> ``npnet.training.train.train`` (Alg. 2) with the "micro" NPNet preset (or an ablated copy of it)
* evaluate -> ``eval.benchmark.run_benchmark`` + ``eval.stats.summarize`` with the "micro" scorer

A run folder holds ``world.json`` (which generator made it), ``npd/`` (the noise prompt dataset),
``npnet/<variant>/`` (training runs) and ``eval/<variant>-steps<N>/`` (benchmark runs). Every stage resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cli.common import RunFailed
from eval.benchmark import BenchmarkConfig, run_benchmark
from eval.report import run_rows
from eval.stats import summarize
from npnet.checkpoints import load_npnet
from npnet.data.collect import CollectConfig, collect
from npnet.data.dataset import NoisePairDataset, read_manifest
from npnet.diffusion.presets import MODEL_PRESETS
from npnet.diffusion.sampling import encode_prompt, run_pipeline, with_scheduler
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.errors import UserError
from npnet.io import atomic_write_json
from npnet.model import NPNET_PRESETS
from npnet.training.train import TrainConfig, train
from npnet.worlds.micro.grammar import heldout_captions, train_captions
from npnet.worlds.micro.pipeline import GENERATOR_DIR, load_micro_pipeline
from npnet.worlds.micro.verifier import MicroVerifier

MODEL = "micro"
# Paper Table 4 ablations, as changes of the training run: (NPNetConfig changes, TrainConfig changes).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": ({}, {}),
    "no-svd": ({"use_svd_branch": False}, {}),
    "no-residual": ({"use_residual_branch": False}, {}),
    "no-select": ({}, {"select": False}),
}


@dataclass(frozen=True)
class StageSettings:
    """Settings shared by the stages of one micro NPNet experiment (paper App. A.5 scaled to the micro world)."""

    run: str
    generator: str | None = None  # pipeline folder; default assets/micro/generator
    seeds_per_prompt: int = 6
    prompt_limit: int | None = None  # first N training captions
    collect_steps: int = 10  # DDIM steps of sampling and re-denoise during collection (paper: 10)
    cfg: float | None = None  # w_l; None: the micro preset's CFG
    inversion_cfg: float = 1.0  # w_w
    margin: float = 0.0  # keep iff s_0 + m < s'_0 (stored with every pair)
    train_margin: float | None = None  # re-apply the selection with another margin when training
    scheduler: str = "ddim"
    seed_base: int = 0
    shard_size: int = 64
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    train_seed: int = 0
    eval_prompts: str = "micro-heldout"
    eval_limit: int | None = None
    eval_seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "cpu"
    sampling_batch_size: int | None = None  # samples per pipeline call (collect, evaluate); None: the preset's

    @property
    def root(self) -> Path:
        return Path(self.run)

    @property
    def npd(self) -> Path:
        return self.root / "npd"

    def npnet_dir(self, variant: str) -> Path:
        check_variant(variant)
        return self.root / "npnet" / variant

    def npnet_path(self, variant: str) -> Path:
        return self.npnet_dir(variant) / "best" / "npnet.safetensors"

    def eval_dir(self, variant: str, steps: int | None) -> Path:
        return self.root / "eval" / f"{variant}-steps{steps or 'default'}"


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")


# -- the world: which generator, which NPNet ----------------------------------------------------------
def generator_dir(settings: StageSettings) -> Path:
    return Path(settings.generator) if settings.generator else GENERATOR_DIR


def generator_fingerprint(folder: str | Path) -> str:
    """sha256 over the generator's weight files (names and bytes): identifies the world a run belongs to."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise UserError(
            f"{folder} holds no safetensors weights; pass --generator with a micro pipeline folder"
        )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_world(settings: StageSettings) -> dict[str, str]:
    """Record (or check) the generator of this run: a run never mixes images of two generators."""
    folder = generator_dir(settings)
    world = {"generator": str(folder), "fingerprint": generator_fingerprint(folder)}
    path = settings.root / "world.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old["fingerprint"] != world["fingerprint"]:
            raise UserError(
                f"{settings.root} was made with generator {old['generator']} ({old['fingerprint']}); "
                f"{folder} is another ({world['fingerprint']}). Use a new --run folder"
            )
        return old
    atomic_write_json(path, world)
    return world


def micro_presets(settings: StageSettings) -> dict:
    """The model registry with the micro preset's builder bound to this run's generator folder."""
    check_world(settings)
    builder = functools.partial(load_micro_pipeline, path=generator_dir(settings))
    micro = dataclasses.replace(MODEL_PRESETS[MODEL], builder=builder, assets=())
    return {**MODEL_PRESETS, MODEL: micro}


def _service(settings: StageSettings) -> GoldenNoiseService:
    return GoldenNoiseService(device=settings.device, offline=True, progress=False, presets=micro_presets(settings))


# -- stages ---------------------------------------------------------------------------------------------
def collect_stage(settings: StageSettings, progress: bool = True) -> dict[str, Any]:
    """Alg. 1 on the training captions x seeds with the micro verifier as the filter; resumes.

    Several processes (RANK / WORLD_SIZE set, e.g. ``torchrun --nproc_per_node 2``) split the shards.
    """
    prompts = train_captions()[: settings.prompt_limit] if settings.prompt_limit else train_captions()
    config = CollectConfig(
        model=MODEL,
        out=str(settings.npd),
        seeds_per_prompt=settings.seeds_per_prompt,
        steps=settings.collect_steps,
        cfg=settings.cfg,
        inversion_cfg=settings.inversion_cfg,
        margin=settings.margin,
        scheduler=settings.scheduler,
        seed_base=settings.seed_base,
        shard_size=settings.shard_size,
        scorer_name="micro",
        batch_size=settings.sampling_batch_size,
    )
    result = collect(_service(settings), config, prompts, MicroVerifier(), progress=progress)
    record = npd_record(settings.npd) | {
        "prompts": len(prompts),
        "seeds_per_prompt": settings.seeds_per_prompt,
        "seconds_this_call": result.seconds,
        "collected_this_call": result.collected,
        "seconds_per_pair": result.seconds_per_sample,
    }
    if result.collected:  # keep the timing of the call that did the work (one file per process)
        atomic_write_json(settings.root / f"collect.rank{result.rank}.json", record)
    return record


def npd_record(npd: Path) -> dict[str, Any]:
    """Pairs, kept pairs and fraction, mean scores and how often x'_T scored better / worse than x_T."""
    rows = read_manifest(npd)
    n, kept = len(rows), sum(bool(r["kept"]) for r in rows)
    return {
        "pairs": n,
        "kept": kept,
        "kept_fraction": kept / n if n else None,
        "mean_score_standard": sum(r["score_standard"] for r in rows) / n if n else None,
        "mean_score_inversion": sum(r["score_inversion"] for r in rows) / n if n else None,
        "inversion_better": sum(r["score_inversion"] > r["score_standard"] for r in rows),
        "inversion_worse": sum(r["score_inversion"] < r["score_standard"] for r in rows),
    }


def train_config(settings: StageSettings, variant: str, epochs: int | None = None):
    """The ``npnet.training.train.TrainConfig`` of one variant (full model or a Table 4 ablation)."""
    check_variant(variant)
    model_changes, train_changes = VARIANTS[variant]
    preset = dataclasses.replace(NPNET_PRESETS[MODEL], **model_changes) if model_changes else MODEL
    return TrainConfig(
        data=str(settings.npd),
        out=str(settings.npnet_dir(variant)),
        preset=preset,
        epochs=epochs or settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.train_seed,
        margin=settings.train_margin,
        device="cpu" if settings.device == "cpu" else "auto",
        init="random",  # the micro NPNet's reduced Swin has no ImageNet weights (and the world is offline)
        **train_changes,
    )


def train_stage(settings: StageSettings, variant: str = "full", log=print) -> dict[str, Any]:
    """Alg. 2 for one variant; resumes from ``last/`` and skips a finished run."""
    config = train_config(settings, variant)
    out = Path(config.out)
    done = _finished_epochs(out)
    if done >= config.epochs:
        log(f"{out}: already trained for {done} epochs")
    else:
        start = time.perf_counter()
        train(dataclasses.replace(config, resume=done > 0), log=log)
        seconds = time.perf_counter() - start
        atomic_write_json(out / "timing.json", {"seconds": seconds, "epochs_this_call": config.epochs - done})
    return training_summary(out)


def _finished_epochs(out: Path) -> int:
    history = out / "history.csv"
    if not (out / "last" / "trainer_state.pt").exists() or not history.exists():
        return 0
    return max(0, len(history.read_text().strip().splitlines()) - 1)


def training_summary(out: Path) -> dict[str, Any]:
    """Best epoch, its validation MSE against the identity / zero baselines, and alpha/beta."""
    import pandas as pd

    history = pd.read_csv(out / "history.csv")
    best = history.loc[history["val_loss"].idxmin()]
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
    keys = ("epoch", "train_loss", "val_loss", "val_identity", "val_zero", "rms_ratio", "alpha", "beta")
    return {
        "epochs": int(history["epoch"].max()),
        "best": {k: float(best[k]) for k in keys},
        "train_seconds_last_call": timing.get("seconds"),
    }


@torch.no_grad()
def residual_agreement(settings: StageSettings, variant: str = "full") -> dict[str, float]:
    """On the NPD's validation pairs (all, kept or not): how well NPNet's change of the noise, NPNet(x_T) - x_T,
    matches the re-denoise change x'_T - x_T (cosine, and the fraction of the change's energy explained)."""
    config = train_config(settings, variant)
    data = NoisePairDataset(
        settings.npd, split="val", val_fraction=config.val_fraction, seed=config.seed, select=False
    )
    if len(data) == 0:
        raise UserError(f"{settings.npd} has no validation pairs; collect more pairs")
    net = load_npnet(settings.npnet_path(variant))
    x, xp, cond = (
        torch.stack(t) for t in zip(*(data[i] for i in range(len(data))))
    )  # (N, 4, h, w) x2, (N, 77, D)
    want, got = (xp - x).flatten(1), (net(x, cond) - x).flatten(1)  # (N, 4*h*w)
    cos = torch.nn.functional.cosine_similarity(got, want, dim=1)  # (N,)
    explained = 1 - (got - want).square().sum() / want.square().sum()
    return {
        "pairs": len(data),
        "cosine_mean": float(cos.mean()),
        "explained_energy": float(explained),
        "norm_ratio": float(got.norm(dim=1).mean() / want.norm(dim=1).mean()),
    }


def evaluate_stage(
    settings: StageSettings,
    variant: str = "full",
    steps: int | None = None,
    methods: tuple[str, ...] | None = None,
):
    """Benchmark one NPNet variant on the held-out captions x seeds with the micro scorer; returns the summary."""
    path = settings.npnet_path(variant)
    if not path.is_file():
        raise UserError(f"no trained NPNet at {path}; run the train stage for variant {variant!r} first")
    methods = methods or (("standard", "inversion", "npnet") if variant == "full" else ("standard", "npnet"))
    out = settings.eval_dir(variant, steps)
    config = BenchmarkConfig(
        model=MODEL,
        prompts=settings.eval_prompts,
        limit=settings.eval_limit,
        out=str(out),
        seeds=tuple(settings.eval_seeds),
        methods=tuple(methods),
        metrics=("micro",),
        steps=steps,
        npnet=str(path.resolve()),
        device=settings.device,
        offline=True,
        batch_size=settings.sampling_batch_size,
    )
    _share_image_cache(settings, out)
    result = run_benchmark(config, service=_service(settings))
    if result.counts.get("errors"):
        detail = f" ({result.failure})" if result.failure else ""
        raise RunFailed(
            f"{result.counts['errors']} benchmark samples failed in {out}{detail}; see rows.rank0.jsonl"
        )
    return summarize_run(out)


def _share_image_cache(settings: StageSettings, out: Path) -> None:
    """Every evaluation of a run uses one content-addressed image cache (keys hold the settings and the
    NPNet's hash), so the standard and inversion images are generated once for all NPNet variants."""
    shared = settings.root / "eval" / "images"
    shared.mkdir(parents=True, exist_ok=True)
    link = out / "images"
    if not link.exists() and not link.is_symlink():
        out.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("..") / "images", target_is_directory=True)


def summarize_run(run_dir: str | Path):
    """Per-method micro score with CIs and paired win rates vs standard of one finished benchmark run."""
    run_dir = Path(run_dir)
    rows = run_rows(run_dir)
    summary = summarize(rows, metrics=["micro"], group_by=())
    summary.insert(0, "variant", run_dir.name.rpartition("-steps")[0])
    summary.insert(1, "steps", int(rows["steps"].iloc[0]))
    return summary


def cost_stage(settings: StageSettings, variant: str = "full", samples: int = 8) -> dict[str, float]:
    """Mean seconds of the NPNet forward, one re-denoise and one image's denoising (micro preset defaults)."""
    captions = train_captions()
    service = _service(settings)
    timings: list[dict[str, float]] = []
    for i in range(samples + 1):  # the first call loads the models: not timed
        request = GenerationRequest(
            model=MODEL,
            prompt=captions[i % len(captions)],
            seed=i,
            methods=("standard", "npnet", "inversion"),
            npnet=str(settings.npnet_path(variant).resolve()),
        )
        timings.append(service.generate(request).timings)
    keys = ("encode", "npnet", "redenoise", "denoise_per_image", "total")
    return {k: sum(t[k] for t in timings[1:]) / samples for k in keys} | {"samples": samples}


def threads(n: int) -> None:
    torch.set_num_threads(max(1, int(n)))


def _random_direction_image(service: GoldenNoiseService, result, seed: int):
    """The image from x_T + r, r Gaussian (seeded) with the norm of x'_T - x_T, at the result's settings."""
    x, xp = result.latents["standard"], result.latents["inversion"]  # (1, 4, h, w)
    r = torch.randn(x.shape, generator=torch.Generator().manual_seed(10_000 + seed))  # (1, 4, h, w)
    s = result.settings
    pipe = service.load(MODEL, with_npnet=False).pipe
    view = with_scheduler(pipe, s["scheduler"], progress=False)
    embeds = encode_prompt(pipe, s["prompt"])
    control = x + r * (xp - x).norm() / r.norm()
    images = run_pipeline(view, embeds, control, s["steps"], s["guidance_scale"], s["width"], s["height"], seed=seed)
    return images[0]


def perturbation_control(settings: StageSettings, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """Is x'_T - x_T better than chance? Score standard, inversion (x'_T) and a control x_T + r, where r is
    Gaussian (seeded) scaled to the same norm as x'_T - x_T, on the held-out captions x seeds.

    If the re-denoise direction carried the prompt's semantics, inversion would beat the control.
    """
    captions = heldout_captions()[: settings.eval_limit] if settings.eval_limit else heldout_captions()
    verifier, scores = MicroVerifier(), {"standard": [], "inversion": [], "control": []}
    service = _service(settings)
    for prompt in captions:
        for seed in seeds:
            result = service.generate(
                GenerationRequest(model=MODEL, prompt=prompt, seed=seed, methods=("standard", "inversion"))
            )
            control = _random_direction_image(service, result, seed)
            images = [result.images["standard"], result.images["inversion"], control]
            for name, value in zip(scores, verifier.score(images, [prompt] * 3).tolist()):
                scores[name].append(value)
    base = torch.tensor(scores["standard"])
    out: dict[str, Any] = {"pairs": len(base), "mean_standard": float(base.mean())}
    for name in ("inversion", "control"):
        other = torch.tensor(scores[name])
        out[name] = {
            "mean": float(other.mean()),
            "wins": int((other > base).sum()),
            "ties": int((other == base).sum()),
            "losses": int((other < base).sum()),
        }
    return out
