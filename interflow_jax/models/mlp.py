"""MLP velocity field with a sinusoidal time embedding (PAPER section 8, 2-D and tabular)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "silu": nn.silu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "softplus": nn.softplus,
    "elu": nn.elu,
}


def get_activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 1e4, scale: float = 1e3):
    """DDPM-style embedding of times t (batch,) -> (batch, dim).

    [sin(scale t w_k), cos(scale t w_k)] with w_k = max_period^(-k / (dim/2)), k < dim/2.
    `dim` must be even.
    """
    if dim % 2:
        raise ValueError(f"time embedding dim must be even; got {dim}.")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=t.dtype) / half)
    angles = scale * t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class VelocityMLP(nn.Module):
    """v(t, x): concat(flatten(x), embed(t)) -> hidden layers -> flatten(x)-sized output.

    Input t (batch,), x (batch, *dims); output (batch, *dims). Samples never interact,
    so per-sample divergences by batched jvp/vjp are exact.
    """

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "silu"
    time_embedding_dim: int = 32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, t: jax.Array, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        flat = x.reshape(x.shape[0], -1)
        h = jnp.concatenate([flat, sinusoidal_embedding(t, self.time_embedding_dim)], axis=-1)
        for width in self.hidden_sizes:
            h = act(nn.Dense(width, param_dtype=self.param_dtype)(h))
        out = nn.Dense(
            flat.shape[1], kernel_init=nn.initializers.zeros_init(), param_dtype=self.param_dtype
        )(h)
        return out.reshape(x.shape)
