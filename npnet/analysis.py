"""Noise analysis of a generated pair (paper Sec. 3.2 and Fig. 8): is the golden noise still x_T-like?

Everything here is pure torch/numpy on CPU float64 (the figures live in ``eval.noise_plots``):

* ``to_matrix``: the NPNet SVD branch's 4xhxw -> 2hx2w rearrangement (``b (a c) h w -> b (a h) (c w)``).
* ``singular_vector_similarity``: |cos| between corresponding singular vectors of two noises (U columns,
  V rows of V^T), as in Fig. 8, in singular-value order and sorted descending.
* ``singular_values``: the spectrum of each noise's 2hx2w matrix.
* ``noise_stats`` / ``residual_histogram``: mean, std, skewness, excess kurtosis, norm and norm ratio, and
  the residual's histogram against N(0, sigma^2) with a Kolmogorov-Smirnov distance.
* ``analyze_latents``: all of the above for a ``GenerationResult.latents`` dict in one ``NoiseAnalysis``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from npnet.errors import UserError

REFERENCE = "standard"  # x_T
LATENT_LABELS = {"standard": "x_T (standard)", "npnet": "golden (NPNet)", "inversion": "x'_T (inversion)"}


def _as_tensor(latent) -> torch.Tensor:
    """A (B, C, h, w) float64 CPU tensor from a tensor or array of shape (C, h, w) or (B, C, h, w)."""
    x = torch.as_tensor(np.asarray(latent) if not isinstance(latent, torch.Tensor) else latent)
    x = x.detach().to("cpu", torch.float64)
    if x.ndim == 3:
        x = x.unsqueeze(0)  # (1, C, h, w)
    if x.ndim != 4 or x.shape[1] not in (4, 16):
        raise UserError(
            f"expected a latent of shape (C, h, w) or (B, C, h, w) with C = 4 (SD, SDXL, DiT) or 16 (SD3, Flux); "
            f"got {tuple(x.shape)}"
        )
    return x


def to_matrix(latent) -> torch.Tensor:
    """(B, C, h, w) -> (B, kh, kw): the C = k^2 channels tiled k x k (2x2 for 4, 4x4 for 16), as NPNet's
    SVD branch does."""
    x = _as_tensor(latent)
    k = math.isqrt(x.shape[1])
    return rearrange(x, "b (a c) h w -> b (a h) (c w)", a=k, c=k)  # (B, kh, kw)


@dataclass(frozen=True)
class SVDResult:
    """x = U diag(s) V^T for each batch item (float64)."""

    u: np.ndarray  # (B, m, k) left singular vectors as columns
    s: np.ndarray  # (B, k) singular values, descending
    vh: np.ndarray  # (B, k, n) right singular vectors as rows


def svd(latent) -> SVDResult:
    """Reduced SVD of the 2hx2w matrix of each latent (Eq. 6: x_T = U Sigma V^T)."""
    u, s, vh = torch.linalg.svd(to_matrix(latent), full_matrices=False)  # (B, m, k), (B, k), (B, k, n)
    return SVDResult(u.numpy(), s.numpy(), vh.numpy())


def _abs_cos(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """|cos| between corresponding vectors of ``a`` and ``b`` along ``axis`` (vectors indexed by the other)."""
    dot = np.sum(a * b, axis=axis)
    norms = np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis)
    return np.abs(dot) / np.maximum(norms, np.finfo(np.float64).tiny)


@dataclass(frozen=True)
class VectorSimilarity:
    """|cos| of the i-th singular vectors of two noises; ``*_sorted`` descending as plotted in Fig. 8."""

    u: np.ndarray  # (B, k) in singular-value order
    v: np.ndarray  # (B, k)

    @property
    def u_sorted(self) -> np.ndarray:
        return -np.sort(-self.u, axis=-1)

    @property
    def v_sorted(self) -> np.ndarray:
        return -np.sort(-self.v, axis=-1)


def singular_vector_similarity(x, y) -> VectorSimilarity:
    """|cos(u_i(x), u_i(y))| and |cos(v_i(x), v_i(y))| after the 2hx2w rearrangement (Fig. 8)."""
    a, b = svd(x), svd(y)
    if a.u.shape != b.u.shape:
        raise UserError(f"latents differ in shape: {a.u.shape} vs {b.u.shape}; compare noises of one model")
    return VectorSimilarity(u=_abs_cos(a.u, b.u, axis=1), v=_abs_cos(a.vh, b.vh, axis=2))


def singular_values(latent) -> np.ndarray:
    """(B, k) singular values of the 2hx2w matrix, descending."""
    return svd(latent).s


@dataclass(frozen=True)
class NoiseStats:
    """Moments of a noise (all its entries pooled) and its size relative to a reference noise."""

    mean: float
    std: float  # population std (ddof=0)
    skewness: float
    kurtosis: float  # excess (Fisher): 0 for a Gaussian
    norm: float  # Frobenius norm
    norm_ratio: float  # norm / reference norm (1 for the reference itself)
    cosine_to_reference: float


def noise_stats(latent, reference=None) -> NoiseStats:
    """Mean, std, skewness, excess kurtosis, norm, norm ratio and cosine to ``reference`` (default itself)."""
    x = _as_tensor(latent).numpy().ravel()
    ref = x if reference is None else _as_tensor(reference).numpy().ravel()
    if ref.shape != x.shape:
        raise UserError(f"reference has {ref.size} entries but the noise has {x.size}; use the same shape")
    mean = float(x.mean())
    centred = x - mean
    var = float(np.mean(centred**2))
    std = float(np.sqrt(var))
    skew = float(np.mean(centred**3) / var**1.5) if var > 0 else 0.0
    kurt = float(np.mean(centred**4) / var**2 - 3.0) if var > 0 else 0.0
    norm, ref_norm = float(np.linalg.norm(x)), float(np.linalg.norm(ref))
    tiny = np.finfo(np.float64).tiny
    return NoiseStats(
        mean=mean,
        std=std,
        skewness=skew,
        kurtosis=kurt,
        norm=norm,
        norm_ratio=norm / max(ref_norm, tiny),
        cosine_to_reference=float(x @ ref) / max(norm * ref_norm, tiny),
    )


@dataclass(frozen=True)
class Histogram:
    """Density histogram of a noise's entries and the N(0, sigma^2) density at the bin centres."""

    centers: np.ndarray  # (bins,)
    density: np.ndarray  # (bins,)
    width: float
    sigma: float  # the entries' std (ddof=0)
    gaussian: np.ndarray  # (bins,) N(0, sigma^2) pdf at the centres
    ks_distance: float  # sup |ECDF - Phi(v / sigma)|


