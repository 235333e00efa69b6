"""Laws for the training times t (PAPER section 3).

Any positive weighting of the time integral in G leaves its minimiser unchanged, so t
may be drawn uniformly or from Beta(alpha, beta) (more weight near one end), and may be
kept inside [t_min, t_max] (e.g. away from a singular end). Stratified times (one time
in each of n equal cells of [0, 1) for a batch of n) keep the uniform law of each time
and give the batch mean of the loss a smaller variance than n independent times.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

TimeSampler = Callable[[jax.Array, int], jax.Array]
TIME_SAMPLERS = ("uniform", "beta", "stratified")


def make_time_sampler(
    kind: str = "uniform",
    alpha: float = 1.0,
    beta: float = 1.0,
    t_min: float = 0.0,
    t_max: float = 1.0,
) -> TimeSampler:
    """Return `sample(key, n) -> (n,)` times t = t_min + (t_max - t_min) u.

    u ~ U[0, 1) for kind='uniform', u ~ Beta(alpha, beta) for kind='beta', and for
    kind='stratified' u_i = (i + U_i) / n, i = 0..n-1, U_i ~ U[0, 1) (each u_i uniform on
    [0, 1), one in each cell [i/n, (i+1)/n)): an unbiased batch mean of any f(t) whose
    variance falls as O(n^-3) for smooth f rather than O(n^-1).
    """
    if kind not in TIME_SAMPLERS:
        raise ValueError(f"time sampler kind must be one of {TIME_SAMPLERS}; got {kind!r}.")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1; got t_min={t_min}, t_max={t_max}.")
    if kind == "beta" and not (alpha > 0 and beta > 0):
        raise ValueError(f"Beta parameters must be positive; got alpha={alpha}, beta={beta}.")

    def sample(key: jax.Array, n: int) -> jax.Array:
        if kind == "uniform":
            u = jax.random.uniform(key, (n,))
        elif kind == "stratified":
            u = (jnp.arange(n) + jax.random.uniform(key, (n,))) / n
            # (n - 1 + U) rounds to n in float32 for U near 1 (large n): keep u < 1 as U[0, 1)
            u = jnp.minimum(u, jnp.nextafter(jnp.ones((), u.dtype), 0))
        else:
            u = _beta(key, alpha, beta, n)
        return t_min + (t_max - t_min) * u

    return sample


def _beta(key: jax.Array, alpha: float, beta: float, n: int) -> jax.Array:
    """n draws of Beta(alpha, beta). With alpha = 1 the CDF is 1 - (1 - u)^beta,
    with beta = 1 it is u^alpha: one uniform U ~ U[0, 1) each through the inverse CDF,
    u = 1 - (1 - U)^(1/beta) or U^(1/alpha), in straight-line code. Otherwise jax's
    gamma-ratio sampler (rejection loops: 0.73 ms against 0.42 ms per jitted draw of 32
    times on a CPU)."""
    if alpha != 1.0 and beta != 1.0:
        return jax.random.beta(key, alpha, beta, (n,))
    uniform = jax.random.uniform(key, (n,))
    return 1.0 - (1.0 - uniform) ** (1.0 / beta) if alpha == 1.0 else uniform ** (1.0 / alpha)


def time_grid(num_times: int, t_min: float = 0.0, t_max: float = 1.0) -> jnp.ndarray:
    """Midpoints of `num_times` equal cells of [t_min, t_max], for deterministic quadrature."""
    edges = jnp.linspace(t_min, t_max, num_times + 1)
    return 0.5 * (edges[1:] + edges[:-1])
