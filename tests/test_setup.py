"""Config -> objects: the max-min optimiser and the learnable parts of the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import toy2d as toy2d_config
from interflow_jax.training import setup, tensorboard


def _learnable_config(learn_base=False):
    config = toy2d_config.get_config("checkerboard,smoke")
    config.interpolant = "learnable"
    config.learnable.learn_base = learn_base
    return config


@pytest.mark.slow
def test_maxmin_optimizer_descends_on_velocity_and_ascends_on_interpolant():
    config = _learnable_config()
    optimizer = setup.build_optimizer(config)
    params = {"velocity": jnp.zeros(3), "interpolant": {"alpha": jnp.zeros(2)}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    state = optimizer.init(params)
    for _ in range(30):  # past the warm-up of the velocity's schedule
        updates, state = optimizer.update(grads, state, params)
    assert np.all(np.asarray(updates["velocity"]) < 0)
    assert np.all(np.asarray(updates["interpolant"]["alpha"]) > 0)


def test_inner_steps_delay_the_interpolant_update():
    config = _learnable_config()
    config.learnable.inner_steps = 3
    optimizer = setup.build_optimizer(config)
    params = {"velocity": jnp.zeros(1), "interpolant": jnp.zeros(1)}
    grads = {"velocity": jnp.ones(1), "interpolant": jnp.ones(1)}
    state = optimizer.init(params)
    moved = []
    for _ in range(6):
        updates, state = optimizer.update(grads, state, params)
        moved.append(float(updates["interpolant"][0]) != 0.0)
    assert moved == [False, False, True, False, False, True]


def test_learnable_state_and_loss():
    config = _learnable_config(learn_base=True)
    problem = setup.build_problem(config)
    state = setup.make_init_state(config, problem.event_shape)()
    assert set(state.params) == {"velocity", "interpolant", "base"}
    _, field = setup.build_model(config)
    loss_fn = setup.build_loss(config, field, problem.base)
    batch = {"x1": problem.sample_data(jax.random.key(0), 64)}
    # The output layer starts at zero (v = 0 makes G blind to x0): move off it first.
    leaves, treedef = jax.tree_util.tree_flatten(state.params["velocity"])
    keys = jax.random.split(jax.random.key(2), len(leaves))
    noisy = [
        leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)
    ]
    params = dict(state.params, velocity=jax.tree_util.tree_unflatten(treedef, noisy))
    grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(1))[0])(params)
    assert float(jnp.abs(grads["base"]["mean"]).sum()) > 0  # the base is in the game
    assert float(jnp.abs(grads["interpolant"]["alpha"]).sum()) > 0


def test_adam_moment_decays_reach_the_optimizer_from_the_config():
    """Adam's second step with gradients 1 then 2: m / sqrt(v) depends on b1 and b2."""

    def second_update(**settings):
        config = toy2d_config.get_config("checkerboard,smoke")
        config.optimizer.update(grad_clip_norm=1e6, **settings)
        optimizer = setup.build_optimizer(config)
        params = {"velocity": jnp.zeros(1)}
        state = optimizer.init(params)
        for g in (1.0, 2.0):
            updates, state = optimizer.update({"velocity": jnp.full(1, g)}, state, params)
        return float(updates["velocity"][0]) / tensorboard.learning_rate_fn(config)(2)

    def expected(b1, b2):
        m = (b1 * (1 - b1) + (1 - b1) * 2) / (1 - b1**2)
        v = (b2 * (1 - b2) + (1 - b2) * 4) / (1 - b2**2)
        return -m / (np.sqrt(v) + 1e-8)

    for b1, b2 in ((0.9, 0.999), (0.5, 0.9)):
        np.testing.assert_allclose(
            second_update(b1=b1, b2=b2), expected(b1, b2), rtol=1e-4
        )  # float32
