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


TIME_CONDITIONINGS = ("concat", "film")


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


LOGIT_TIME_CLIP = 1e-6  # t is kept in [1e-6, 1 - 1e-6] for logit(t): |logit| <= 13.8


def logit_time_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoids of u = logit(t) = log(t / (1 - t)): t (batch,) -> (batch, dim).

    `sinusoidal_embedding(u, dim, max_period=100, scale=3)`: angular frequencies from 3
    down to 0.03 per unit of u, with t clipped to [1e-6, 1 - 1e-6] (|u| <= 13.8). Near
    t = 0 and 1, u follows the trigonometric interpolant's log signal-to-noise ratio
    2 log tan(pi t / 2) (both ~ log t and -log(1 - t)), so a field whose structure is
    spread evenly in log-SNR (a data component of variance s^2 turns over where
    a^2 ~ s^2 b^2, within 0.05 of t = 1 for s = 0.1) gets features that resolve it.
    """
    t = jnp.clip(t, LOGIT_TIME_CLIP, 1.0 - LOGIT_TIME_CLIP)
    return sinusoidal_embedding(jnp.log(t) - jnp.log1p(-t), dim, max_period=100.0, scale=3.0)


def bernstein_basis(t: jax.Array, m: int, batch: int, dtype=jnp.float32) -> jax.Array:
    """The m Bernstein polynomials of degree m - 1 at t (batch,) or (): (batch, m),
    phi_j(t) = C(m-1, j) t^j (1 - t)^(m-1-j); they sum to 1."""
    t = jnp.broadcast_to(jnp.asarray(t, dtype), (batch,))[:, None]
    j = jnp.arange(m, dtype=dtype)
    binomial = jnp.asarray([math.comb(m - 1, k) for k in range(m)], dtype)
    return binomial * t**j * (1 - t) ** (m - 1 - j)


class VelocityMLP(nn.Module):
    """v(t, x): concat(flatten(x), embed(t)) -> hidden layers -> flatten(x)-sized output.

    Input t (batch,), x (batch, *dims); output (batch, *dims). Samples never interact,
    so per-sample divergences by batched jvp/vjp are exact.

    Conditional (num_classes = K > 0): v(t, x, y) = the same network on
    concat(flatten(x), embed(t), E[y]) with a learned (K + 1, label_embedding_dim) table
    E whose row K is the null label (y = None); see `models.labels`. With K = 0 (the
    default) there is no table and the parameters are those of the unconditional MLP.

    time_conditioning: 'concat' (the default: embed(t) joins the input only) or 'film',
    which also scales each hidden layer's pre-activation by a time-dependent gain,
    a_l = (1 + g_l(t)) * (W_l h + b_l) with g_l a Dense of embed(t) (named film_l,
    zero-initialised, so a 'film' network starts as its 'concat' twin): a multiplicative
    interaction of t and x that a concatenated input can only build from many units.

    time_embedding_scale: the `scale` of `sinusoidal_embedding`, so the embedding's angular
    frequencies run from time_embedding_scale down to time_embedding_scale / max_period
    (radians per unit of t; DDPM's 1e3 by default, as for t counted in 1,000 steps).
    logit_time_dim: k > 0 appends `logit_time_embedding(t, k)` to the time features (the
    input and the FiLM gains); 0 (the default) leaves them as they are.

    gated_layers: k > 0 multiplies each of the first k hidden layers by an affine gate of
    the network's input z (x, embed(t) and labels): h_l = act(a_l) * (1 + B_l z + c_l),
    with B_l, c_l a Dense (named gate_{l-1}) initialised to zero, so a gated network
    starts as its plain twin. The product of two affine maps gives each first-layer unit
    a quadratic in x (a GLU, Shazeer 2020), as the log-density of a Gaussian and the
    responsibilities of a mixture are; a gated second layer multiplies the features of
    the first by affine functions of x again. Each gate costs one d_in x width_l
    product, small beside a width_1 x width_2 one; the closed-form trace stays exact.

    linear_skip_terms: m > 0 adds a time-dependent linear map of x to the output,
    v += sum_j phi_j(t) x K_j with phi_j the Bernstein polynomials of degree m - 1 in t
    (phi_j = C(m-1, j) t^j (1-t)^(m-1-j); m = 1: one constant map) and K_j (d, d)
    matrices initialised to zero (named linear_skip, shape (m, d, d)): the part of the
    field that is affine in x (all of it for a Gaussian target, PAPER section 7) without
    the hidden layers. Its trace, sum_j phi_j(t) tr K_j, joins the closed form.
    """

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "silu"
    time_embedding_dim: int = 32
    param_dtype: Any = jnp.float32
    num_classes: int = 0
    label_embedding_dim: int = 32
    time_conditioning: str = "concat"
    time_embedding_scale: float = 1e3
    logit_time_dim: int = 0
    gated_layers: int = 0
    linear_skip_terms: int = 0

    @nn.compact
    def __call__(
        self,
        t: jax.Array,
        x: jax.Array,
        y: jax.Array | None = None,
        with_preactivations: bool = False,
    ):
        """v(t, x) of x's shape; with `with_preactivations`, (v, [(a_l, gain_l, gate_l)])
        where a_l (batch, width_l) is hidden layer l's input to the activation, gain_l the
        FiLM gain 1 + g_l(t) of that layer ('film') or None ('concat'), and gate_l the
        factor 1 + B_l z + c_l of a gated layer (None where there is no gate)."""
        if self.time_conditioning not in TIME_CONDITIONINGS:
            raise ValueError(
                f"time_conditioning must be one of {TIME_CONDITIONINGS}; "
                f"got {self.time_conditioning!r}."
            )
        if self.logit_time_dim < 0 or self.logit_time_dim % 2:
            raise ValueError(
                f"logit_time_dim must be an even number >= 0; got {self.logit_time_dim!r}."
            )
        if self.linear_skip_terms < 0:
            raise ValueError(f"linear_skip_terms must be >= 0; got {self.linear_skip_terms!r}.")
        if not 0 <= self.gated_layers <= len(self.hidden_sizes):
            raise ValueError(
                f"gated_layers must be between 0 and the {len(self.hidden_sizes)} hidden "
                f"layers; got {self.gated_layers!r}."
            )
        act = get_activation(self.activation)
        flat = x.reshape(x.shape[0], -1)
        time_features = sinusoidal_embedding(
            t, self.time_embedding_dim, scale=self.time_embedding_scale
        )
        if self.logit_time_dim:
            logit_features = logit_time_embedding(t, self.logit_time_dim)
            time_features = jnp.concatenate([time_features, logit_features], axis=-1)
        features = [flat, time_features]
        label_features = embedded_labels(
            y, x.shape[0], self.num_classes, self.label_embedding_dim, flat.dtype, self.param_dtype
        )
        if label_features is not None:
            features.append(label_features)
        h = inputs = jnp.concatenate(features, axis=-1)
        preactivations = []
        for layer, width in enumerate(self.hidden_sizes):
            a, gain, gate = nn.Dense(width, param_dtype=self.param_dtype)(h), None, None
            if self.time_conditioning == "film":
                gain = 1.0 + self._film(layer, width)(time_features)
                a = gain * a
            if layer < self.gated_layers:
                gate = 1.0 + self._zero_dense(width, f"gate_{layer}")(inputs)
            preactivations.append((a, gain, gate))
            h = act(a) if gate is None else act(a) * gate
        out = nn.Dense(
            flat.shape[1], kernel_init=nn.initializers.zeros_init(), param_dtype=self.param_dtype
        )(h)
        if self.linear_skip_terms:
            basis, kernels = self._linear_skip(t, flat.shape)
            mapped = (flat @ kernels.transpose(1, 0, 2).reshape(flat.shape[1], -1)).reshape(
                flat.shape[0], self.linear_skip_terms, flat.shape[1]
            )
            out = out + jnp.einsum("bm,bmd->bd", basis, mapped)
        out = out.reshape(x.shape)
        return (out, preactivations) if with_preactivations else out

    def _linear_skip(self, t: jax.Array, flat_shape) -> tuple[jax.Array, jax.Array]:
        """(phi(t) (batch, m), K (m, d, d)) of the linear skip: Bernstein basis and kernels."""
        m, (batch, dim) = self.linear_skip_terms, flat_shape
        kernels = self.param(
            "linear_skip", nn.initializers.zeros_init(), (m, dim, dim), self.param_dtype
        )
        return bernstein_basis(t, m, batch, kernels.dtype), kernels

    def _film(self, layer: int, width: int) -> nn.Dense:
        return self._zero_dense(width, f"film_{layer}")

    def _zero_dense(self, width: int, name: str) -> nn.Dense:
        zeros = nn.initializers.zeros_init()
        return nn.Dense(width, kernel_init=zeros, param_dtype=self.param_dtype, name=name)

    @property
    def has_closed_form_divergence(self) -> bool:
        """True for 1 or 2 hidden layers, where `velocity_and_divergence` applies."""
        return 1 <= len(self.hidden_sizes) <= 2

    def velocity_and_divergence(self, t: jax.Array, x: jax.Array, y: jax.Array | None = None):
        """(v(t, x), div_x v(t, x)) with the exact trace in closed form (PAPER section 4).

        With flax kernels K_l (in, out), K_x the rows of K_1 that read x, and
        s_l = act'(a_l) the activation's slope at hidden layer l (times the FiLM gain
        1 + g_l(t) with time_conditioning 'film'), the Jacobian is
        dv/dx = K_x diag(s_1) K_2 [diag(s_2) K_3], so its trace is
            one hidden layer:  div = s_1 . rowsum(K_x^T * K_2)
            two hidden layers: div = s_1^T (K_2 * (K_3 K_x)^T) s_2.
        The (h_1, h_2) matrix is formed once per call, then each sample costs one
        h_1 x h_2 product, as a forward pass, where the generic exact divergence makes
        D = dim(x) Jacobian-vector products. A gated layer, h_l = act(a_l) * q_l with
        q_l = 1 + B_l z + c_l, adds diag(act(a_l)) B_{l,x} to dh_l/dx and scales its slope
        to s_l q_l: the first layer's Jacobian is a sum of two terms diag(u) K^T, each
        giving one of the forms above, and a gated last hidden layer adds the one-layer
        form with (act(a_l), B_{l,x}). Shapes: t (batch,), x (batch, *dims) ->
        ((batch, *dims), (batch,)). Only for 1 or 2 hidden layers (ValueError otherwise).
        """
        if not self.has_closed_form_divergence:
            raise ValueError(
                "the closed-form divergence needs 1 or 2 hidden layers; got "
                f"hidden_sizes={tuple(self.hidden_sizes)}. Use the generic exact divergence."
            )
        velocity, preactivations = self(t, x, y, with_preactivations=True)
        params = self.variables["params"]
        kernels = [params[f"Dense_{i}"]["kernel"] for i in range(len(self.hidden_sizes) + 1)]
        dim = math.prod(x.shape[1:])
        out = kernels[-1]
        # per layer: the slope of h_l in its own pre-activation, and the pairs (u, K) of
        # the direct terms diag(u) K^T of dh_l/dx (the first layer's K_x; each gate's B_x)
        slopes, direct_terms = [], []
        for layer, (a, gain, gate) in enumerate(preactivations):
            slope = self._slope(a, gain)
            direct = [(slope, kernels[0][:dim])] if layer == 0 else []
            if gate is not None:
                direct = [(u * gate, k) for u, k in direct]
                gate_reads_x = params[f"gate_{layer}"]["kernel"][:dim]
                direct.append((get_activation(self.activation)(a), gate_reads_x))
                slope = slope * gate
            slopes.append(slope)
            direct_terms.append(direct)
        # the last hidden layer's own terms meet K_out directly (none: 0)
        divergence = sum(u @ jnp.sum(k.T * out, axis=1) for u, k in direct_terms[-1])
        if len(preactivations) == 2:
            for u, k in direct_terms[0]:
                divergence += jnp.sum((u @ (kernels[1] * (out @ k).T)) * slopes[1], axis=-1)
        if self.linear_skip_terms:
            skip = params["linear_skip"]
            basis = bernstein_basis(t, self.linear_skip_terms, x.shape[0], skip.dtype)
            divergence += basis @ jnp.trace(skip, axis1=1, axis2=2)
        return velocity, divergence

    def _slope(self, preactivation: jax.Array, gain: jax.Array | None) -> jax.Array:
        """d act(a_l) / d(W_l h): act'(a_l), times the FiLM gain where there is one."""
        act = get_activation(self.activation)
        slope = jax.jvp(act, (preactivation,), (jnp.ones_like(preactivation),))[1]
        return slope if gain is None else slope * gain


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
