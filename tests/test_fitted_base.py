"""The Gaussian base fitted to the data (base.kind='fitted_gaussian', PAPER section 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from experiments.configs import mixture as mixture_config
from experiments.configs import toy2d as toy2d_config
from interflow_jax import densities
from interflow_jax.data import mixtures
from interflow_jax.training import setup


def test_full_gaussian_log_prob_and_moments(x64):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    covariance, mean = a @ a.T + 0.5 * np.eye(4), rng.normal(size=4)
    base = densities.full_gaussian(mean, covariance)
    x = rng.normal(size=(50, 4)) * 2.0
    expected = stats.multivariate_normal(mean, covariance).logpdf(x)
    np.testing.assert_allclose(np.asarray(base.log_prob(jnp.asarray(x))), expected, rtol=1e-12)
    draws = np.asarray(base.sample(jax.random.key(0), 200_000))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), covariance, atol=0.08)


def test_fit_gaussian_and_its_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3)) @ np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 3]])
    mean, covariance = densities.fit_gaussian(x)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(covariance, np.cov(x, rowvar=False), rtol=1e-5)
    with pytest.raises(ValueError, match=r"n > d; got an array of shape \(3, 3\)"):
        densities.fit_gaussian(x[:3])
    with pytest.raises(ValueError, match="not positive definite"):
        densities.full_gaussian(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_mixture_problem_gets_the_data_mean_and_covariance():
    config = mixture_config.get_config("6,smoke")
    config.base.update(kind="fitted_gaussian", num_fit_samples=200_000)
    problem = setup.build_problem(config)
    target = mixtures.make_gaussian_mixture(6)
    draws = np.asarray(problem.base.sample(jax.random.key(1), 200_000), np.float64)
    np.testing.assert_allclose(draws.mean(0), target.mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), target.covariance, atol=0.03)
    again = setup.build_problem(config)  # deterministic: evaluation rebuilds the same base
    x = jnp.asarray(draws[:10], jnp.float32)
    np.testing.assert_array_equal(problem.base.log_prob(x), again.base.log_prob(x))


def test_fitted_base_refusals():
    config = toy2d_config.get_config("checkerboard,smoke")
    config.base.kind = "fitted_gaussian"
    with pytest.raises(ValueError, match="SDE sampler's score comes from the velocity"):
        setup.build_sde_sampler(config, None)
    config.base.kind = "gaussian_fit"
    with pytest.raises(ValueError, match="base.kind must be .* got 'gaussian_fit'"):
        setup.build_problem(config)
