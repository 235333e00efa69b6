import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from interflow_jax.data.mixtures import BENCHMARK_DIMS, Mixture, make_gaussian_mixture
from interflow_jax.data.tabular import TabularData


def _scipy_components(mix):
    return [
        stats.multivariate_normal(mu, cov)
        for mu, cov in zip(mix.means, mix.covariances, strict=True)
    ]


def _scipy_log_joint(mix, x):
    """(n, K) log w_k + log N(x; mu_k, S_k), from scipy."""
    comps = _scipy_components(mix)
    return np.stack([np.log(w) + c.logpdf(x) for w, c in zip(mix.weights, comps, strict=True)], 1)


@pytest.mark.parametrize("dim", BENCHMARK_DIMS)
def test_benchmark_mixtures_are_standardised_and_valid(dim):
    mix = make_gaussian_mixture(dim)
    assert mix.dim == dim and mix.num_components == 8
    np.testing.assert_allclose(mix.mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(mix.covariance), 1.0, rtol=1e-12)
    assert np.all(mix.weights > 0.02) and mix.weights.sum() == pytest.approx(1.0)
    eig = np.linalg.eigvalsh(mix.covariances)
    # Condition numbers <= 100 before standardisation; rescaling coordinates by the
    # mixture's stds changes them by a bounded factor.
    assert np.all(eig > 0) and np.all(eig.max(1) / eig.min(1) < 300)


@pytest.mark.parametrize("dim", [6, 21, 63])
def test_log_prob_matches_scipy(dim, x64):
    mix = make_gaussian_mixture(dim, num_components=5)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, dim)), 3.0 * rng.normal(size=(5, dim))])
    x = np.concatenate([x, np.asarray(mix.sample(jax.random.key(0), 20))])
    ref = logsumexp(_scipy_log_joint(mix, x), axis=1)
    got = mix.log_prob(jnp.asarray(x))
    assert got.dtype == jnp.float64 and got.shape == (45,)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(jax.jit(mix.log_prob)(x)), ref, rtol=1e-10)


def test_log_prob_float32_close_to_scipy():
    mix = make_gaussian_mixture(8)
    x = np.asarray(mix.sample(jax.random.key(1), 100))
    got = mix.log_prob(x)
    assert got.dtype == jnp.float32
    ref = logsumexp(_scipy_log_joint(mix, x.astype(np.float64)), axis=1)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4)


def test_sample_moments_and_component_weights(x64):
    """Mixture moments, and E[r_k(x)] = w_k, E[r_k(x) x] = w_k mu_k for the responsibilities
    r_k (scipy), which hold exactly for any mixture, overlapping or not."""
    n, mix = 40_000, make_gaussian_mixture(8, num_components=4, seed=3)
    x = np.asarray(mix.sample(jax.random.key(2), n))
    assert x.shape == (n, 8) and x.dtype == np.float64

    def check(values, expected):  # values (n, m): means within 5 standard errors
        se = values.std(axis=0, ddof=1) / math.sqrt(n)
        assert np.all(np.abs(values.mean(axis=0) - expected) < 5 * se + 1e-12)

    check(x, mix.mean)
    iu = np.triu_indices(8)
    check((x[:, :, None] * x[:, None, :])[:, iu[0], iu[1]], mix.covariance[iu])
    log_joint = _scipy_log_joint(mix, x)
    resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    check(resp, mix.weights)
    check(
        (resp[:, :, None] * x[:, None, :]).reshape(n, -1),
        (mix.weights[:, None] * mix.means).ravel(),
    )


def test_sample_contract():
    mix = make_gaussian_mixture(6)
    key = jax.random.key(0)
    x = mix.sample(key, 500)
    assert x.shape == (500, 6) and x.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x), np.asarray(mix.sample(key, 500)))
    assert not np.allclose(np.asarray(x), np.asarray(mix.sample(jax.random.key(1), 500)))
    jitted = jax.jit(mix.sample, static_argnums=1)(key, 500)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(x), atol=1e-5)
    for bad in [0, -1, 2.5, True]:
        with pytest.raises(ValueError, match=re.escape(f"n={bad!r}")):
            mix.sample(key, bad)


def test_determinism_per_seed():
    a, b = make_gaussian_mixture(21), make_gaussian_mixture(21, seed=21)
    c = make_gaussian_mixture(21, seed=22)
    for field in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert not np.allclose(getattr(a, field), getattr(c, field))
    assert a.name == "gaussian_mixture_d21_k8_s21"
    assert not np.allclose(make_gaussian_mixture(8).means[:, :6], make_gaussian_mixture(6).means)


def test_splits_are_independent_deterministic_draws(x64):
    mix = make_gaussian_mixture(8)
    data = mix.splits(300, 50, 80, seed=1)
    assert isinstance(data, TabularData) and data.name == mix.name and data.dim == 8
    for x, n in zip(data[:3], (300, 50, 80), strict=True):
        assert x.shape == (n, 8) and x.dtype == np.float32
    rows = np.vstack(data[:3])
    assert len(np.unique(rows, axis=0)) == len(rows)  # disjoint: no shared rows
    assert not np.allclose(data.train[:50], data.validation)
    with jax.enable_x64(False):  # splits do not depend on the x64 setting
        again = mix.splits(300, 50, 80, seed=1)
    for a, b in zip(data[:3], again[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    other = mix.splits(300, 50, 80, seed=2)
    assert not np.allclose(data.test, other.test)
    with pytest.raises(ValueError, match="num_test=0"):
        mix.splits(10, 10, 0)


def test_true_cross_entropy_of_one_gaussian_is_its_entropy(x64):
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    mix = Mixture([1.0], [[1.0, -2.0, 0.5]], cov[None])
    entropy = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]
    mean, se = mix.true_cross_entropy(mix.sample(jax.random.key(3), 20_000), chunk=7_000)
    assert 0 < se < 0.02 and abs(mean - entropy) < 5 * se
    x = np.random.default_rng(0).normal(size=(10, 3))
    values = -stats.multivariate_normal([1.0, -2.0, 0.5], cov).logpdf(x)
    mean, se = mix.true_cross_entropy(x, chunk=3)
    assert mean == pytest.approx(values.mean(), rel=1e-10)
    assert se == pytest.approx(values.std(ddof=1) / math.sqrt(10), rel=1e-8)


def test_errors():
    with pytest.raises(ValueError, match="dim=0"):
        make_gaussian_mixture(0)
    with pytest.raises(ValueError, match="num_components=0"):
        make_gaussian_mixture(4, num_components=0)
    with pytest.raises(ValueError, match="sum to 1"):
        Mixture([0.5, 0.6], np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(ValueError, match="positive definite"):
        Mixture([1.0], np.zeros((1, 2)), -np.eye(2)[None])
    with pytest.raises(ValueError, match=r"shapes \(2,\), \(1, 2\)"):
        Mixture([0.5, 0.5], np.zeros((1, 2)), np.eye(2)[None])
    mix = make_gaussian_mixture(6)
    with pytest.raises(ValueError, match=r"\(n, 6\).*\(4, 5\)"):
        mix.log_prob(jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="at least 2 points"):
        mix.true_cross_entropy(np.zeros((1, 6)))
