"""ImageReward parity fixture: rewards from the reference ``image-reward`` 1.5 package on seeded weights.

Regenerate ``tests/fixtures/parity/imagereward.json`` from the repository root:

    bash scripts/parity/envs_openclip.sh imagereward        # throwaway venv /tmp/ref-imagereward
    /tmp/ref-imagereward/bin/python scripts/parity/imagereward_ref.py

What runs is the reference's own code: ``ImageReward.load(checkpoint, device="cpu",
med_config=...)`` (``torch.load`` of a plain state dict, ``load_state_dict(strict=False)``, ``eval``)
and ``model.score(prompt, image)`` (its ``_transform(224)``: PIL bicubic ``Resize``, ``CenterCrop``,
``ToTensor``, ``Normalize``; its BLIP tokenizer, max_length 35; ViT, BERT with cross-attention, MLP,
(r - mean) / std). Stand-ins, for size only: ``BLIP_Pretrain`` builds ViT-L/16 through
``create_vit(vit='large')`` and ``ImageReward`` an ``MLP(768)``; both names are swapped in their
modules for the same classes (the package's ``VisionTransformer`` and ``MLP``) with ``ARCH``'s small
sizes. ``bert-base-uncased`` (its tokenizer, from the hub) is a small WordPiece vocabulary
(``write_bert_vocab`` in eval/metrics/random_weights.py) placed in a throwaway Hugging Face cache, so
``BertTokenizer.from_pretrained('bert-base-uncased')`` runs unchanged offline; the test loads the same
vocabulary from a directory. The weights are ``seeded_state_dict`` of the model's parameter shapes;
the fixture keeps the shapes, the seed and a hash, and the test rebuilds them.
Everything runs on CPU in float32 (the reference also runs in the fp32 its checkpoint loads as).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ARCH = {
    "vit": {"image_size": 224, "patch_size": 16, "width": 32, "depth": 2, "heads": 4},
    "med_config": {  # the released med_config.json's keys with small sizes
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 128,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 4,
        "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 128, "encoder_width": 32,
        "add_cross_attention": True,
    },
}  # fmt: skip


IMAGES = ({"kind": "edges", "width": 224, "height": 224},)  # + PARITY_IMAGES: five images, five prompts


def fake_bert_cache(hf_home: Path, vocab_size: int) -> None:
    """A Hugging Face cache holding a small ``bert-base-uncased`` tokenizer (no weights)."""
    from eval.metrics.random_weights import write_bert_vocab

    repo = hf_home / "hub" / "models--bert-base-uncased"
    write_bert_vocab(
        repo / "snapshots" / "parity", vocab_size
    )  # vocab_size - 2 tokens; BLIP adds [DEC], [ENC]
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("parity")


def shrink_reference() -> None:
    """Swap ViT-L/16 and MLP(768) for the same classes at ``ARCH``'s sizes (construction only)."""
    import importlib

    reward_module = importlib.import_module(
        "ImageReward.ImageReward"
    )  # the package re-exports a class by that name
    blip_pretrain = importlib.import_module("ImageReward.models.BLIP.blip_pretrain")
    from ImageReward.models.BLIP.vit import VisionTransformer

    vit, hidden, mlp = ARCH["vit"], ARCH["med_config"]["hidden_size"], reward_module.MLP

    def create_vit(name, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        encoder = VisionTransformer(
            img_size=image_size, patch_size=vit["patch_size"], embed_dim=vit["width"], depth=vit["depth"],
            num_heads=vit["heads"], use_grad_checkpointing=use_grad_checkpointing, ckpt_layer=ckpt_layer,
            drop_path_rate=0.1,
        )  # fmt: skip
        return encoder, vit["width"]

    blip_pretrain.create_vit = create_vit
    reward_module.MLP = lambda input_size: mlp(hidden)


def write_checkpoint(workdir: Path, seed: int) -> tuple[Path, Path, dict]:
    """Seeded weights as a plain state dict (the released ``ImageReward.pt`` layout) and med_config.json."""
    import torch
    from ImageReward.ImageReward import ImageReward

    from eval.metrics.parity import seeded_state_dict, state_sha256

    med_config = workdir / "med_config.json"
    med_config.write_text(json.dumps(ARCH["med_config"]))
    model = ImageReward(med_config=str(med_config), device="cpu")
    shapes = {name: list(param.shape) for name, param in model.named_parameters()}
    state = {**model.state_dict(), **seeded_state_dict(shapes, seed)}  # buffers (position ids) as built
    torch.save(state, workdir / "ImageReward.pt")
    return workdir / "ImageReward.pt", med_config, {"seed": seed, "shapes": shapes, "sha256": state_sha256(
        {key: state[key] for key in shapes})}  # fmt: skip


def main(args: argparse.Namespace) -> None:
    from importlib.metadata import version

    import ImageReward as RM
    import PIL
    import timm
    import torch
    import torchvision
    import transformers

    from eval.metrics.parity import (
        image_sha256,
        parity_fixture_json,
        parity_inputs,
    )

    torch.set_num_threads(1)
    specs, images, prompts = parity_inputs(IMAGES)
    shrink_reference()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, med_config, weights = write_checkpoint(Path(tmp), args.seed)
        model = RM.load(str(checkpoint), device="cpu", med_config=str(med_config))
        with torch.no_grad():
            scores = [float(model.score(prompt, image)) for image, prompt in zip(images, prompts)]
    fixture = {
        "scorer": "imagereward",
        "units": "standardised ImageReward reward (model.score; the project reports 100 x reward)",
        "reference": {
            "entry": "ImageReward.load(path, device='cpu', med_config=path).score(prompt, image)",
            "versions": {"image-reward": version("image-reward"), "torch": torch.__version__, "torchvision": torchvision.__version__,
                         "transformers": transformers.__version__, "timm": timm.__version__,
                         "pillow": PIL.__version__},
        },
        "arch": ARCH,
        "weights": weights,
        "images": [{**spec, "sha256": image_sha256(image)} for spec, image in zip(specs, images)],
        "prompts": prompts,
        "scores": scores,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(parity_fixture_json(fixture))
    print(f"wrote {args.out}: scores {[round(s, 6) for s in scores]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/parity/imagereward.json")
    parser.add_argument("--seed", type=int, default=13)
    cli_args = parser.parse_args()
    hf_home = Path(tempfile.mkdtemp(prefix="ref-hf-home-"))
    os.environ.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # before any import
    fake_bert_cache(hf_home, ARCH["med_config"]["vocab_size"])
    main(cli_args)
