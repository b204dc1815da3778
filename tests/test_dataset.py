"""NPD format: shards + manifest round trip, read-time selection, splits, resume-safe manifests, importer."""

import json

import numpy as np
import pytest
import torch

from npnet.data.dataset import (
    NoisePairDataset,
    is_kept,
    merge,
    read_manifest,
    read_shard_rows,
    write_config,
    write_dataset,
)
from npnet.data.official import import_official


def _synthetic(folder, n=20, shard_size=6, seed=0, embeds=True):
    g = torch.Generator().manual_seed(seed)
    prompts = [f"a photo of object {i}" for i in range(4)]
    x = torch.randn(n, 4, 8, 8, generator=g)
    xp = x + 0.1 * torch.randn(n, 4, 8, 8, generator=g)
    s0, s1 = torch.rand(n, generator=g).tolist(), torch.rand(n, generator=g).tolist()
    rows = [
        {
            "index": i,
            "prompt": prompts[i % 4],
            "seed": 100 + i,
            "score_standard": s0[i],
            "score_inversion": s1[i],
        }
        for i in range(n)
    ]
    for row in rows:
        row["kept"] = is_kept(row, 0.0)
    emb = {p: torch.randn(77, 16, generator=g) for p in prompts} if embeds else None
    write_dataset(folder, rows, x, xp, {"model": "synthetic"}, embeds=emb, shard_size=shard_size)
    return rows, x, xp, emb


def test_round_trip_fp16_pairs_and_cached_embeddings(tmp_path):
    rows, x, xp, emb = _synthetic(tmp_path, n=20, shard_size=6)
    assert len(list((tmp_path / "shards").glob("*.safetensors"))) == 4  # blocks 0..3 of 6
    data = NoisePairDataset(tmp_path, select=False)
    assert len(data) == 20
    for i in (0, 7, 19):
        a, b, cond = data[i]
        assert a.dtype == torch.float32 and a.shape == (4, 8, 8)
        torch.testing.assert_close(a, x[i].half().float(), rtol=0, atol=0)
        torch.testing.assert_close(b, xp[i].half().float(), rtol=0, atol=0)
        torch.testing.assert_close(cond, emb[rows[i]["prompt"]].half().float(), rtol=0, atol=0)
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in manifest] == list(range(20))
    assert manifest[7]["shard"] == "shards/000001.safetensors" and manifest[7]["offset"] == 1


def test_without_cache_the_condition_is_the_prompt(tmp_path):
    rows, *_ = _synthetic(tmp_path, embeds=False)
    data = NoisePairDataset(tmp_path, select=False)
    assert data[3][2] == rows[3]["prompt"]
    with pytest.raises(ValueError, match="embedding cache"):
        NoisePairDataset(tmp_path, embeds=True)


@pytest.mark.parametrize("margin", [-0.5, -0.1, 0.0, 0.2])
def test_selection_keeps_exactly_the_rows_meeting_the_margin(tmp_path, margin):
    rows, *_ = _synthetic(tmp_path)
    data = NoisePairDataset(tmp_path, margin=margin)
    expected = [r["index"] for r in rows if r["score_standard"] + margin < r["score_inversion"]]
    assert [r["index"] for r in data.rows] == expected
    stored = NoisePairDataset(tmp_path)  # margin=None: the decision made at collection time (m = 0)
    assert [r["index"] for r in stored.rows] == [r["index"] for r in rows if r["kept"]]


def test_split_is_disjoint_exact_and_independent_of_the_margin(tmp_path):
    _synthetic(tmp_path, n=20)
    kw = dict(val_fraction=0.25, seed=3, select=False)
    train = {r["index"] for r in NoisePairDataset(tmp_path, split="train", **kw).rows}
    val = {r["index"] for r in NoisePairDataset(tmp_path, split="val", **kw).rows}
    assert not train & val and train | val == set(range(20)) and len(val) == 5
    selected_val = {
        r["index"] for r in NoisePairDataset(tmp_path, split="val", val_fraction=0.25, seed=3).rows
    }
    assert selected_val <= val
    by_prompt = NoisePairDataset(tmp_path, split="val", split_by="prompt", **kw)
    assert len({r["prompt"] for r in by_prompt.rows}) == 1  # round(4 prompts * 0.25)


