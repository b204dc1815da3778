"""npnet.analysis against direct numpy/scipy computations (Fig. 8 similarities, spectra, statistics)."""

import numpy as np
import pytest
import scipy.stats
import torch

from eval.noise_plots import analysis_figures
from npnet.analysis import (
    analyze_latents,
    ks_distance,
    noise_stats,
    residual_histogram,
    singular_values,
    singular_vector_similarity,
    to_matrix,
)


def _noise(seed: int, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.randn((1, 4, h, w), generator=torch.Generator().manual_seed(seed))  # (1, 4, h, w)


def _from_matrix(m: np.ndarray) -> torch.Tensor:
    """Inverse of the 2x2 tiling, written out by hand: (2h, 2w) -> (1, 4, h, w)."""
    h, w = m.shape[0] // 2, m.shape[1] // 2
    chans = [m[:h, :w], m[:h, w:], m[h:, :w], m[h:, w:]]  # channel index = 2a + c
    return torch.from_numpy(np.stack(chans)[None].copy())


def _orthogonal(n: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def test_rearrangement_matches_manual_tiling():
    x = _noise(0, 3, 5)
    m = to_matrix(x)[0].numpy()  # (6, 10)
    assert m.shape == (6, 10)
    np.testing.assert_array_equal(m[:3, :5], x[0, 0].double().numpy())
    np.testing.assert_array_equal(m[:3, 5:], x[0, 1].double().numpy())
    np.testing.assert_array_equal(m[3:, :5], x[0, 2].double().numpy())
    np.testing.assert_array_equal(m[3:, 5:], x[0, 3].double().numpy())
    torch.testing.assert_close(_from_matrix(m), x.double())


def test_identical_noises_have_similarity_one_everywhere():
    x = _noise(1)
    sim = singular_vector_similarity(x, x.clone())
    assert sim.u.shape == sim.v.shape == (1, 16)
    np.testing.assert_allclose(sim.u, 1.0, atol=1e-10)
    np.testing.assert_allclose(sim.v, 1.0, atol=1e-10)


def test_sign_flip_keeps_similarity_one():
    x = _noise(2)
    sim = singular_vector_similarity(x, -x)
    np.testing.assert_allclose(sim.u, 1.0, atol=1e-10)
    np.testing.assert_allclose(sim.v, 1.0, atol=1e-10)


def test_left_orthogonal_mixing_gives_diag_of_u_t_q_u():
    """y = Q X: U' = Q U, V' = V, so |cos(u_i, u'_i)| = |u_i^T Q u_i| and the V similarities are 1."""
    x = _noise(3)
    m = to_matrix(x)[0].numpy()
    q = _orthogonal(m.shape[0], seed=4)
    sim = singular_vector_similarity(x, _from_matrix(q @ m))
    u, _, _ = np.linalg.svd(m)
    expected_u = np.abs(np.einsum("ji,jk,ki->i", u, q, u))
    np.testing.assert_allclose(sim.u[0], expected_u, atol=1e-8)
    np.testing.assert_allclose(sim.v[0], 1.0, atol=1e-8)
    np.testing.assert_allclose(sim.u_sorted[0], np.sort(expected_u)[::-1], atol=1e-8)


def test_right_orthogonal_mixing_gives_diag_of_v_t_r_v():
    """y = X R: V'^T = V^T R, so |cos(v_i, v'_i)| = |v_i^T R v_i|, U similarities 1."""
    x = _noise(5, 6, 10)
    m = to_matrix(x)[0].numpy()  # (12, 20)
    r = _orthogonal(m.shape[1], seed=6)
    sim = singular_vector_similarity(x, _from_matrix(m @ r))
    _, _, vh = np.linalg.svd(m, full_matrices=False)  # (12, 20)
    expected_v = np.abs(np.einsum("ij,jk,ik->i", vh, r, vh))
    np.testing.assert_allclose(sim.v[0], expected_v, atol=1e-8)
    np.testing.assert_allclose(sim.u[0], 1.0, atol=1e-8)
    assert np.all(np.diff(sim.v_sorted[0]) <= 0)


def test_independent_noises_are_not_similar():
    sim = singular_vector_similarity(_noise(7), _noise(8))
    assert sim.u.mean() < 0.6 and sim.v.mean() < 0.6


def test_singular_values_match_numpy():
    x = _noise(9)
    np.testing.assert_allclose(singular_values(x)[0], np.linalg.svd(to_matrix(x)[0].numpy())[1], rtol=1e-10)


def test_noise_stats_match_numpy_and_scipy():
    x = _noise(10) * 1.7 + 0.3
    ref = _noise(11)
    st = noise_stats(x, ref)
    v, r = x.double().numpy().ravel(), ref.double().numpy().ravel()
    assert st.mean == pytest.approx(v.mean(), abs=1e-12)
    assert st.std == pytest.approx(v.std(), rel=1e-12)
    assert st.skewness == pytest.approx(scipy.stats.skew(v), rel=1e-9)
    assert st.kurtosis == pytest.approx(scipy.stats.kurtosis(v), rel=1e-9)
    assert st.norm == pytest.approx(np.linalg.norm(v), rel=1e-12)
    assert st.norm_ratio == pytest.approx(np.linalg.norm(v) / np.linalg.norm(r), rel=1e-12)
    cos = v @ r / (np.linalg.norm(v) * np.linalg.norm(r))
    assert st.cosine_to_reference == pytest.approx(cos, rel=1e-9)
    assert noise_stats(ref).norm_ratio == pytest.approx(1.0)


def test_histogram_density_and_ks_match_numpy_and_scipy():
    values = torch.randn(4000, generator=torch.Generator().manual_seed(12)) * 0.5
    hist = residual_histogram(values, bins=30)
    density, edges = np.histogram(values.double().numpy(), bins=30, density=True)
    np.testing.assert_allclose(hist.density, density)
    assert np.sum(hist.density * hist.width) == pytest.approx(1.0)
    sigma = values.double().numpy().std()
    assert hist.sigma == pytest.approx(sigma)
    np.testing.assert_allclose(hist.gaussian, scipy.stats.norm.pdf(hist.centers, scale=sigma), rtol=1e-10)
    expected_ks = scipy.stats.kstest(values.double().numpy(), "norm", args=(0, sigma)).statistic
    assert hist.ks_distance == pytest.approx(expected_ks, rel=1e-9)
    uniform = np.random.default_rng(0).uniform(-1, 1, 4000)
    assert ks_distance(uniform, uniform.std()) > hist.ks_distance


def test_analyze_latents_and_figures():
    x = _noise(13)
    golden = x + 0.1 * _noise(14)
    latents = {"standard": x, "npnet": golden, "inversion": x * 1.05}
    analysis = analyze_latents(latents)
    assert analysis.names == ("standard", "npnet", "inversion")
    np.testing.assert_allclose(analysis.residuals["npnet"], (golden - x)[0].double().numpy())
    np.testing.assert_allclose(analysis.similarity["inversion"].u, 1.0, atol=1e-8)  # a scaled copy
    assert analysis.stats["inversion"].norm_ratio == pytest.approx(1.05)
    assert len(analysis.stats_rows()) == 5  # 3 noises + 2 residuals
    figures = analysis_figures(analysis)
    assert set(figures) == {"similarity", "spectrum", "residuals", "histogram"}
    sim_traces = [t for t in figures["similarity"].data if "golden" in (t.name or "")]
    np.testing.assert_allclose(sim_traces[0].y, analysis.similarity["npnet"].u_sorted[0])
    assert len(figures["residuals"].data) == 8  # 4 channels x 2 residuals


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        to_matrix(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="standard"):
        analyze_latents({"npnet": _noise(0)})
    with pytest.raises(ValueError, match="shape"):
        singular_vector_similarity(_noise(0), _noise(0, 16, 16))
