"""HPSv2 parity fixture: scores from the reference ``hpsv2`` 1.2.0 package on seeded random weights.

Regenerate ``tests/fixtures/parity/hpsv2.json`` from the repository root:

    bash scripts/parity/envs_openclip.sh hpsv2        # throwaway venv /tmp/ref-hpsv2
    /tmp/ref-hpsv2/bin/python scripts/parity/hpsv2_ref.py

What runs is the reference's own code: ``hpsv2.img_score.score(image, prompt, cp=..., hps_version=
"v2.1")``, i.e. its eval transform (``image_transform(..., resize_longest_max=True)``), its vendored
open_clip tokenizer and model, and its checkpoint loading (``torch.load(cp)['state_dict']``, strict).
The only stand-in is the model it builds: ``initialize_model`` hard-codes ViT-H-14 with LAION
weights from the network, so this script calls the same ``create_model_and_transforms`` with the
same arguments on a small ViT-H-14-shaped config (``ARCH``, registered with ``add_model_config``,
no pretrained weights) and puts it in ``hpsv2.img_score.model_dict``, where ``initialize_model``
leaves it. The weights are ``seeded_state_dict`` (eval/metrics/parity.py) of the model's
parameter shapes, saved as ``HPS_v2.1_compressed.pt`` ({'state_dict': ...}, the released layout).
The fixture keeps the shapes, the seed and a hash instead of the weights; the test rebuilds them.
Everything runs on CPU in float32 (``torch.cuda.amp.autocast`` is a no-op there).
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

ARCH = {  # ViT-H-14's config keys with small sizes; vocabulary and image size as the real model
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
IMAGES = ({"kind": "edges", "width": 224, "height": 224},)  # + PARITY_IMAGES; 224 x 224: no resize


def build_reference(workdir: Path):
    """The reference model and eval transform, created as ``hpsv2.img_score.initialize_model`` does."""
    from hpsv2.src.open_clip import add_model_config, create_model_and_transforms

    (workdir / "ViT-H-14-parity.json").write_text(json.dumps(ARCH))
    add_model_config(workdir / "ViT-H-14-parity.json")
    model, _, preprocess_val = create_model_and_transforms(
        "ViT-H-14-parity", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False,
        force_custom_text=False, force_patch_dropout=False, force_image_size=None,
        pretrained_image=False, image_mean=None, image_std=None, light_augmentation=True, aug_cfg={},
        output_dict=True, with_score_predictor=False, with_region_predictor=False,
    )  # fmt: skip
    return model, preprocess_val


def write_checkpoint(model, seed: int, path: Path) -> dict:
    """Seeded weights for every parameter, saved in the released layout; returns the fixture's record."""
    import torch

    from eval.metrics.parity import seeded_state_dict, state_sha256

    shapes = {name: list(param.shape) for name, param in model.named_parameters()}
    state = seeded_state_dict(shapes, seed)
    torch.save({"epoch": 1, "name": "parity", "state_dict": state}, path)
    return {"seed": seed, "shapes": shapes, "sha256": state_sha256(state)}


def reference_scores(images, prompts, checkpoint: Path) -> list[float]:
    from hpsv2 import img_score

    return [float(img_score.score(image, prompt, cp=str(checkpoint), hps_version="v2.1")[0])
            for image, prompt in zip(images, prompts)]  # fmt: skip


def main(args: argparse.Namespace) -> None:
    from importlib.metadata import version

    import open_clip
    import PIL
    import torch
    import torchvision
    from hpsv2 import img_score

    from eval.metrics.parity import (
        image_sha256,
        parity_fixture_json,
        parity_inputs,
    )

    torch.set_num_threads(1)
    specs, images, prompts = parity_inputs(IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        model, preprocess_val = build_reference(Path(tmp))
        weights = write_checkpoint(model, args.seed, Path(tmp) / "HPS_v2.1_compressed.pt")
        img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
        scores = reference_scores(images, prompts, Path(tmp) / "HPS_v2.1_compressed.pt")
    fixture = {
        "scorer": "hpsv2",
        "units": "cos(image, text) (hpsv2.score; the project reports 100 x cos)",
        "reference": {
            "entry": "hpsv2.img_score.score(image, prompt, cp, hps_version='v2.1')",
            "versions": {"hpsv2": version("hpsv2"), "torch": torch.__version__, "torchvision": torchvision.__version__,
                         "pillow": PIL.__version__, "bpe_vocab_from_open_clip": open_clip.__version__},
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
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HPS_ROOT", tempfile.mkdtemp(prefix="hps-root-"))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/parity/hpsv2.json")
    parser.add_argument("--seed", type=int, default=13)
    main(parser.parse_args())
