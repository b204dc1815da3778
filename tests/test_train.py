"""NPNet training (Alg. 2) on the tiny preset: learns a learnable target, resumes exactly, checkpoints load."""

import argparse
import csv

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from cli.train import add_arguments, main
from npnet.checkpoints import load_npnet, save_npnet
from npnet.data.dataset import NoisePairDataset, write_dataset
from npnet.errors import UserError
from npnet.model import NPNET_PRESETS, NPNet
from npnet.training.checks import check_init
from npnet.training.train import (
    TrainConfig,
    _collate,
    build_model,
    epoch_batches,
    evaluate,
    train,
)
from npnet.worlds.tiny import build_tiny_npnet


def _learnable(folder, n_prompts=4, per_prompt=12, seed=0):
    """x'_T = x_T + a per-channel offset fixed by the prompt: learnable only through the condition."""
    g = torch.Generator().manual_seed(seed)
    prompts = [f"prompt {i}" for i in range(n_prompts)]
    embeds = {p: torch.randn(77, 64, generator=g) for p in prompts}
    offsets = torch.randn(n_prompts, 4, 1, 1, generator=g)  # (P, 4, 1, 1)
    which = torch.arange(n_prompts).repeat_interleave(per_prompt)  # (N,)
    x = torch.randn(len(which), 4, 8, 8, generator=g)  # (N, 4, 8, 8)
    rows = [
        {
            "index": i,
            "prompt": prompts[int(p)],
            "seed": i,
            "score_standard": 0.0,
            "score_inversion": 1.0,
            "kept": True,
        }
        for i, p in enumerate(which)
    ]
    write_dataset(folder, rows, x, x + offsets[which], {"model": "synthetic"}, embeds=embeds, shard_size=16)
    return folder


def test_training_beats_the_identity_baseline_and_checkpoints_reload(tmp_path):
    data = _learnable(tmp_path / "npd")
    argv = f"--data {data} --out {tmp_path / 'ckpt'} --preset tiny --init random --epochs 3 --batch-size 8 --lr 3e-3"
    args = add_arguments(argparse.ArgumentParser()).parse_args(argv.split() + ["--val-fraction", "0.25"])
    result = main(args)
    first, last = result.history[0], result.history[-1]
    assert last["val_loss"] < 0.5 * last["val_identity"]  # identity MSE = mean offset^2 (~1)
    assert last["val_loss"] < first["val_loss"] and not last["collapsed"]
    assert len(result.step_losses) == 3 * 5  # 36 training pairs / 8 per batch
    with open(tmp_path / "ckpt" / "history.csv") as handle:
        assert [float(r["val_loss"]) for r in csv.DictReader(handle)] == [
            r["val_loss"] for r in result.history
        ]
    assert (tmp_path / "ckpt" / "loss.html").stat().st_size > 10_000
    x, emb = torch.randn(3, 4, 8, 8), torch.randn(3, 77, 64)
    with torch.no_grad():
        expected = result.net(x, emb)
        for name in ("npnet.safetensors", "npnet.pth"):
            loaded = load_npnet(str(tmp_path / "ckpt" / "last" / name))
            torch.testing.assert_close(loaded(x, emb), expected, rtol=1e-5, atol=1e-6)
    best = load_npnet(str(result.best))
    val = NoisePairDataset(data, split="val", val_fraction=0.25)
    loader = DataLoader(val, batch_size=8, collate_fn=_collate)
    again = evaluate(best, loader, "cpu", Accelerator(cpu=True), 0.5)
    assert again["val_loss"] == pytest.approx(result.best_val_loss, rel=1e-5)


class _Killed(RuntimeError):
    pass


