"""Turn a ``Pair`` into what the Generate tab shows: captioned gallery, slider, score and timing tables."""

from __future__ import annotations

import pandas as pd

from studio.service import METHOD_LABELS, Pair, StudioService

SIZE_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16")
SCORE_COLUMNS = ["metric", "standard", "npnet", "inversion", "NPNet - standard", "note"]


def aspect_size(width: int, height: int, ratio: str, multiple: int = 8) -> tuple[int, int]:
    """A size with the model's pixel area and aspect ``ratio`` ("w:h"), both sides multiples of ``multiple``."""
    a, _, b = ratio.partition(":")
    rw, rh = float(a), float(b)
    area = width * height
    w = (area * rw / rh) ** 0.5
    h = area / w
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


def size_choices(width: int, height: int, multiple: int = 8) -> list[tuple[str, str]]:
    """(label, ratio) pairs such as ("4:3 (1184x888)", "4:3") for a model's native size."""
    out = []
    for ratio in SIZE_RATIOS:
        w, h = aspect_size(width, height, ratio, multiple)
        out.append((f"{ratio} ({w}x{h})", ratio))
    return out


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def caption(pair: Pair, method: str) -> str:
    """ "NPNet (golden noise) · seed 3 · micro 0.83" for a gallery tile."""
    parts = [METHOD_LABELS.get(method, method), f"seed {pair.result.settings['seed']}"]
    parts += [
        f"{metric} {_fmt(values[method])}" for metric, values in pair.scores.items() if method in values
    ]
    return " · ".join(parts)


def gallery_items(pair: Pair) -> list[tuple]:
    return [(pair.result.images[m], caption(pair, m)) for m in pair.methods]


def slider_value(pair: Pair):
    """(standard, npnet) when both ran, else the first two methods, else the single image twice."""
    methods = pair.methods
    if "standard" in methods and "npnet" in methods:
        chosen = ("standard", "npnet")
    elif len(methods) > 1:
        chosen = (methods[0], methods[1])
    else:
        chosen = (methods[0], methods[0])
    return tuple(pair.result.images[m] for m in chosen)


def score_table(pair: Pair) -> pd.DataFrame:
    """One row per metric: a value per method, NPNet minus standard, and why a metric has no value."""
    rows = []
    for metric, values in pair.scores.items():
        row = {"metric": metric, **{m: round(v, 5) for m, v in values.items()}}
        if "npnet" in values and "standard" in values:
            row["NPNet - standard"] = round(values["npnet"] - values["standard"], 5)
        rows.append(row)
    rows += [{"metric": metric, "note": f"unavailable: {why}"} for metric, why in pair.score_errors.items()]
    frame = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    keep = [c for c in SCORE_COLUMNS if c == "metric" or frame[c].notna().any()]
    return frame[keep] if rows else pd.DataFrame(columns=["metric"])


def summary_markdown(service: StudioService, pair: Pair) -> str:
    """Settings actually used, and NPNet's cost (time share and parameters) in one paragraph."""
    s, t = pair.result.settings, pair.result.timings
    info = service.npnet_info(pair.result) if "npnet" in pair.methods else {}
    lines = [
        f"**{s['model']}** · {s['width']}x{s['height']} · {s['steps']} steps · CFG {s['guidance_scale']} · "
        f"{s['scheduler']} · seed {s['seed']} · {s['device']} {s['dtype']} · total {t.get('total', 0):.2f} s"
        f" ({'one batched call' if s.get('batched_used') else 'sequential calls'})"
    ]
    if info:
        per_image = t.get("encode", 0) + t.get("npnet", 0) + t.get("denoise_per_image", 0)
        lines.append(
            f"NPNet: {t.get('npnet', 0) * 1000:.1f} ms = {100 * t.get('npnet', 0) / max(per_image, 1e-9):.1f}% "
            f"of the golden image's time; {info['npnet_parameters'] / 1e6:.2f} M parameters "
            f"({info['npnet_bytes_fp32'] / 2**20:.1f} MB fp32, {100 * info['npnet_parameter_share']:.2f}% of "
            f"all parameters). Checkpoint: `{s['npnet']}`"
        )
    return "\n\n".join(lines)


def pair_outputs(service: StudioService, pair: Pair) -> tuple:
    """(gallery, slider, scores, timings, summary, bundle path) for the Generate tab's outputs."""
    return (
        gallery_items(pair),
        slider_value(pair),
        score_table(pair),
        pd.DataFrame(service.timing_rows(pair)),
        summary_markdown(service, pair),
        str(pair.bundle) if pair.bundle else None,
    )
