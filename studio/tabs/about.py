"""About tab: the method in a few sentences, the paper's headline numbers, links and the citation."""

from __future__ import annotations

import gradio as gr

from studio.service import StudioService

METHOD = """
### Golden noise in one paragraph
A text-to-image diffusion model turns a random Gaussian noise x_T into an image; some noises give
better images than others. **NPNet** (Zhou et al., 2024) learns to turn any x_T into such a *golden
noise* with one small forward pass conditioned on the prompt embedding. Training pairs come from
**re-denoise sampling** (x'_T = DDIM-Inversion(DDIM(x_T)) with a higher CFG on the way down than on
the way back, Sec. 3.1), kept only when a preference model scores x'_T's image above x_T's. The
network predicts x'_T from x_T with a **singular value branch** (SVD of the 2hx2w-rearranged noise,
keeping U and V and predicting new singular values — Fig. 8 shows why) and a **residual branch** (a
Swin Transformer on the prompt-injected noise), combined as x'_pred = (2σ(α)−1)·e + x~_T + β·x^_T
(Eq. 9 as released: (2σ(α)−1)·e; the paper writes α·e). At inference the pipeline is untouched: it just receives the golden noise.
"""

NUMBERS = """
### Headline numbers from the paper (not measured here)
| SDXL, Pick-a-Pic (first 100) | PickScore | HPSv2 | AES | ImageReward | CLIPScore | MPS |
|---|---|---|---|---|---|---|
| Standard | 21.69 | 28.48 | 6.0373 | 58.01 | 0.8204 | 50% |
| Inversion (re-denoise) | 21.71 | 28.57 | 6.0503 | 63.27 | 0.8250 | 51.41% |
| NPNet | **21.86** | **28.68** | **6.0540** | **65.01** | **0.8408** | **52.14%** |

(Table 2.) DreamShaper-xl-v2-turbo, Pick-a-Pic: HPSv2 32.12 -> 32.69, ImageReward 98.09 -> 106.74.
Hunyuan-DiT with an NPNet fine-tuned on only 600 pairs (Table 3), Pick-a-Pic: ImageReward 91.33 -> 100.82.
Cost: about 3% extra time per image (~0.4 s on SDXL) and ~500 MB of memory (Sec. 4, App. Table 11, Fig. 15).
Reproduce the tables with the Evaluate tab's presets (they need a GPU and the hub).
"""

LINKS = """
### Links
- Paper: [arXiv 2411.09502](https://arxiv.org/abs/2411.09502)
- Official code: [xie-lab-ml/Golden-Noise-for-Diffusion-Models](https://github.com/xie-lab-ml/Golden-Noise-for-Diffusion-Models)
- Official checkpoints: [Klayand/GoldenNoiseModel](https://huggingface.co/Klayand/GoldenNoiseModel)

### Citation
```bibtex
@article{zhou2024golden,
  title   = {Golden Noise for Diffusion Models: A Learning Framework},
  author  = {Zhou, Zikai and Shao, Shitong and Bai, Lichen and Zhang, Shufei and Xu, Zhiqiang and Han, Bo and Xie, Zeke},
  journal = {arXiv preprint arXiv:2411.09502},
  year    = {2024}
}
```
"""


def runtime_notes(service: StudioService) -> str:
    """What this server runs on and with which limits."""
    cfg = service.config
    cap = cfg.eval_prompt_cap
    return (
        "### This server\n"
        f"- default model: `{service.default_model}` on `{service.engine.device}`; hub "
        f"{'offline' if service.offline else 'online'}\n"
        f"- evaluation: {f'at most {cap} prompts per run' if cap else 'no prompt cap'}; seed grid up to "
        f"{cfg.max_seeds} seeds\n"
        f"- training tab: {'enabled' if cfg.training_enabled else 'disabled (start with --allow-training)'}\n"
        "- API: `/generate`, `/analyze`, `/seeds`, `/evaluate`, `/evaluate_preset`, `/resume_evaluation`, "
        "`/cancel_evaluation`, `/train` (see *Use via API* at the bottom of the page)"
    )


def build_about_tab(service: StudioService) -> None:
    gr.Markdown(METHOD)
    gr.Markdown(NUMBERS)
    gr.Markdown(runtime_notes(service))
    gr.Markdown(LINKS)
