"""Image data: random-access sources, deterministic per-step batches, dequantisation.

Sources. A *source* is any object with `__len__()` and `__getitem__(indices) -> uint8
(len(indices), H, W, C)`; a numpy array is one. Two kinds are provided:

* `TFDSImageSource(name, split)`: a prepared TFDS data set read by random access
  (`tfds.data_source`, ArrayRecord files; TensorFlow is not needed to read). The data
  sets and their splits are in IMAGE_DATASETS:

  =========================  ===========  ====================  ======
  name                       shape        train split           test
  =========================  ===========  ====================  ======
  mnist                      28 x 28 x 1  train (60,000)        test
  cifar10                    32 x 32 x 3  train (50,000)        test
  imagenet_resized/32x32     32 x 32 x 3  train (1,281,167)     validation
  oxford_flowers102          128x128 x 3  train+validation      test
  =========================  ===========  ====================  ======

  Oxford Flowers 102 has 1,020 train, 1,020 validation and 6,149 test images of
  varying size; it is used for samples, so both labelled splits (2,040 images) train
  and the test split evaluates. Its images are centre-cropped to a square and resized
  with PIL's antialiasing bicubic filter to `image_size` (default 128). A source's
  `labels[indices]` gives the examples' classes (TFDS's 'label' feature).
* `digits_splits()`: scikit-learn's bundled 8 x 8 digits (17 grey levels), no download.

Batches of these sources are read per step by `interflow_jax.data.host_batches`.

Dequantisation (PAPER.md section 4). For x in {0, ..., L-1}^D (L = 256 for 8-bit
images, 17 for digits), y = (x + u) / L with u ~ U[0, 1)^D and z = 2y - 1 in (-1, 1)^D.
Then log p_y(y) = log p_z(z) + D log 2, log P(x) >= E_u[log p_y(y)] - D log L, and

    bits/dim = -(log p_y(y) - D log L) / (D ln 2).
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

NUM_LEVELS_8BIT = 256
DIGITS_NUM_LEVELS = 17
DIGITS_NUM_TRAIN = 1500
FLOWERS_IMAGE_SIZE = 128
EDGE_MARGIN = 2.0**-12  # u is kept in [margin, 1 - margin]; see `dequantize`
DATA_DIR_ENV = "TFDS_DATA_DIR"


class ImageDatasetSpec(NamedTuple):
    """Default image shape (H, W, C) after preprocessing, and the TFDS split names."""

    shape: tuple[int, int, int]
    train_split: str
    test_split: str


IMAGE_DATASETS: dict[str, ImageDatasetSpec] = {
    "mnist": ImageDatasetSpec((28, 28, 1), "train", "test"),
    "cifar10": ImageDatasetSpec((32, 32, 3), "train", "test"),
    "imagenet_resized/32x32": ImageDatasetSpec((32, 32, 3), "train", "validation"),
    "oxford_flowers102": ImageDatasetSpec(
        (FLOWERS_IMAGE_SIZE, FLOWERS_IMAGE_SIZE, 3), "train+validation", "test"
    ),
}


# ------------------------------------------------------------------------ TFDS sources


def resolve_tfds_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir` if given, else $TFDS_DATA_DIR, else TFDS's default ~/tensorflow_datasets."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or Path.home() / "tensorflow_datasets"
    return Path(data_dir)


def _how_to_prepare(name: str, data_dir: Path) -> str:
    return (
        f"Prepare it in the ArrayRecord format (this downloads the data; TFDS may need "
        f"`pip install tensorflow` to encode images while preparing, never to read), e.g. "
        f"`tfds build {name} --data_dir={data_dir} --file_format=array_record`, or "
        f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
        f"data_dir='{data_dir}').download_and_prepare(file_format='array_record')\"`, "
        f"possibly on another machine, then copy the folder {data_dir / name} here."
    )


def _open_data_source(name: str, split: str, data_dir: Path):
    """`tfds.data_source` without downloading; a clear error if the data are not there."""
    try:
        return tfds.data_source(name, split=split, data_dir=os.fspath(data_dir), download=False)
    except NotImplementedError as err:  # what TFDS raises for missing or TFRecord-only data
        builder = tfds.builder(name, data_dir=os.fspath(data_dir))
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"The TFDS data set {name!r} is not prepared in the data directory "
                f"{data_dir} (looked for {builder.data_dir}). " + _how_to_prepare(name, data_dir)
            ) from err
        raise ValueError(
            f"The TFDS data set {name!r} in {builder.data_dir} is stored as "
            f"{builder.info.file_format}, which has no random access. "
            + _how_to_prepare(name, data_dir)
        ) from err


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop uint8 (h, w, C) to a square of side min(h, w), resize to (size, size, C).

    The resize uses PIL's bicubic filter, which widens its kernel when shrinking
    (antialiasing). An image that is already (size, size, C) is returned unchanged.
    """
    h, w, c = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return square
    pil = Image.fromarray(square[..., 0] if c == 1 else square)
    resized = np.asarray(pil.resize((size, size), resample=Image.Resampling.BICUBIC))
    return resized.reshape(size, size, c)


