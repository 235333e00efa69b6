"""The training state: a pytree that checkpoints whole and resumes bit-for-bit."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
    """step: steps taken; params, opt_state, ema_params; nonfinite_step: the first step
    whose loss or gradient was not finite (-1 if none). After such a step the state is
    frozen, so the host can stop with the last good values.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    nonfinite_step: jax.Array


def create_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )
