"""CLIPScore parity fixture: jmhessel/clipscore's own scoring code on small seeded weights (issue 13).

Builds a tiny OpenAI CLIP ViT (``clip.model.CLIP``: ViT-B/32's patch 32 at 224 px, widths 128, 2
layers, OpenAI's 49408-token vocabulary), fills its state dict with
``eval.metrics.parity.seeded_state_dict(shapes, --seed)``, saves it as a traced TorchScript
archive like OpenAI's checkpoints and loads it back with ``clip.load(path, device="cpu", jit=False)``
(the reference's loader: rebuilds the model, float32 on CPU), then runs
``extract_all_images`` and ``get_clip_score`` from the checkout's ``clipscore.py`` (captions get the
"A photo depicts" prefix and ``clip.tokenize``) on every (prompt, image) pair of ``PARITY_PROMPTS`` x
``PARITY_IMAGES``, read from PNG files as the reference reads them. Writes
``tests/fixtures/parity/clipscore.json`` with the per-instance scores (the reference's units) and the
``clip.tokenize`` ids of each caption. ``generation_eval_utils`` (pycocoevalcap, only for the reference-based
metrics) is replaced by an empty module; nothing else in the checkout is changed.

Regenerate:

    bash scripts/parity/envs_hfclip.sh /tmp/ref-hfclip
    git clone https://github.com/jmhessel/clipscore /tmp/clipscore   # or any checkout of it
    /tmp/ref-hfclip/bin/python scripts/parity/clipscore_ref.py /tmp/clipscore
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import clip  # noqa: E402
import ftfy  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402

from eval.metrics.parity import (  # noqa: E402
    PARITY_IMAGES,
    PARITY_PROMPTS,
    check_state_equal,
    checkout_commit,
    image_sha256,
    parity_fixture_json,
    parity_image,
    write_traced_openai_clip,
)

# clip.model.CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
#                 context_length, vocab_size, transformer_width, transformer_heads, transformer_layers)
TINY_CLIP = {
    "embed_dim": 64, "image_resolution": 224, "vision_layers": 2, "vision_width": 128, "vision_patch_size": 32,
    "context_length": 77, "vocab_size": 49408, "transformer_width": 128, "transformer_heads": 2,
    "transformer_layers": 2,
}  # fmt: skip


def import_clipscore(checkout: Path) -> types.ModuleType:
    sys.modules.setdefault("generation_eval_utils", types.ModuleType("generation_eval_utils"))
    sys.path.insert(0, str(checkout))
    return importlib.import_module("clipscore")


def reference_scores(clipscore, model, image_paths: list[str], captions: list[str]) -> dict[str, list]:
    """Per pair: get_clip_score's per-instance scores and the caption's clip.tokenize ids (no padding)."""
    image_feats = clipscore.extract_all_images(image_paths, model, "cpu", batch_size=64, num_workers=8)
    _, per, _ = clipscore.get_clip_score(model, image_feats, captions, "cpu")
    tokens = [clipscore.CLIPCapDataset(captions)[i]["caption"] for i in range(len(captions))]  # (77,) each
    return {"scores": per.tolist(), "tokens": [t[t > 0].tolist() for t in tokens]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of github.com/jmhessel/clipscore")
    parser.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/parity/clipscore.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clipscore = import_clipscore(args.checkout)
    images = [parity_image(**spec) for spec in PARITY_IMAGES]
    pairs = [(p, i) for p in range(len(PARITY_PROMPTS)) for i in range(len(images))]  # prompt-major
    with tempfile.TemporaryDirectory() as tmp:
        state = write_traced_openai_clip(Path(tmp) / "tiny-ViT-B-32.pt", TINY_CLIP, args.seed)
        model, _ = clip.load(str(Path(tmp) / "tiny-ViT-B-32.pt"), device="cpu", jit=False)
        model.eval()
        check_state_equal(model, state)
        for index, image in enumerate(images):
            image.save(Path(tmp) / f"{index}.png")
        paths = [str(Path(tmp) / f"{i}.png") for _, i in pairs]
        result = reference_scores(clipscore, model, paths, [PARITY_PROMPTS[p] for p, _ in pairs])
    fixture = {
        "scorer": "clipscore",
        "units": "2.5 x max(cos(image, 'A photo depicts ' + caption), 0), get_clip_score's per-instance scores",
        "reference": f"jmhessel/clipscore@{checkout_commit(args.checkout, args.commit)} clipscore.py get_clip_score",
        "versions": {m.__name__: m.__version__ for m in (torch, np, PIL, ftfy)} | {"openai-clip": "1.0.1"},
        "seed": args.seed,
        "openai_clip": TINY_CLIP,
        "state_dict_shapes": {key: list(value.shape) for key, value in state.items()},
        "prompts": list(PARITY_PROMPTS),
        "images": [{**spec, "sha256": image_sha256(image)} for spec, image in zip(PARITY_IMAGES, images)],
        "pairs": [list(pair) for pair in pairs],
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(parity_fixture_json(fixture))
    print(f"wrote {args.out}: {len(pairs)} pairs")


if __name__ == "__main__":
    main()
