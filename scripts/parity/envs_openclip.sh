#!/usr/bin/env bash
# Throwaway reference environments for the HPSv2, ImageReward and MPS parity fixtures (issue 13).
#
#   bash scripts/parity/envs_openclip.sh hpsv2|imagereward|mps|all [VENV_ROOT]   # default VENV_ROOT=/tmp
#
# Creates VENV_ROOT/ref-hpsv2, VENV_ROOT/ref-imagereward, VENV_ROOT/ref-mps; nothing in them is a
# project dependency. torch/torchvision/Pillow are pinned to the project's versions, torch from the
# local wheel folder TORCH_WHEELS (default /opt/pypi-more/files) so no other torch is ever pulled.
#   - hpsv2 1.2.0: its wheel lacks open_clip's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz), so
#     open_clip_torch is installed without dependencies only to copy that file into
#     hpsv2/src/open_clip/ (the same file open_clip and OpenAI's clip ship).
#   - image-reward 1.5: pins that work together on Python 3.11 (timm 0.6.13, fairscale 0.4.13,
#     transformers 4.30.2, diffusers 0.21.4, huggingface_hub 0.17.3, accelerate 0.24.1, numpy<2,
#     pyarrow<20), plus its undeclared imports: `clip` (PyPI openai-clip), wcwidth, and
#     setuptools<81 (clip imports pkg_resources).
#   - MPS (github.com/Kwai-Kolors/MPS) is not a package: its scoring code runs from a checkout whose
#     path scripts/parity/mps_ref.py takes. This venv holds its requirements.txt's transformers
#     (4.27.3) and what its modules import (einops; cv2, matplotlib, fire for the eval script), and
#     open_clip_torch without dependencies for the CLIP BPE file the test vocabulary is built from.
# Then, from the repository root:
#   /tmp/ref-hpsv2/bin/python scripts/parity/hpsv2_ref.py
#   /tmp/ref-imagereward/bin/python scripts/parity/imagereward_ref.py
#   /tmp/ref-mps/bin/python scripts/parity/mps_ref.py --mps-repo /path/to/MPS
set -euo pipefail
WHICH=${1:?usage: envs_openclip.sh hpsv2|imagereward|mps|all [VENV_ROOT]}
ROOT=${2:-/tmp}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/pypi-more/files}
TORCH=(torch==2.14.1 torchvision==0.29.1 pillow==12.3.0)

new_venv() {  # new_venv NAME PACKAGES...: a fresh venv with the pinned torch and PACKAGES
  local venv="$ROOT/ref-$1"
  shift
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --find-links "$TORCH_WHEELS" "${TORCH[@]}" "$@"
}

hpsv2() {
  new_venv hpsv2 hpsv2==1.2.0 numpy==2.4.6 ftfy==6.3.1
  "$ROOT/ref-hpsv2/bin/pip" install -q --no-deps open_clip_torch==3.3.0
  "$ROOT/ref-hpsv2/bin/python" - <<'PY'
import pathlib, shutil, open_clip
src = pathlib.Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
import importlib.util
dst = pathlib.Path(importlib.util.find_spec("hpsv2").origin).parent / "src" / "open_clip" / src.name
shutil.copyfile(src, dst)
print("copied", src, "->", dst)
PY
  "$ROOT/ref-hpsv2/bin/python" -c "import hpsv2.src.open_clip as oc; print('hpsv2 ok', oc.tokenize(['ok']).shape)"
}

imagereward() {
  new_venv imagereward image-reward==1.5 timm==0.6.13 fairscale==0.4.13 transformers==4.30.2 \
    tokenizers==0.13.3 diffusers==0.21.4 huggingface_hub==0.17.3 accelerate==0.24.1 datasets==2.14.7 \
    "numpy<2" "pyarrow<20" openai-clip==1.0.1 wcwidth "setuptools<81"
  "$ROOT/ref-imagereward/bin/python" -c "import ImageReward, transformers, timm; print('image-reward ok', transformers.__version__, timm.__version__)"
}

mps() {
  new_venv mps transformers==4.27.3 tokenizers==0.13.3 einops==0.8.2 numpy==1.26.4 safetensors \
    opencv-python-headless matplotlib fire tqdm
  "$ROOT/ref-mps/bin/pip" install -q --no-deps open_clip_torch==3.3.0
  "$ROOT/ref-mps/bin/python" -c "import transformers, einops, cv2, fire; print('mps ok', transformers.__version__)"
}

case "$WHICH" in
  hpsv2 | imagereward | mps) "$WHICH" ;;
  all) hpsv2; imagereward; mps ;;
  *) echo "unknown environment '$WHICH' (hpsv2, imagereward, mps or all)" >&2; exit 2 ;;
esac