def test_resume_continues_the_same_trajectory(tmp_path):
    data = _learnable(tmp_path / "npd", n_prompts=2, per_prompt=8)
    common = dict(
        data=str(data), preset="tiny", init="random", epochs=4, batch_size=6, lr=2e-3, val_fraction=0.25,
        device="cpu",
    )
    common.update(batch_prompt="random", seed=7)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **common), log=lambda s: None)

    def kill_after_two(record):
        if record["epoch"] == 2:
            raise _Killed

    with pytest.raises(_Killed):
        train(TrainConfig(out=str(tmp_path / "b"), **common), callback=kill_after_two, log=lambda s: None)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), resume=True, **common), log=lambda s: None)
    assert len(resumed.step_losses) == len(straight.step_losses) == 4 * 2
    torch.testing.assert_close(torch.tensor(resumed.step_losses), torch.tensor(straight.step_losses))
    assert [r["val_loss"] for r in resumed.history] == pytest.approx(
        [r["val_loss"] for r in straight.history]
    )
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    state = torch.load(tmp_path / "b" / "last" / "trainer_state.pt", weights_only=True)
    assert state["epoch"] == 4 and len(state["step_losses"]) == 8
    with pytest.raises(ValueError, match="lr: 0.002 -> 0.001"):
        train(TrainConfig(out=str(tmp_path / "b"), resume=True, **{**common, "lr": 1e-3}), log=lambda s: None)


def test_epoch_batches_cover_every_sample_once_per_epoch_and_split_evenly():
    one = epoch_batches(23, 4, seed=1, epoch=0, rank=0, world=1)
    assert sorted(i for b in one for i in b) == list(range(23)) and len(one) == 6
    assert one != epoch_batches(23, 4, seed=1, epoch=1, rank=0, world=1)
    two = [epoch_batches(23, 4, seed=1, epoch=0, rank=r, world=2) for r in (0, 1)]
    assert len(two[0]) == len(two[1]) == 3 and all(len(b) == 4 for b in two[0] + two[1])
    assert set(i for part in two for b in part for i in b) == set(range(23))


class _Scaled(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x, cond):
        return self.scale * x


def test_collapse_check_flags_an_output_that_cancels_its_input(tmp_path):
    data = _learnable(tmp_path / "npd", n_prompts=2, per_prompt=4)
    loader = DataLoader(NoisePairDataset(data), batch_size=4, collate_fn=_collate)
    acc = Accelerator(cpu=True)
    identity = evaluate(_Scaled(1.0), loader, "cpu", acc, 0.5)
    assert identity["val_loss"] == pytest.approx(identity["val_identity"]) and identity["rms_ratio"] == 1.0
    assert not identity["beats_identity"] and not identity["collapsed"]
    cancelled = evaluate(_Scaled(0.01), loader, "cpu", acc, 0.5)
    assert cancelled["collapsed"] and cancelled["rms_ratio"] == pytest.approx(0.01)


def test_preset_that_does_not_fit_the_data_is_a_clear_error(tmp_path):
    data = _learnable(tmp_path / "npd", n_prompts=2, per_prompt=4)
    with pytest.raises(ValueError, match="latents are"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "o"), preset="dit", init="random", val_fraction=0.25))
    with pytest.raises(ValueError, match="unknown batch_prompt"):
        TrainConfig(data="d", out="o", batch_prompt="first")


