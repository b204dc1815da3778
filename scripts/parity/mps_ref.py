"""MPS parity fixture: logits and preferences from Kwai-Kolors/MPS's own scoring code on seeded weights.

Regenerate ``tests/fixtures/parity/mps.json`` from the repository root, with a checkout of the
reference repository (github.com/Kwai-Kolors/MPS; it is not a package):

    bash scripts/parity/envs_openclip.sh mps         # throwaway venv /tmp/ref-mps
    /tmp/ref-mps/bin/python scripts/parity/mps_ref.py --mps-repo /path/to/MPS

Two reference paths, both the repository's code, run on the same model:

- threshold 0.01 (the README's inference example, this project's default): ``infer_example`` is
  taken from the repository's README.md and executed as written; it calls the repository's
  ``trainer.models.clip_model.CLIPModel.forward``, whose condition mask keeps text tokens with
  normalised similarity > 0.01. It returns the pair's softmax; the logits are read from the same
  function with its last line returning ``scores`` instead (the only edit);
- threshold 0.3 (the repository's HPDv2/ImageReward evaluation scripts): ``infer_one_sample`` of
  ``eval_overall_mps_on_hpdv2.py``, imported unchanged, per image.

Stand-ins: the released checkpoint is a pickled ``CLIPModel`` around CLIP ViT-H-14 with a 4-layer
``Cross_model(dim=1024)``; here ``CLIPModel(ckpt)`` loads a small ``XCLIPModel`` (``ARCH``) saved with
``save_pretrained`` and its ``cross_model`` is replaced by a small ``Cross_model``; the weights are
``seeded_state_dict`` of its parameter shapes (buffers as built), and the model goes through
``torch.save(model)`` / ``torch.load`` like the released file. The tokenizer and image processor
(``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` on the hub) are written locally: the real 49408-token
CLIP BPE vocabulary (``write_openai_clip_processor``, from open_clip's copy of OpenAI's BPE file),
loaded with ``AutoTokenizer`` (fast) and ``CLIPImageProcessor`` as the reference does.
Precision: the reference runs an fp16 model on CUDA and casts the pixels with ``.half()``; here the
model is float32 on CPU, the ``.half()`` rounding of the pixels is kept, and a pre-hook casts them
back to the patch embedding's float32 (what transformers >= 4.31's CLIP embedding does itself).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ARCH = {  # laion/CLIP-ViT-H-14's config keys with small sizes; vocabulary and image size as the real model
    "text_config": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2,
                    "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "gelu",
                    "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
    "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2,
                      "image_size": 224, "patch_size": 14, "hidden_act": "gelu", "layer_norm_eps": 1e-05},
    "projection_dim": 64,
    "cross_layers": 2,
    "cross_heads": 2,
}  # fmt: skip
IMAGES = ({"kind": "edges", "width": 224, "height": 224},)  # + PARITY_IMAGES: five images, five prompts
CONDITION = (
    "light, color, clarity, tone, style, ambiance, artistry, shape, face, hair, hands, limbs, structure, "
    "instance, texture, quantity, attributes, position, number, location, word, things."
)


def build_reference(workdir: Path, seed: int):
    """The repository's ``CLIPModel`` with small sizes and seeded weights, pickled and loaded back."""
    import torch
    from trainer.models.clip_model import CLIPModel, XCLIPModel
    from trainer.models.cross_modeling import Cross_model
    from transformers import CLIPConfig

    from eval.metrics.parity import seeded_state_dict, state_sha256

    config = CLIPConfig(ARCH["text_config"], ARCH["vision_config"], projection_dim=ARCH["projection_dim"])
    XCLIPModel(config).save_pretrained(workdir / "clip")
    model = CLIPModel(str(workdir / "clip"))
    model.cross_model = Cross_model(
        dim=ARCH["projection_dim"], layer_num=ARCH["cross_layers"], heads=ARCH["cross_heads"]
    )
    shapes = {name: list(param.shape) for name, param in model.named_parameters()}
    seeded = seeded_state_dict(shapes, seed)
    model.load_state_dict({**model.state_dict(), **seeded}, strict=True)
    torch.save(model, workdir / "MPS_overall_checkpoint.pth")
    model = torch.load(
        workdir / "MPS_overall_checkpoint.pth", weights_only=False
    ).eval()  # README: torch.load
    patch = model.model.vision_model.embeddings.patch_embedding
    patch.register_forward_pre_hook(lambda module, args: (args[0].to(module.weight.dtype),))
    return model, {"seed": seed, "shapes": shapes, "sha256": state_sha256(seeded)}


