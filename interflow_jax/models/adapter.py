"""The one bridge from Flax modules to the core's `field(t, x, params)` signature."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def as_field(module: nn.Module):
    """Return `field(t, x, params) = module.apply(params, t, x)`.

    t: (batch,) times; x: (batch, *dims). The module must map (t, x) to dx/dt of x's shape.
    """

    def field(t, x, params):
        return module.apply(params, t, x)

    return field


def init_params(module: nn.Module, key: jax.Array, event_shape: tuple[int, ...]):
    """Initialise `module` on a dummy batch of one sample of `event_shape`."""
    t = jnp.zeros((1,))
    x = jnp.zeros((1, *event_shape))
    return module.init(key, t, x)
