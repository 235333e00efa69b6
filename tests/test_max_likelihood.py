"""The maximum-likelihood baseline differentiates through the solve correctly."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import densities, flows, gaussian
from interflow_jax.interpolants import TRIGONOMETRIC
from interflow_jax.max_likelihood import make_max_likelihood_loss

MEAN = np.array([0.7, -0.4])
COV = np.array([[1.2, 0.5], [0.5, 0.9]])


@pytest.mark.parametrize(
    "adjoint",
    [
        pytest.param(diffrax.RecursiveCheckpointAdjoint(), marks=pytest.mark.slow),
        diffrax.BacksolveAdjoint(),
    ],
    ids=["checkpoint", "backsolve"],
)
def test_gradient_matches_gaussian_likelihood_gradient(adjoint, x64):
    # With the exact Gaussian field, rho^_1 = N(m, S) as a function of (m, S), so the
    # gradient through the ODE must equal the gradient of the closed-form likelihood.
    field = gaussian.make_gaussian_velocity(TRIGONOMETRIC)
    options = flows.ODEOptions(rtol=1e-8, atol=1e-8, adjoint=adjoint)
    loss_fn = make_max_likelihood_loss(
        field, densities.standard_gaussian((2,)), options, divergence_kind="exact"
    )
    x = jax.random.normal(jax.random.key(0), (64, 2)) * 1.3
    params = {"mean": jnp.asarray(MEAN) + 0.2, "cov": jnp.asarray(COV) * 1.1}
    grads = jax.grad(lambda p: loss_fn(p, {"x1": x}, jax.random.key(1))[0])(params)
    exact = jax.grad(lambda p: -jnp.mean(gaussian.gaussian_log_prob(x, p["mean"], p["cov"])))(
        params
    )
    np.testing.assert_allclose(grads["mean"], exact["mean"], rtol=1e-5, atol=1e-6)
    # Only the symmetric part of a covariance gradient is defined by the density.
    symmetric = lambda g: 0.5 * (g + g.T)  # noqa: E731
    np.testing.assert_allclose(
        symmetric(grads["cov"]), symmetric(exact["cov"]), rtol=1e-5, atol=1e-6
    )


def test_hutchinson_loss_reports_nfe_and_is_unbiased(x64):
    field = gaussian.make_gaussian_velocity(TRIGONOMETRIC)
    base = densities.standard_gaussian((2,))
    loss_fn = make_max_likelihood_loss(
        field, base, flows.ODEOptions(rtol=1e-6, atol=1e-6), num_probes=1
    )
    x = jax.random.normal(jax.random.key(2), (256, 2))
    params = {"mean": jnp.asarray(MEAN), "cov": jnp.asarray(COV)}
    values = [float(loss_fn(params, {"x1": x}, jax.random.key(i))[0]) for i in range(20)]
    exact = -float(jnp.mean(gaussian.gaussian_log_prob(x, params["mean"], params["cov"])))
    assert abs(np.mean(values) - exact) < 4 * np.std(values, ddof=1) / np.sqrt(20) + 1e-4
    _, metrics = loss_fn(params, {"x1": x}, jax.random.key(0))
    assert float(metrics["nfe"]) > 0
