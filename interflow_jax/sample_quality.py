"""Sample-quality figures that need no density: the energy distance."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _mean_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    diff = x[:, None, :] - y[None, :, :]
    return jnp.mean(jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-30))


@functools.partial(jax.jit, static_argnames="unbiased")
def energy_distance(x: jax.Array, y: jax.Array, unbiased: bool = False) -> jax.Array:
    """D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'| for samples x (n, d), y (m, d).

    Zero iff the laws agree (Szekely & Rizzo). The default V-statistic averages the
    within-sample distances over all n^2 pairs, zeros on the diagonal included, so it is
    biased upward by about (E|X - X'| / n + E|Y - Y'| / m): compare such figures only at
    equal sample sizes. `unbiased=True` gives the U-statistic (within-sample sums over
    n (n - 1) and m (m - 1) distinct pairs), whose expectation is D^2 itself: it is centred
    on 0 for two samples of one law and can then be negative. Memory O(n m).
    """
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    within_x, within_y = _mean_distance(x, x), _mean_distance(y, y)
    if unbiased:
        n, m = x.shape[0], y.shape[0]
        within_x, within_y = within_x * n / (n - 1), within_y * m / (m - 1)
    return 2 * _mean_distance(x, y) - within_x - within_y