class TFDSImageSource:
    """Random access to the images of a prepared TFDS data set, as uint8 (k, H, W, C).

    Args:
      name: a key of IMAGE_DATASETS.
      split: a TFDS split, e.g. `IMAGE_DATASETS[name].train_split`; slices such as
        'train[:10%]' work too.
      data_dir: the TFDS data directory; default $TFDS_DATA_DIR, else ~/tensorflow_datasets.
      image_size: side of the square images returned; default the size in
        IMAGE_DATASETS. Images of another shape are centre-cropped and resized.

    Raises:
      ValueError: unknown `name`, bad `image_size`, or data stored without random access.
      FileNotFoundError: the data set is not prepared in `data_dir` (the message says how).
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | os.PathLike | None = None,
        image_size: int | None = None,
    ):
        if name not in IMAGE_DATASETS:
            raise ValueError(
                f"Unknown image data set {name!r}; expected one of {list(IMAGE_DATASETS)}."
            )
        height, _, channels = IMAGE_DATASETS[name].shape
        image_size = height if image_size is None else image_size
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, numbers.Integral)
            or image_size < 1
        ):
            raise ValueError(f"image_size must be a positive integer; got {image_size!r}.")
        self.name, self.split = name, split
        self.data_dir = resolve_tfds_data_dir(data_dir)
        self.shape = (int(image_size), int(image_size), channels)
        self.num_levels = NUM_LEVELS_8BIT
        self._records = _open_data_source(name, split, self.data_dir)
        self._labels = None

    @property
    def labels(self) -> TFDSLabels:
        """The examples' class labels, read by index: `labels[indices]` -> int32."""
        if self._labels is None:
            self._labels = TFDSLabels(self._records)
        return self._labels

    @property
    def num_classes(self) -> int:
        """The number of classes of the data set's 'label' feature."""
        return int(self._records.dataset_info.features["label"].num_classes)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, indices) -> np.ndarray:
        """uint8 (len(indices), H, W, C) for a 1-D integer array of indices in [0, len)."""
        keys = np.asarray(indices)
        if keys.ndim != 1 or not (keys.size == 0 or np.issubdtype(keys.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D integer array; got {keys.dtype} {keys.shape}.")
        if keys.size and (keys.min() < 0 or keys.max() >= len(self)):
            raise IndexError(
                f"indices must lie in [0, {len(self)}); got {keys.min()}..{keys.max()}."
            )
        out = np.empty((keys.size, *self.shape), np.uint8)
        if keys.size:
            examples = self._records.__getitems__([int(k) for k in keys])
            for row, example in zip(out, examples, strict=True):
                row[...] = center_crop_resize(np.asarray(example["image"], np.uint8), self.shape[0])
        return out

    def __repr__(self) -> str:
        return (
            f"TFDSImageSource(name={self.name!r}, split={self.split!r}, "
            f"data_dir={os.fspath(self.data_dir)!r}, shape={self.shape}, len={len(self)})"
        )


class TFDSLabels:
    """The 'label' feature of a TFDS data source, read by index and kept once read.

    `labels[indices]` (1-D integer array) -> int32 (k,). A label is read with its record
    the first time it is asked for (TFDS decodes the whole example) and cached, so after
    one epoch the labels cost nothing more; the cache is one int32 per example.
    """

    def __init__(self, records):
        self._records = records
        self._known = np.full(len(records), -1, np.int32)

    def __len__(self) -> int:
        return len(self._known)

    def __getitem__(self, indices) -> np.ndarray:
        keys = np.arange(len(self))[indices] if isinstance(indices, slice) else np.asarray(indices)
        missing = np.unique(keys[self._known[keys] < 0])
        if missing.size:
            examples = self._records.__getitems__([int(k) for k in missing])
            self._known[missing] = [int(example["label"]) for example in examples]
        return self._known[keys]


# ----------------------------------------------------------------------------- digits


def digits_splits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 x 8 digits (1,797 images, values 0..16), shuffled and split.

    Returns (train, test): uint8 arrays (1500, 8, 8, 1) and (297, 8, 8, 1), the rows of
    `load_digits().images` in the order `numpy.random.default_rng(seed).permutation(1797)`,
    first 1500 to train. Use `num_levels=DIGITS_NUM_LEVELS` (17) to dequantise.
    """
    train, _, test, _ = digits_labelled_splits(seed)
    return train, test


def digits_labelled_splits(seed: int = 0):
    """(train, train_labels, test, test_labels): `digits_splits(seed)` with each image's
    digit (scikit-learn's target, 0..9) as int32 labels (1500,) and (297,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("digits_splits needs scikit-learn: `pip install scikit-learn`.") from err
    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(images))
    train, test = order[:DIGITS_NUM_TRAIN], order[DIGITS_NUM_TRAIN:]
    return images[train], labels[train], images[test], labels[test]


# ------------------------------------------------------------------- dequantisation


def dequantize(x_int: jax.Array, key: jax.Array, num_levels: int) -> jax.Array:
    """Uniform dequantisation to (-1, 1): z = 2 (x + u) / L - 1, u ~ U[0, 1) per entry.

    Args:
      x_int: integer array (..., ) with values in {0, ..., L-1}, e.g. uint8 (n, H, W, C).
      key: a jax PRNG key.
      num_levels: L (256 for 8-bit images, 17 for the digits).

    Returns:
      float32 z of the shape of `x_int`. u is drawn as float32 U[0, 1) and kept in
      [2^-12, 1 - 2^-12] (moving 1/2048 of the draws by less than 1/4096 of a bin), so
      that after float32 rounding every z lies strictly inside its bin:
      floor((z + 1) / 2 * L) = x exactly.
    """
    x_int = jnp.asarray(x_int)
    if not jnp.issubdtype(x_int.dtype, jnp.integer):
        raise ValueError(f"x_int must have an integer dtype; got {x_int.dtype}.")
    u = jax.random.uniform(key, x_int.shape, jnp.float32)
    u = jnp.clip(u, EDGE_MARGIN, 1.0 - EDGE_MARGIN)
    return 2.0 * (x_int.astype(jnp.float32) + u) / num_levels - 1.0


def bits_per_dim(log_prob_z: jax.Array, num_dims: int, num_levels: int) -> jax.Array:
    """Bits per dimension of the dequantised data from log p_z at z = 2y - 1.

    With D = num_dims and L = num_levels:

        log p_y = log p_z + D log 2,
        bits/dim = -(log p_y - D log L) / (D ln 2) = -log p_z / (D ln 2) - 1 + log2 L.

    Works elementwise on arrays of log-densities (e.g. (batch,)).
    """
    log_prob_y = jnp.asarray(log_prob_z) + num_dims * math.log(2.0)
    return -(log_prob_y - num_dims * math.log(num_levels)) / (num_dims * math.log(2.0))


def to_uint8_grid_values(z: jax.Array, num_levels: int) -> jax.Array:
    """Map z in [-1, 1] back to display values: uint8 in {0, ..., 255}, the shape of z.

    x = clip(floor((z + 1) / 2 * L), 0, L - 1) inverts `dequantize`; the level x is then
    shown as round(255 x / (L - 1)), so 8-bit data come back unchanged.
    """
    levels = jnp.floor((jnp.asarray(z, jnp.float32) + 1.0) / 2.0 * num_levels)
    levels = jnp.clip(levels, 0, num_levels - 1)
    return jnp.round(levels * (255.0 / (num_levels - 1))).astype(jnp.uint8)


# ------------------------------------------------------------------------------ grids


def image_grid(
    images: np.ndarray, num_rows: int, padding: int = 2, pad_value: int = 255
) -> np.ndarray:
    """Tile uint8 (n, H, W, C) images into one uint8 (R H + (R+1) p, K W + (K+1) p, C).

    R = num_rows, K = ceil(n / R) columns, p = padding; images fill the grid row by row
    and cells left over, like the borders, have the value `pad_value`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or not 1 <= num_rows <= len(images):
        raise ValueError(
            f"expected uint8 images (n, H, W, C) and 1 <= num_rows <= n; got "
            f"{images.dtype} {images.shape}, num_rows={num_rows}."
        )
    n, h, w, c = images.shape
    cols = -(-n // num_rows)
    grid = np.full(
        (num_rows * (h + padding) + padding, cols * (w + padding) + padding, c),
        pad_value,
        np.uint8,
    )
    for i, image in enumerate(images):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_image_grid(images: np.ndarray, path: str | os.PathLike, num_rows: int) -> Path:
    """Write `image_grid(images, num_rows)` as a PNG file (grey if C = 1); returns the path."""
    grid = image_grid(images, num_rows)
    if grid.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images need 1, 3 or 4 channels; got {grid.shape[-1]}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path, format="PNG")
    return path
