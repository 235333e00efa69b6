"""2-D toy data sets of the normalizing-flow literature (FFJORD, Grathwohl et al. 2019).

Each data set is a `Toy2D(name, sample, log_prob)`:

* `sample(key, n) -> (n, 2)` uses jax.random only and is jittable with `n` static
  (`jax.jit(ds.sample, static_argnums=1)`);
* `log_prob(x: (n, 2)) -> (n,)` is the exact log-density where it has a closed form
  (checkerboard, 8gaussians, rings) and None otherwise (moons, pinwheel, spirals).
* labelled data sets (8gaussians: the component is the label, 8 classes) also have
  `sample_labelled(key, n) -> ((n, 2), (n,) int32)`, drawing the same points as `sample`
  from the same key, and the exact class density `log_prob_given(x, y) -> (n,)`.

Arrays use jax's default float dtype (float64 under jax_enable_x64). All data sets sit
roughly inside [-4, 4]^2. Constants are built inside the functions, so the dtype follows
the x64 setting at trace time rather than at import time.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e, logsumexp


class Toy2D(NamedTuple):
    """A named 2-D data set: `sample(key, n) -> (n, 2)`, `log_prob(x) -> (n,)` or None;
    with labels, `num_classes` > 0, `sample_labelled` and `log_prob_given` (see above)."""

    name: str
    sample: Callable[[jax.Array, int], jax.Array]
    log_prob: Callable[[jax.Array], jax.Array] | None
    num_classes: int = 0
    sample_labelled: Callable[[jax.Array, int], tuple[jax.Array, jax.Array]] | None = None
    log_prob_given: Callable[[jax.Array, jax.Array], jax.Array] | None = None


EIGHT_GAUSSIANS_SCALE = 4.0
EIGHT_GAUSSIANS_STD = 0.5
EIGHT_GAUSSIANS_DIVISOR = 1.414  # literally 1.414, as in FFJORD
RING_RADII = (0.9, 1.8, 2.7, 3.6)
RING_STD = 0.1


def _check_n(n, what: str = "n") -> int:
    """`n` as a Python int, or ValueError if it is not a positive integer."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
        raise ValueError(f"{what} must be a positive Python int; got {what}={n!r}.")
    return int(n)


