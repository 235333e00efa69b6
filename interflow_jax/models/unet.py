"""DDPM-style U-Net velocity field for images (Ho et al. 2020; PAPER section 8, images).

v(t, x) for t (batch,) in [0, 1] and x (batch, H, W, C) -> (batch, H, W, C).

Layout (as in DDPM): a 3x3 input conv; per resolution level `num_res_blocks` residual
blocks (GroupNorm, SiLU, conv; the time embedding added per block), self-attention at the
feature-map sizes in `attention_resolutions`, then a stride-2 conv down; a middle
res-attention-res stage; the mirrored up path takes `num_res_blocks + 1` blocks per level,
each concatenating one skip activation, with nearest-neighbour x2 + conv up; finally
GroupNorm, SiLU and a zero-initialised 3x3 conv, so the field is 0 at initialisation.

GroupNorm (never BatchNorm) keeps samples independent: the output for one sample does
not depend on the others, so per-sample divergences by batched jvp/vjp are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from interflow_jax.models.labels import LabelEmbedding, check_num_classes, label_indices
from interflow_jax.models.mlp import sinusoidal_embedding

# The CIFAR-10 U-Net of DDPM (Ho et al. 2020, appendix B), used for the paper's image
# experiments: 35.7M parameters on 32x32x3 inputs.
DDPM_CIFAR10 = dict(
    channels=128,
    channel_multipliers=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    num_heads=1,
    dropout=0.1,
    num_groups=32,
)

_zeros = nn.initializers.zeros_init()


def count_params(params) -> int:
    """Total number of scalars in a pytree of arrays (or of `jax.ShapeDtypeStruct`s)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


class TimeEmbedding(nn.Module):
    """t (batch,) -> sinusoidal_embedding(t, dim / 4, scale) -> Dense(dim) -> SiLU -> Dense(dim).

    scale: the sinusoids' highest angular frequency in radians per unit t (DDPM's 1e3).
    """

    dim: int
    scale: float = 1e3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        emb = sinusoidal_embedding(
            t.astype(jnp.promote_types(self.dtype, jnp.float32)), self.dim // 4, scale=self.scale
        )
        emb = nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype)(emb)
        return nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype)(nn.silu(emb))


class ResBlock(nn.Module):
    """h + F(h, temb): GN-SiLU-conv3, + Dense(SiLU(temb)), GN-SiLU-dropout-conv3 (zero init).

    h (batch, H, W, c_in), temb (batch, e) -> (batch, H, W, out_channels); the skip is a
    1x1 conv when c_in != out_channels.
    """

    out_channels: int
    num_groups: int
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _norm(self):
        return nn.GroupNorm(self.num_groups, dtype=self.dtype, param_dtype=self.param_dtype)

    def _conv(self, kernel: int, **kwargs):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, **kwargs)
        return nn.Conv(self.out_channels, (kernel, kernel), padding="SAME", **kw)

    @nn.compact
    def __call__(self, h: jax.Array, temb: jax.Array, train: bool = False) -> jax.Array:
        skip = h if h.shape[-1] == self.out_channels else self._conv(1)(h)
        h = self._conv(3)(nn.silu(self._norm()(h)))
        dense = nn.Dense(self.out_channels, dtype=self.dtype, param_dtype=self.param_dtype)
        h = h + dense(nn.silu(temb))[:, None, None, :]
        h = nn.silu(self._norm()(h))
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return skip + self._conv(3, kernel_init=_zeros)(h)


class AttentionBlock(nn.Module):
    """h + proj(MHA(GN(h))): self-attention over the H*W positions of each sample.

    h (batch, H, W, c) -> same shape; per head softmax(q k^T / sqrt(c / num_heads)) v,
    logits in float32; the output projection is zero-initialised.
    """

    num_heads: int
    num_groups: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        b, height, width, c = h.shape
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        tokens = nn.GroupNorm(self.num_groups, **kw)(h).reshape(b, height * width, c)
        head_dim = c // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_dim), **kw)(tokens)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        out = nn.DenseGeneral(c, axis=(-2, -1), kernel_init=_zeros, **kw)(out)
        return h + out.reshape(h.shape)


