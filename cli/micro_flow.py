"""Micro flow world CLI: the generator (train-generator, check-generator), the preset's settings chosen on
training captions (choose-steps, choose-wl) and the six-arm evaluation of its NPNet (evaluate, curve,
agreement: the same code as ``cli micro-turbo``, see ``cli.micro_arms``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.common import positive_int, run_command, whole_number
from npnet.errors import OneLineParser, UserError


def _train(args: argparse.Namespace) -> None:
    from npnet.worlds.micro_flow.train import FlowTrainConfig, train_flow

    config = FlowTrainConfig(
        vae_steps=args.vae_steps,
        flow_steps=args.flow_steps,
        vae_batch_size=args.vae_batch_size,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        cache_size=args.cache_size,
        ckpt_every_seconds=args.ckpt_every_seconds,
    )
    train_flow(
        args.out,
        config,
        resume=args.resume,
        export_to=args.export_to,
        log=lambda s: print(s, flush=True),
        init_from=args.init_from,
    )


def _step_list(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--steps takes comma-separated whole numbers such as 2,4,8, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise UserError(f"--steps takes comma-separated step counts >= 1 such as 2,4,8, got {text!r}")
    return steps


def _check(args: argparse.Namespace) -> None:
    from npnet.worlds.micro_flow.quality import check_flow_generator

    report = check_flow_generator(
        path=args.path,
        n_prompts=args.prompts,
        seeds=args.seeds,
        steps=_step_list(args.steps),
        guidance_scale=args.guidance_scale,
        shift=args.shift,
        split=args.split,
        grid=args.grid,
    )
    print(json.dumps(report, indent=2))


def _floats(text: str) -> list[float]:
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated numbers such as 5,7,9,12, got {text!r}") from None
    if not values:
        raise UserError(f"expected comma-separated numbers such as 5,7,9,12, got {text!r}")
    return values


def _service(generator: str | None):
    from cli.micro_flow_select import flow_presets
    from npnet.engine import GoldenNoiseService

    return GoldenNoiseService(device="cpu", offline=True, progress=False, presets=flow_presets(generator))


def _choose_steps(args: argparse.Namespace) -> None:
    from cli.micro_flow_select import choose_steps

    report = choose_steps(
        args.generator, _step_list(args.steps), _floats(args.shifts), args.prompts, args.seeds, args.target
    )
    _emit(report, args.out)


def _choose_wl(args: argparse.Namespace) -> None:
    from cli.micro_flow_select import choose_wl

    seeds = tuple(int(s) for s in _step_list(args.seeds))
    report = choose_wl(_floats(args.candidates), args.prompts, seeds, args.steps, _service(args.generator))
    _emit(report, args.out)


def _candidates(text: str) -> dict[str, str]:
    """{name: checkpoint} from "name=path,name=path"."""
    items = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if not items or any(len(item) != 2 or not all(part.strip() for part in item) for item in items):
        raise UserError(f"expected name=checkpoint pairs such as a=runs/a/best/npnet.safetensors, got {text!r}")
    return {name.strip(): path.strip() for name, path in items}


def _choose_npnet(args: argparse.Namespace) -> None:
    from cli.micro_flow_select import choose_npnet

    seeds = tuple(int(s) for s in _step_list(args.seeds))
    report = choose_npnet(_candidates(args.candidates), args.prompts, seeds, args.steps, _service(args.generator))
    _emit(report, args.out)


def _emit(report: dict, out: str | None) -> None:
    if out:
        from npnet.io import atomic_write_json

        atomic_write_json(Path(out), report)
    print(json.dumps(report, indent=2))


def _evaluate(args: argparse.Namespace) -> None:
    from cli.micro_arms import evaluate, markdown

    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    results = evaluate(
        args.npnet, Path(args.out), seeds, args.limit, args.steps, model="micro-flow",
        service=_service(args.generator),
    )  # fmt: skip
    print(markdown(results))


def _curve(args: argparse.Namespace) -> None:
    from cli.micro_arms import write_curve

    print(write_curve(args.folders, args.out, model="micro-flow"))


def _agreement(args: argparse.Namespace) -> None:
    from cli.micro_ablations import validation_agreement
    from npnet.checkpoints import load_npnet

    print(json.dumps(validation_agreement(args.data, load_npnet(args.npnet), args.val_fraction, 0)))


def _add_selection(sub) -> None:
    cs = sub.add_parser("choose-steps", help="few-step setting from standard accuracy on TRAINING captions")
    cs.add_argument("--generator", default=None, help="pipeline folder (default assets/micro/flow-generator)")
    cs.add_argument("--steps", default="2,3,4,5,6,8", help="candidate step counts")
    cs.add_argument("--shifts", default="1.0,3.0", help="candidate static scheduler shifts")
    cs.add_argument("--prompts", type=positive_int, default=120, help="first N (shuffled) training captions")
    cs.add_argument("--seeds", type=positive_int, default=2, help="seeds 0..N-1")
    cs.add_argument("--target", type=float, default=0.35, help="standard accuracy to aim for")
    cs.add_argument("--out", default=None, help="also write the report (JSON) here")
    cs.set_defaults(func=_choose_steps)
    cw = sub.add_parser("choose-wl", help="re-denoise w_l from inversion accuracy on TRAINING captions")
    cw.add_argument("--generator", default=None, help="pipeline folder (default assets/micro/flow-generator)")
    cw.add_argument("--candidates", default="5,7,9,12", help="candidate w_l values")
    cw.add_argument("--prompts", type=positive_int, default=80, help="first N (shuffled) training captions")
    cw.add_argument("--seeds", default="200,201", help="comma list (not collection's 0,1,2)")
    cw.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the preset's)")
    cw.add_argument("--out", default=None, help="also write the report (JSON) here")
    cw.set_defaults(func=_choose_wl)
    cn = sub.add_parser("choose-npnet", help="NPNet training variant from its accuracy on TRAINING captions")
    cn.add_argument("--candidates", required=True, help="name=checkpoint,name=checkpoint (ties: the first)")
    cn.add_argument("--generator", default=None, help="pipeline folder (default assets/micro/flow-generator)")
    cn.add_argument("--prompts", type=positive_int, default=120, help="first N (shuffled) training captions")
    cn.add_argument("--seeds", default="200,201", help="comma list (not collection's seeds)")
    cn.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the preset's)")
    cn.add_argument("--out", default=None, help="also write the report (JSON) here")
    cn.set_defaults(func=_choose_npnet)


def _add_evaluation(sub) -> None:
    ev = sub.add_parser("evaluate", help="the six arms on the held-out captions x seeds")
    ev.add_argument("--npnet", default=None, help="NPNet checkpoint (default: the preset's)")
    ev.add_argument("--generator", default=None, help="pipeline folder (default assets/micro/flow-generator)")
    ev.add_argument("--out", required=True, help="results folder (rows.csv, results.json, results.md)")
    ev.add_argument("--seeds", default="0,1,2", help="comma list (default 0,1,2)")
    ev.add_argument("--limit", type=positive_int, default=None, help="first N held-out captions")
    ev.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the preset's)")
    ev.set_defaults(func=_evaluate)
    cu = sub.add_parser("curve", help="a steps-curve table from several evaluate folders")
    cu.add_argument("folders", nargs="+", help="evaluate --out folders (one per step count)")
    cu.add_argument("--out", default=None, help="also write the table to this markdown file")
    cu.set_defaults(func=_curve)
    ag = sub.add_parser("agreement", help="NPNet(x_T) - x_T vs x'_T - x_T on the NPD's validation pairs")
    ag.add_argument("--data", required=True)
    ag.add_argument("--npnet", required=True)
    ag.add_argument("--val-fraction", type=float, default=0.1)
    ag.set_defaults(func=_agreement)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m cli micro-flow", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train-generator", help="train the micro flow VAE then MMDiT (resumable)")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, latent cache, log)")
    tr.add_argument("--vae-steps", type=positive_int, default=300)
    tr.add_argument("--flow-steps", type=positive_int, default=5000)
    tr.add_argument("--vae-batch-size", type=positive_int, default=32)
    tr.add_argument("--batch-size", type=positive_int, default=64, help="transformer batch size")
    tr.add_argument("--lr", type=float, default=5e-4, help="transformer + text encoder learning rate (AdamW)")
    tr.add_argument(
        "--cache-size", type=positive_int, default=30000, help="training images encoded once by the VAE"
    )
    tr.add_argument("--ckpt-every-seconds", type=float, default=180.0)
    tr.add_argument("--seed", type=whole_number(0), default=0)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/latest.json")
    tr.add_argument("--export-to", default=None, help="pipeline folder (default OUT/generator)")
    tr.add_argument(
        "--init-from",
        default=None,
        help="start a new run from an exported pipeline folder (e.g. assets/micro/flow-generator) at its step",
    )
    tr.set_defaults(func=_train)
    ck = sub.add_parser("check-generator", help="verifier accuracy of the flow generator by step count")
    ck.add_argument("--path", default=None, help="pipeline folder (default assets/micro/flow-generator)")
    ck.add_argument(
        "--prompts", type=positive_int, default=85, help="captions of the split (85 = all held-out)"
    )
    ck.add_argument("--seeds", type=positive_int, default=4)
    ck.add_argument("--steps", default="20", help="comma-separated step counts, e.g. 2,3,4,5,6,8,10,20")
    ck.add_argument("--guidance-scale", type=float, default=None)
    ck.add_argument("--shift", type=float, default=None, help="scheduler shift (default: the saved one)")
    ck.add_argument("--split", choices=("heldout", "train"), default="heldout")
    ck.add_argument("--grid", default=None, help="write a PNG grid of the last step count's samples here")
    ck.set_defaults(func=_check)
    _add_selection(sub)
    _add_evaluation(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    sys.exit(run_command(lambda: main(sys.argv[1:])))
