#!/usr/bin/env bash
# Throwaway reference environment for the PickScore, CLIPScore and AES parity fixtures (issue 13).
#
#   bash scripts/parity/envs_hfclip.sh [VENV]            # default VENV=/tmp/ref-hfclip
#
# One venv serves all three references; nothing in it is a project dependency:
#   - PickScore: transformers 4.27.3 (the version in yuvalkirstain/PickScore's requirements.txt, whose
#     README example is AutoProcessor + AutoModel) with tokenizers 0.13.3 and huggingface-hub 0.13.4;
#   - CLIPScore and AES: OpenAI's `clip` package (PyPI: openai-clip) with ftfy and regex, plus
#     scikit-learn, which jmhessel/clipscore's clipscore.py imports at module level, and setuptools<81
#     (clip/clip.py imports pkg_resources, which later setuptools releases dropped).
# torch/torchvision are pinned to the project's versions and installed from the local wheel folder
# TORCH_WHEELS (default /opt/pypi-more/files) so that no unpinned or different torch is ever pulled.
# Pillow is the project's version too, so both sides resize images with the same library.
# The reference repositories themselves (jmhessel/clipscore, christophschuhmann/
# improved-aesthetic-predictor) are separate checkouts whose paths the fixture scripts take.
set -euo pipefail
VENV=${1:-/tmp/ref-hfclip}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/pypi-more/files}

python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q --find-links "$TORCH_WHEELS" torch==2.14.1 torchvision==0.29.1 pillow==12.3.0 \
  numpy==1.26.4 transformers==4.27.3 tokenizers==0.13.3 huggingface-hub==0.13.4 \
  openai-clip==1.0.1 ftfy==6.3.1 regex==2026.11.19 scikit-learn==1.5.2 setuptools==80.9.0
"$VENV/bin/python" - <<'PY'
import clip, ftfy, numpy, PIL, sklearn, tokenizers, torch, torchvision, transformers
for module in (torch, torchvision, transformers, tokenizers, numpy, PIL, ftfy, sklearn):
    print(f"{module.__name__}=={module.__version__}")
print("clip:", clip.__file__)
PY
echo "reference venv ready: $VENV"
