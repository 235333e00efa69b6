"""Learnable interpolants and a learnable Gaussian base (PAPER section 5).

Maximising over the interpolant's parameters (and a Gaussian base's mean and covariance)
the minimum over v^ of the quadratic loss G minimises the path length int E|v_t|^2 dt;
when the family can represent the optimal-transport displacement path the optimum is
W2^2(rho0, rho1) (Benamou-Brenier).

Learnable pair (M = num_terms sine terms that vanish at t = 0 and t = 1):

    a(t) = a_base(t) + sum_{m=1}^M alpha_m sin(m pi t)
    b(t) = b_base(t) + sum_{m=1}^M beta_m  sin(m pi t)

so a(0)=1, a(1)=0, b(0)=0, b(1)=1 hold for every parameter value. Params are the pytree
{'alpha': (M,), 'beta': (M,)}.

Learnable Gaussian base N(mean, L L^T), with L lower-triangular and
diag(L) = softplus(diag(cholesky_raw)) > 0; params {'mean': (d,), 'cholesky_raw': (d, d)}
(the strictly upper triangle of cholesky_raw is ignored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from interflow_jax.checks import check_batch, check_positive_int
from interflow_jax.densities import Density
from interflow_jax.interpolants import Interpolant, get_interpolant

_BASES = ("linear", "trigonometric")
_INV_SOFTPLUS_ONE = math.log(math.expm1(1.0))  # softplus(_INV_SOFTPLUS_ONE) = 1


# ----------------------------------------------------------------------------- interpolants


def sine_basis(t: jax.Array, num_terms: int) -> jax.Array:
    """sin(m pi t) for m = 1..num_terms: t (any shape) -> (*t.shape, num_terms)."""
    t = jnp.asarray(t)
    m = jnp.arange(1, num_terms + 1, dtype=t.dtype)
    return jnp.sin(jnp.pi * t[..., None] * m)


def _check_interpolant_params(params: Any, num_terms: int) -> None:
    want = (num_terms,)
    ok = isinstance(params, Mapping) and set(params) == {"alpha", "beta"}
    if not ok or any(jnp.shape(params[k]) != want for k in ("alpha", "beta")):
        got = params if not isinstance(params, Mapping) else jax.tree.map(jnp.shape, params)
        raise ValueError(
            f"Learnable interpolant params must be {{'alpha': {want}, 'beta': {want}}}; "
            f"got {got!r}."
        )


def make_learnable_interpolant(base: str = "linear", num_terms: int = 4):
    """A learnable pair a, b = base pair + sine series, and its initial params (zeros).

    a(t) = a_base(t) + sum_m alpha_m sin(m pi t), b(t) = b_base(t) + sum_m beta_m sin(m pi t),
    m = 1..num_terms (PAPER section 5). `coefficients(t, params)` accepts t of any shape and
    returns a, b shaped like t; derivatives come from `coefficients_and_derivatives`.

    Args:
      base: 'linear' (1 - t, t) or 'trigonometric' (cos(pi t / 2), sin(pi t / 2)).
      num_terms: M >= 1, the number of sine terms in each of a and b.
    Returns:
      (Interpolant, params) with params {'alpha': zeros (M,), 'beta': zeros (M,)}, at which
      the pair equals the base pair.
    """
    if base not in _BASES:
        raise ValueError(f"Unknown base {base!r}; expected one of {list(_BASES)}.")
    num_terms = check_positive_int(num_terms, "num_terms")
    base_coefficients = get_interpolant(base).coefficients

    def coefficients(t, params):
        _check_interpolant_params(params, num_terms)
        a_base, b_base = base_coefficients(t, None)
        features = sine_basis(t, num_terms)
        return a_base + features @ params["alpha"], b_base + features @ params["beta"]

    params = {"alpha": jnp.zeros((num_terms,)), "beta": jnp.zeros((num_terms,))}
    return Interpolant(f"learnable_{base}_{num_terms}", coefficients), params


def bind_params(interpolant: Interpolant, params: Any) -> Interpolant:
    """The interpolant with `params` fixed, for functions that pass params=None.

    E.g. `gaussian.gaussian_path_length(bind_params(interp, params), mean, cov)`.
    """
    return Interpolant(interpolant.name, lambda t, unused=None: interpolant.coefficients(t, params))


# ----------------------------------------------------------------------------- Gaussian base


def learnable_gaussian_base_params(dim: int) -> dict[str, jax.Array]:
    """Params of N(0, I_dim): {'mean': zeros (d,), 'cholesky_raw': (d, d)} with L = I."""
    dim = check_positive_int(dim, "dim")
    return {"mean": jnp.zeros((dim,)), "cholesky_raw": _INV_SOFTPLUS_ONE * jnp.eye(dim)}


def cholesky_factor(params: dict[str, jax.Array]) -> jax.Array:
    """L (d, d): strict lower triangle of cholesky_raw, diagonal softplus(diag(raw)) > 0."""
    raw = params["cholesky_raw"]
    return jnp.tril(raw, -1) + jnp.diag(jax.nn.softplus(jnp.diag(raw)))


def gaussian_base_params_from_moments(mean, cov) -> dict[str, jax.Array]:
    """The params whose Gaussian is N(mean, cov); mean (d,), cov (d, d) positive definite."""
    mean, cov = jnp.asarray(mean), jnp.asarray(cov)
    d = mean.shape[0] if mean.ndim == 1 else -1
    if mean.ndim != 1 or cov.shape != (d, d):
        raise ValueError(f"Expected mean (d,) and cov (d, d); got {mean.shape}, {cov.shape}.")
    chol = jnp.linalg.cholesky(cov)
    if not bool(jnp.all(jnp.isfinite(chol))):
        raise ValueError("cov must be symmetric positive definite; its Cholesky failed.")
    diag = jnp.diag(chol)
    raw_diag = diag + jnp.log(-jnp.expm1(-diag))  # inverse softplus, stable for large values
    return {"mean": mean, "cholesky_raw": jnp.tril(chol, -1) + jnp.diag(raw_diag)}


def gaussian_base_sample(params: dict[str, jax.Array], key: jax.Array, n: int) -> jax.Array:
    """n samples (n, d) of N(mean, L L^T): x = mean + L z, z ~ N(0, I)."""
    mean, chol = params["mean"], cholesky_factor(params)
    z = jax.random.normal(key, (n, mean.shape[0]), dtype=mean.dtype)
    return mean + z @ chol.T


def gaussian_base_log_prob(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """log N(x; mean, L L^T) for x (batch, d) -> (batch,).

    = -|L^{-1}(x - mean)|^2 / 2 - sum_i log L_ii - (d / 2) log(2 pi).
    """
    mean, chol = params["mean"], cholesky_factor(params)
    check_batch(x, mean.shape)
    z = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)
    log_det = jnp.sum(jnp.log(jnp.diag(chol)))
    return -0.5 * jnp.sum(z**2, axis=0) - log_det - 0.5 * mean.shape[0] * math.log(2 * math.pi)


def as_density(params: dict[str, jax.Array]) -> Density:
    """A `densities.Density` with these concrete params bound (for flows.make_flow)."""
    params = params if isinstance(params, Mapping) else {}
    mean, raw = np.shape(params.get("mean")), np.shape(params.get("cholesky_raw"))
    if len(mean) != 1 or raw != mean * 2:
        raise ValueError(
            f"Gaussian base params must be {{'mean': (d,), 'cholesky_raw': (d, d)}}; "
            f"got shapes {mean} and {raw}."
        )
    return Density(
        "learnable_gaussian",
        mean,
        lambda key, n: gaussian_base_sample(params, key, n),
        lambda x: gaussian_base_log_prob(params, x),
    )
