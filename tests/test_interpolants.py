import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import interpolants
from interflow_jax.interpolants import LINEAR, TRIGONOMETRIC


@pytest.mark.parametrize("interpolant", [TRIGONOMETRIC, LINEAR], ids=lambda i: i.name)
def test_endpoints_hold(interpolant):
    x0 = jax.random.normal(jax.random.key(0), (4, 3, 2))
    x1 = jax.random.normal(jax.random.key(1), (4, 3, 2))
    at0, _ = interpolants.interpolate(interpolant, jnp.zeros(4), x0, x1)
    at1, _ = interpolants.interpolate(interpolant, jnp.ones(4), x0, x1)
    np.testing.assert_allclose(at0, x0, atol=1e-6)
    np.testing.assert_allclose(at1, x1, atol=1e-6)


def _wobbly(t, params=None):
    return 1 - t + 0.3 * jnp.sin(jnp.pi * t) ** 2, t**2 + 0.2 * jnp.sin(2 * jnp.pi * t)


@pytest.mark.parametrize(
    "interpolant",
    [TRIGONOMETRIC, LINEAR, interpolants.Interpolant("wobbly", _wobbly)],
    ids=lambda i: i.name,
)
def test_jvp_time_derivative_matches_finite_differences(interpolant, x64):
    t = jnp.linspace(0.05, 0.95, 7)
    x0 = jax.random.normal(jax.random.key(0), (7, 5))
    x1 = jax.random.normal(jax.random.key(1), (7, 5))
    _, dx = interpolants.interpolate(interpolant, t, x0, x1)
    h = 1e-6
    plus, _ = interpolants.interpolate(interpolant, t + h, x0, x1)
    minus, _ = interpolants.interpolate(interpolant, t - h, x0, x1)
    np.testing.assert_allclose(dx, (plus - minus) / (2 * h), rtol=1e-7, atol=1e-8)


def test_trig_derivatives_are_exact_at_the_ends(x64):
    a, b, da, db = interpolants.coefficients_and_derivatives(TRIGONOMETRIC, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(da, [0.0, -jnp.pi / 2], atol=1e-12)
    np.testing.assert_allclose(db, [jnp.pi / 2, 0.0], atol=1e-12)


def test_custom_pair_is_checked():
    ok = interpolants.custom(lambda t: (1 - t) ** 2, lambda t: t**2, name="quadratic")
    assert ok.name == "quadratic"
    with pytest.raises(ValueError, match=r"a\(1\)=0.5"):
        interpolants.custom(lambda t: 1 - 0.5 * t, lambda t: t)


def test_times_outside_unit_interval_raise():
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\].*1.5"):
        interpolants.interpolate(TRIGONOMETRIC, jnp.array([0.5, 1.5]), x, x)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="one shape"):
        interpolants.interpolate(TRIGONOMETRIC, jnp.ones(2), jnp.zeros((2, 2)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        interpolants.interpolate(TRIGONOMETRIC, jnp.ones(3), jnp.zeros((2, 2)), jnp.zeros((2, 2)))


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="'cubic'"):
        interpolants.get_interpolant("cubic")
