"""The residual MLP velocity field (LayerNorm, FiLM time conditioning)."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import mixture as mixture_config
from interflow_jax.models import ResidualVelocityMLP, as_conditional_field, init_params
from interflow_jax.training import setup


def _init(module, dim=5):
    return init_params(module, jax.random.key(0), (dim,))


def test_shape_zero_at_init_and_samples_independent():
    module = ResidualVelocityMLP(width=16, num_blocks=2, time_embedding_dim=8)
    params = _init(module)
    t, x = jnp.linspace(0, 1, 4), jax.random.normal(jax.random.key(1), (4, 5))
    assert module.apply(params, t, x).shape == (4, 5)
    np.testing.assert_array_equal(module.apply(params, t, x), 0.0)  # zero output layer
    # perturb the output layer so the field is not zero, then check that sample 0's
    # output does not depend on the other samples (per-sample exact divergences)
    params = jax.tree_util.tree_map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params
    )
    jac = jax.jacfwd(lambda z: module.apply(params, t, z)[0])(x)  # (5, 4, 5)
    assert float(jnp.max(jnp.abs(jac[:, 0]))) > 0
    np.testing.assert_array_equal(jac[:, 1:], 0.0)


def test_conditional_residual_mlp_uses_the_label():
    module = ResidualVelocityMLP(width=16, num_blocks=1, time_embedding_dim=8, num_classes=3)
    field = as_conditional_field(module)
    params = {"velocity": _init(module, 2)}
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)
    t, x = jnp.full(2, 0.5), jnp.ones((2, 2))
    v0 = field(t, x, {**params, "labels": jnp.array([0, 0])})
    v1 = field(t, x, {**params, "labels": jnp.array([1, 1])})
    assert float(jnp.max(jnp.abs(v0 - v1))) > 0


def test_config_builds_the_residual_mlp():
    config = mixture_config.get_config("6")
    config.model.kind = "resmlp"
    config.model.resmlp.update(width=32, num_blocks=3)
    module, _ = setup.build_model(config)
    assert isinstance(module, ResidualVelocityMLP) and module.num_blocks == 3
