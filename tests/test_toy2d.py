import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from interflow_jax.data.toy2d import DATASETS, get_dataset, true_cross_entropy

WITH_DENSITY = ("checkerboard", "8gaussians", "rings")
SMOOTH_DENSITY = ("8gaussians", "rings")
# The definitions, pinned here independently of the module's constants.
RINGS_RADII, RINGS_STD = np.array([0.9, 1.8, 2.7, 3.6]), 0.1
EIGHT_MEAN_RADIUS, EIGHT_STD = 4.0 / 1.414, 0.5 / 1.414


def _grid(cells: int, lo: float = -5.0, hi: float = 5.0):
    """Midpoints (cells^2, 2) of a square grid on [lo, hi]^2 (x-major) and the spacing."""
    h = (hi - lo) / cells
    c = lo + h * (np.arange(cells) + 0.5)
    gx, gy = np.meshgrid(c, c, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1), h


def _density(name: str, points) -> np.ndarray:
    return np.asarray(get_dataset(name).log_prob(jnp.asarray(points)), np.float64)


def test_names_and_lookup():
    assert DATASETS == ("checkerboard", "8gaussians", "moons", "pinwheel", "rings", "spirals")
    for name in DATASETS:
        ds = get_dataset(name)
        assert ds.name == name
        assert (ds.log_prob is not None) == (name in WITH_DENSITY)
    with pytest.raises(ValueError, match="'nope'.*checkerboard"):
        get_dataset("nope")


@pytest.mark.parametrize("name", DATASETS)
def test_sample_contract(name):
    ds = get_dataset(name)
    key = jax.random.key(0)
    x = ds.sample(key, 4000)
    assert x.shape == (4000, 2) and x.dtype == jnp.float32
    x = np.asarray(x)
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(x, np.asarray(ds.sample(key, 4000)))
    assert not np.allclose(x, np.asarray(ds.sample(jax.random.key(1), 4000)))
    jitted = np.asarray(jax.jit(ds.sample, static_argnums=1)(key, 4000))
    np.testing.assert_allclose(jitted, x, atol=1e-5)
    assert np.abs(x).max() <= 5.0  # roughly within [-4, 4]^2
    assert np.abs(x).max() >= 2.5  # and spread over it
    assert np.abs(x.mean(axis=0)).max() < 0.25  # centred


@pytest.mark.parametrize("name", DATASETS)
def test_default_float_dtype_follows_x64(name, x64):
    ds = get_dataset(name)
    x = ds.sample(jax.random.key(0), 8)
    assert x.dtype == jnp.float64
    if ds.log_prob is not None:
        assert ds.log_prob(x).dtype == jnp.float64


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "4"])
def test_bad_n_raises(n):
    for name in DATASETS:
        with pytest.raises(ValueError, match=re.escape(f"n={n!r}")):
            get_dataset(name).sample(jax.random.key(0), n)


@pytest.mark.parametrize("name", WITH_DENSITY)
@pytest.mark.parametrize("shape", [(5, 3), (10,), (2, 5, 2)])
def test_bad_log_prob_shape_raises(name, shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        get_dataset(name).log_prob(jnp.zeros(shape))


# --------------------------------------------------------------------------- checkerboard


def test_checkerboard_samples_fill_exactly_the_even_cells():
    ds = get_dataset("checkerboard")
    x = ds.sample(jax.random.key(2), 40_000)
    np.testing.assert_array_equal(np.asarray(ds.log_prob(x)), np.float32(-math.log(32.0)))
    cells = np.floor(np.asarray(x) / 2).astype(int) + 2  # cell indices in {0, .., 3}
    assert cells.min() >= 0 and cells.max() <= 3
    counts = np.zeros((4, 4))
    np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
    even = (np.arange(4)[:, None] + np.arange(4)[None, :]) % 2 == 0
    assert counts[~even].sum() == 0
    assert stats.chisquare(counts[even]).pvalue > 1e-3  # 1/8 of the mass per cell


def test_checkerboard_log_prob_on_off_and_outside():
    on = [(1, 1), (-1, -1), (3, 3), (-3, 1), (-4, -4), (3.99, -0.01), (0, 0)]
    off = [(3, 1), (-1, 1), (1, -1), (-3, -1), (2.5, 0.5), (-0.01, 0.01)]
    outside = [(4, 0), (5, 1), (0.5, 4), (-4.5, -0.5), (1, -5)]  # even parity, out of box
    lp = np.asarray(get_dataset("checkerboard").log_prob(jnp.asarray(on + off + outside)))
    np.testing.assert_allclose(lp[: len(on)], -math.log(32.0), rtol=1e-6)
    assert np.all(lp[len(on) :] == -np.inf)


def test_checkerboard_integrates_to_one():
    points, h = _grid(500)
    total = np.exp(_density("checkerboard", points)).sum() * h * h
    assert abs(total - 1.0) < 1e-2


# --------------------------------------------------------------------------- smooth densities


@pytest.mark.parametrize("name", SMOOTH_DENSITY)
def test_smooth_density_integrates_to_one(name, x64):
    points, h = _grid(500)
    total = np.exp(_density(name, points)).sum() * h * h
    assert abs(total - 1.0) < 1e-3


def test_eight_gaussians_log_prob_is_the_mixture(x64):
    c = 1 / math.sqrt(2)
    dirs = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (c, c), (c, -c), (-c, c), (-c, -c)])
    x = np.array([[0.0, 0.0], [2.8, 0.1], [-1.9, 2.1], [4.0, -4.0]])
    ref = np.log(
        np.mean(
            [stats.multivariate_normal(EIGHT_MEAN_RADIUS * d, EIGHT_STD**2).pdf(x) for d in dirs],
            axis=0,
        )
    )
    np.testing.assert_allclose(_density("8gaussians", x), ref, rtol=1e-10)


