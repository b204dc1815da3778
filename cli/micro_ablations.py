"""``python -m cli micro-turbo ablations``: Table 4's ablations of the micro-turbo NPNet.

    python -m cli micro-turbo ablations --data runs/micro_turbo/npd --runs runs/micro_turbo/ablations \\
        --out assets/micro/turbo/ablations

Every variant is trained by the same ``train`` code on the same noise pairs with the shipped recipe
(30 epochs, batch 64, AdamW lr 1e-3, seed 0, random init), changing one thing:

* ``full``: both branches, every pair (no selection: the shipped recipe, chosen on training captions);
* ``no-svd``: without the singular-value branch (Table 4, "w/o SVD");
* ``no-residual``: without the residual branch (Table 4, "w/o residual");
* ``selection``: only the pairs the verifier kept (s_0 < s'_0, the paper's rule; Table 4's "w/o data
  selection" read the other way round, since the shipped recipe trains on every pair).

``--variants tokens`` ablates the token-conditioned NPNet (preset ``micro-tokens``) instead: ``full``,
``no-text`` (the same network with the prompt zeroed), ``no-svd`` and ``no-residual``.

For each variant: agreement of NPNet(x_T) - x_T with x'_T - x_T on the NPD's validation pairs (training
captions), and accuracy on the held-out captions x seeds at the preset's settings, with rescued / broken
counts, exact McNemar tests and prompt-clustered CIs against standard noise and against ``full``.
Finished trainings are reused (``runs/<variant>/best``), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cli.micro_stages import VARIANTS
from eval.stats import accuracy_ci, binary_stats
from npnet.analysis import change_agreement
from npnet.checkpoints import load_npnet
from npnet.data.dataset import NoisePairDataset
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.errors import UserError
from npnet.io import atomic_write_json, atomic_write_text
from npnet.model import NPNET_PRESETS, NPNet
from npnet.training.state import finished_run
from npnet.training.train import TrainConfig, train
from npnet.worlds.micro.grammar import heldout_captions
from npnet.worlds.micro.verifier import MicroVerifier

# (NPNetConfig changes, TrainConfig changes) over the shipped recipe, which trains on every pair
TURBO_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": ({}, {}),
    "no-svd": VARIANTS["no-svd"],
    "no-residual": VARIANTS["no-residual"],
    "selection": ({}, {"select": True}),
}
# The token-conditioned NPNet (preset "micro-tokens", issue 21): where its gain comes from.
TOKEN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": ({}, {}),
    "no-text": ({"text_conditioning": "tokens-no-text"}, {}),
    "no-svd": VARIANTS["no-svd"],
    "no-residual": VARIANTS["no-residual"],
}
# Designs of the token path compared on validation agreement only (``micro-turbo token-candidates``).
TOKEN_CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "add": ({}, {}),
    "add-outside-residual": ({"token_into_residual": False}, {}),
    "film": ({"token_output": "film"}, {}),
}
# --variants NAME -> (NPNet preset the changes apply to, the variants)
VARIANT_SETS: dict[str, tuple[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]]] = {
    "turbo": ("micro", TURBO_VARIANTS),
    "tokens": ("micro-tokens", TOKEN_VARIANTS),
    "token-candidates": ("micro-tokens", TOKEN_CANDIDATES),
}


@dataclass(frozen=True)
class AblationConfig:
    data: str
    runs: str
    out: str
    model: str = "micro-turbo"
    preset: str = "micro"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)
    limit: int | None = None
    val_fraction: float = 0.1
    variant_set: str = "turbo"  # VARIANT_SETS key
    only: tuple[str, ...] = ()  # a subset of the set's variants ("full" always included); () = all

    @property
    def variants(self) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        every = VARIANT_SETS[self.variant_set][1]
        unknown = sorted(set(self.only) - set(every))
        if unknown:
            raise UserError(f"unknown variants {unknown} for --variants {self.variant_set}; choose from {', '.join(every)}")
        keep = {"full", *self.only} if self.only else set(every)
        return {name: every[name] for name in every if name in keep}


@torch.no_grad()
def validation_agreement(data: str, net: NPNet, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """``change_agreement`` on the NPD's validation pairs (every pair, kept or not)."""
    pairs = NoisePairDataset(data, split="val", val_fraction=val_fraction, seed=seed, select=False)
    x, xp, cond = (
        torch.stack(t) for t in zip(*(pairs[i] for i in range(len(pairs))))
    )  # (N, 4, h, w) x2, (N, 77, D)
    return change_agreement(x, xp, net.eval()(x, cond))


def train_config(config: AblationConfig, variant: str) -> TrainConfig:
    """The shipped recipe (every pair, lr 1e-3, random init: no ImageNet Swin at micro size) with one change."""
    model_changes, train_changes = config.variants[variant]
    return TrainConfig(
        data=config.data,
        out=str(Path(config.runs) / variant),
        preset=dataclasses.replace(NPNET_PRESETS[config.preset], **model_changes),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        val_fraction=config.val_fraction,
        init="random",
        device="cpu",
        **({"select": False} | train_changes),
    )


def trained(config: AblationConfig, variant: str) -> Path:
    """The variant's best checkpoint, training it first unless a finished run is already there."""
    settings = train_config(config, variant)
    done = finished_run(Path(settings.out))
    if done is not None and done >= settings.epochs:
        return Path(settings.out) / "best" / "npnet.safetensors"
    return train(dataclasses.replace(settings, resume=done is not None)).best


