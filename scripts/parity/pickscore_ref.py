"""PickScore parity fixture: the reference README code on small seeded weights (issue 13).

Runs the inference example of yuvalkirstain/PickScore's README (transformers 4.27
``AutoProcessor`` + ``AutoModel``, ``logit_scale.exp() * text_embs @ image_embs.T``) on a tiny
CLIPModel whose every tensor is drawn by ``eval.metrics.parity.seeded_state_dict`` from
``--seed`` (PickScore_v1's config shape: GELU, legacy ``eos_token_id=2``, at 224 px / patch 14), and
a processor laid out like laion/CLIP-ViT-H-14-laion2B-s32B-b79K's (OpenAI's 49408-token BPE
vocabulary, 224 px shortest-edge resize and centre crop). Scores every prompt of ``PARITY_PROMPTS``
against every image of ``PARITY_IMAGES`` and writes ``tests/fixtures/parity/pickscore.json``;
tests/test_parity_hfclip.py rebuilds the same weights and checks the project's scorer against it.

Regenerate (the README example needs no repository checkout):

    bash scripts/parity/envs_hfclip.sh /tmp/ref-hfclip
    /tmp/ref-hfclip/bin/python scripts/parity/pickscore_ref.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import clip.simple_tokenizer  # noqa: E402  (only for the BPE file it ships)
import PIL  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModel, AutoProcessor, CLIPConfig, CLIPModel  # noqa: E402

from eval.metrics.parity import (  # noqa: E402
    PARITY_IMAGES,
    PARITY_PROMPTS,
    image_sha256,
    parity_fixture_json,
    parity_image,
    seeded_state_dict,
    write_openai_bpe_files,
)

TINY_CONFIG = {
    "projection_dim": 32,
    "text_config": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2,
                    "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "gelu",
                    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
    "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2,
                      "image_size": 224, "patch_size": 14, "hidden_act": "gelu"},
}  # fmt: skip
# laion/CLIP-ViT-H-14-laion2B-s32B-b79K's preprocessor_config.json
LAION_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}  # fmt: skip


def model_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """The state-dict layout that gets seeded (buffers such as ``position_ids`` are not weights)."""
    return {
        key: list(value.shape)
        for key, value in model.state_dict().items()
        if not key.endswith("position_ids")
    }


def write_model(directory: Path, seed: int) -> dict[str, list[int]]:
    model = CLIPModel(CLIPConfig(**TINY_CONFIG))
    shapes = model_shapes(model)
    missing, unexpected = model.load_state_dict(seeded_state_dict(shapes, seed), strict=False)
    assert not unexpected and all(key.endswith("position_ids") for key in missing), (missing, unexpected)
    model.save_pretrained(directory)
    return shapes


def write_processor(directory: Path) -> None:
    """The laion processor files: vocab.json/merges.txt, a fast tokenizer, the preprocessor config
    and (as in that repo, which 4.27's AutoProcessor reads to pick the processor class) config.json."""
    from transformers import CLIPTokenizerFast

    CLIPConfig(**TINY_CONFIG).save_pretrained(directory)
    vocab, merges = write_openai_bpe_files(directory, clip.simple_tokenizer.default_bpe())
    CLIPTokenizerFast(str(vocab), str(merges), model_max_length=77).save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(LAION_PREPROCESSOR, indent=2))


def calc_scores(processor, model, prompt, images, device="cpu"):
    """The README's ``calc_probs`` up to the scores (before the softmax over images)."""
    image_inputs = processor(
        images=images, padding=True, truncation=True, max_length=77, return_tensors="pt"
    ).to(device)
    text_inputs = processor(
        text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt"
    ).to(device)
    with torch.no_grad():
        image_embs = model.get_image_features(**image_inputs)
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = model.get_text_features(**text_inputs)
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
    return scores.cpu().tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/parity/pickscore.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = [parity_image(**spec) for spec in PARITY_IMAGES]
    with tempfile.TemporaryDirectory() as tmp:
        shapes = write_model(Path(tmp) / "model", args.seed)
        write_processor(Path(tmp) / "processor")
        processor = AutoProcessor.from_pretrained(Path(tmp) / "processor")
        model = AutoModel.from_pretrained(Path(tmp) / "model").eval()
        scores = [
            calc_scores(processor, model, prompt, images) for prompt in PARITY_PROMPTS
        ]  # [prompt][image]
    fixture = {
        "scorer": "pickscore",
        "units": "logit_scale.exp() x cos(image, text), as the README's scores",
        "reference": "yuvalkirstain/PickScore README 'Inference with PickScore' (AutoProcessor + AutoModel)",
        "processor_classes": [type(processor.image_processor).__name__, type(processor.tokenizer).__name__],
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, tokenizers, PIL)},
        "seed": args.seed,
        "config": TINY_CONFIG,
        "state_dict_shapes": shapes,
        "prompts": list(PARITY_PROMPTS),
        "images": [{**spec, "sha256": image_sha256(image)} for spec, image in zip(PARITY_IMAGES, images)],
        "scores": scores,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(parity_fixture_json(fixture))
    print(f"wrote {args.out}: {len(scores)} prompts x {len(images)} images")


if __name__ == "__main__":
    main()
