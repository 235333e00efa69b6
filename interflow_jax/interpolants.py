"""Spatially linear stochastic interpolants (PAPER section 1).

An interpolant is I(t, x0, x1) = a(t) x0 + b(t) x1 with a(0) = 1, a(1) = 0, b(0) = 0,
b(1) = 1, so that x_t = I(t, x0, x1) has density rho0 at t = 0 and rho1 at t = 1.

An `Interpolant` holds one function `coefficients(t, params) -> (a, b)`, elementwise in
`t`. Time derivatives a'(t), b'(t) are always taken with `jax.jvp`, never by hand, so a
custom or learnable pair only needs to say what a and b are. `params` is `None` for the
fixed families and a pytree for learnable ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from interflow_jax.checks import check_times

CoefficientsFn = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]]


class Interpolant(NamedTuple):
    """A pair a(t), b(t). `coefficients(t, params)` returns arrays shaped like `t`."""

    name: str
    coefficients: CoefficientsFn


def _trigonometric(t, params=None):
    del params
    return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)


def _linear(t, params=None):
    del params
    return 1.0 - t, t


TRIGONOMETRIC = Interpolant("trigonometric", _trigonometric)
LINEAR = Interpolant("linear", _linear)
_NAMED = {"trigonometric": TRIGONOMETRIC, "trig": TRIGONOMETRIC, "linear": LINEAR}


def get_interpolant(name: str) -> Interpolant:
    """The fixed family called `name`: 'trigonometric' (alias 'trig') or 'linear'."""
    if name not in _NAMED:
        raise ValueError(f"Unknown interpolant {name!r}; expected one of {sorted(_NAMED)}.")
    return _NAMED[name]


def check_boundary_conditions(interpolant: Interpolant, params: Any = None, atol=1e-6) -> None:
    """Raise ValueError unless a(0)=1, a(1)=0, b(0)=0, b(1)=1 within `atol`."""
    a, b = interpolant.coefficients(jnp.array([0.0, 1.0]), params)
    got = np.asarray(jnp.stack([a, b]), dtype=np.float64)
    want = np.array([[1.0, 0.0], [0.0, 1.0]])
    if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=0):
        raise ValueError(
            f"Interpolant {interpolant.name!r} breaks the boundary conditions: got "
            f"a(0)={got[0, 0]:.6g}, a(1)={got[0, 1]:.6g}, b(0)={got[1, 0]:.6g}, "
            f"b(1)={got[1, 1]:.6g}; expected a(0)=1, a(1)=0, b(0)=0, b(1)=1."
        )


def custom(a_fn: Callable, b_fn: Callable, name: str = "custom") -> Interpolant:
    """An interpolant from user functions a_fn(t), b_fn(t) (elementwise, jax-traceable).

    The boundary conditions are checked here, once; a pair that breaks them raises.
    """
    interpolant = Interpolant(name, lambda t, params=None: (a_fn(t), b_fn(t)))
    check_boundary_conditions(interpolant)
    return interpolant


def coefficients_and_derivatives(interpolant: Interpolant, t: jax.Array, params: Any = None):
    """(a, b, a', b') at times `t` (any shape), derivatives by forward-mode `jax.jvp`."""
    t = jnp.asarray(t)
    (a, b), (da, db) = jax.jvp(
        lambda s: interpolant.coefficients(s, params), (t,), (jnp.ones_like(t),)
    )
    return a, b, da, db


def broadcast_time(t: jax.Array, x: jax.Array) -> jax.Array:
    """Reshape per-sample times `t` (batch,) to (batch, 1, ..., 1) to broadcast with x."""
    return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(interpolant: Interpolant, t, x0, x1, params: Any = None):
    """x_t = a(t) x0 + b(t) x1 and its time derivative dx_t/dt = a'(t) x0 + b'(t) x1.

    Args:
      t: (batch,) times in [0, 1].
      x0, x1: (batch, *dims) base and target samples (drawn independently).
    Returns:
      (x_t, dx_t), both (batch, *dims).
    """
    check_times(t)
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have one shape; got {x0.shape} and {x1.shape}.")
    if t.shape != x0.shape[:1]:
        raise ValueError(f"t must have shape (batch,) = {x0.shape[:1]}; got {t.shape}.")
    a, b, da, db = (
        broadcast_time(c, x0) for c in coefficients_and_derivatives(interpolant, t, params)
    )
    return a * x0 + b * x1, da * x0 + db * x1
