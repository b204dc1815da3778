"""Prompt sets: project examples, official CSV formats (shared copies), hub specs, malformed files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import eval.prompts as prompts_module
from eval.prompts import available_prompt_sets, load_prompts, resolve_prompts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "prompts"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data/prompts not beside the checkout")


def test_registry_has_the_paper_sets():
    assert {"examples", "drawbench", "pickapic", "hpdv2", "geneval", "t2i-compbench"} <= set(
        available_prompt_sets()
    )
    limits = {
        name: prompts_module.PROMPT_SETS[name].limit for name in ("drawbench", "pickapic", "hpdv2", "geneval")
    }
    assert limits == {"drawbench": 200, "pickapic": 100, "hpdv2": 100, "geneval": 553}


def test_python_sourced_set(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "fake_prompts", types.SimpleNamespace(make=lambda: [" a ", "b", "a"]))
    fake = prompts_module.PromptSet("fake", "test", "python", "fake_prompts:make", ())
    monkeypatch.setitem(prompts_module.PROMPT_SETS, "fake", fake)
    assert load_prompts("fake") == ["a", "b"]
    monkeypatch.setitem(sys.modules, "fake_prompts", None)
    with pytest.raises(ValueError, match="needs fake_prompts:make"):
        load_prompts("fake")


def test_examples_cover_the_categories():
    examples = load_prompts("examples")
    assert 25 <= len(examples) <= 40 and len(set(examples)) == len(examples)
    assert not any(p.startswith("#") or p != p.strip() for p in examples)
    assert any("three" in p for p in examples) and any("watercolor" in p for p in examples)
    assert load_prompts("examples", limit=5) == examples[:5]


@needs_shared
def test_drawbench_official_csv():
    prompts = load_prompts(SHARED / "drawbench.csv")
    assert len(prompts) == 200 and prompts[0] == "A red colored car."
    assert load_prompts(SHARED / "drawbench.csv", column="Category")[0] == "Colors"


@needs_shared
def test_pickapic_official_csv_with_bom_first_100_like_the_official_code():
    raw = (SHARED / "pickapic_official.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM this loader must strip
    load = resolve_prompts(f"pickapic={SHARED / 'pickapic_official.csv'}")
    assert len(load.prompts) == 100 and load.empty_dropped == 1
    assert load.prompts[0] == "A curious cat exploring a haunted mansion"
    # the official loader: csv rows[1:], row[1], first 101, drop empty
    official = pd.read_csv(SHARED / "pickapic_official.csv")["caption"].tolist()[:101]
    assert list(load.prompts) == [p for p in official if isinstance(p, str) and p]
    zh = load_prompts(SHARED / "pickapic_official.csv", column="caption_zh", limit=1)
    assert zh == ["一只好奇的猫探索闹鬼的豪宅"]


@needs_shared
def test_hpd_official_csv_keeps_captions_with_unquoted_commas():
    prompts = load_prompts(SHARED / "hpd_v2_official.csv")
    assert len(prompts) == 400
    assert prompts[1].endswith("inspired by Klimt, Nixeu, Ian Sprigger, Wlop, and Krenz Cushart.")
    assert "A samurai warrior made of smoke in Ghibli Studio's mystical and magical style." in prompts
    assert any(p.startswith('"Albus Dumbledore" - a portrait') for p in prompts)
    assert len(load_prompts(f"hpdv2={SHARED / 'hpd_v2_official.csv'}")) == 100


def test_strip_dedupe_keep_order_and_drop_empty(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("  b  \n\na\n# comment\nb\n   \nc\n")
    load = resolve_prompts(path)
    assert load.prompts == ("b", "a", "c")
    assert (load.raw_count, load.empty_dropped, load.duplicates_dropped) == (6, 2, 1)
    assert load_prompts(path, limit=2) == ["b", "a"]


def test_json_jsonl_and_parquet_formats(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(["x", "y"]))
    (tmp_path / "records.json").write_text(json.dumps([{"id": 1, "prompt": "x"}, {"id": 2, "prompt": "z"}]))
    (tmp_path / "wrapped.json").write_text(json.dumps({"prompts": ["p", "q"]}))
    (tmp_path / "lines.jsonl").write_text('{"text": "u", "tag": 1}\n\n{"text": "v", "tag": 2}\n')
    pd.DataFrame({"caption": ["m", "n"], "other": [1, 2]}).to_parquet(tmp_path / "t.parquet")
    assert load_prompts(tmp_path / "list.json") == ["x", "y"]
    assert load_prompts(tmp_path / "records.json") == ["x", "z"]
    assert load_prompts(tmp_path / "wrapped.json") == ["p", "q"]
    assert load_prompts(tmp_path / "lines.jsonl") == ["u", "v"]
    assert load_prompts(tmp_path / "t.parquet") == ["m", "n"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ragged.csv", "prompt,category\na,b\nc,d,e\n", "malformed CSV"),
        ("ambiguous.csv", "alpha,beta\na,b\n", "cannot tell which column"),
        ("broken.json", "[1, 2", "invalid JSON"),
        ("numbers.json", "[1, 2]", "list of strings or of objects"),
        ("object.json", '{"x": 1}', "'prompts'"),
        ("lines.jsonl", '{"prompt": "a"}\nnot json\n', "line 2 is not valid JSON"),
        ("missing.jsonl", '{"prompt": "a"}\n{"text": "b"}\n', "have no 'prompt' field"),
        ("empty.txt", "\n  \n# only a comment\n", "no non-empty prompts"),
        ("prompts.xlsx", "x", "unsupported prompt file type"),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_prompts(path)


def test_bad_column_and_spec_errors(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,category\na,b\n")
    with pytest.raises(ValueError, match="no column 'caption'"):
        load_prompts(path, column="caption")
    with pytest.raises(ValueError, match="unknown prompt set or missing file"):
        load_prompts("no-such-set")
    with pytest.raises(ValueError, match="bad hub spec"):
        load_prompts("hub:not-a-repo")
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_prompts(path, limit=0)
    (tmp_path / "bad.csv").write_bytes(b"prompt\n\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_prompts(tmp_path / "bad.csv")


@pytest.mark.parametrize(("name", "where"), [("drawbench", "shunk031/DrawBench"), ("hpdv2", "zhwang/HPDv2"),
                                             ("geneval", "djghosh13/geneval"), ("t2i-compbench", "color_val.txt")])  # fmt: skip
def test_offline_hub_sets_name_the_dataset_and_suggest_a_local_file(name, where, tmp_path, monkeypatch):
    monkeypatch.setenv("NPNET_PROMPT_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="pass its local path") as info:
        load_prompts(name)
    assert where in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)


def test_hub_set_parses_downloaded_files_with_paper_slicing(tmp_path, monkeypatch):
    """The hub path after download: HPD v2 test.json records, first 100 of 400."""
    records = [{"prompt": f"prompt {i}", "image_path": [f"{i}.png"]} for i in range(400)]
    (tmp_path / "test.json").write_text(json.dumps(records))
    calls = []

    def fake_download(repo_id, filename, repo_type, revision):
        calls.append((repo_id, filename, repo_type))
        return str(tmp_path / filename)

    monkeypatch.setattr(prompts_module, "hf_hub_download", fake_download)
    prompts = load_prompts("hpdv2")
    assert calls == [("zhwang/HPDv2", "test.json", "dataset")]
    assert prompts == [f"prompt {i}" for i in range(100)]
    assert len(load_prompts("hpdv2", limit=400)) == 400


def test_hub_glob_spec_reads_every_matching_parquet(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    pd.DataFrame({"caption": ["a", "b"]}).to_parquet(tmp_path / "data" / "test_unique-0.parquet")
    pd.DataFrame({"caption": ["c", "a"]}).to_parquet(tmp_path / "data" / "test_unique-1.parquet")
    seen = {}

    def fake_snapshot(repo_id, repo_type, allow_patterns, revision):
        seen.update(repo_id=repo_id, patterns=allow_patterns, revision=revision, repo_type=repo_type)
        return str(tmp_path)

    monkeypatch.setattr(prompts_module, "snapshot_download", fake_snapshot)
    assert load_prompts("hub:someone/pics@v1:data/test_unique-*.parquet", column="caption") == ["a", "b", "c"]
    assert seen == {"repo_id": "someone/pics", "patterns": ["data/test_unique-*.parquet"], "revision": "v1",
                    "repo_type": "dataset"}  # fmt: skip
    assert load_prompts("pickapic") == ["a", "b", "c"]
