"""Batching across samples (engine.generate_many, eval runs, collection) on the micro model at 3 steps.

What CPU floats allow (measured here): a row of a batched UNet / NPNet / VAE call is not bitwise the row of
a call of another batch size (summation order depends on the batch), so
- at the default batch (one sample's methods per call) ``generate_many`` is ``generate`` bit for bit
  (``generate(r)`` is ``generate_many([r])[0]``, so this pins the default batch to one sample per call);
- at other batch sizes x_T is exact, the NPNet / re-denoise latents agree within ~1e-5 (asserted 1e-4),
  images within one 8-bit level, and the micro verifier's scores exactly;
- padded calls (``pad=True``: every call holds the full batch) make a sample's floats independent of
  its batch mates, so resumed and sharded runs equal uninterrupted ones exactly.
"""

import json

import numpy as np
import pytest
import torch
from counting import CountingService, Crash, crashing_factory

from eval.benchmark import BenchmarkConfig, load_rows, run_benchmark
from eval.metrics import get_scorer
from npnet.data.collect import CollectConfig, collect
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.worlds.micro.grammar import heldout_captions

STEPS = 3
PROMPTS = heldout_captions()[:4]
METHODS = ("standard", "npnet", "inversion")


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", offline=True, progress=False)


@pytest.fixture(scope="module")
def requests_():
    # 5 samples, one prompt twice (encoded once); batches of 3 and 8 samples leave a last batch not full
    prompts = [*PROMPTS, PROMPTS[0]]
    return [
        GenerationRequest("micro", p, seed=10 + i, steps=STEPS, methods=METHODS)
        for i, p in enumerate(prompts)
    ]


@pytest.fixture(scope="module")
def single(service, requests_):
    return [service.generate(r) for r in requests_]


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_default_batch_is_generate_bit_for_bit(service, requests_, single):
    many = service.generate_many(requests_)
    for a, b in zip(single, many):
        assert b.request == a.request and b.settings["seed"] == a.settings["seed"]
        assert all(torch.equal(a.latents[m], b.latents[m]) for m in METHODS)
        assert torch.equal(a.prompt_embeds, b.prompt_embeds)
        assert all(_pixels(a.images[m]).tobytes() == _pixels(b.images[m]).tobytes() for m in METHODS)


@pytest.mark.parametrize("samples", [1, 3, 8])
@pytest.mark.parametrize("pad", [False, True])
def test_batch_sizes_match_one_at_a_time(service, requests_, single, samples, pad):
    many = service.generate_many(requests_, samples_per_call=samples, pad=pad)
    micro = get_scorer("micro")
    worst = 0.0
    for a, b in zip(single, many):
        assert torch.equal(a.latents["standard"], b.latents["standard"])  # x_T from the seed: exact
        for m in METHODS:
            worst = max(worst, (a.latents[m] - b.latents[m]).abs().max().item())
            assert np.abs(_pixels(a.images[m]) - _pixels(b.images[m])).max() <= 1
        prompts = [a.request.prompt] * len(METHODS)
        assert (
            micro.score([a.images[m] for m in METHODS], prompts).tolist()
            == micro.score([b.images[m] for m in METHODS], prompts).tolist()
        )
    assert worst < 1e-4  # measured: <= ~7e-6 on micro


def test_exact_latents_keep_npnet_and_redenoise_bitwise(service, requests_, single):
    many = service.generate_many(requests_, samples_per_call=8, exact_latents=True, pad=True)
    for a, b in zip(single, many):
        assert all(torch.equal(a.latents[m], b.latents[m]) for m in METHODS)


def test_settings_must_agree(service, requests_):
    import dataclasses

    from npnet.errors import UserError

    with pytest.raises(UserError, match="differs in redenoise_steps, steps"):
        service.generate_many([requests_[0], dataclasses.replace(requests_[1], steps=2)])
    for bad in (0, 2.0, True):
        with pytest.raises(UserError, match="samples_per_call must be a positive integer"):
            service.generate_many(requests_[:2], samples_per_call=bad)
    assert service.generate_many([], 4) == []


def test_out_of_memory_halves_the_batch_and_finishes(service, requests_, monkeypatch, caplog):
    import npnet.engine.generation as generation

    real = generation.run_pipeline
    sizes = []

    def small_memory(view, embeds, latents, *args, **kw):
        sizes.append(latents.shape[0])
        if latents.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(view, embeds, latents, *args, **kw)

    reference = service.generate_many(requests_)
    monkeypatch.setattr(generation, "run_pipeline", small_memory)
    with caplog.at_level("WARNING", logger="npnet.engine"):
        many = service.generate_many(requests_, samples_per_call=8)  # 24 images per call; 15 in all
    assert "out of memory at batch 15: retrying at 7" in caplog.text
    assert "out of memory at batch 7: retrying at 3" in caplog.text
    assert sizes[:3] == [15, 7, 3] and max(sizes[3:]) <= 3
    assert all(r.settings["image_batch_used"] == 3 and r.settings["latent_batch_used"] == 8 for r in many)
    for a, b in zip(reference, many):
        assert all(torch.equal(a.latents[m], b.latents[m]) for m in ("standard",))
        assert len(b.images) == len(METHODS)


