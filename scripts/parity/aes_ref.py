"""AES parity fixture: improved-aesthetic-predictor's simple_inference.py on small seeded weights (issue 13).

Builds a tiny OpenAI CLIP ViT (``clip.model.CLIP``: ViT-L/14's patch 14 at 224 px, widths 128, 2
layers) and the predictor's ``MLP`` (on that model's 64-d embeddings), fills both state dicts with
``eval.metrics.parity.seeded_state_dict`` (CLIP from ``--seed``, the MLP from ``--seed + 1``),
saves them as the reference expects them (a traced TorchScript archive like OpenAI's checkpoints, a
``.pth`` state dict), and runs the inference steps of the checkout's ``simple_inference.py`` on each
image of ``PARITY_IMAGES`` read from a PNG file: ``clip.load`` + its ``preprocess``,
``encode_image``, the script's numpy ``normalized``, then the MLP. The ``MLP`` class and ``normalized``
are taken from the checkout's source (the script itself loads files and a GPU at import time); the
``pytorch_lightning`` base class is replaced by ``torch.nn.Module`` (inference only needs
``forward``), and the final ``.type(torch.cuda.FloatTensor)`` becomes ``torch.FloatTensor`` on CPU.
Writes ``tests/fixtures/parity/aes.json`` (scores in the predictor's rating units).

Regenerate:

    bash scripts/parity/envs_hfclip.sh /tmp/ref-hfclip
    git clone https://github.com/christophschuhmann/improved-aesthetic-predictor /tmp/aes   # or any checkout
    /tmp/ref-hfclip/bin/python scripts/parity/aes_ref.py /tmp/aes
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import clip  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from eval.metrics.parity import (  # noqa: E402
    PARITY_IMAGES,
    check_state_equal,
    checkout_commit,
    image_sha256,
    parity_fixture_json,
    parity_image,
    seeded_state_dict,
    write_traced_openai_clip,
)

TINY_CLIP = {
    "embed_dim": 64, "image_resolution": 224, "vision_layers": 2, "vision_width": 128, "vision_patch_size": 14,
    "context_length": 77, "vocab_size": 49408, "transformer_width": 128, "transformer_heads": 2,
    "transformer_layers": 2,
}  # fmt: skip


def reference_definitions(checkout: Path) -> types.SimpleNamespace:
    """``MLP`` and ``normalized`` from simple_inference.py, executed without the rest of the script."""
    source = (checkout / "simple_inference.py").read_text()
    wanted = [node for node in ast.parse(source).body if getattr(node, "name", None) in ("MLP", "normalized")]
    assert len(wanted) == 2, "simple_inference.py no longer defines MLP and normalized"
    namespace = {"nn": nn, "torch": torch, "pl": types.SimpleNamespace(LightningModule=nn.Module)}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "simple_inference.py", "exec"), namespace)
    return types.SimpleNamespace(MLP=namespace["MLP"], normalized=namespace["normalized"])


def predict(ref, model, model2, preprocess, img_path: Path, device="cpu") -> float:
    """simple_inference.py's last lines, for one image."""
    pil_image = Image.open(img_path)
    image = preprocess(pil_image).unsqueeze(0).to(device)
    with torch.no_grad():
        image_features = model2.encode_image(image)
    im_emb_arr = ref.normalized(image_features.cpu().detach().numpy())
    prediction = model(torch.from_numpy(im_emb_arr).to(device).type(torch.FloatTensor))
    return prediction.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkout", type=Path, help="a checkout of github.com/christophschuhmann/improved-aesthetic-predictor"
    )
    parser.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/parity/aes.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref = reference_definitions(args.checkout)
    images = [parity_image(**spec) for spec in PARITY_IMAGES]
    mlp_shapes = {
        key: list(value.shape) for key, value in ref.MLP(TINY_CLIP["embed_dim"]).state_dict().items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip_state = write_traced_openai_clip(Path(tmp) / "tiny-ViT-L-14.pt", TINY_CLIP, args.seed)
        torch.save(seeded_state_dict(mlp_shapes, args.seed + 1), Path(tmp) / "mlp.pth")
        model = ref.MLP(TINY_CLIP["embed_dim"])
        model.load_state_dict(torch.load(Path(tmp) / "mlp.pth"))
        model.eval()
        model2, preprocess = clip.load(str(Path(tmp) / "tiny-ViT-L-14.pt"), device="cpu")
        check_state_equal(model2, clip_state)
        for index, image in enumerate(images):
            image.save(Path(tmp) / f"{index}.png")
        scores = [predict(ref, model, model2, preprocess, Path(tmp) / f"{i}.png") for i in range(len(images))]
    fixture = {
        "scorer": "aes",
        "units": "LAION improved aesthetic predictor rating (the MLP's output)",
        "reference": f"christophschuhmann/improved-aesthetic-predictor@{checkout_commit(args.checkout, args.commit)} simple_inference.py",
        "versions": {m.__name__: m.__version__ for m in (torch, np, PIL)} | {"openai-clip": "1.0.1"},
        "seed": args.seed,
        "mlp_seed": args.seed + 1,
        "openai_clip": TINY_CLIP,
        "state_dict_shapes": {key: list(value.shape) for key, value in clip_state.items()},
        "mlp_state_dict_shapes": mlp_shapes,
        "images": [{**spec, "sha256": image_sha256(image)} for spec, image in zip(PARITY_IMAGES, images)],
        "scores": scores,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(parity_fixture_json(fixture))
    print(f"wrote {args.out}: {len(scores)} images")


if __name__ == "__main__":
    main()
