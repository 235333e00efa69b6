"""Score from the velocity, and a diffusion sampler, when rho0 = N(0, I) (PAPER section 6).

For I = a x0 + b x1 with x0 ~ N(0, I), Tweedie's formula E[x0 | x_t = x] = -a s_t(x) turns
the velocity v_t(x) = E[dI/dt | x_t = x] into the score of rho_t:

    s_t(x) = (b' x - b v_t(x)) / (a (a' b - a b')).

At t = 0 (a = 1, b = 0) this is s_0(x) = -x. At t = 1 (a = 0) it is 0/0: for the exact
field the limit is finite, but an error dv in a learned field enters the score multiplied
by |b / (a (a' b - a b'))| (for the trigonometric pair (2/pi) tan(pi t / 2): 64 at
t = 0.99, 640 at t = 0.999). So the score is only offered on [0, t_max], t_max < 1.

For any eps(t) >= 0 the SDE

    dX = [v_t(X) + eps(t) s_t(X)] dt + sqrt(2 eps(t)) dW,   X_0 ~ N(0, I),

has the marginals rho_t of the ODE (eps = 0). The sampler integrates it from 0 to
t_end < 1 with fixed steps and diagonal (additive) noise from a diffrax
VirtualBrownianTree on the full state (batch, *dims).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np

from interflow_jax.checks import check_batch, check_positive_int, check_times, is_concrete
from interflow_jax.interpolants import Interpolant, broadcast_time, coefficients_and_derivatives

VelocityField = Callable[[jax.Array, jax.Array, Any], jax.Array]
EpsSchedule = Callable[[jax.Array], jax.Array]


# ----------------------------------------------------------------------------- score


def score_from_velocity(interpolant: Interpolant, t, x, velocity, interpolant_params=None):
    """s_t(x) = (b' x - b v) / (a (a' b - a b')); t (batch,), x and velocity (batch, *dims).

    No checks: the caller keeps t away from 1 (see `make_score`).
    """
    a, b, da, db = (
        broadcast_time(c, x)
        for c in coefficients_and_derivatives(interpolant, t, interpolant_params)
    )
    return (db * x - b * velocity) / (a * (da * b - a * db))


def _batch_times(t, x) -> jax.Array:
    """t as (batch,): a scalar is broadcast, a (batch,) array is kept."""
    t = jnp.asarray(t, dtype=x.dtype)
    if t.ndim == 0:
        return jnp.full(x.shape[:1], t)
    if t.shape != x.shape[:1]:
        raise ValueError(
            f"t must be a scalar or have shape (batch,) = {x.shape[:1]}; got {t.shape}."
        )
    return t


def _check_score_times(t, t_max: float) -> None:
    if not is_concrete(t):
        return
    check_times(t)
    t = np.asarray(t)
    late = t > np.asarray(t_max, dtype=t.dtype)  # t_max rounded as t is (0.99 in float32)
    if np.any(late):
        raise ValueError(
            f"The score is singular at t = 1 (a(1) = 0); t must lie in [0, t_max = {t_max}], "
            f"got t = {np.asarray(t)[late].ravel()[:5].tolist()}."
        )


def _check_denominator(interpolant, t, interpolant_params, min_denominator: float) -> None:
    """Raise where |a (a' b - a b')| is tiny (e.g. a learnable a that vanishes before 1)."""
    leaves = jax.tree.leaves((t, interpolant_params))
    if not all(is_concrete(leaf) for leaf in leaves):
        return
    a, b, da, db = coefficients_and_derivatives(interpolant, t, interpolant_params)
    small = np.abs(np.asarray(a * (da * b - a * db))) < min_denominator
    if np.any(small):
        raise ValueError(
            f"The score's denominator a (a' b - a b') is below {min_denominator} at "
            f"t = {np.asarray(t)[small].ravel()[:5].tolist()}; the score is singular there."
        )


def make_score(
    field: VelocityField,
    interpolant: Interpolant,
    t_max: float = 0.99,
    min_denominator: float = 1e-6,
):
    """Return `score(t, x, params, interpolant_params=None) -> s_t(x)` (PAPER section 6).

    s_t(x) = (b' x - b v_t(x)) / (a (a' b - a b')) with v = field(t, x, params); valid for
    rho0 = N(0, I). t: scalar or (batch,); x: (batch, *dims) -> (batch, *dims).

    Cutoff: the score is singular at t = 1, so concrete t > t_max (default 0.99) raises
    ValueError, as does a concrete |a (a' b - a b')| < min_denominator. Under tracing
    (inside jit or grad) no check runs; the caller keeps t <= t_max.
    """
    if not 0.0 < t_max < 1.0:
        raise ValueError(f"t_max must lie in (0, 1); got {t_max}.")

    @jax.jit
    def compute(t, x, params, interpolant_params):
        velocity = field(t, x, params)
        return score_from_velocity(interpolant, t, x, velocity, interpolant_params)

    def score(t, x, params, interpolant_params=None):
        check_batch(x, None)
        t = _batch_times(t, x)
        _check_score_times(t, t_max)
        _check_denominator(interpolant, t, interpolant_params, min_denominator)
        return compute(t, x, params, interpolant_params)

    return score


# ----------------------------------------------------------------------------- eps schedules


def _check_eps_value(value) -> float:
    value = float(value)
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"The diffusion coefficient eps must be finite and >= 0; got {value}.")
    return value


def constant_eps(value: float) -> EpsSchedule:
    """eps(t) = value (>= 0). Zero gives the ODE."""
    value = _check_eps_value(value)
    return lambda t: value * jnp.ones_like(t)


def vanishing_eps(value: float) -> EpsSchedule:
    """eps(t) = value sin(pi t)^2 (>= 0): no noise at t = 0 and none near t = 1."""
    value = _check_eps_value(value)
    return lambda t: value * jnp.sin(jnp.pi * t) ** 2


def _check_eps_schedule(eps_fn: EpsSchedule, t_end: float, num_steps: int) -> None:
    """Raise unless eps >= 0 (and finite) on the step grid and at the step midpoints."""
    t = np.linspace(0.0, t_end, 2 * num_steps + 1)
    values = np.asarray(eps_fn(jnp.asarray(t)), dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0)
    if np.any(bad):
        raise ValueError(
            f"eps(t) must be finite and >= 0 on [0, t_end]; got eps = "
            f"{values[bad][:3].tolist()} at t = {t[bad][:3].tolist()}."
        )


# ----------------------------------------------------------------------------- SDE sampler


class SDESolverSpec(NamedTuple):
    """A diffrax solver for additive noise and the Brownian information it needs."""

    make: Callable[[], diffrax.AbstractSolver]
    levy_area: type


SDE_SOLVERS = {
    # Ito Euler-Maruyama: weak order 1.
    "euler_maruyama": SDESolverSpec(diffrax.Euler, diffrax.BrownianIncrement),
    # Stratonovich Heun (= Ito here: the noise is additive): strong order 1 for additive noise.
    "heun": SDESolverSpec(diffrax.Heun, diffrax.BrownianIncrement),
    # Shifted additive-noise Runge-Kutta: strong order 1.5, needs space-time Levy area.
    "shark": SDESolverSpec(diffrax.ShARK, diffrax.SpaceTimeLevyArea),
}


def _check_sampler_inputs(solver: str, num_steps: int, t_end: float) -> None:
    if solver not in SDE_SOLVERS:
        raise ValueError(f"Unknown SDE solver {solver!r}; expected one of {sorted(SDE_SOLVERS)}.")
    check_positive_int(num_steps, "num_steps")
    if not 0.0 < float(t_end) < 1.0:
        raise ValueError(f"t_end must lie in (0, 1) (the score is singular at 1); got {t_end}.")


def _sde_terms(field, interpolant, eps_fn, brownian):
    """drift v + eps s and diffusion sqrt(2 eps) I, as one diffrax MultiTerm."""

    def drift(s, x, args):
        params, interpolant_params = args
        t = jnp.full(x.shape[:1], s, dtype=x.dtype)
        velocity = field(t, x, params)
        score = score_from_velocity(interpolant, t, x, velocity, interpolant_params)
        return velocity + eps_fn(s) * score

    def diffusion(s, x, args):
        del args
        return lineax.DiagonalLinearOperator(jnp.sqrt(2.0 * eps_fn(s)) * jnp.ones_like(x))

    return diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, brownian))


def make_sde_sampler(
    field: VelocityField,
    interpolant: Interpolant,
    eps_fn: EpsSchedule,
    solver: str = "euler_maruyama",
    num_steps: int = 200,
    t_end: float = 0.95,
):
    """Return jitted `sample(params, x0, key, interpolant_params=None) -> X_{t_end}`.

    Integrates dX = [v_t(X) + eps(t) s_t(X)] dt + sqrt(2 eps(t)) dW from X_0 = x0 ~ N(0, I)
    (batch, *dims) to t_end in (0, 1) (PAPER section 6), with `num_steps` fixed steps of
    `solver` ('euler_maruyama', 'heun' or 'shark') and one independent Brownian motion per
    entry of the state, drawn from a VirtualBrownianTree (tolerance dt / 2) keyed by `key`.
    eps_fn(t) >= 0 (e.g. `constant_eps`, `vanishing_eps`) is checked on the step grid.
    """
    _check_sampler_inputs(solver, num_steps, t_end)
    _check_eps_schedule(eps_fn, t_end, num_steps)
    spec, t_end, dt = SDE_SOLVERS[solver], float(t_end), float(t_end) / num_steps

    @jax.jit
    def sample(params, x0, key, interpolant_params=None):
        check_batch(x0, None, name="x0")
        brownian = diffrax.VirtualBrownianTree(
            0.0, t_end, dt / 2, jax.ShapeDtypeStruct(x0.shape, x0.dtype), key, spec.levy_area
        )
        solution = diffrax.diffeqsolve(
            _sde_terms(field, interpolant, eps_fn, brownian),
            spec.make(),
            t0=0.0,
            t1=t_end,
            dt0=dt,
            y0=x0,
            args=(params, interpolant_params),
            stepsize_controller=diffrax.ConstantStepSize(),
            saveat=diffrax.SaveAt(t1=True),
            max_steps=num_steps + 8,
        )
        return solution.ys[0]

    return sample
