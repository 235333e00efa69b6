"""Exact Gaussian interpolation (PAPER section 7), for tests and known-answer checks.

rho0 = N(0, I), rho1 = N(m, S) and I = a x0 + b x1 give rho_t = N(b m, a^2 I + b^2 S) and

    v_t(x) = b' m + (a a' I + b b' S)(a^2 I + b^2 S)^(-1) (x - b m).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.stats import multivariate_normal

from interflow_jax.interpolants import Interpolant, coefficients_and_derivatives


def gaussian_marginal(interpolant: Interpolant, t, mean, cov):
    """Mean (d,) and covariance (d, d) of rho_t at a scalar time t."""
    a, b, _, _ = coefficients_and_derivatives(interpolant, jnp.asarray(t, mean.dtype))
    eye = jnp.eye(mean.shape[0], dtype=mean.dtype)
    return b * mean, a**2 * eye + b**2 * cov


def make_gaussian_velocity(interpolant: Interpolant):
    """The exact velocity `field(t, x, params)` with params {'mean': (d,), 'cov': (d, d)}.

    t: (batch,), x: (batch, d) -> (batch, d). Differentiable in params.
    """

    def field(t, x, params):
        mean, cov = params["mean"], params["cov"]
        a, b, da, db = coefficients_and_derivatives(interpolant, t)
        eye = jnp.eye(mean.shape[0], dtype=x.dtype)
        gain = (a * da)[:, None, None] * eye + (b * db)[:, None, None] * cov
        marginal_cov = (a**2)[:, None, None] * eye + (b**2)[:, None, None] * cov
        centred = x - b[:, None] * mean
        whitened = jnp.linalg.solve(marginal_cov, centred[..., None])
        return db[:, None] * mean + jnp.squeeze(gain @ whitened, -1)

    return field


def make_class_gaussian_velocity(interpolant: Interpolant):
    """The exact class-conditional field for targets rho1(. | y) = N(m_y, S_y) (PAPER s. 7, 9).

    `field(t, x, params)` with params {'means': (K + 1, d), 'covs': (K + 1, d, d)} and
    optionally 'labels' () or (batch,) in {0, ..., K}; without labels row K (the null
    label) is used. Sample i follows the exact velocity of N(m_{y_i}, S_{y_i}), so its flow
    gives log p(x | y) = log N(x; m_y, S_y). t: (batch,), x: (batch, d) -> (batch, d).
    """
    single = make_gaussian_velocity(interpolant)

    def one(t, x, mean, cov):
        return single(t[None], x[None], {"mean": mean, "cov": cov})[0]

    def field(t, x, params):
        null = params["means"].shape[0] - 1
        labels = jnp.broadcast_to(params.get("labels", null), x.shape[:1])
        return jax.vmap(one)(t, x, params["means"][labels], params["covs"][labels])

    return field


def gaussian_log_prob(x, mean, cov):
    """log N(x; mean, cov) for x (batch, d)."""
    return multivariate_normal.logpdf(x, mean, cov)


def gaussian_path_length(interpolant: Interpolant, mean, cov, num_times: int = 2001):
    """int_0^1 E|v_t(x_t)|^2 dt for the exact field, by Simpson's rule in t (exact in x).

    E|v|^2 = |b' m|^2 + tr(G C^-1 G) with G = a a' I + b b' S, C = a^2 I + b^2 S.
    """
    t = jnp.linspace(0.0, 1.0, num_times, dtype=mean.dtype)
    a, b, da, db = coefficients_and_derivatives(interpolant, t)
    eye = jnp.eye(mean.shape[0], dtype=mean.dtype)

    def energy(a, b, da, db):
        gain = a * da * eye + b * db * cov
        marginal_cov = a**2 * eye + b**2 * cov
        return db**2 * mean @ mean + jnp.trace(gain @ jnp.linalg.solve(marginal_cov, gain))

    values = jax.vmap(energy)(a, b, da, db)
    weights = jnp.ones(num_times).at[1:-1:2].set(4.0).at[2:-1:2].set(2.0)
    return jnp.sum(weights * values) / (3.0 * (num_times - 1))
