"""Base densities rho0: Gaussians with exact log-densities, or a sampler of data.

A `Density` has `sample(key, n) -> (n, *event_shape)` and, when the density is known,
`log_prob(x) -> (n,)`. A flow between two data sets uses `from_sampler` as its base:
it can be sampled (both ways along the flow) but has no likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np

from interflow_jax.checks import check_batch


class Density(NamedTuple):
    name: str
    event_shape: tuple[int, ...]
    sample: Callable[[jax.Array, int], jax.Array]
    log_prob: Callable[[jax.Array], jax.Array] | None = None


def _sum_event(values: jax.Array, event_ndim: int) -> jax.Array:
    return jnp.sum(values, axis=tuple(range(-event_ndim, 0)))


def standard_gaussian(event_shape: tuple[int, ...]) -> Density:
    """N(0, I) on R^{event_shape}: log p(x) = -|x|^2/2 - (D/2) log(2 pi), D = prod(shape)."""
    event_shape = tuple(int(s) for s in event_shape)
    dim = math.prod(event_shape)

    def sample(key, n):
        return jax.random.normal(key, (n, *event_shape))

    def log_prob(x):
        check_batch(x, event_shape)
        return -0.5 * _sum_event(x**2, len(event_shape)) - 0.5 * dim * math.log(2 * math.pi)

    return Density("standard_gaussian", event_shape, sample, log_prob)


def diagonal_gaussian(mean: jax.Array, scale: jax.Array) -> Density:
    """N(mean, diag(scale^2)); `mean` and `scale` have the event shape, scale > 0."""
    mean, scale = jnp.asarray(mean), jnp.asarray(scale)
    if mean.shape != scale.shape:
        raise ValueError(f"mean and scale must share a shape; got {mean.shape}, {scale.shape}.")
    if not bool(jnp.all(scale > 0)):
        raise ValueError(f"scale must be positive everywhere; got min {float(scale.min())}.")
    event_shape, ndim = mean.shape, mean.ndim
    log_norm = jnp.sum(jnp.log(scale)) + 0.5 * mean.size * math.log(2 * math.pi)

    def sample(key, n):
        return mean + scale * jax.random.normal(key, (n, *event_shape))

    def log_prob(x):
        check_batch(x, event_shape)
        return -0.5 * _sum_event(((x - mean) / scale) ** 2, ndim) - log_norm

    return Density("diagonal_gaussian", event_shape, sample, log_prob)


def full_gaussian(mean: jax.Array, covariance: jax.Array) -> Density:
    """N(mean, covariance) on R^d with a full covariance (d, d), symmetric positive definite.

    With covariance = L L^T (Cholesky): x = mean + L z, z ~ N(0, I), and
    log p(x) = -|L^{-1} (x - mean)|^2 / 2 - sum_i log L_ii - (d/2) log(2 pi).
    The Gaussian base of PAPER section 5, here fitted to the data (`fit_gaussian`).
    """
    mean, covariance = jnp.asarray(mean), jnp.asarray(covariance)
    d = mean.shape[0]
    if mean.ndim != 1 or covariance.shape != (d, d):
        raise ValueError(
            f"full_gaussian needs mean (d,) and covariance (d, d); got {mean.shape}, "
            f"{covariance.shape}."
        )
    chol = jnp.linalg.cholesky(covariance)
    if not bool(jnp.all(jnp.isfinite(chol))):
        raise ValueError("full_gaussian: the covariance is not positive definite.")
    log_norm = jnp.sum(jnp.log(jnp.diagonal(chol))) + 0.5 * d * math.log(2 * math.pi)

    def sample(key, n):
        return mean + jax.random.normal(key, (n, d), mean.dtype) @ chol.T

    def log_prob(x):
        check_batch(x, (d,))
        z = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)
        return -0.5 * jnp.sum(z**2, axis=0) - log_norm

    return Density("full_gaussian", (d,), sample, log_prob)


def fit_gaussian(x) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), covariance (d, d)) of samples x (n, d), in float64 on the host; the
    covariance is the unbiased one (n - 1), with 1e-6 of its mean variance added to the
    diagonal so that it stays positive definite."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < x.shape[1] + 1:
        raise ValueError(
            f"fit_gaussian needs samples (n, d) with n > d; got an array of shape {x.shape}."
        )
    mean = x.mean(axis=0)
    covariance = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    covariance += 1e-6 * np.mean(np.diag(covariance)) * np.eye(x.shape[1])
    return mean, covariance


def from_sampler(sample: Callable, event_shape: tuple[int, ...], name: str = "data") -> Density:
    """A base known only through samples (a flow between two data sets); no log_prob."""
    return Density(name, tuple(event_shape), sample, None)


def require_log_prob(density: Density) -> Callable[[jax.Array], jax.Array]:
    """The density's log_prob, or a ValueError saying that likelihoods need one."""
    if density.log_prob is None:
        raise ValueError(
            f"The base density {density.name!r} is known only through samples, so the flow "
            "has no likelihood; use a base with a log_prob (e.g. a Gaussian)."
        )
    return density.log_prob