def test_eight_gaussians_sample_moments():
    n = 40_000
    x = np.asarray(get_dataset("8gaussians").sample(jax.random.key(3), n), np.float64)
    se = x.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0)) < 5 * se)  # mixture mean 0
    # E[x_i^2] = (1/8) sum_k mu_ki^2 + s^2 = 0.5 (4 / 1.414)^2 + (0.5 / 1.414)^2; E[x1 x2] = 0.
    moments = np.stack([x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1]], axis=1)
    expected = np.array([1, 1, 0]) * (0.5 * EIGHT_MEAN_RADIUS**2 + EIGHT_STD**2)
    se = moments.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(moments.mean(axis=0) - expected) < 5 * se)
    # Equal weights: nearest-mean labels are 1/8 each; residuals have std s.
    angle = np.arctan2(x[:, 1], x[:, 0])
    label = np.round(angle / (np.pi / 4)).astype(int) % 8
    assert stats.chisquare(np.bincount(label, minlength=8)).pvalue > 1e-3
    centre = EIGHT_MEAN_RADIUS * np.stack([np.cos(label * np.pi / 4), np.sin(label * np.pi / 4)], 1)
    np.testing.assert_allclose((x - centre).std(axis=0), EIGHT_STD, rtol=0.02)


def test_rings_log_prob_matches_angle_quadrature(x64):
    x = np.array([[0.0, 0.0], [0.9, 0.0], [1.3, 1.2], [2.5, -1.0], [0.05, 3.6], [4.0, 4.0]])
    theta = 2 * np.pi * np.arange(2000) / 2000
    circle = np.stack([np.cos(theta), np.sin(theta)], axis=-1)  # (2000, 2)
    centres = RINGS_RADII[:, None, None] * circle  # (4, 2000, 2)
    sq = np.sum((x[:, None, None, :] - centres) ** 2, axis=-1)  # (6, 4, 2000)
    log_norm = math.log(2 * np.pi * RINGS_STD**2) + math.log(sq.shape[1] * sq.shape[2])
    ref = logsumexp(-sq / (2 * RINGS_STD**2), axis=(1, 2)) - log_norm
    np.testing.assert_allclose(_density("rings", x), ref, rtol=0, atol=1e-6)


def test_rings_log_prob_has_finite_gradient_at_origin(x64):
    grad = jax.grad(lambda x: get_dataset("rings").log_prob(x).sum())(jnp.zeros((1, 2)))
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


@pytest.mark.parametrize("name", SMOOTH_DENSITY)
def test_samples_follow_log_prob_in_histogram(name, x64):
    """Counts of 20k samples in 0.5 x 0.5 bins against the binned exp(log_prob) (chi^2)."""
    n, bins, sub = 20_000, 18, 20
    x = np.asarray(get_dataset(name).sample(jax.random.key(4), n))
    edges = np.linspace(-4.5, 4.5, bins + 1)
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])[0]
    points, h = _grid(bins * sub, -4.5, 4.5)
    mass = np.exp(_density(name, points)).reshape(bins, sub, bins, sub).sum(axis=(1, 3)) * h * h
    expected = n * mass
    used = expected >= 5
    observed = np.append(counts[used], n - counts[used].sum())
    expected = np.append(expected[used], n - expected[used].sum())
    assert expected[-1] >= 1  # the pooled rest is itself a sensible cell
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("name", SMOOTH_DENSITY)
def test_true_cross_entropy_matches_grid_entropy(name, x64):
    mean, stderr = true_cross_entropy(get_dataset(name), jax.random.key(5), 20_000, chunk=10_000)
    assert np.isfinite(mean) and 0 < stderr < 0.02
    points, h = _grid(500)
    log_p = _density(name, points)
    entropy = -np.sum(np.exp(log_p) * log_p) * h * h
    assert abs(mean - entropy) < 5 * stderr


def test_true_cross_entropy_checkerboard_is_ln32_exactly():
    mean, stderr = true_cross_entropy(
        get_dataset("checkerboard"), jax.random.key(6), 30_000, chunk=7_000
    )
    assert mean == pytest.approx(math.log(32.0), rel=1e-6)
    assert stderr == 0.0


def test_true_cross_entropy_errors():
    with pytest.raises(ValueError, match="'moons'"):
        true_cross_entropy(get_dataset("moons"), jax.random.key(0), 100)
    with pytest.raises(ValueError, match="num_samples=0"):
        true_cross_entropy(get_dataset("rings"), jax.random.key(0), 0)
    with pytest.raises(ValueError, match="chunk=-1"):
        true_cross_entropy(get_dataset("rings"), jax.random.key(0), 100, chunk=-1)


def test_config_argument_names_unknown_words():
    from experiments.configs import toy2d as toy2d_config

    config = toy2d_config.get_config("moons,from=8gaussians,smoke")
    assert (config.data.name, config.base.name) == ("moons", "8gaussians")
    with pytest.raises(ValueError, match=r"unknown config argument\(s\) \['chekerboard'\]"):
        toy2d_config.get_config("chekerboard")
    with pytest.raises(ValueError, match=r"\['form='\]"):
        toy2d_config.get_config("moons,form=8gaussians")
    with pytest.raises(ValueError, match="one target data set"):
        toy2d_config.get_config("moons,rings")
