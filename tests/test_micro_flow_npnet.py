"""micro-flow preset: NPNet on a flow-matching (SD3-class) micro generator, offline, end to end.

A seeded random micro flow generator (the real components, tiny sizes, the shipped text width so that the
``micro-flow`` NPNet preset fits) is saved and loaded as the preset loads the shipped one.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from cli.micro_arms import ARMS, evaluate, summarize_arms, write_curve
from cli.micro_flow_select import (
    MODEL,
    choose_npnet,
    choose_wl,
    flow_presets,
    pick_npnet,
    pick_steps,
    pick_wl,
)
from npnet.checkpoints import load_npnet, save_npnet
from npnet.diffusion.families import family_of
from npnet.diffusion.presets import MODEL_PRESETS, get_model_preset
from npnet.diffusion.sampling import encode_prompt
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.model import NPNET_PRESETS, NPNet
from npnet.worlds.micro_flow.components import FlowConfig, build_components, build_pipeline
from npnet.worlds.micro_flow.pipeline import load_micro_flow_pipeline

SMALL = FlowConfig(  # text_hidden 32: the shipped 64-wide joint prompt_embeds; everything else tiny
    text_layers=1,
    text_heads=2,
    text_intermediate=32,
    num_layers=1,
    num_heads=2,
    head_dim=8,
    vae_channels=(8, 8, 8, 8),
    vae_norm_groups=4,
)
PROMPT = "a red circle above a blue square"


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flowgen")
    build_pipeline(build_components(folder / "tok", SMALL)).save_pretrained(folder / "pipe")
    return folder / "pipe"


@pytest.fixture(scope="module")
def npnet_file(generator):
    torch.manual_seed(0)
    return str(save_npnet(NPNet.from_config("micro-flow"), generator.parent / "npnet.safetensors"))


@pytest.fixture()
def service(generator):
    return GoldenNoiseService(device="cpu", offline=True, progress=False, presets=flow_presets(str(generator)))


def test_preset_is_flow_matching_and_its_npnet_fits_the_pipelines_own_encode_prompt(generator):
    preset = get_model_preset(MODEL)
    assert (preset.family, preset.scheduler, preset.redenoise_solver, preset.offline) == ("sd3", "default", "flow-euler", True)
    assert preset.collect_steps == preset.steps and preset.redenoise_guidance_scale is not None
    pipe = load_micro_flow_pipeline(path=generator)
    cond = encode_prompt(pipe, PROMPT).condition  # (1, 16 CLIP + 256 zero tokens, 64)
    cfg = NPNET_PRESETS[preset.npnet_preset]
    assert cond.shape == (1, *family_of(pipe).text_shape(pipe)) == (1, cfg.text_len, cfg.text_dim)
    assert (cfg.latent_channels, cfg.svd_grid, cfg.family) == (16, 4, "sd3")
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_standard_npnet_inversion_are_deterministic_and_distinct(service, npnet_file):
    request = GenerationRequest(MODEL, PROMPT, seed=3, methods=("standard", "npnet", "inversion"), npnet=npnet_file)
    a, b = service.generate(request), service.generate(request)
    assert a.settings["redenoise_solver"] == "flow-euler" and a.settings["steps"] == get_model_preset(MODEL).steps
    for method in ("standard", "npnet", "inversion"):
        assert a.latents[method].shape == (1, 16, 8, 8)
        assert torch.equal(a.latents[method], b.latents[method])
        assert list(a.images[method].getdata()) == list(b.images[method].getdata())
    assert not torch.equal(a.latents["standard"], a.latents["inversion"])
    assert not torch.equal(a.latents["standard"], a.latents["npnet"])


def test_collect_and_train_commands_run_on_micro_flow(generator, tmp_path, monkeypatch):
    from cli.__main__ import main

    monkeypatch.setitem(MODEL_PRESETS, MODEL, flow_presets(str(generator))[MODEL])
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square above a green circle\n")
    npd, out = tmp_path / "npd", tmp_path / "npnet"
    assert main(["collect", "--model", MODEL, "--prompts", str(prompts), "--seeds-per-prompt", "2", "--steps", "2",
                 "--scorer", "micro", "--out", str(npd), "--device", "cpu"]) == 0  # fmt: skip
    assert json.loads((npd / "config.json").read_text())["model"] == MODEL
    assert main(["train", "--data", str(npd), "--preset", "micro-flow", "--epochs", "1", "--batch-size", "2",
                 "--no-select", "--val-fraction", "0.5", "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    net = load_npnet(out / "best" / "npnet.safetensors")
    assert net.config == NPNET_PRESETS["micro-flow"]


def test_evaluate_arms_write_rows_from_which_the_summary_is_recomputed(service, npnet_file, tmp_path):
    results = evaluate(npnet_file, tmp_path / "ev", (0,), limit=2, model=MODEL, service=service)
    rows = pd.read_csv(tmp_path / "ev" / "rows.csv")
    assert len(rows) == 2 and list(rows["seed"]) == [0, 0]
    assert rows[list(ARMS)].apply(lambda c: c.between(0, 1).all()).all()
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert saved["model"] == MODEL and saved["pairs"] == 2
    assert json.loads(json.dumps(summarize_arms(rows)))["arms"] == saved["arms"] == json.loads(json.dumps(results["arms"]))
    table = write_curve([str(tmp_path / "ev")], None, model=MODEL)
    assert table.splitlines()[2].startswith(f"| {saved['steps']} |")


def test_selection_rules_use_only_what_they_are_given():
    table = {2: {1.0: 0.05, 3.0: 0.10}, 4: {1.0: 0.30, 3.0: 0.45}, 6: {1.0: 0.80, 3.0: 0.70}}
    assert pick_steps(table, target=0.35) == (4, 3.0)  # best shift per count: 0.10, 0.45, 0.80; 0.45 nearest
    assert pick_steps({4: {1.0: 0.4, 3.0: 0.4}}, 0.35) == (4, 1.0)  # ties: the unshifted schedule
    assert pick_wl({5.0: 0.5, 9.0: 0.7, 12.0: 0.7}) == 9.0
    assert pick_npnet({"a": 0.4, "b": 0.6, "c": 0.6}) == "b"  # ties: the one listed first


def test_choose_wl_scores_training_captions_per_candidate(service):
    report = choose_wl([5.0, 9.0], prompts=1, seeds=(200,), steps=2, service=service)
    assert report["split"] == "train" and report["steps"] == 2
    assert set(report["inversion_by_wl"]) == {"5.0", "9.0"} and report["w_l"] in (5.0, 9.0)
    assert all(0 <= a <= 1 for a in [report["standard"], *report["inversion_by_wl"].values()])


def test_choose_npnet_scores_each_candidate_checkpoint_on_training_captions(service, npnet_file, generator):
    torch.manual_seed(1)
    other = str(save_npnet(NPNet.from_config("micro-flow"), generator.parent / "other.safetensors"))
    report = choose_npnet({"a": npnet_file, "b": other}, prompts=2, seeds=(200,), steps=2, service=service)
    assert report["split"] == "train" and report["prompts"] == 2 and report["seeds"] == [200]
    assert set(report["npnet_by_candidate"]) == {"a", "b"} and report["chosen"] in ("a", "b")
    scores = [report["standard"], *report["npnet_by_candidate"].values()]
    assert all(a in (0.0, 0.5, 1.0) for a in scores)  # 2 captions x 1 seed
    golden = service.generate(GenerationRequest(MODEL, PROMPT, seed=200, steps=2, methods=("npnet",), npnet=other))
    first = service.generate(GenerationRequest(MODEL, PROMPT, seed=200, steps=2, methods=("npnet",), npnet=npnet_file))
    assert not torch.equal(golden.latents["npnet"], first.latents["npnet"])  # each candidate is the one used
