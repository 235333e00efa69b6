"""The energy distance: its two estimators against their formulas, and the bias of each."""

import numpy as np
import pytest

from interflow_jax import sample_quality


def _pairwise_mean(a, b, exclude_diagonal=False):
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    if exclude_diagonal:
        n = len(a)
        return d.sum() / (n * (n - 1))
    return d.mean()


@pytest.mark.parametrize("unbiased", [False, True])
def test_energy_distance_matches_its_formula(x64, unbiased):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.normal(1.0, 2.0, size=(20, 3))
    expected = (
        2 * _pairwise_mean(x, y) - _pairwise_mean(x, x, unbiased) - _pairwise_mean(y, y, unbiased)
    )
    got = float(sample_quality.energy_distance(x, y, unbiased=unbiased))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_unbiased_energy_distance_is_centred_on_zero_for_one_law(x64):
    """Two samples of one law: the U-statistic averages to 0 over repeats, the V-statistic
    to about (E|X - X'| / n + E|Y - Y'| / m) > 0."""
    rng = np.random.default_rng(1)
    n, repeats = 50, 400
    u_stats, v_stats = [], []
    for _ in range(repeats):
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
        u_stats.append(float(sample_quality.energy_distance(x, y, unbiased=True)))
        v_stats.append(float(sample_quality.energy_distance(x, y)))
    u_mean, u_se = np.mean(u_stats), np.std(u_stats, ddof=1) / np.sqrt(repeats)
    assert abs(u_mean) < 4 * u_se, (u_mean, u_se)
    mean_pair_distance = np.sqrt(np.pi)  # E|X - X'| for standard normals in 2-D
    np.testing.assert_allclose(np.mean(v_stats) - u_mean, 2 * mean_pair_distance / n, rtol=0.05)


def test_energy_distance_separates_different_laws(x64):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(500, 2)), rng.normal(0.5, 1.0, size=(500, 2))
    assert float(sample_quality.energy_distance(x, y, unbiased=True)) > 0.05