# -- eval runs -------------------------------------------------------------------------------------
def _bench(out, **kw) -> BenchmarkConfig:
    base = dict(model="micro", prompts=tuple(PROMPTS), out=str(out), seeds=(0, 1), steps=STEPS,
                methods=("standard", "npnet"), metrics=("micro", "toy-brightness"), device="cpu",
                offline=True)  # fmt: skip
    base.update(kw)
    return BenchmarkConfig(**base)


COLUMNS = ["prompt_index", "prompt", "seed", "method", "chosen_seed", "micro"]


@pytest.fixture(scope="module")
def unbatched_rows(service, tmp_path_factory):
    return run_benchmark(_bench(tmp_path_factory.mktemp("b1") / "run", batch_size=1), service=service).rows


@pytest.mark.parametrize("batch", [3, 8])
def test_batched_eval_rows_equal_unbatched(service, tmp_path, unbatched_rows, batch):
    rows = run_benchmark(_bench(tmp_path / "run", batch_size=batch), service=service).rows
    assert rows[COLUMNS].equals(unbatched_rows[COLUMNS])  # 8 samples: batches 3+3+2, or one of 8
    assert np.allclose(rows["toy-brightness"], unbatched_rows["toy-brightness"], rtol=0, atol=1e-5)


def test_a_run_killed_mid_batch_resumes_exactly(service, tmp_path):
    straight = run_benchmark(_bench(tmp_path / "straight", batch_size=3), service=service).rows
    factory = crashing_factory(9)  # 2 scorers per sample: killed while scoring sample 5 (the 2nd batch)
    with pytest.raises(Crash):
        run_benchmark(_bench(tmp_path / "killed", batch_size=3), service=service, scorer_factory=factory)
    assert len(load_rows(tmp_path / "killed")) == 4 * 2  # samples 0-3 written, 4 and 5 generated, not written
    counting = CountingService(service)
    resumed = run_benchmark(_bench(tmp_path / "killed", batch_size=3), service=counting)
    assert resumed.counts["skipped"] == 4 and resumed.counts["computed"] == 4
    assert counting.images == 2 * 2  # only the last batch (samples 6, 7): the killed batch's are cached
    assert resumed.rows.drop(columns=["finished", "image", "rank"]).equals(
        straight.drop(columns=["finished", "image", "rank"])
    )
    lines = [json.loads(x) for x in (tmp_path / "killed" / "rows.rank0.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in lines) == sorted(straight["key"])  # nothing lost, nothing twice


def test_sharded_batched_run_equals_one_process(service, tmp_path):
    one = run_benchmark(_bench(tmp_path / "one", batch_size=3), service=service).rows
    for rank in (0, 1):
        run_benchmark(_bench(tmp_path / "two", batch_size=3), service=service, rank=rank, world=2)
    two = load_rows(tmp_path / "two")
    assert set(two["rank"]) == {0, 1}
    keep = ["key", "prompt_index", "seed", "method", "micro", "toy-brightness"]
    assert two[keep].equals(one[keep])  # padded calls: batch mates do not change a sample's floats


# -- collection ------------------------------------------------------------------------------------
def _collect(service, out, batch, **kw):
    config = CollectConfig("micro", str(out), 3, steps=STEPS, shard_size=4, batch_size=batch, **kw)
    return collect(service, config, PROMPTS[:3], get_scorer("micro"), progress=False)


def _files(folder):
    shards = {p.name: p.read_bytes() for p in sorted((folder / "shards").glob("*.safetensors"))}
    return (folder / "manifest.jsonl").read_text(), shards


def _pairs(folder) -> list[tuple]:
    """(x_T, x'_T, embedding) of every collected sample, in index order."""
    from npnet.data.dataset import NoisePairDataset

    data = NoisePairDataset(folder, select=False)
    return [data[i] for i in range(len(data))]


def _close_in_float16(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Latents read back from shards (stored in float16) whose float32 values were within the batching
    tolerance (1e-4): apart by at most that plus one float16 step at max(|a|, |b|) (where rounding split
    them)."""
    spacing = torch.finfo(torch.float16).eps * torch.maximum(a.abs(), b.abs())
    return bool(((a - b).abs() <= 1e-4 + spacing).all())


@pytest.fixture
def redenoise_batches(monkeypatch):
    """The batch size of every re-denoise call the engine makes."""
    import npnet.engine.generation as generation

    sizes, real = [], generation.redenoise_trace

    def recording(pipe, x_T, *args, **kw):
        sizes.append(x_T.shape[0])
        return real(pipe, x_T, *args, **kw)

    monkeypatch.setattr(generation, "redenoise_trace", recording)
    return sizes


def test_batched_collection_is_within_tolerance_of_batch_1(service, tmp_path, redenoise_batches):
    """Re-denoise batched across samples as sampling is: x_T and the embeddings exact, x'_T within the
    documented tolerance of batch 1, the micro verifier's scores (hence the selection) unchanged."""
    from npnet.data.dataset import read_manifest

    _collect(service, tmp_path / "one", 1)
    assert set(redenoise_batches) == {1}
    redenoise_batches.clear()
    _collect(service, tmp_path / "three", 3)  # 9 samples, blocks of 4: batches of 3 + 1, 3 + 1, 1 (padded)
    assert redenoise_batches == [3] * 5  # padded to the full batch: 5 calls instead of 9
    for (x, xp, e), (bx, bxp, be) in zip(_pairs(tmp_path / "one"), _pairs(tmp_path / "three"), strict=True):
        assert torch.equal(x, bx) and torch.equal(e, be)
        assert _close_in_float16(xp, bxp)  # as generate_many's latents (test_batch_sizes_match_one_at_a_time)
    score = ("index", "seed", "score_standard", "score_inversion", "kept")
    one, three = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "three")
    assert [[r[k] for k in score] for r in three] == [[r[k] for k in score] for r in one]


# -- the Seeds tab ---------------------------------------------------------------------------------
def test_seed_grid_batches_and_scores_like_one_at_a_time(service, tmp_path, monkeypatch):
    from studio.config import LaunchConfig
    from studio.service import StudioService
    from studio.tabs.seeds import make_run_seeds
    from studio.tempfiles import TempFiles

    studio = StudioService(LaunchConfig(), TempFiles(str(tmp_path)), engine=service, offline=True)
    calls = []
    real = service.generate_many
    monkeypatch.setattr(
        service, "generate_many", lambda reqs, *a, **k: calls.append(len(reqs)) or real(reqs, *a, **k)
    )

    class Progress:
        def tqdm(self, items, desc=None):
            return items

    p = service.preset("micro")
    run = make_run_seeds(studio)
    text, table, gallery, pairs = run(PROMPTS[0], "", 3, 5, "micro", "micro", None, p.scheduler, STEPS,
                                      p.guidance_scale, p.width, p.height, progress=Progress())  # fmt: skip
    assert calls == [5]  # micro's batch_size 16: one generate_many for the 5 seeds
    assert list(table["seed"]) == [3, 4, 5, 6, 7] and len(gallery) == 10
    for pair in pairs:
        one = studio.generate(pair.result.request, ["micro"])
        assert one.scores["micro"] == pair.scores["micro"]


def test_batched_collection_resumes_and_shards_byte_identically(service, tmp_path, redenoise_batches):
    """A continuous scorer (toy-brightness) on tiny-sdxl, re-denoise and sampling batched: batched shards
    (x_T, x'_T, rows) equal batched shards exactly, whatever the kills and process split (padded calls);
    against batch 1, x_T is exact, x'_T within the batching tolerance (stored in float16) and the scores
    within 1e-5."""
    prompts = ["a red cube on a table", "a blue ball", "a green tree at night"]
    toy = get_scorer("toy-brightness")

    def config(out, batch=3):
        return CollectConfig("tiny-sdxl", str(out), 3, steps=2, shard_size=4, batch_size=batch,
                             scorer_name="toy-brightness")  # fmt: skip

    collect(service, config(tmp_path / "straight"), prompts, toy, progress=False)
    assert redenoise_batches == [3] * 5  # 9 samples in blocks of 4: batches of 3 + 1, 3 + 1, 1 (padded)
    calls = []

    def killed(images, texts):
        calls.append(1)
        if len(calls) == 6:  # in block 1 (samples 4-7), after its first batch was generated
            raise Crash()
        return toy(images, texts)

    with pytest.raises(Crash):
        collect(service, config(tmp_path / "resumed"), prompts, killed, progress=False)
    collect(service, config(tmp_path / "resumed"), prompts, toy, progress=False)
    for rank in (0, 1):
        collect(service, config(tmp_path / "two"), prompts, toy, rank=rank, world=2, progress=False)
    assert _files(tmp_path / "resumed") == _files(tmp_path / "straight") == _files(tmp_path / "two")

    from npnet.data.dataset import read_manifest

    collect(service, config(tmp_path / "one", batch=1), prompts, toy, progress=False)
    for (x, xp, e), (bx, bxp, be) in zip(_pairs(tmp_path / "one"), _pairs(tmp_path / "straight")):
        assert torch.equal(x, bx) and torch.equal(e, be) and _close_in_float16(xp, bxp)
    one, three = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "straight")
    for a, b in zip(one, three):
        assert a["seed"] == b["seed"] and abs(a["score_standard"] - b["score_standard"]) < 1e-5
        assert abs(a["score_inversion"] - b["score_inversion"]) < 1e-5
