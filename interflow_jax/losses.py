"""The quadratic velocity loss G and its diagnostics (PAPER section 3).

    G(v^) = int_0^1 E[ |v^_t(x_t)|^2 - 2 dI/dt(t, x0, x1) . v^_t(x_t) ] dt

Its unique minimiser is the interpolant's velocity v, where G = -int E|v_t(x_t)|^2 dt,
minus the path length. The diagnostic G + E|v^_t(x_t)|^2 tends to 0 as v^ -> v. Only
one network evaluation per sample: no ODE is solved during training.

Class-conditional training (PAPER section 9): a batch may carry labels 'y'; the loss
drops each to the null label w.p. p_uncond and binds them into the field's params
(`conditional.make_label_binder`), so the same G trains v(t, x | y) and v(t, x | null).

Couplings (`couplings`): the pairs (x0_i, x1_i) need only the right marginals, so a
batch may be paired by a minibatch optimal-transport plan before the loss is taken; G
and its minimiser are then those of the coupled interpolant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from interflow_jax.conditional import make_label_binder
from interflow_jax.densities import Density
from interflow_jax.interpolants import Interpolant, coefficients_and_derivatives, interpolate
from interflow_jax.time_sampling import TimeSampler, time_grid

ESTIMATORS = ("plain", "all_pairs", "antithetic")


def _per_sample_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def quadratic_integrand(velocity: jax.Array, dx_t: jax.Array):
    """Per-sample |v^|^2 - 2 dI/dt . v^ and |v^|^2, each (batch,)."""
    velocity_sq = _per_sample_sum(velocity**2)
    return velocity_sq - 2.0 * _per_sample_sum(dx_t * velocity), velocity_sq


def _metrics(integrand, velocity_sq):
    loss = jnp.mean(integrand)
    mean_velocity_sq = jnp.mean(velocity_sq)
    return loss, {
        "loss": loss,
        "velocity_sq": mean_velocity_sq,
        "convergence_gap": loss + mean_velocity_sq,
    }


def _all_pairs(interpolant, t, x0, x1, interpolant_params):
    """x_t, dx_t for every (t_k, x0_i, x1_j): shapes (K * n * N, *dims), plus times."""
    a, b, da, db = coefficients_and_derivatives(interpolant, t, interpolant_params)
    expand = (slice(None), None, None) + (None,) * (x0.ndim - 1)
    x0_, x1_ = x0[None, :, None], x1[None, None, :]
    x_t = a[expand] * x0_ + b[expand] * x1_
    dx_t = da[expand] * x0_ + db[expand] * x1_
    dims = x0.shape[1:]
    times = jnp.broadcast_to(t[:, None, None], x_t.shape[:3]).reshape(-1)
    return x_t.reshape(-1, *dims), dx_t.reshape(-1, *dims), times


def make_velocity_loss(
    field: Callable,
    interpolant: Interpolant,
    time_sampler: TimeSampler,
    base: Density | None = None,
    estimator: str = "plain",
    num_times: int = 1,
    num_base_samples: int | None = None,
    num_classes: int = 0,
    p_uncond: float = 0.1,
    pair: Callable | None = None,
):
    """Return `loss_fn(params, batch, key, interpolant_params=None) -> (G, metrics)`.

    batch: {'x1': (N, *dims)} and optionally {'x0': (n, *dims)}; without 'x0' the base
      density is sampled (n = N, or `num_base_samples` for all pairs). Optionally
      {'y': (N,) int labels in [0, num_classes)}: then params must be a dict, each label
      becomes the null label num_classes w.p. `p_uncond` (per example, from
      fold_in(key, 2)) and the field sees them as params['labels'] (one per input).
    estimator:
      'plain': one time per pair (t_i, x0_i, x1_i), n = N, network batch N.
      'all_pairs': K = `num_times` times, and for each every one of the n x N pairs
        (network batch K n N); averages the same integrand over more pairs.
      'antithetic': each (t_i, x0_i, x1_i) also with -x0_i (network batch 2N). The
        mirrored pair has the same law for the standard Gaussian base, so G is unchanged;
        the two targets' x0 terms (a' x0 and -a' x0) cancel in the gradient where x_t
        barely depends on x0 (late times). Needs base samples drawn from a
        standard_gaussian `base` (no 'x0' in the batch).
    pair: None (independent pairs) or `pair(key, x0, x1, labels) -> x0'` reordering the
      base samples so that (x0'_i, x1_i) are coupled (`couplings.couple`), from
      fold_in(key, 3), within classes when the batch has labels; 'plain' only.
    metrics: 'loss' (G), 'velocity_sq' (E|v^|^2), 'convergence_gap' (G + E|v^|^2).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}.")
    if estimator == "antithetic" and (base is None or base.name != "standard_gaussian"):
        name = None if base is None else base.name
        raise ValueError(
            "The antithetic estimator mirrors base samples x0 -> -x0, which keeps the law "
            f"of the standard Gaussian base only; got base {name!r}."
        )
    if pair is not None and estimator != "plain":
        raise ValueError(
            f"A coupling pairs each x1 with one x0; estimator {estimator!r} pairs x1 with "
            "other base samples too (every x0, or the mirrored -x0), which undoes the "
            "coupling. Use estimator='plain' with a coupling."
        )

    def base_samples(batch, key, n):
        if "x0" in batch:
            return batch["x0"]
        if base is None:
            raise ValueError("batch has no 'x0' and no base density was given to sample it.")
        return base.sample(key, n)

    bind_labels = make_label_binder(num_classes, p_uncond)

    def plain(params, batch, key, interpolant_params=None):
        x1 = batch["x1"]
        params = bind_labels(params, batch, jax.random.fold_in(key, 2))
        key_t, key_x0 = jax.random.split(key)
        x0 = base_samples(batch, key_x0, x1.shape[0])
        if pair is not None:
            x0 = pair(jax.random.fold_in(key, 3), x0, x1, batch.get("y"))
        t = time_sampler(key_t, x1.shape[0])
        x_t, dx_t = interpolate(interpolant, t, x0, x1, interpolant_params)
        return _metrics(*quadratic_integrand(field(t, x_t, params), dx_t))

    def all_pairs(params, batch, key, interpolant_params=None):
        x1 = batch["x1"]
        key_t, key_x0 = jax.random.split(key)
        x0 = base_samples(batch, key_x0, num_base_samples or x1.shape[0])
        t = time_sampler(key_t, num_times)
        repeats = (num_times, x0.shape[0])  # network inputs are ordered (time, x0, x1)
        params = bind_labels(params, batch, jax.random.fold_in(key, 2), repeats)
        x_t, dx_t, times = _all_pairs(interpolant, t, x0, x1, interpolant_params)
        return _metrics(*quadratic_integrand(field(times, x_t, params), dx_t))

    def antithetic(params, batch, key, interpolant_params=None):
        if "x0" in batch:
            raise ValueError(
                "The antithetic estimator draws and mirrors its own base samples; the batch "
                "carries 'x0' (a learnable base or data-to-data pairs). Use 'plain'."
            )
        x1 = batch["x1"]
        params = bind_labels(params, batch, jax.random.fold_in(key, 2), (2,))
        key_t, key_x0 = jax.random.split(key)
        x0 = base_samples(batch, key_x0, x1.shape[0])
        t = time_sampler(key_t, x1.shape[0])
        x0, x1, t = jnp.concatenate([x0, -x0]), jnp.concatenate([x1, x1]), jnp.tile(t, 2)
        x_t, dx_t = interpolate(interpolant, t, x0, x1, interpolant_params)
        return _metrics(*quadratic_integrand(field(t, x_t, params), dx_t))

    return {"plain": plain, "all_pairs": all_pairs, "antithetic": antithetic}[estimator]


def estimate_path_length(
    field: Callable,
    params: Any,
    interpolant: Interpolant,
    x0: jax.Array,
    x1: jax.Array,
    num_times: int = 64,
    interpolant_params: Any = None,
):
    """int_0^1 E|v^_t(x_t)|^2 dt by midpoint quadrature in t and Monte Carlo over pairs.

    x0, x1: (n, *dims) independent samples, reused at every time. Returns the estimate
    and its Monte Carlo standard error (over pairs, quadrature error not included).
    """
    n = x0.shape[0]

    def at_time(t):
        times = jnp.full((n,), t, x0.dtype)
        x_t, _ = interpolate(interpolant, times, x0, x1, interpolant_params)
        return _per_sample_sum(field(times, x_t, params) ** 2)

    per_pair = jnp.mean(jax.lax.map(at_time, time_grid(num_times).astype(x0.dtype)), axis=0)
    return jnp.mean(per_pair), jnp.std(per_pair, ddof=1) / jnp.sqrt(n)