def score_variants(config: AblationConfig, checkpoints: dict[str, Path]) -> pd.DataFrame:
    """Verifier score of standard noise and of every variant's golden noise, per held-out (caption, seed)."""
    captions = heldout_captions()[: config.limit] if config.limit else heldout_captions()
    service, verifier = GoldenNoiseService(device="cpu", offline=True, progress=False), MicroVerifier()
    service.max_npnets = max(service.max_npnets, len(checkpoints))
    rows = []
    for p, caption in enumerate(captions):
        for seed in config.seeds:
            images = {"standard": _image(service, config.model, caption, seed, "standard", None)}
            images |= {name: _image(service, config.model, caption, seed, "npnet", str(ckpt))
                       for name, ckpt in checkpoints.items()}  # fmt: skip
            scores = verifier.score(list(images.values()), [caption] * len(images)).tolist()
            rows.append({"prompt_index": p, "prompt": caption, "seed": seed, **dict(zip(images, scores))})
    return pd.DataFrame(rows)


def _image(service, model: str, prompt: str, seed: int, method: str, npnet: str | None):
    request = GenerationRequest(model, prompt, seed=seed, methods=(method,), npnet=npnet)
    return service.generate(request).images[method]


def summarize(frame: pd.DataFrame, agreement: dict[str, dict]) -> dict:
    """Accuracy [CI] per column; each variant vs standard and vs ``full`` (rescued, broken, McNemar, pp)."""
    clusters = frame["prompt_index"].to_numpy()
    table = {}
    for name in ("standard", *agreement):
        acc, low, high = accuracy_ci(frame[name], clusters=clusters)
        table[name] = {"accuracy": acc, "ci": [low, high]}
        if name != "standard":
            table[name] |= {
                "agreement": agreement[name],
                "vs_standard": binary_stats(frame[name], frame["standard"], clusters=clusters),
                "vs_full": binary_stats(frame[name], frame["full"], clusters=clusters),
            }
    return {"pairs": len(frame), "variants": table}


def run_ablations(config: AblationConfig) -> dict:
    checkpoints = {name: trained(config, name) for name in config.variants}
    agreement = {
        name: validation_agreement(config.data, load_npnet(path), config.val_fraction)
        for name, path in checkpoints.items()
    }
    frame = score_variants(config, checkpoints)
    results = summarize(frame, agreement) | {"config": dataclasses.asdict(config)}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "rows.csv", frame.to_csv(index=False))
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", ablation_markdown(results))
    return results


def ablation_markdown(results: dict) -> str:
    lines = [
        f"# micro-turbo ablations: {results['pairs']} held-out samples\n",
        "| variant | val cosine / explained | accuracy [95% CI] | vs standard: rescued / broken, p, pp [CI] "
        "| vs full: rescued / broken, p |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["variants"].items():
        acc = f"{100 * r['accuracy']:.1f}% [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]"
        if name == "standard":
            lines.append(f"| standard | | {acc} | | |")
            continue
        a, s, f = r["agreement"], r["vs_standard"], r["vs_full"]
        gain = f"{s['accuracy_diff_pp']:+.1f} [{s['accuracy_diff_pp_ci_low']:+.1f}, {s['accuracy_diff_pp_ci_high']:+.1f}]"
        vs_full = "" if name == "full" else f"{f['rescued']} / {f['broken']}, {f['mcnemar_p']:.2g}"
        lines.append(
            f"| {name} | {a['cosine_mean']:.2f} / {100 * a['explained_energy']:.0f}% | {acc} "
            f"| {s['rescued']} / {s['broken']}, {s['mcnemar_p']:.2g}, {gain} | {vs_full} |"
        )
    return "\n".join(lines) + "\n"


def add_ablation_parser(sub) -> argparse.ArgumentParser:
    d = AblationConfig("", "", "")
    parser = sub.add_parser(
        "ablations", help="Table 4: no SVD / no residual / selection, trained and evaluated"
    )
    parser.add_argument("--data", required=True, help="the micro-turbo NPD (python -m cli collect)")
    parser.add_argument("--runs", required=True, help="folder for the variants' training runs")
    parser.add_argument("--out", required=True, help="results folder (rows.csv, results.json, results.md)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seeds", default="0,1,2", help="comma list of held-out seeds (default 0,1,2)")
    parser.add_argument("--limit", type=int, default=None, help="first N held-out captions")
    parser.add_argument(
        "--variants",
        choices=sorted(VARIANT_SETS),
        default="turbo",
        help="turbo: the official architecture's Table 4; tokens: the token-conditioned NPNet's (micro-tokens)",
    )
    parser.add_argument("--only", default="", help="comma list: a subset of the variants (full is always run)")
    return parser


def ablation_config(args: argparse.Namespace) -> AblationConfig:
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    preset = VARIANT_SETS[args.variants][0]
    return AblationConfig(
        args.data, args.runs, args.out, preset=preset, epochs=args.epochs, lr=args.lr, seeds=seeds,
        limit=args.limit, variant_set=args.variants,
        only=tuple(s.strip() for s in args.only.split(",") if s.strip()),
    )  # fmt: skip