def readme_functions(readme: Path) -> tuple:
    """``infer_example`` from README.md as written, and the same with ``return scores`` as its last line."""
    import torch
    from PIL import Image

    text = readme.read_text()
    start = text.index("def infer_example(")
    end = text.index("    return probs.cpu().tolist()", start) + len("    return probs.cpu().tolist()")
    source = text[start:end]
    namespaces = ({"torch": torch, "Image": Image}, {"torch": torch, "Image": Image})
    exec(source, namespaces[0])  # noqa: S102 - the reference's own code
    exec(source.replace("return probs.cpu().tolist()", "return scores[0].cpu().tolist()"), namespaces[1])  # noqa: S102
    return namespaces[0]["infer_example"], namespaces[1]["infer_example"]


def main(args: argparse.Namespace) -> None:
    import PIL
    import torch
    import transformers
    from transformers import AutoTokenizer, CLIPImageProcessor

    from eval.metrics.parity import (
        checkout_commit,
        image_sha256,
        parity_fixture_json,
        parity_inputs,
        write_openai_clip_processor,
    )

    torch.set_num_threads(1)
    sys.path.insert(0, str(args.mps_repo))
    from eval_overall_mps_on_hpdv2 import infer_one_sample

    specs, images, prompts = parity_inputs(IMAGES)
    pairs = [(i, (i + 1) % len(images)) for i in range(len(images))]  # (a, b), scored with prompts[a]
    probs_fn, logits_fn = readme_functions(args.mps_repo / "README.md")
    with tempfile.TemporaryDirectory() as tmp:
        processor_dir = write_openai_clip_processor(Path(tmp) / "processor", 224)
        image_processor = CLIPImageProcessor.from_pretrained(processor_dir)
        tokenizer = AutoTokenizer.from_pretrained(processor_dir, trust_remote_code=True)
        model, weights = build_reference(Path(tmp), args.seed)
        common = (model, image_processor, tokenizer, "cpu")
        logits = [logits_fn([images[a], images[b]], prompts[a], CONDITION, *common) for a, b in pairs]
        probs = [probs_fn([images[a], images[b]], prompts[a], CONDITION, *common) for a, b in pairs]
        hpd = [float(infer_one_sample(image, prompt, *common)[0]) for image, prompt in zip(images, prompts)]
    fixture = {
        "scorer": "mps",
        "units": "MPS logit = logit_scale x cos (the project's score); probs: softmax over a pair's logits",
        "reference": {
            "repository": "Kwai-Kolors/MPS",
            "commit": checkout_commit(args.mps_repo, args.commit),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "tokenizer": type(tokenizer).__name__, "pillow": PIL.__version__},
        },
        "arch": ARCH,
        "weights": weights,
        "condition": CONDITION,
        "images": [{**spec, "sha256": image_sha256(image)} for spec, image in zip(specs, images)],
        "prompts": prompts,
        "readme": {"threshold": 0.01, "entry": "README.md infer_example -> trainer.models.clip_model.CLIPModel.forward",
                   "pairs": pairs, "logits": logits, "probs": probs},
        "hpd_eval": {"threshold": 0.3, "entry": "eval_overall_mps_on_hpdv2.infer_one_sample", "scores": hpd},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(parity_fixture_json(fixture))
    print(f"wrote {args.out}: README logits {logits}, HPD-eval logits {hpd}")


if __name__ == "__main__":
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mps-repo", type=Path, required=True, help="checkout of github.com/Kwai-Kolors/MPS")
    parser.add_argument(
        "--commit", help="the checkout's commit, recorded in the fixture (default: git rev-parse)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/parity/mps.json")
    parser.add_argument(
        "--seed", type=int, default=0, help="0: threshold 0.3 masks text tokens of three of the five prompts"
    )
    main(parser.parse_args())
