"""Noise-pair collection (Alg. 1) on tiny-sdxl: end to end, selection, crash + resume, 2 processes == 1."""

import argparse
import dataclasses
import json

import pytest
import torch
from diffusers import DDIMScheduler

from cli.collect import add_arguments, main
from eval.metrics import get_scorer
from npnet.data.collect import CollectConfig, collect, sample_plan
from npnet.data.dataset import NoisePairDataset, read_manifest, read_shard_rows
from npnet.diffusion.redenoise import redenoise_trace
from npnet.diffusion.sampling import encode_prompt
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.worlds.tiny import build_tiny_sdxl

PROMPTS = ["a red cube on a table", "a blue ball", "a green tree at night", "a yellow car"]


def _config(out, seeds_per_prompt=4, **changes) -> CollectConfig:
    """tiny-sdxl, 2 sampling / re-denoise steps (keeps the CPU test fast), 4 pairs per shard, one sample
    per pipeline call (batched collection: tests/test_batching.py)."""
    changes.setdefault("batch_size", 1)
    return CollectConfig("tiny-sdxl", str(out), seeds_per_prompt, steps=2, shard_size=4, **changes)


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", offline=True, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """16 samples (4 prompts x 4 seeds) collected through the CLI with the offline toy scorer."""
    root = tmp_path_factory.mktemp("collect")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    argv = f"--model tiny-sdxl --prompts {root / 'prompts.txt'} --seeds-per-prompt 4 --steps 2 --device cpu"
    argv += f" --scorer toy-brightness --margin 0 --shard-size 4 --batch-size 1 --out {root / 'ref'}"
    result = main(add_arguments(argparse.ArgumentParser()).parse_args(argv.split()))
    assert (result.collected, result.resumed, result.world) == (16, 0, 1)
    return root / "ref"


def _files(folder):
    """Merged manifest and shard bytes (shard file name -> bytes)."""
    shards = {p.name: p.read_bytes() for p in sorted((folder / "shards").glob("*.safetensors"))}
    return (folder / "manifest.jsonl").read_text().splitlines(), shards


def test_collects_16_pairs_end_to_end(reference):
    rows = read_manifest(reference)
    assert [r["index"] for r in rows] == list(range(16)) and len(list((reference / "shards").iterdir())) == 4
    for p in range(4):
        seeds = [r["seed"] for r in rows if r["prompt_index"] == p]
        assert len(set(seeds)) == 4 and all(0 <= s <= 1024 for s in seeds)  # the paper's seed range
    assert [r["seed"] for r in rows] == [s.seed for s in sample_plan(PROMPTS, 4)]
    settings = json.loads((reference / "config.json").read_text())
    assert (settings["steps"], settings["scheduler"], settings["inversion_cfg"]) == (2, "ddim", 1.0)
    assert (settings["width"], settings["height"], settings["margin"]) == (64, 64, 0.0)
    row = rows[6]
    x, xp, emb = NoisePairDataset(reference, select=False)[6]
    assert not torch.equal(x, xp)  # re-denoise sampling changed the noise

    # Alg. 1 for this sample, computed here from the tiny pipeline and plain diffusers calls
    seed, prompt, cfg = row["seed"], row["prompt"], settings["cfg"]
    pipe = build_tiny_sdxl()
    pipe.set_progress_bar_config(disable=True)
    x_T = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(seed))
    x_prime = redenoise_trace(pipe, x_T, encode_prompt(pipe, prompt), steps=2, guidance_scale=cfg,
                              inversion_guidance_scale=1.0).x_prime  # fmt: skip
    with torch.inference_mode():
        cond, uncond, pooled, pooled_uncond = pipe.encode_prompt(prompt, device="cpu")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    # x_0 and x'_0 from one call on the batch (x_T, x'_T), as collected: a batch of one gives float32
    # latents ~1e-5 apart (batch-size dependent reductions), which can move a pixel by one level
    with torch.inference_mode():
        images = pipe(
            prompt_embeds=cond.repeat(2, 1, 1),
            negative_prompt_embeds=uncond.repeat(2, 1, 1),
            pooled_prompt_embeds=pooled.repeat(2, 1),
            negative_pooled_prompt_embeds=pooled_uncond.repeat(2, 1),
            latents=torch.cat([x_T, x_prime]),  # (2, 4, 8, 8)
            num_inference_steps=2,
            guidance_scale=cfg,
            width=64,
            height=64,
            generator=[torch.Generator("cpu").manual_seed(seed) for _ in range(2)],
            output_type="pil",
        ).images
    s0, s0_prime = get_scorer("toy-brightness")(images, [prompt] * 2).tolist()

    torch.testing.assert_close(x, x_T[0].half().float(), rtol=0, atol=0)  # the shard stores float16
    for stored, computed in ((xp, x_prime[0]), (emb, cond[0])):  # within float16 rounding of float32
        torch.testing.assert_close(stored, computed, rtol=2**-11, atol=2**-24)
    # one pixel level moves a toy-brightness score by >= 1e-7: the images are the collected ones
    assert [row["score_standard"], row["score_inversion"]] == pytest.approx([s0, s0_prime], rel=0, abs=1e-9)
    assert row["kept"] == (s0 + settings["margin"] < s0_prime)


def test_selection_keeps_exactly_the_rows_meeting_the_margin(reference):
    rows = read_manifest(reference)
    assert all(r["kept"] == (r["score_standard"] + 0.0 < r["score_inversion"]) for r in rows)
    deltas = sorted(r["score_inversion"] - r["score_standard"] for r in rows)
    for margin in (deltas[0] - 1, deltas[5], deltas[10], deltas[-1]):
        kept = [r["index"] for r in NoisePairDataset(reference, margin=margin).rows]
        assert kept == [r["index"] for r in rows if r["score_standard"] + margin < r["score_inversion"]]


class _Crash(RuntimeError):
    pass


def test_resume_after_a_crash_gives_the_uninterrupted_result(reference, service, tmp_path):
    toy, calls = get_scorer("toy-brightness"), []

    def crashing(images, prompts):
        calls.append(1)
        if len(calls) == 6:  # inside block 1, after block 0 was written
            raise _Crash
        return toy(images, prompts)

    out = tmp_path / "npd"
    with pytest.raises(_Crash):
        collect(service, _config(out, scorer_name="toy-brightness"), PROMPTS[:2], crashing, progress=False)
    assert [p.name for p in (out / "shards").iterdir()] == ["000000.safetensors"]
    log = out / "manifest.rank0.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])  # also a kill between shard and log append
    result = collect(service, _config(out), PROMPTS[:2], toy, progress=False)
    assert (result.resumed, result.collected) == (4, 4)
    manifest, shards = _files(out)
    ref_manifest, ref_shards = _files(reference)
    assert manifest == ref_manifest[:8]  # the first 8 samples of the 4-prompt plan are the 2-prompt plan
    assert shards == {name: ref_shards[name] for name in shards} and len(shards) == 2
    assert sorted(r["index"] for r in read_manifest(out)) == list(range(8))
    assert [r["index"] for r in NoisePairDataset(out, select=False).rows] == list(range(8))


def test_two_processes_give_the_one_process_result(reference, service, tmp_path):
    toy = get_scorer("toy-brightness")
    out = tmp_path / "npd"
    parts = [
        collect(service, _config(out), PROMPTS[:2], toy, rank=r, world=2, progress=False) for r in (0, 1)
    ]
    assert [p.assigned for p in parts] == [4, 4]
    assert [row["index"] for row in read_shard_rows(out / "shards" / "000001.safetensors")] == [4, 5, 6, 7]
    manifest, shards = _files(out)
    ref_manifest, ref_shards = _files(reference)
    assert manifest == ref_manifest[:8]
    assert shards == {name: ref_shards[name] for name in ("000000.safetensors", "000001.safetensors")}


def test_bad_inputs_are_clear_errors(service, tmp_path):
    toy = get_scorer("toy-brightness")
    with pytest.raises(ValueError, match="seeds_per_prompt"):
        sample_plan(PROMPTS, 2000)
    with pytest.raises(ValueError, match="non-empty"):
        collect(service, _config(tmp_path, 1), [], toy, progress=False)
    with pytest.raises(ValueError, match="2 finite scores"):
        collect(service, _config(tmp_path / "a", 1), PROMPTS[:1], lambda i, p: torch.zeros(1), progress=False)


def test_without_the_embedding_cache_training_encodes_prompts_with_the_model(service, tmp_path):
    from npnet.data.collect import service_prompt_encoder
    from npnet.training.train import TrainConfig, train

    out = tmp_path / "npd"
    collect(service, _config(out, cache_embeds=False), PROMPTS[:1], get_scorer("toy-brightness"), progress=False)
    data = NoisePairDataset(out, select=False)
    assert data[0][2] == PROMPTS[0] and not (out / "embeds").exists()
    encode = service_prompt_encoder("tiny-sdxl", device="cpu", offline=True)
    emb = encode([PROMPTS[0], PROMPTS[1]])
    assert emb.shape == (2, 77, 64)
    reference = service.generate(
        GenerationRequest(model="tiny-sdxl", prompt=PROMPTS[0], steps=2, methods=("standard",))
    )
    torch.testing.assert_close(emb[:1], reference.prompt_embeds)
    config = TrainConfig(data=str(out), out=str(tmp_path / "ckpt"), preset="tiny", init="random", epochs=1, batch_size=2)
    result = train(
        dataclasses.replace(config, select=False, val_fraction=0.25), encode_prompts=encode, log=print
    )
    assert len(result.step_losses) == 2 and result.history[0]["val_loss"] > 0