def _points(x) -> jax.Array:
    """`x` as a float array of shape (n, 2), or ValueError naming its shape."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"log_prob expects points of shape (n, 2); got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _norm(x: jax.Array) -> jax.Array:
    """|x| over the last axis, with a zero (not NaN) gradient at x = 0."""
    sq = jnp.sum(x * x, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


# --------------------------------------------------------------------------- checkerboard


def checkerboard_sample(key: jax.Array, n: int) -> jax.Array:
    """FFJORD checkerboard, (n, 2).

    x1 ~ U[-2, 2), x2 = U[0, 1) - 2 randint{0, 1} + (floor(x1) mod 2), returned as
    2 (x1, x2): uniform on the 8 cells [2i, 2i + 2) x [2j, 2j + 2) of [-4, 4)^2 with
    i + j even (floor(x2) = floor(x1) mod 2 or that minus 2, so floor(x1) + floor(x2)
    is even).
    """
    n = _check_n(n)
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)
    shift = 2.0 * jax.random.randint(k3, (n,), 0, 2).astype(x1.dtype)
    x2 = jax.random.uniform(k2, (n,), dtype=x1.dtype) - shift + jnp.mod(jnp.floor(x1), 2.0)
    return 2.0 * jnp.stack([x1, x2], axis=1)


def checkerboard_log_prob(x) -> jax.Array:
    """Exact checkerboard log-density, (n, 2) -> (n,).

    log p(y) = -ln 32 if y1, y2 in [-4, 4) and floor(y1 / 2) + floor(y2 / 2) is even
    (8 cells of area 4, total area 32); -inf otherwise.
    """
    x = _points(x)
    in_box = jnp.all((x >= -4.0) & (x < 4.0), axis=1)
    even = jnp.mod(jnp.sum(jnp.floor(x / 2.0), axis=1), 2.0) == 0
    return jnp.where(in_box & even, -math.log(32.0), -jnp.inf).astype(x.dtype)


# --------------------------------------------------------------------------- 8 gaussians


def _eight_centres(dtype=None) -> jax.Array:
    """The 8 unit directions (+-1, 0), (0, +-1), (+-1/sqrt 2, +-1/sqrt 2), (8, 2)."""
    c = 1.0 / math.sqrt(2.0)
    dirs = [(1, 0), (-1, 0), (0, 1), (0, -1), (c, c), (c, -c), (-c, c), (-c, -c)]
    return jnp.asarray(dirs, dtype=dtype if dtype is not None else jnp.result_type(float))


def eight_gaussians_sample_labelled(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """8gaussians points (n, 2) with their components k (n,) int32 in 0..7 as labels."""
    n = _check_n(n)
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (n,), 0, 8)
    z = jax.random.normal(k2, (n, 2))
    centres = EIGHT_GAUSSIANS_SCALE * _eight_centres(z.dtype)
    x = (centres[idx] + EIGHT_GAUSSIANS_STD * z) / EIGHT_GAUSSIANS_DIVISOR
    return x, idx.astype(jnp.int32)


def eight_gaussians_sample(key: jax.Array, n: int) -> jax.Array:
    """FFJORD 8gaussians, (n, 2): x = (4 c_k + 0.5 z) / 1.414, k ~ U{0..7}, z ~ N(0, I)."""
    return eight_gaussians_sample_labelled(key, n)[0]


def eight_gaussians_means(dtype=None) -> jax.Array:
    """The component means mu_k = 4 c_k / 1.414, (8, 2); component k is label k."""
    return EIGHT_GAUSSIANS_SCALE / EIGHT_GAUSSIANS_DIVISOR * _eight_centres(dtype)


def eight_gaussians_log_prob_given(x, y) -> jax.Array:
    """Exact class density log N(x; mu_y, s^2 I), s = 0.5 / 1.414; x (n, 2), y (n,) -> (n,)."""
    x = _points(x)
    s = EIGHT_GAUSSIANS_STD / EIGHT_GAUSSIANS_DIVISOR
    sq = jnp.sum((x - eight_gaussians_means(x.dtype)[jnp.asarray(y)]) ** 2, axis=-1)
    return -sq / (2 * s**2) - math.log(2 * math.pi * s**2)


def eight_gaussians_log_prob(x) -> jax.Array:
    """Exact 8gaussians log-density, (n, 2) -> (n,).

    p(x) = (1/8) sum_k N(x; mu_k, s^2 I), mu_k = 4 c_k / 1.414, s = 0.5 / 1.414, i.e.
    log p = logsumexp_k(-|x - mu_k|^2 / (2 s^2)) - ln 8 - ln(2 pi s^2).
    """
    x = _points(x)
    means = EIGHT_GAUSSIANS_SCALE / EIGHT_GAUSSIANS_DIVISOR * _eight_centres(x.dtype)
    s = EIGHT_GAUSSIANS_STD / EIGHT_GAUSSIANS_DIVISOR
    sq = jnp.sum((x[:, None, :] - means) ** 2, axis=-1)
    return logsumexp(-sq / (2 * s**2), axis=1) - math.log(8.0) - math.log(2 * math.pi * s**2)


# --------------------------------------------------------------------------- rings


def rings_sample(key: jax.Array, n: int) -> jax.Array:
    """4 noisy concentric rings, (n, 2): x = r_k (cos t, sin t) + sigma z.

    r_k uniform on (0.9, 1.8, 2.7, 3.6), t ~ U[0, 2 pi), z ~ N(0, I), sigma = 0.1.
    """
    n = _check_n(n)
    k1, k2, k3 = jax.random.split(key, 3)
    t = jax.random.uniform(k2, (n,), maxval=2 * math.pi)
    r = jnp.asarray(RING_RADII, t.dtype)[jax.random.randint(k1, (n,), 0, len(RING_RADII))]
    circle = r[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    return circle + RING_STD * jax.random.normal(k3, (n, 2), dtype=t.dtype)


def rings_log_prob(x) -> jax.Array:
    """Exact rings log-density, (n, 2) -> (n,).

    Each ring is a Gaussian (std sigma) averaged over the circle of radius r:
    p_r(x) = exp(-(|x|^2 + r^2) / (2 sigma^2)) I0(r |x| / sigma^2) / (2 pi sigma^2), so with
    i0e(z) = exp(-z) I0(z),
    log p_r = -ln(2 pi sigma^2) - (|x| - r)^2 / (2 sigma^2) + ln i0e(r |x| / sigma^2),
    and log p = logsumexp_r(log p_r) - ln 4.
    """
    x = _points(x)
    radii = jnp.asarray(RING_RADII, x.dtype)
    var = RING_STD**2
    rho = _norm(x)[:, None]
    log_pr = -((rho - radii) ** 2) / (2 * var) + jnp.log(i0e(radii * rho / var))
    norm = math.log(2 * math.pi * var) + math.log(len(RING_RADII))
    return logsumexp(log_pr, axis=1) - norm


# --------------------------------------------------------------------------- no closed form


def moons_sample(key: jax.Array, n: int) -> jax.Array:
    """Two interleaving half circles (scikit-learn make_moons, noise 0.1), (n, 2).

    t ~ U[0, pi); with prob. 1/2 m = (cos t, sin t), else m = (1 - cos t, 1/2 - sin t);
    x = 2 (m + 0.1 z - (0.5, 0.25)), z ~ N(0, I): centred (the mean of m is
    (0.5, 0.25)), inside about [-3.5, 3.5] x [-2, 2] (FFJORD's scale 2).
    """
    n = _check_n(n)
    k1, k2, k3 = jax.random.split(key, 3)
    t = jax.random.uniform(k1, (n,), maxval=math.pi)
    upper = jax.random.bernoulli(k2, 0.5, (n,))[:, None]
    outer = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    inner = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    m = jnp.where(upper, outer, inner) + 0.1 * jax.random.normal(k3, (n, 2), dtype=t.dtype)
    return 2.0 * (m - jnp.asarray([0.5, 0.25], t.dtype))


def pinwheel_sample(key: jax.Array, n: int) -> jax.Array:
    """FFJORD pinwheel, (n, 2): 5 arms, radial std 0.3, tangential std 0.1, rate 0.25.

    f = (1 + 0.3 z1, 0.1 z2), class k ~ U{0..4}, a = 2 pi k / 5 + 0.25 exp(f1);
    x = 2 (f1 cos a + f2 sin a, -f1 sin a + f2 cos a)  (FFJORD's einsum "ti,tij->tj").
    """
    n = _check_n(n)
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k2, (n, 2))
    f1, f2 = 1.0 + 0.3 * z[:, 0], 0.1 * z[:, 1]
    label = jax.random.randint(k1, (n,), 0, 5).astype(z.dtype)
    a = 2 * math.pi / 5 * label + 0.25 * jnp.exp(f1)
    c, s = jnp.cos(a), jnp.sin(a)
    return 2.0 * jnp.stack([f1 * c + f2 * s, -f1 * s + f2 * c], axis=1)


def spirals_sample(key: jax.Array, n: int) -> jax.Array:
    """FFJORD 2spirals, (n, 2).

    t = 3 pi sqrt(u), u ~ U[0, 1) (540 degrees); d = (-t cos t, t sin t) + 0.5 v,
    v ~ U[0, 1)^2; x = +-d / 3 + 0.1 z with a fair random sign and z ~ N(0, I).
    """
    n = _check_n(n)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    t = 3 * math.pi * jnp.sqrt(jax.random.uniform(k1, (n,)))
    d = jnp.stack([-jnp.cos(t) * t, jnp.sin(t) * t], axis=1)
    d = d + 0.5 * jax.random.uniform(k2, (n, 2), dtype=t.dtype)
    sign = jnp.where(jax.random.bernoulli(k3, 0.5, (n, 1)), 1.0, -1.0).astype(t.dtype)
    return sign * d / 3.0 + 0.1 * jax.random.normal(k4, (n, 2), dtype=t.dtype)


# --------------------------------------------------------------------------- registry

_REGISTRY = {
    "checkerboard": Toy2D("checkerboard", checkerboard_sample, checkerboard_log_prob),
    "8gaussians": Toy2D(
        "8gaussians",
        eight_gaussians_sample,
        eight_gaussians_log_prob,
        8,
        eight_gaussians_sample_labelled,
        eight_gaussians_log_prob_given,
    ),
    "moons": Toy2D("moons", moons_sample, None),
    "pinwheel": Toy2D("pinwheel", pinwheel_sample, None),
    "rings": Toy2D("rings", rings_sample, rings_log_prob),
    "spirals": Toy2D("spirals", spirals_sample, None),
}
DATASETS: tuple[str, ...] = tuple(_REGISTRY)


def get_dataset(name: str) -> Toy2D:
    """The Toy2D called `name` (one of DATASETS); ValueError for any other name."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown toy data set {name!r}; valid names: {', '.join(DATASETS)}.")
    return _REGISTRY[name]


def true_cross_entropy(
    dataset: Toy2D, key: jax.Array, num_samples: int = 200_000, chunk: int = 50_000
) -> tuple[float, float]:
    """Monte Carlo E_p[-log p(x)] (the entropy of p) and its standard error.

    Draws `num_samples` fresh samples in chunks of at most `chunk` and returns
    (mean(-log p), std(-log p, ddof=1) / sqrt(num_samples)) as Python floats (the
    reduction is done in float64 on the host, about the first value, so a constant
    -log p gives a standard error of exactly 0). ValueError if `dataset.log_prob` is None.
    """
    if dataset.log_prob is None:
        raise ValueError(f"toy data set {dataset.name!r} has no closed-form log_prob.")
    num_samples, chunk = _check_n(num_samples, "num_samples"), _check_n(chunk, "chunk")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2; got num_samples={num_samples}.")
    sizes = [chunk] * (num_samples // chunk) + [num_samples % chunk] * bool(num_samples % chunk)
    nll = jax.jit(lambda k, m: -dataset.log_prob(dataset.sample(k, m)), static_argnums=1)
    keys = jax.random.split(key, len(sizes))
    values = np.concatenate(
        [np.asarray(nll(k, m), np.float64) for k, m in zip(keys, sizes, strict=True)]
    )
    shifted = values - values[0]
    mean = float(values[0] + shifted.mean())
    return mean, float(shifted.std(ddof=1) / math.sqrt(num_samples))
