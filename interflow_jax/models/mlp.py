"""MLP velocity field with a sinusoidal time embedding (PAPER section 8, 2-D and tabular),
optionally conditioned on a class label (PAPER section 9)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from interflow_jax.models.labels import LabelEmbedding, check_num_classes, label_indices

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

    Conditional (num_classes = K > 0): v(t, x, y) = the same network on
    concat(flatten(x), embed(t), E[y]) with a learned (K + 1, label_embedding_dim) table
    E whose row K is the null label (y = None); see `models.labels`. With K = 0 (the
    default) there is no table and the parameters are those of the unconditional MLP.
    """

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "silu"
    time_embedding_dim: int = 32
    param_dtype: Any = jnp.float32
    num_classes: int = 0
    label_embedding_dim: int = 32

    @nn.compact
    def __call__(self, t: jax.Array, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        act = get_activation(self.activation)
        flat = x.reshape(x.shape[0], -1)
        features = [flat, sinusoidal_embedding(t, self.time_embedding_dim)]
        num_classes = check_num_classes(self.num_classes)
        labels = label_indices(y, x.shape[0], num_classes)
        if labels is not None:
            table = LabelEmbedding(
                num_classes, self.label_embedding_dim, flat.dtype, self.param_dtype, name="labels"
            )
            features.append(table(labels))
        h = jnp.concatenate(features, axis=-1)
        for width in self.hidden_sizes:
            h = act(nn.Dense(width, param_dtype=self.param_dtype)(h))
        out = nn.Dense(
            flat.shape[1], kernel_init=nn.initializers.zeros_init(), param_dtype=self.param_dtype
        )(h)
        return out.reshape(x.shape)
