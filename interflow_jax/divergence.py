"""Divergence of a velocity field, exact or by Hutchinson's estimator (PAPER section 4).

Both work on a batched field `f(x) -> v` with x, v of shape (batch, *dims) whose samples
do not interact (no BatchNorm), so one batched jvp/vjp gives every sample's
Jacobian-vector product at once.

- exact:      div f(x) = sum_i e_i^T (df/dx) e_i           (D forward-mode jvps)
- Hutchinson: div f(x) ~ (1/k) sum_j eps_j^T (df/dx) eps_j, E[eps eps^T] = I, eps
  Rademacher or Gaussian; the k products (df/dx) eps_j come from one linearisation
  (forward mode, the default) or one vjp (reverse mode).

Forward mode is the default because the estimate runs inside the ODE solver's loop, and
there XLA's CPU backend runs the transposed convolutions of a reverse-mode pass several
times slower than forward convolutions (7x for a 3x3 convolution stack, measured by
`benchmarks/hutchinson_modes.py`); a jvp uses only forward convolutions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Field = Callable[[jax.Array], jax.Array]


def _event_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def exact_divergence(f: Field, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Return (f(x), div f(x)) with shapes (batch, *dims) and (batch,).

    Linearises f once at x, then applies the linear map to the D = prod(dims) basis
    tangents (vectorised); cost and memory grow with D, fine for D up to a few hundred.
    """
    dims = x.shape[1:]
    dim = math.prod(dims)
    value, jvp_fn = jax.linearize(f, x)
    basis = jnp.eye(dim, dtype=x.dtype).reshape(dim, 1, *dims)

    def diagonal_entry(e):
        tangent = jnp.broadcast_to(e, x.shape)
        return _event_sum(jvp_fn(tangent) * tangent)

    return value, jnp.sum(jax.vmap(diagonal_entry)(basis), axis=0)


PROBE_KINDS = ("rademacher", "gaussian")


def check_probe_kind(kind: str) -> None:
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind must be one of {PROBE_KINDS}; got {kind!r}.")


def sample_probes(key: jax.Array, num_probes: int, shape, dtype, kind: str) -> jax.Array:
    """(num_probes, *shape) probes with E[eps eps^T] = I: 'rademacher' or 'gaussian'."""
    check_probe_kind(kind)
    if kind == "rademacher":
        return jax.random.rademacher(key, (num_probes, *shape), dtype=dtype)
    return jax.random.normal(key, (num_probes, *shape), dtype=dtype)


HUTCHINSON_MODES = ("forward", "reverse")


def check_hutchinson_mode(mode: str) -> None:
    if mode not in HUTCHINSON_MODES:
        raise ValueError(f"Hutchinson mode must be one of {HUTCHINSON_MODES}; got {mode!r}.")


def hutchinson_divergence(f: Field, x: jax.Array, probes: jax.Array, mode: str = "forward"):
    """Return (f(x), per-probe estimates) with shapes (batch, *dims) and (k, batch).

    `probes` is (k, batch, *dims). Each estimate eps^T (df/dx) eps is unbiased for div f;
    their mean is the Hutchinson estimate and their spread gives its standard error.
    mode: 'forward' applies the linearisation J eps (jvp), 'reverse' the vjp eps^T J;
    the two give the same numbers up to rounding.
    """
    check_hutchinson_mode(mode)
    if mode == "forward":
        value, product_fn = jax.linearize(f, x)
    else:
        value, vjp_fn = jax.vjp(f, x)

        def product_fn(probe):
            return vjp_fn(probe)[0]

    products = jax.vmap(product_fn)(probes)
    return value, jax.vmap(_event_sum)(products * probes)


def mean_and_standard_error(per_probe: jax.Array, axis: int = 0):
    """Mean over `axis` and its standard error std / sqrt(k) (0 when k == 1)."""
    k = per_probe.shape[axis]
    mean = jnp.mean(per_probe, axis=axis)
    if k == 1:
        return mean, jnp.zeros_like(mean)
    return mean, jnp.std(per_probe, axis=axis, ddof=1) / math.sqrt(k)