class Downsample(nn.Module):
    """(batch, H, W, c) -> (batch, H/2, W/2, c) by a stride-2 3x3 conv."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        return nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), **kw)(h)


class Upsample(nn.Module):
    """(batch, H, W, c) -> (batch, 2H, 2W, c): nearest-neighbour x2, then a 3x3 conv."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        return nn.Conv(h.shape[-1], (3, 3), padding="SAME", **kw)(h)


def _check_inputs(t: jax.Array, x: jax.Array, num_levels: int) -> jax.Array:
    """Validate x (batch, H, W, C); return t broadcast to (batch,)."""
    if x.ndim != 4:
        raise ValueError(f"UNet expects x of shape (batch, H, W, C); got shape {x.shape}.")
    factor = 2 ** (num_levels - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(
            f"UNet with {num_levels} resolution levels needs H and W divisible by {factor}; "
            f"got H, W = {x.shape[1]}, {x.shape[2]}."
        )
    t = jnp.asarray(t)
    if t.shape not in ((), (x.shape[0],)):
        raise ValueError(f"t must have shape () or (batch,) = ({x.shape[0]},); got {t.shape}.")
    return jnp.broadcast_to(t, (x.shape[0],))


class UNet(nn.Module):
    """DDPM U-Net velocity field: `apply(params, t, x, train=False)` -> v(t, x), x's shape.

    t (batch,) in [0, 1] (or a scalar), x (batch, H, W, C) with H, W divisible by
    2**(len(channel_multipliers) - 1). Level i has width channels * channel_multipliers[i]
    and feature maps of height H / 2**i; `attention_resolutions` lists the heights that get
    self-attention (each must be one of them; the middle stage always has attention).
    `num_groups` must divide every width and `num_heads` every width with attention.
    Computation runs in `dtype`, parameters are stored in `param_dtype`, and the output is
    cast back to x.dtype. Dropout is active only when train=True and draws from the
    'dropout' rng collection.

    Conditional (num_classes = K > 0, as in class-conditional DDPM U-Nets): a learned
    (K + 1, 4 channels) label table is added to the time embedding, temb(t) + E[y], with
    row K the null label (y = None); see `models.labels`. With K = 0 (the default) there
    is no table and the parameters are those of the unconditional U-Net.

    Augmentation-conditioned (num_augmentations = A > 0; `interflow_jax.data.augment`): a
    learned (A, 4 channels) table, zero at initialisation, is added to the time embedding,
    temb(t) + E[y] + F[a], for the index a of the transform the input went through;
    `augmentation=None` means a = 0, the identity, at which the density is evaluated.

    time_embedding_scale: the time sinusoids' highest angular frequency per unit t (DDPM's
    1e3, for t counted in 1,000 steps); a lower one makes the field smoother in t, so an
    adaptive ODE solver takes fewer steps (as `models.VelocityMLP`).
    """

    channels: int = 32
    channel_multipliers: Sequence[int] = (1, 2)
    num_res_blocks: int = 1
    attention_resolutions: Sequence[int] = (4,)
    num_heads: int = 1
    dropout: float = 0.0
    num_groups: int = 8
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    num_classes: int = 0
    time_embedding_scale: float = 1e3
    num_augmentations: int = 0

    def _widths(self) -> list[int]:
        return [self.channels * m for m in self.channel_multipliers]

    def _check_config(self, height: int) -> None:
        widths = [self.channels, *self._widths()]
        if self.num_groups <= 0 or any(w % self.num_groups for w in widths):
            raise ValueError(
                f"num_groups={self.num_groups} must divide every U-Net width; widths are "
                f"{widths} (channels={self.channels}, "
                f"channel_multipliers={tuple(self.channel_multipliers)})."
            )
        sizes = [height // 2**i for i in range(len(widths) - 1)]
        missing = sorted(set(self.attention_resolutions) - set(sizes))
        if missing:
            raise ValueError(
                f"attention_resolutions {missing} are not feature-map heights of this U-Net "
                f"on inputs of height {height}; the heights are {sizes}."
            )
        attn_widths = [
            w for w, s in zip(widths[1:], sizes, strict=True) if s in self.attention_resolutions
        ]
        if self.num_heads <= 0 or any(w % self.num_heads for w in [*attn_widths, widths[-1]]):
            raise ValueError(
                f"num_heads={self.num_heads} must divide the widths with attention "
                f"{sorted({*attn_widths, widths[-1]})}."
            )

    def _modules(self) -> dict:
        return dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def _res(self, width: int, name: str) -> ResBlock:
        return ResBlock(width, self.num_groups, self.dropout, name=name, **self._modules())

    def _attn(self, name: str) -> AttentionBlock:
        return AttentionBlock(self.num_heads, self.num_groups, name=name, **self._modules())

    @nn.compact
    def __call__(
        self,
        t: jax.Array,
        x: jax.Array,
        train: bool = False,
        y: jax.Array | None = None,
        augmentation: jax.Array | None = None,
    ) -> jax.Array:
        num_levels = len(self.channel_multipliers)
        t = _check_inputs(t, x, num_levels)
        self._check_config(x.shape[1])
        temb = self._embedding(t, y, x.shape[0])
        temb = temb + self._augmentation_embedding(augmentation, x.shape[0])
        conv_in = nn.Conv(self.channels, (3, 3), padding="SAME", name="conv_in", **self._modules())
        skips = [conv_in(x.astype(self.dtype))]
        h = self._down(skips, temb, train)
        h = self._res(self._widths()[-1], "mid_res_0")(h, temb, train)
        h = self._attn("mid_attn")(h)
        h = self._res(self._widths()[-1], "mid_res_1")(h, temb, train)
        h = self._up(h, skips, temb, train)
        assert not skips, "every skip activation must be consumed"
        h = nn.silu(nn.GroupNorm(self.num_groups, name="norm_out", **self._modules())(h))
        conv_out = nn.Conv(
            x.shape[-1],
            (3, 3),
            padding="SAME",
            kernel_init=_zeros,
            name="conv_out",
            **self._modules(),
        )
        return conv_out(h).astype(x.dtype)

    def _embedding(self, t: jax.Array, y: jax.Array | None, batch: int) -> jax.Array:
        """temb(t) (batch, 4 channels), plus the label embedding E[y] when conditional."""
        temb = TimeEmbedding(
            4 * self.channels, self.time_embedding_scale, name="time_embedding", **self._modules()
        )(t)
        labels = label_indices(y, batch, check_num_classes(self.num_classes))
        if labels is None:
            return temb
        table = LabelEmbedding(
            self.num_classes, 4 * self.channels, name="label_embedding", **self._modules()
        )
        return temb + table(labels)

    def _augmentation_embedding(self, augmentation, batch: int):
        """F[a] (batch, 4 channels) for transform indices a (None: the identity, 0)."""
        if not self.num_augmentations:
            if augmentation is not None:
                raise ValueError(
                    "augmentation indices were given to a UNet with num_augmentations = 0."
                )
            return 0.0
        if augmentation is None:
            augmentation = jnp.zeros((batch,), jnp.int32)
        indices = jnp.broadcast_to(jnp.asarray(augmentation, jnp.int32), (batch,))
        table = nn.Embed(
            self.num_augmentations,
            4 * self.channels,
            embedding_init=_zeros,
            name="augmentation_embedding",
            **self._modules(),
        )
        return table(indices)

    def _down(self, skips: list, temb: jax.Array, train: bool) -> jax.Array:
        """Down path; appends every activation the up path will concatenate to `skips`."""
        for level, width in enumerate(self._widths()):
            for block in range(self.num_res_blocks):
                h = self._res(width, f"down_{level}_res_{block}")(skips[-1], temb, train)
                if h.shape[1] in self.attention_resolutions:
                    h = self._attn(f"down_{level}_attn_{block}")(h)
                skips.append(h)
            if level < len(self._widths()) - 1:
                down = Downsample(name=f"down_{level}_downsample", **self._modules())
                skips.append(down(skips[-1]))
        return skips[-1]

    def _up(self, h: jax.Array, skips: list, temb: jax.Array, train: bool) -> jax.Array:
        """Up path: each block concatenates (channel axis) the latest unused skip."""
        for level in reversed(range(len(self._widths()))):
            width = self._widths()[level]
            for block in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = self._res(width, f"up_{level}_res_{block}")(h, temb, train)
                if h.shape[1] in self.attention_resolutions:
                    h = self._attn(f"up_{level}_attn_{block}")(h)
            if level > 0:
                h = Upsample(name=f"up_{level}_upsample", **self._modules())(h)
        return h
