import jax
import numpy as np
import pytest
from scipy import stats

from interflow_jax.time_sampling import make_time_sampler, time_grid


def test_uniform_range_and_law():
    t = np.asarray(make_time_sampler("uniform", t_min=0.1, t_max=0.6)(jax.random.key(0), 20_000))
    assert t.min() >= 0.1 and t.max() <= 0.6
    assert stats.kstest((t - 0.1) / 0.5, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("alpha, beta", [(2.0, 0.5), (1.0, 0.5), (1.0, 3.0), (0.4, 1.0)])
def test_beta_law(alpha, beta):
    """The gamma-ratio sampler (2.0, 0.5) and the inverse CDFs (alpha or beta = 1)."""
    t = np.asarray(make_time_sampler("beta", alpha=alpha, beta=beta)(jax.random.key(1), 20_000))
    assert t.min() >= 0.0 and t.max() <= 1.0
    assert stats.kstest(t, stats.beta(alpha, beta).cdf).pvalue > 1e-3
    assert stats.kstest(t, stats.beta(alpha, 1.25 * beta).cdf).pvalue < 1e-3  # it can fail


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "gamma"}, "'gamma'"),
        ({"t_min": 0.7, "t_max": 0.2}, "t_min=0.7"),
        ({"t_max": 1.5}, "t_max=1.5"),
        ({"kind": "beta", "alpha": -1.0}, "alpha=-1.0"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_time_sampler(**kwargs)


def test_time_grid_midpoints():
    np.testing.assert_allclose(time_grid(4), [0.125, 0.375, 0.625, 0.875])


def test_stratified_times_one_per_cell_and_lower_variance():
    """One time in each cell [i/n, (i+1)/n) of [t_min, t_max]; across batches each t_i is
    uniform on its cell, so the batch mean of f(t) = t^2 is unbiased (1/3) with variance
    at most the cell width's order n^-3, far below iid times' Var(t^2)/n = 4/(45 n)."""
    n, batches = 64, 2_000
    sample = jax.jit(jax.vmap(lambda k: make_time_sampler("stratified")(k, n)))
    t = np.asarray(sample(jax.random.split(jax.random.key(2), batches)), np.float64)
    cells = np.floor(t * n)
    np.testing.assert_array_equal(cells, np.broadcast_to(np.arange(n), t.shape))
    assert stats.kstest(t[:, 5] * n - 5, "uniform").pvalue > 1e-3
    means = (t**2).mean(axis=1)
    assert abs(means.mean() - 1 / 3) < 5 * means.std() / np.sqrt(batches)
    assert means.var() < 0.05 * (4 / 45) / n
    shifted = np.asarray(
        make_time_sampler("stratified", t_min=0.2, t_max=0.6)(jax.random.key(3), n)
    )
    offsets = (shifted - 0.2) / 0.4 * n - np.arange(n)  # in [0, 1) up to rounding
    assert offsets.min() > -1e-4 and offsets.max() < 1 + 1e-4


def test_stratified_times_stay_below_one_for_large_batches():
    """At n = 2^20 float32 holds (n - 1 + U) only to 1/16, so (n - 1 + U) / n would round
    to exactly 1 for U > 31/32; stratified times keep U[0, 1)'s open end."""
    n = 2**20
    last = jax.jit(jax.vmap(lambda k: make_time_sampler("stratified")(k, n)[-1]))
    t = np.asarray(last(jax.random.split(jax.random.key(4), 256)))
    assert t.max() < 1.0 and t.min() >= (n - 1) / n - 1e-6
