"""Batching across samples on the new families (tiny-sd15, tiny-sd3, tiny-flux): evaluation's batched
``generate_many`` and collection's batched re-denoise agree with one sample per call, as on SDXL
(``test_batching``: x_T exact, NPNet / re-denoise latents within 1e-4, images within one 8-bit level)."""

import numpy as np
import pytest
import torch

from eval.metrics import get_scorer
from npnet.data.collect import CollectConfig, collect
from npnet.data.dataset import NoisePairDataset
from npnet.engine import GenerationRequest, GoldenNoiseService

METHODS = ("standard", "npnet", "inversion")
PROMPTS = ["a red cube", "a blue ball on grass", "a green tree"]


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", offline=True, progress=False)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sd3", "tiny-flux"])
def test_batched_generation_matches_one_sample_per_call(service, model):
    requests = [GenerationRequest(model, p, seed=20 + i, steps=2, methods=METHODS) for i, p in enumerate(PROMPTS)]
    single = service.generate_many(requests)
    many = service.generate_many(requests, samples_per_call=3)
    for a, b in zip(single, many, strict=True):
        assert torch.equal(a.latents["standard"], b.latents["standard"])  # x_T from the seed: exact
        for m in METHODS:
            assert (a.latents[m] - b.latents[m]).abs().max().item() < 1e-4, m
            diff = np.abs(np.asarray(a.images[m], np.int16) - np.asarray(b.images[m], np.int16)).max()
            assert diff <= 1, (m, diff)


def test_batched_flux_collection_batches_redenoise_and_keeps_the_pairs(service, tmp_path, monkeypatch):
    import npnet.engine.generation as generation

    sizes, real = [], generation.redenoise_trace

    def recording(pipe, x_T, *args, **kw):
        sizes.append(x_T.shape[0])
        return real(pipe, x_T, *args, **kw)

    monkeypatch.setattr(generation, "redenoise_trace", recording)
    toy = get_scorer("toy-brightness")
    for name, batch in (("one", 1), ("three", 3)):
        config = CollectConfig("tiny-flux", str(tmp_path / name), 2, steps=2, shard_size=4, batch_size=batch)
        collect(service, config, PROMPTS, toy, progress=False)
    assert sizes[:6] == [1] * 6 and set(sizes[6:]) == {3}  # 6 samples: one per call, then padded batches of 3
    one, three = (NoisePairDataset(tmp_path / n, select=False) for n in ("one", "three"))
    assert len(one) == len(three) == 6
    for i in range(6):
        (x, xp, e), (bx, bxp, be) = one[i], three[i]
        assert torch.equal(x, bx) and torch.equal(e, be) and x.shape == (16, 8, 8)
        spacing = torch.finfo(torch.float16).eps * torch.maximum(xp.abs(), bxp.abs())
        assert ((xp - bxp).abs() <= 1e-4 + spacing).all()
