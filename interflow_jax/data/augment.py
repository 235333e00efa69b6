"""Distribution augmentation for image flows (Jun et al. 2020, "Distribution Augmentation
for Generative Modeling"; used here with the paper's quadratic loss, PAPER sections 4, 8).

A small image set is memorised: the U-Net fits its training digits 0.1-0.2 bits/dim
better than held-out ones (BUILD_NOTES, Images). Instead of training on transformed
images as if they were data (which changes the density learned), the field is told which
transform it sees: training pairs are (T_a x, a) with a drawn per example, the velocity
is v(t, x | a) (an embedding of a added to the time embedding, `models.UNet`), and the
density of interest is the one at the identity, p(x | a = 0). Every transform here
permutes pixels, so T_a maps the dequantisation cells of one image onto those of another
and p(x | a) for a != 0 is a density of images of the same kind. Evaluation, sampling
and likelihoods use a = 0 (no augmentation given); the other transforms only share the
network's features with it.

Kinds and their transform indices a (0 is always the identity):
  'none'      no augmentation (1 transform)
  'hflip'     a = 1 mirrors left-right (2 transforms)
  'dihedral'  the 8 symmetries of the square: a % 4 quarter turns, then a transpose when
              a >= 4 (square images only)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NUM_TRANSFORMS = {"none": 1, "hflip": 2, "dihedral": 8}


def num_transforms(kind: str) -> int:
    """The number of transforms of an augmentation kind, the identity included."""
    if kind not in NUM_TRANSFORMS:
        raise ValueError(f"augmentation must be one of {sorted(NUM_TRANSFORMS)}; got {kind!r}.")
    return NUM_TRANSFORMS[kind]


def check_p_identity(p_identity) -> float:
    """The probability of the identity transform, a number in (0, 1]."""
    if isinstance(p_identity, bool) or not 0.0 < float(p_identity) <= 1.0:
        raise ValueError(f"augmentation p_identity must lie in (0, 1]; got {p_identity!r}.")
    return float(p_identity)


def _dihedral_one(image: np.ndarray, index: int) -> np.ndarray:
    """Transform `index` of the dihedral group of the square on one (H, H) array."""
    turned = np.rot90(image, index % 4, axes=(0, 1))
    return turned.T if index >= 4 else turned


def _hflip_one(image: np.ndarray, index: int) -> np.ndarray:
    return image[:, ::-1] if index else image


def pixel_permutations(kind: str, height: int, width: int) -> np.ndarray:
    """(K, H * W) int32: row a lists, for each output pixel of T_a, the input pixel it
    takes (row-major), so T_a x = x.reshape(H * W, C)[perm[a]].reshape(H, W, C)."""
    count = num_transforms(kind)
    if kind == "dihedral" and height != width:
        raise ValueError(
            f"augmentation 'dihedral' needs square images; got H, W = ({height}, {width}) "
            "(use 'hflip' for other shapes)."
        )
    one = {"none": lambda x, k: x, "hflip": _hflip_one, "dihedral": _dihedral_one}[kind]
    pixels = np.arange(height * width).reshape(height, width)
    return np.stack([one(pixels, k).ravel() for k in range(count)]).astype(np.int32)


def transform(kind: str, images: jax.Array, indices: jax.Array) -> jax.Array:
    """T_a(x) per example: images (B, H, W, C), indices (B,) ints in 0..K-1 -> (B, H, W, C).

    One gather of pixels through the transforms' permutation tables."""
    if images.ndim != 4:
        raise ValueError(f"augmentation expects images (batch, H, W, C); got shape {images.shape}.")
    batch, height, width, channels = images.shape
    tables = jnp.asarray(pixel_permutations(kind, height, width))
    sources = tables[jnp.asarray(indices, jnp.int32)]  # (B, H * W)
    flat = images.reshape(batch, height * width, channels)
    return jnp.take_along_axis(flat, sources[..., None], axis=1).reshape(images.shape)


def augment(key: jax.Array, images: jax.Array, kind: str, p_identity: float):
    """(T_a x, a) for a batch (B, H, W, C): a = 0 w.p. p_identity, else uniform on 1..K-1.

    Returns the transformed images and the int32 (B,) indices a.
    """
    count, p_identity = num_transforms(kind), check_p_identity(p_identity)
    batch = images.shape[0]
    if count == 1:
        return images, jnp.zeros((batch,), jnp.int32)
    key_keep, key_pick = jax.random.split(key)
    keep = jax.random.bernoulli(key_keep, p_identity, (batch,))
    other = jax.random.randint(key_pick, (batch,), 1, count, jnp.int32)
    indices = jnp.where(keep, 0, other)
    return transform(kind, images, indices), indices