def test_two_process_ddp_on_cpu(tmp_path):
    """``torchrun --nproc_per_node 2 -m cli train``: gloo DDP, one writer, baselines over the whole val split."""
    import os
    import subprocess
    import sys

    data = _learnable(tmp_path / "npd", n_prompts=2, per_prompt=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cli", "train"]
    cmd += f"--data {data} --out {tmp_path / 'ckpt'} --preset tiny --init random --epochs 2 --batch-size 3".split()
    cmd += "--lr 2e-3 --val-fraction 0.25 --device cpu".split()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 2:") == 1  # only rank 0 logs
    with open(tmp_path / "ckpt" / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    val = NoisePairDataset(data, split="val", val_fraction=0.25)
    identity = torch.stack([(a - b).square().mean() for a, b, _ in val]).mean()
    assert float(history[-1]["val_identity"]) == pytest.approx(float(identity), rel=1e-5)
    assert load_npnet(str(tmp_path / "ckpt" / "last" / "npnet.pth")).config.text_dim == 64


def _small_run(tmp_path, **changes):
    data = _learnable(tmp_path / "npd", n_prompts=2, per_prompt=4)
    common = dict(
        data=str(data), out=str(tmp_path / "run"), preset="tiny", init="random", epochs=1, batch_size=4, lr=1e-3,
        val_fraction=0.25, device="cpu",
    )  # fmt: skip
    return {**common, **changes}


def test_an_existing_run_is_never_overwritten_without_resume(tmp_path):
    common = _small_run(tmp_path)
    torch.manual_seed(11)
    rng = torch.get_rng_state()
    train(TrainConfig(**common), log=lambda s: None)
    assert torch.equal(torch.get_rng_state(), rng)  # training forks the process-wide RNG
    run = tmp_path / "run"
    before = {p: p.read_bytes() for p in (run / "history.csv", run / "last" / "npnet.safetensors")}
    with pytest.raises(
        UserError,
        match=r"run already holds a training run of 1 epoch .*resume=True \(command line: --resume\)",
    ):
        train(TrainConfig(**{**common, "epochs": 3}), log=lambda s: None)
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing was touched
    lines = []
    resumed = train(TrainConfig(**{**common, "epochs": 2}, resume=True), log=lines.append)
    assert [r["epoch"] for r in resumed.history] == [1, 2] and lines[0].startswith(
        f"resumed from {run / 'last'}"
    )


def test_resume_with_nothing_to_resume_says_so_and_starts_a_new_run(tmp_path):
    lines = []
    result = train(TrainConfig(**_small_run(tmp_path), resume=True), log=lines.append)
    assert lines[0] == f"nothing to resume in {tmp_path / 'run'}; starting a new run"
    assert [r["epoch"] for r in result.history] == [1]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("lr", float("nan"), "lr must be a finite number > 0"),
        ("lr", 0.0, "lr must be a finite number > 0"),
        ("lr", float("inf"), "lr must be a finite number > 0"),
        ("weight_decay", -0.01, "weight_decay must be a finite number >= 0"),
        ("val_fraction", 1.0, r"val_fraction must be a finite number in \[0, 1\)"),
        ("val_fraction", -0.1, r"val_fraction must be a finite number in \[0, 1\)"),
        ("epochs", 0, "epochs must be an integer >= 1"),
        ("batch_size", 2.5, "batch_size must be an integer >= 1"),
        ("max_grad_norm", float("nan"), "max_grad_norm must be a finite number"),
        ("split_by", "seed", "unknown split_by 'seed'"),
        ("init", "", "init must be auto, imagenet, random or an NPNet checkpoint"),
    ],
)
def test_bad_settings_are_refused_when_the_config_is_made(field, value, match):
    with pytest.raises(UserError, match=match):
        TrainConfig(data="d", out="o", **{field: value})


def test_init_must_name_a_loadable_checkpoint_checked_before_any_work(tmp_path):
    (tmp_path / "notes.pth").write_text("hello, not weights\n")
    config = TrainConfig(
        data=str(tmp_path / "no-data-here"),
        out=str(tmp_path / "o"),
        preset=None,
        init=str(tmp_path / "notes.pth"),
    )
    with pytest.raises(
        UserError, match=r"init '.*notes.pth' is not a usable NPNet checkpoint: .* is not an NPNet"
    ):
        train(config, log=lambda s: None)  # the missing data would fail later: the init is checked first
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserError, match="absent.safetensors does not exist"):
        check_init(str(tmp_path / "absent.safetensors"))
    good = save_npnet(build_tiny_npnet(64), tmp_path / "good.safetensors")
    assert check_init(str(good)) == NPNET_PRESETS["tiny"] and check_init("random") is None


def test_build_model_is_seeded_but_leaves_the_process_rng_alone():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    net, note = build_model(TrainConfig(data="d", out="o", preset="tiny", init="random", seed=3))
    assert torch.equal(torch.get_rng_state(), before) and note == "random"
    torch.manual_seed(3)  # what build_model did before it forked the RNG: same weights
    expected = NPNet.from_config("tiny")
    for (name, a), b in zip(net.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), name
