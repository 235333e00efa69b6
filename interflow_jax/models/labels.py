"""Class labels for conditional velocity fields v(t, x, y) (PAPER section 9, conditioning).

A network built with `num_classes = K > 0` reads integer labels y in {0, ..., K}: 0..K-1
are the classes and K is the *null* label, the unconditional field v(t, x | null) that
label dropout trains in the same network (classifier-free guidance). A missing label
(y = None) means the null label for every sample. With K = 0 the network has no label
embedding (its parameters are those of the unconditional network) and takes no labels.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from interflow_jax.checks import is_concrete


def check_num_classes(num_classes) -> int:
    """`num_classes` as an int >= 0 (0: unconditional), else ValueError naming it."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0; got {num_classes!r}.")
    return int(num_classes)


def label_indices(y, batch: int, num_classes: int) -> jax.Array:
    """int32 (batch,) labels in {0, ..., K} from y: None (all null, = K), () or (batch,).

    Raises ValueError for labels given to an unconditional network (K = 0), a wrong
    shape, a non-integer dtype, or (when concrete) a value outside {0, ..., K}.
    """
    if num_classes == 0:
        if y is not None:
            raise ValueError("labels were given to a network with num_classes = 0 (no labels).")
        return None
    if y is None:
        return jnp.full((batch,), num_classes, jnp.int32)
    y = jnp.asarray(y)
    if y.shape not in ((), (batch,)) or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(
            f"labels must be integers of shape () or (batch,) = ({batch},); "
            f"got {y.dtype} {y.shape}."
        )
    if is_concrete(y):
        values = np.asarray(y)
        bad = (values < 0) | (values > num_classes)
        if np.any(bad):
            raise ValueError(
                f"labels must lie in [0, {num_classes}] ({num_classes} = null); got "
                f"{values[bad].ravel()[:5].tolist()}."
            )
    return jnp.broadcast_to(y.astype(jnp.int32), (batch,))


class LabelEmbedding(nn.Module):
    """Learned embedding of labels y (batch,) in {0, ..., K} -> (batch, dim); row K is null."""

    num_classes: int
    dim: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        embed = nn.Embed(
            self.num_classes + 1, self.dim, dtype=self.dtype, param_dtype=self.param_dtype
        )
        return embed(y)


def embedded_labels(y, batch: int, num_classes: int, dim: int, dtype, param_dtype):
    """E[y] (batch, dim) from a LabelEmbedding named 'labels' of the calling module (call
    inside its compact __call__), or None for an unconditional network (K = 0)."""
    labels = label_indices(y, batch, check_num_classes(num_classes))
    if labels is None:
        return None
    return LabelEmbedding(num_classes, dim, dtype, param_dtype, name="labels")(labels)
