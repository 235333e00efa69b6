import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import divergence


def _linear_field(matrix):
    return lambda x: x.reshape(x.shape[0], -1) @ matrix.T


def test_exact_divergence_of_linear_and_nonlinear_fields(x64):
    matrix = jax.random.normal(jax.random.key(0), (5, 5))
    x = jax.random.normal(jax.random.key(1), (7, 5))
    _, div = divergence.exact_divergence(_linear_field(matrix), x)
    np.testing.assert_allclose(div, jnp.trace(matrix) * jnp.ones(7), rtol=1e-12)
    field = lambda y: jnp.tanh(y @ matrix) * y  # noqa: E731
    _, div = divergence.exact_divergence(field, x)
    brute = jnp.array([jnp.trace(jax.jacfwd(lambda v: field(v[None])[0])(xi)) for xi in x])
    np.testing.assert_allclose(div, brute, rtol=1e-10)


def test_exact_divergence_on_image_shaped_inputs(x64):
    x = jax.random.normal(jax.random.key(2), (3, 2, 2, 2))
    _, div = divergence.exact_divergence(lambda y: jnp.sin(y) * 2.0, x)
    np.testing.assert_allclose(div, jnp.sum(2 * jnp.cos(x), axis=(1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_on_linear_fields(kind, x64):
    matrix = jax.random.normal(jax.random.key(3), (6, 6))
    x = jax.random.normal(jax.random.key(4), (4, 6))
    probes = divergence.sample_probes(jax.random.key(5), 20_000, x.shape, x.dtype, kind)
    _, per_probe = divergence.hutchinson_divergence(_linear_field(matrix), x, probes)
    mean, stderr = divergence.mean_and_standard_error(per_probe)
    assert per_probe.shape == (20_000, 4)
    z = (np.asarray(mean) - float(jnp.trace(matrix))) / np.asarray(stderr)
    assert np.all(np.abs(z) < 4.0), z
    # The estimator is not trivially exact: single probes scatter.
    assert float(jnp.std(per_probe)) > 0.5


def test_rademacher_probes_are_exact_for_diagonal_fields(x64):
    x = jax.random.normal(jax.random.key(6), (3, 4))
    probes = divergence.sample_probes(jax.random.key(7), 3, x.shape, x.dtype, "rademacher")
    _, per_probe = divergence.hutchinson_divergence(lambda y: y**3, x, probes)
    np.testing.assert_allclose(per_probe, jnp.broadcast_to(jnp.sum(3 * x**2, 1), (3, 3)))


def test_bad_probe_kind():
    with pytest.raises(ValueError, match="'uniform'"):
        divergence.sample_probes(jax.random.key(0), 1, (1, 2), jnp.float32, "uniform")


def test_hutchinson_forward_and_reverse_modes_agree(x64):
    matrix = jax.random.normal(jax.random.key(8), (5, 5))
    field = lambda y: jnp.tanh(y @ matrix) * y  # noqa: E731
    x = jax.random.normal(jax.random.key(9), (6, 5))
    probes = divergence.sample_probes(jax.random.key(10), 3, x.shape, x.dtype, "gaussian")
    value_f, forward = divergence.hutchinson_divergence(field, x, probes, "forward")
    value_r, reverse = divergence.hutchinson_divergence(field, x, probes, "reverse")
    np.testing.assert_allclose(value_f, value_r, rtol=1e-14)
    np.testing.assert_allclose(forward, reverse, rtol=1e-12)
    # eps^T J eps against the Jacobian itself, per sample and probe
    jacobians = jnp.stack([jax.jacfwd(lambda v: field(v[None])[0])(xi) for xi in x])
    expected = jnp.einsum("kbi,bij,kbj->kb", probes, jacobians, probes)
    np.testing.assert_allclose(forward, expected, rtol=1e-10)


def test_bad_hutchinson_mode():
    x = jnp.ones((1, 2))
    with pytest.raises(ValueError, match="'sideways'"):
        divergence.hutchinson_divergence(lambda y: y, x, x[None], "sideways")
