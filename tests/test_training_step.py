"""Train steps: sharding over 8 fake devices, non-finite guard, EMA, checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import densities, losses
from interflow_jax.interpolants import TRIGONOMETRIC
from interflow_jax.models import VelocityMLP, as_field, init_params
from interflow_jax.time_sampling import make_time_sampler
from interflow_jax.training import checkpoint, sharding
from interflow_jax.training.optimizer import make_optimizer
from interflow_jax.training.state import create_train_state
from interflow_jax.training.step import make_multi_step, make_train_step


def _pieces(batch_size=64, scale=1.0):
    module = VelocityMLP(hidden_sizes=(32, 32), param_dtype=jnp.result_type(float))
    field = as_field(module)
    base = densities.standard_gaussian((2,))
    loss_fn = losses.make_velocity_loss(field, TRIGONOMETRIC, make_time_sampler(), base=base)
    optimizer = make_optimizer(1e-2, 2, 100)
    step = make_train_step(loss_fn, optimizer, ema_decay=0.9)
    params = init_params(module, jax.random.key(0), (2,))
    state = create_train_state(params, optimizer)

    def batch_fn(key):
        return {"x1": scale * (jax.random.normal(key, (batch_size, 2)) + 2.0)}

    return step, state, batch_fn


def _run(mesh, num_calls=3, steps_per_call=4, scale=1.0):
    step, state, batch_fn = _pieces(scale=scale)

    def constrained(key, data):
        assert data is None  # drawn in the graph
        return sharding.constrain_batch(batch_fn(key), mesh)

    multi = make_multi_step(step, constrained, jax.random.key(1), steps_per_call)
    state = jax.device_put(state, sharding.replicated(mesh))
    jitted = jax.jit(multi, out_shardings=(sharding.replicated(mesh),) * 2)
    for _ in range(num_calls):
        state, metrics = jitted(state)
    assert jitted._cache_size() == 1  # compiled once, however many calls
    return state, metrics


def test_sharded_step_equals_single_device_step(x64):
    assert len(jax.devices()) == 8
    single, _ = _run(sharding.make_mesh(jax.devices()[:1]))
    sharded, _ = _run(sharding.make_mesh())
    assert int(sharded.step) == 12
    for a, b in zip(
        jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(sharded), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    moved = jax.tree_util.tree_leaves(single.params)[0]
    start = jax.tree_util.tree_leaves(_pieces()[1].params)[0]
    assert not np.allclose(moved, start)  # the steps did change the parameters


def test_grouping_of_steps_does_not_change_the_result():
    mesh = sharding.make_mesh()
    a, _ = _run(mesh, num_calls=6, steps_per_call=2)
    b, _ = _run(mesh, num_calls=2, steps_per_call=6)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_nonfinite_loss_freezes_state_and_records_step():
    step, state, _ = _pieces()
    jitted = jax.jit(step)
    good = {"x1": jnp.ones((8, 2))}
    state, _ = jitted(state, good, jax.random.key(0))
    state, _ = jitted(state, good, jax.random.key(1))
    before = state
    state, metrics = jitted(state, {"x1": jnp.full((8, 2), jnp.nan)}, jax.random.key(2))
    assert not np.isfinite(float(metrics["loss"]))
    assert int(state.nonfinite_step) == 2 and int(state.step) == 2
    state, _ = jitted(state, good, jax.random.key(3))  # stays frozen afterwards
    assert int(state.step) == 2 and int(state.nonfinite_step) == 2
    for x, y in zip(
        jax.tree_util.tree_leaves(before.params),
        jax.tree_util.tree_leaves(state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)


def test_ema_follows_parameters():
    step, state, batch_fn = _pieces()
    new, _ = jax.jit(step)(state, batch_fn(jax.random.key(0)), jax.random.key(1))
    for e, p, p_old in zip(
        jax.tree_util.tree_leaves(new.ema_params),
        jax.tree_util.tree_leaves(new.params),
        jax.tree_util.tree_leaves(state.params),
        strict=True,
    ):
        np.testing.assert_allclose(e, 0.9 * p_old + 0.1 * p, rtol=1e-6, atol=1e-7)


def test_checkpoint_round_trip(tmp_path):
    mesh = sharding.make_mesh()
    state, _ = _run(mesh, num_calls=1)
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(4, state, {"note": "round trip", "sizes": [1, 2]})
    restored, config = ckpt.restore(checkpoint.abstract_like(state))
    ckpt.close()
    assert config == {"note": "round trip", "sizes": [1, 2]}
    for a, b in zip(
        jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored), strict=True
    ):
        np.testing.assert_array_equal(a, b)
        assert a.sharding == b.sharding


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"warmup_steps": 200}, "warmup_steps=200"),
        ({"grad_clip_norm": 0.0}, "grad_clip_norm"),
        ({"b2": 1.0}, r"optimizer.b2 must lie in \[0, 1\); got 1.0"),
        ({"b1": -0.1}, "optimizer.b1"),
    ],
)
def test_bad_optimizer_settings_raise(kwargs, match):
    settings = {"learning_rate": 1e-3, "warmup_steps": 10, "total_steps": 100} | kwargs
    with pytest.raises(ValueError, match=match):
        make_optimizer(**settings)


def test_batch_must_divide_over_devices():
    with pytest.raises(ValueError, match="batch_size=100.*8"):
        sharding.check_divisible(100, sharding.make_mesh())


def test_flattened_optimizer_takes_the_same_steps():
    """optax.flatten (optimizer.flatten): one vector for clipping and Adam, the same
    updates as leaf by leaf up to summation order; its moments are one vector each."""
    params = {"a": jnp.ones((3, 4)), "b": {"c": jnp.arange(5.0)}}
    trajectories = []
    for flatten in (False, True):
        optimizer = make_optimizer(1e-1, 1, 10, grad_clip_norm=0.5, flatten=flatten)
        state, current = optimizer.init(params), params
        for k in range(4):
            grads = jax.tree_util.tree_map(lambda p, k=k: jnp.sin(p + k) * (k + 1.0), current)
            updates, state = optimizer.update(grads, state, current)
            current = jax.tree_util.tree_map(jnp.add, current, updates)
        trajectories.append(current)
        moments = [leaf for leaf in jax.tree_util.tree_leaves(state) if leaf.size > 1]
        assert len(moments) == (2 if flatten else 4)
    flat, leafwise = (jax.tree_util.tree_leaves(tree) for tree in trajectories[::-1])
    for ours, reference in zip(flat, leafwise, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)
    assert not np.allclose(trajectories[0]["a"], params["a"])  # it moved