def _normal_cdf(v: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(v)


def _flat(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def ks_distance(values, sigma: float) -> float:
    """Kolmogorov-Smirnov distance between the entries and N(0, sigma^2)."""
    v = np.sort(_flat(values))
    n = v.size
    cdf = _normal_cdf(v / max(sigma, np.finfo(np.float64).tiny))
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


def residual_histogram(values, bins: int = 40) -> Histogram:
    """Histogram (density) of ``values`` with the zero-mean Gaussian of the same std for comparison."""
    v = _flat(values)
    if v.size == 0:
        raise UserError("cannot histogram an empty noise")
    sigma = float(v.std())
    density, edges = np.histogram(v, bins=bins, density=True)
    centers = 0.5 * (edges[:-1] + edges[1:])
    safe = max(sigma, np.finfo(np.float64).tiny)
    gaussian = np.exp(-0.5 * (centers / safe) ** 2) / (safe * np.sqrt(2 * np.pi))
    return Histogram(centers, density, float(edges[1] - edges[0]), sigma, gaussian, ks_distance(v, sigma))


@dataclass(frozen=True)
class NoiseAnalysis:
    """Everything the analysis tab shows for one generated pair (batch item 0 of each latent)."""

    names: tuple[str, ...]  # latents present, reference first
    similarity: dict[str, VectorSimilarity]  # other name -> similarity to the reference
    spectra: dict[str, np.ndarray]  # name -> (k,)
    residuals: dict[str, np.ndarray]  # other name -> (4, h, w) = latent - reference
    stats: dict[str, NoiseStats]  # name -> stats of the latent vs the reference
    residual_stats: dict[str, NoiseStats]  # other name -> stats of the residual vs the reference
    histograms: dict[str, Histogram]  # other name -> residual histogram

    def stats_rows(self) -> list[dict[str, object]]:
        """One row per noise and per residual, for a table."""
        rows = []
        for kind, table in (("noise", self.stats), ("residual", self.residual_stats)):
            for name, st in table.items():
                label = LATENT_LABELS.get(name, name)
                if kind == "residual":
                    label = f"{label} - x_T"
                rows.append({"noise": label, **{k: round(v, 5) for k, v in st.__dict__.items()}})
        return rows


def analyze_latents(latents: dict, reference: str = REFERENCE, bins: int = 40) -> NoiseAnalysis:
    """Fig. 8 similarities, spectra, residuals and statistics of each latent against ``reference``."""
    if reference not in latents:
        raise UserError(f"no {reference!r} latent to compare against; have {sorted(latents)}")
    ref = _as_tensor(latents[reference])[:1]  # (1, 4, h, w)
    others = [n for n in latents if n != reference]
    names = (reference, *others)
    tensors = {n: _as_tensor(latents[n])[:1] for n in names}  # each (1, 4, h, w)
    for n in others:
        if tensors[n].shape != ref.shape:
            raise UserError(f"latent {n!r} has shape {tuple(tensors[n].shape)}, x_T {tuple(ref.shape)}")
    residuals = {n: (tensors[n] - ref)[0].numpy() for n in others}  # (4, h, w)
    return NoiseAnalysis(
        names=names,
        similarity={n: singular_vector_similarity(ref, tensors[n]) for n in others},
        spectra={n: singular_values(tensors[n])[0] for n in names},
        residuals=residuals,
        stats={n: noise_stats(tensors[n], ref) for n in names},
        residual_stats={n: noise_stats(residuals[n], ref) for n in others},
        histograms={n: residual_histogram(residuals[n], bins=bins) for n in others},
    )


def change_agreement(x: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """How well NPNet's change NPNet(x_T) - x_T reproduces the re-denoise change x'_T - x_T (Eq. 8's target).

    ``x``, ``target``, ``predicted``: (N, 4, h, w). Returns the mean per-sample cosine of the two changes,
    the explained energy 1 - ||pred - want||^2 / ||want||^2 over all samples, and the mean norm ratio.
    """
    want = (target - x).flatten(1).double()  # (N, 4*h*w)
    got = (predicted - x).flatten(1).double()  # (N, 4*h*w)
    return {
        "pairs": int(x.shape[0]),
        "cosine_mean": float(torch.nn.functional.cosine_similarity(got, want, dim=1).mean()),
        "explained_energy": float(1 - (got - want).square().sum() / want.square().sum()),
        "norm_ratio": float(got.norm(dim=1).mean() / want.norm(dim=1).mean()),
    }
