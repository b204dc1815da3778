"""Effect of the HPSv2 preprocessing fix (issue 13): PIL-first resize (before) vs hpsv2's tensor resize (now).

    python benchmarks/hps_preprocessing.py --images /tmp/photos     # a folder of JPEG/PNG photos
    python benchmarks/hps_preprocessing.py                          # the parity fixtures' synthetic images

Before the fix, ``eval.metrics.clip_utils`` resized the 8-bit PIL image (PIL bicubic), padded it and
converted it to a tensor; the reference ``hpsv2`` 1.2.0 converts to a float tensor first and resizes
that (torchvision bicubic, antialiased), which keeps the bicubic overshoot and skips the 8-bit
rounding. Per image this prints the fraction of the 3 x 224 x 224 pixel values that differ by more
than 0.5/255 (i.e. would round to another 8-bit value), the largest difference (in 1/255), and the
HPS score (100 x cos) of both inputs on random ``--size`` weights (eval.metrics.random_weights;
random weights, so only the size of the change is meaningful, not the scores).

No photos ship with the project and the network is off; photos used for the README numbers come from
wheels on the package index (nothing is installed): scikit-image's ``skimage/data`` and
matplotlib's ``sample_data/grace_hopper.jpg``::

    pip download --no-deps -d /tmp/wheels scikit-image==0.26.0 matplotlib
    unzip -j /tmp/wheels/scikit_image-*.whl -d /tmp/photos $(printf 'skimage/data/%s ' astronaut.png \
        brick.png camera.png chelsea.png coffee.png coins.png grass.png hubble_deep_field.jpg \
        motorcycle_left.png page.png retina.jpg rocket.jpg)
    unzip -j /tmp/wheels/matplotlib-*.whl '*/sample_data/grace_hopper.jpg' -d /tmp/photos
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision.transforms.functional as TF  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

from eval.metrics.clip_utils import max_size_shape, normalize, resize_max_size  # noqa: E402

PROMPT = "a high quality photo"
SUFFIXES = (".jpg", ".jpeg", ".png")


def pil_first_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """The pre-fix path: PIL bicubic resize of the 8-bit image, pad, ToTensor; (3, size, size) in [0, 1]."""
    new_h, new_w = max_size_shape(image.height, image.width, size)
    if (new_w, new_h) != image.size:
        image = TF.resize(image, [new_h, new_w], interpolation=InterpolationMode.BICUBIC)
    pad_h, pad_w = size - new_h, size - new_w
    image = TF.pad(image, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return TF.to_tensor(image)  # (3, size, size)


def tensor_first_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """hpsv2's path (the project's now): ToTensor, then ResizeMaxSize on floats; (3, size, size)."""
    return resize_max_size(TF.to_tensor(image), size)


def load_images(folder: Path | None) -> dict[str, Image.Image]:
    """RGB photos from ``folder`` by file name, or the parity fixtures' synthetic images."""
    if folder is None:
        from eval.metrics.random_weights import PARITY_IMAGES, parity_image

        return {f"{spec['kind']} (synthetic)": parity_image(**spec) for spec in PARITY_IMAGES}
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in SUFFIXES)
    if not paths:
        raise SystemExit(f"no {', '.join(SUFFIXES)} files in {folder}")
    return {path.name: Image.open(path).convert("RGB") for path in paths}


def pixel_stats(old: torch.Tensor, new: torch.Tensor) -> tuple[float, float]:
    """(fraction of values differing by > 0.5/255, max |difference| in 1/255 units)."""
    diff = (old - new).abs()  # (3, H, W)
    return (diff > 0.5 / 255).float().mean().item(), 255.0 * diff.max().item()


def hps_scores(scorer, pixels: torch.Tensor, prompt: str) -> torch.Tensor:
    """100 x cos of (B, 3, H, W) unnormalised pixels against one prompt through a loaded HPSv2Scorer."""
    tokens = scorer.tokenizer([prompt] * len(pixels))  # (B, 77)
    with torch.inference_mode():
        out = scorer.model(normalize(pixels).to(scorer.dtype), tokens)
    return 100.0 * (out["image_features"] * out["text_features"]).sum(-1).float()  # (B,)


def build_scorer(size: str, seed: int, root: Path):
    from eval.metrics.hpsv2 import HPSv2Scorer
    from eval.metrics.random_weights import write_random_checkpoints

    kwargs = write_random_checkpoints(root, ["hpsv2"], size=size, seed=seed)["hpsv2"]
    return HPSv2Scorer(**kwargs).load()


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    images = load_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        scorer = build_scorer(args.size, args.seed, Path(tmp))
        size = scorer.image_size
        old = torch.stack([pil_first_pixels(image, size) for image in images.values()])  # (B, 3, S, S)
        new = torch.stack([tensor_first_pixels(image, size) for image in images.values()])  # (B, 3, S, S)
        old_scores, new_scores = hps_scores(scorer, old, args.prompt), hps_scores(scorer, new, args.prompt)
    print(f"HPSv2 preprocessing, PIL-first (before) vs tensor-first (hpsv2, now); {args.size} random weights")
    print(
        f"{'image':28} {'size':>10} {'>0.5/255':>9} {'max/255':>8} {'HPS before':>11} {'HPS now':>9} {'|delta|':>8}"
    )
    deltas, fractions = [], []
    for i, (name, image) in enumerate(images.items()):
        fraction, largest = pixel_stats(old[i], new[i])
        delta = abs(new_scores[i] - old_scores[i]).item()
        deltas.append(delta)
        fractions.append(fraction)
        print(f"{name[:28]:28} {f'{image.width}x{image.height}':>10} {fraction:9.2%} {largest:8.2f} "
              f"{old_scores[i]:11.4f} {new_scores[i]:9.4f} {delta:8.4f}")  # fmt: skip
    print(f"mean: {sum(fractions) / len(fractions):.2%} of pixel values moved; |delta HPS| mean "
          f"{sum(deltas) / len(deltas):.4f}, max {max(deltas):.4f} (100 x cos units)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, help="folder of JPEG/PNG photos (default: synthetic images)")
    parser.add_argument(
        "--size", default="small", choices=("tiny", "small", "full"), help="random HPS weights"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--threads", type=int, default=2)
    main(parser.parse_args())
