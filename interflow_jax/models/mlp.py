"""MLP velocity field with a sinusoidal time embedding (PAPER section 8, 2-D and tabular),
optionally conditioned on a class label (PAPER section 9)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from interflow_jax.models.labels import embedded_labels

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
        label_features = embedded_labels(
            y, x.shape[0], self.num_classes, self.label_embedding_dim, flat.dtype, self.param_dtype
        )
        if label_features is not None:
            features.append(label_features)
        h = jnp.concatenate(features, axis=-1)
        for width in self.hidden_sizes:
            h = act(nn.Dense(width, param_dtype=self.param_dtype)(h))
        out = nn.Dense(
            flat.shape[1], kernel_init=nn.initializers.zeros_init(), param_dtype=self.param_dtype
        )(h)
        return out.reshape(x.shape)


class ResidualVelocityMLP(nn.Module):
    """v(t, x) as a residual MLP with LayerNorm and time conditioning by FiLM.

    h_0 = Dense_width(concat(flatten(x), E[y])); for each of num_blocks blocks
    h <- h + Dense(act(Dense_{expand * width}(LN(h) (1 + a(t)) + b(t)))), with (a, b) a
    per-block Dense of c(t) = act(Dense(embed(t))); v = Dense(act(LN(h))) with zero
    initial weights. Shapes as `VelocityMLP`: t (batch,), x (batch, *dims) -> (batch, *dims);
    samples never interact (LayerNorm normalises each sample's features), so per-sample
    divergences stay exact. Conditional (num_classes = K > 0): the label embedding joins x
    at the input and c(t) (PAPER section 9).
    """

    width: int = 256
    num_blocks: int = 4
    expand: int = 2
    activation: str = "silu"
    time_embedding_dim: int = 64
    param_dtype: Any = jnp.float32
    num_classes: int = 0
    label_embedding_dim: int = 32

    @nn.compact
    def __call__(self, t: jax.Array, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
        act = get_activation(self.activation)
        dense = partial(nn.Dense, param_dtype=self.param_dtype)
        flat = x.reshape(x.shape[0], -1)
        inputs, time_features = [flat], sinusoidal_embedding(t, self.time_embedding_dim)
        label_features = embedded_labels(
            y, x.shape[0], self.num_classes, self.label_embedding_dim, flat.dtype, self.param_dtype
        )
        if label_features is not None:
            inputs.append(label_features)
            time_features = jnp.concatenate([time_features, label_features], axis=-1)
        condition = act(dense(self.width)(time_features))
        h = dense(self.width)(jnp.concatenate(inputs, axis=-1))
        for _ in range(self.num_blocks):
            scale, shift = jnp.split(dense(2 * self.width)(condition), 2, axis=-1)
            u = nn.LayerNorm(param_dtype=self.param_dtype)(h) * (1 + scale) + shift
            h = h + dense(self.width)(act(dense(self.expand * self.width)(u)))
        h = act(nn.LayerNorm(param_dtype=self.param_dtype)(h))
        out = dense(flat.shape[1], kernel_init=nn.initializers.zeros_init())(h)
        return out.reshape(x.shape)