def test_manifest_union_of_rank_logs_tolerates_a_torn_last_line(tmp_path):
    rows, *_ = _synthetic(tmp_path, n=12, shard_size=4)
    manifest = (tmp_path / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "manifest.jsonl").unlink()
    (tmp_path / "manifest.rank0.jsonl").write_text("\n".join(manifest[:8]) + "\n")
    (tmp_path / "manifest.rank1.jsonl").write_text("\n".join(manifest[4:]) + "\n" + manifest[0][:20])
    assert [r["index"] for r in read_manifest(tmp_path)] == list(range(12))
    merge(tmp_path)
    assert (tmp_path / "manifest.jsonl").read_text().splitlines() == manifest
    assert read_shard_rows(tmp_path / "shards" / "000002.safetensors")[0]["index"] == 8


def test_other_settings_in_an_existing_folder_are_rejected(tmp_path):
    write_config(tmp_path, {"model": "tiny-sdxl", "steps": 10})
    write_config(tmp_path, {"model": "tiny-sdxl", "steps": 10})
    with pytest.raises(ValueError, match="steps: folder has 10, now 4"):
        write_config(tmp_path, {"model": "tiny-sdxl", "steps": 4})
    with pytest.raises(ValueError, match="not a noise prompt dataset"):
        NoisePairDataset(tmp_path / "missing")


def _official(tmp_path, n=7):
    g = np.random.default_rng(0)
    pairs, lines = {}, []
    for index in range(n):
        seed = int(g.integers(0, 1025))
        x = g.standard_normal((1, 4, 8, 8)).astype(np.float16)
        xp = (x + 0.05 * g.standard_normal((1, 4, 8, 8))).astype(np.float16)
        folder = tmp_path / "npz" / f"gpu{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        if index != 6:  # a JSONL row without its npz
            np.savez(folder / f"{index}_{seed}.npz", x, xp, np.array(index))
        s0, s1 = float(g.random()), float(g.random())
        row = {"index": index, "seed": seed, "caption": f"caption {index % 3}"}
        row.update(original_score_list=[s0, 0.5], optimized_score_list=[s1, 0.1])
        lines.append(repr(row) if index == 2 else json.dumps(row))  # the official reader eval()s lines
        pairs[index] = (x[0], xp[0], row)
    np.savez(tmp_path / "npz" / "gpu0" / "40_3.npz", x, xp, np.array(40))  # no JSONL row
    (tmp_path / "train.json").write_text("\n".join(lines) + "\n")
    return pairs


def test_official_npz_and_jsonl_import(tmp_path):
    pairs = _official(tmp_path)
    encoded = []

    def encode(prompts):
        encoded.extend(prompts)
        return torch.stack([torch.full((77, 16), float(p[-1])) for p in prompts])  # (B, 77, 16)

    result = import_official(
        tmp_path / "npz",
        tmp_path / "train.json",
        tmp_path / "npd",
        margin=0.1,
        shard_size=4,
        encode_prompts=encode,
    )
    assert (result.imported, result.missing_caption, result.missing_npz) == (6, ("40_3.npz",), 1)
    assert sorted(encoded) == ["caption 0", "caption 1", "caption 2"]  # each caption encoded once
    data = NoisePairDataset(tmp_path / "npd", select=False)
    assert [r["index"] for r in data.rows] == [0, 1, 2, 3, 4, 5]
    for i, row in enumerate(data.rows):
        x, xp, official = pairs[row["index"]]
        a, b, cond = data[i]
        assert torch.equal(a, torch.from_numpy(x).float()) and torch.equal(b, torch.from_numpy(xp).float())
        assert row["seed"] == official["seed"] and row["prompt"] == official["caption"]
        assert row["score_standard"] == official["original_score_list"][0]
        assert row["kept"] == (row["score_standard"] + 0.1 < row["score_inversion"])
        assert torch.equal(cond, torch.full((77, 16), float(row["prompt"][-1])))
    assert result.kept == sum(r["kept"] for r in data.rows) == len(NoisePairDataset(tmp_path / "npd"))


def test_official_import_rejects_colliding_indices(tmp_path):
    _official(tmp_path)
    np.savez(
        tmp_path / "npz" / "gpu1" / "0_999.npz", np.zeros((1, 4, 8, 8)), np.zeros((1, 4, 8, 8)), np.array(0)
    )
    with pytest.raises(ValueError, match="index 0 appears twice"):
        import_official(tmp_path / "npz", tmp_path / "train.json", tmp_path / "npd")
