"""Tests for interflow_jax/data/images.py: sources, batches, dequantisation, grids."""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from interflow_jax.data import host_batches, images

tfds.disable_progress_bar()

# ------------------------------------------------------------------------ TFDS helpers


def _prepare(name, data_dir, splits):
    """Write a small real ArrayRecord copy of TFDS data set `name` from `splits` examples."""
    registered = type(tfds.builder(name, data_dir=data_dir))

    class Fake(registered, skip_registration=True):
        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: enumerate(examples) for split, examples in splits.items()}

    Fake.name = registered.name
    Fake(data_dir=data_dir).download_and_prepare(file_format="array_record")


DIGIT_PIXELS = np.random.default_rng(0).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
FLOWER_SHAPES = ((96, 160), (160, 96), (48, 48))  # (h, w); centre squares on 16-pixel blocks
FLOWER_COLOURS = ((200, 40, 90), (20, 180, 230), (120, 120, 10))


def _flower(h, w, colour):
    """An RGB image whose centre square has one colour and whose margins are black."""
    pixels = np.zeros((h, w, 3), np.uint8)
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    pixels[top : top + side, left : left + side] = colour
    return pixels


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    """A data_dir with tiny real mnist and oxford_flowers102 ArrayRecord files."""
    data_dir = os.fspath(tmp_path_factory.mktemp("tfds"))
    digits = [
        {"image": Image.fromarray(p[..., 0]), "label": i % 10} for i, p in enumerate(DIGIT_PIXELS)
    ]
    _prepare("mnist", data_dir, {"train": digits, "test": digits[:2]})
    flowers = [
        {"image": Image.fromarray(_flower(h, w, c)), "label": 0, "file_name": f"{i}.jpg"}
        for i, ((h, w), c) in enumerate(zip(FLOWER_SHAPES, FLOWER_COLOURS, strict=True))
    ]
    _prepare(
        "oxford_flowers102",
        data_dir,
        {"train": flowers[:2], "validation": flowers[2:], "test": flowers[:1]},
    )
    return data_dir


# ----------------------------------------------------------------------- TFDS sources


@pytest.mark.parametrize("name", list(images.IMAGE_DATASETS))
def test_mocked_tfds_source_shapes(mock_tfds, name):
    spec = images.IMAGE_DATASETS[name]
    source = images.TFDSImageSource(name, spec.train_split)
    assert len(source) == 6
    batch = source[np.array([4, 0, 4])]
    assert batch.dtype == np.uint8 and batch.shape == (3, *spec.shape)
    np.testing.assert_array_equal(batch[0], batch[2])


def test_mocked_flowers_have_varied_sizes_before_resizing(mock_tfds):
    raw = tfds.data_source("oxford_flowers102", split="train")
    assert len({raw[i]["image"].shape for i in range(6)}) > 1
    source = images.TFDSImageSource("oxford_flowers102", "train", image_size=64)
    assert source[np.arange(6)].shape == (6, 64, 64, 3)


def test_real_array_record_mnist_reads_exact_pixels(prepared_dir):
    source = images.TFDSImageSource("mnist", "train", data_dir=prepared_dir)
    assert len(source) == len(DIGIT_PIXELS) and source.shape == (28, 28, 1)
    records = tfds.data_source("mnist", split="train", data_dir=prepared_dir)
    labels = np.array([ex["label"] for ex in records])  # = the index in DIGIT_PIXELS
    assert sorted(labels) == list(range(7))  # TFDS shuffles the records when writing
    indices = np.array([5, 1, 1, 6, 0])
    np.testing.assert_array_equal(source[indices], DIGIT_PIXELS[labels[indices]])
    assert source[np.array([], np.int64)].shape == (0, 28, 28, 1)
    assert "tensorflow" not in sys.modules


def test_real_array_record_flowers_are_cropped_and_resized(prepared_dir):
    source = images.TFDSImageSource("oxford_flowers102", "train+validation", data_dir=prepared_dir)
    batch = source[np.arange(3)]
    assert batch.shape == (3, 128, 128, 3) and batch.dtype == np.uint8
    # Only the uniformly coloured centre square survives the crop (up to JPEG error).
    colours = batch.reshape(3, -1, 3).mean(axis=1)
    colours = colours[np.lexsort(colours.T[::-1])]
    np.testing.assert_allclose(colours, sorted(FLOWER_COLOURS), atol=4)
    assert (batch.reshape(3, -1, 3).std(axis=1) < 3).all()


def test_bad_indices_and_names_are_rejected(prepared_dir):
    source = images.TFDSImageSource("mnist", "test", data_dir=prepared_dir)
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        source[np.array([0, 2])]
    with pytest.raises(ValueError, match="1-D integer"):
        source[np.array([[0]])]
    with pytest.raises(ValueError, match="Unknown image data set"):
        images.TFDSImageSource("svhn", "train", data_dir=prepared_dir)


def test_center_crop_resize_keeps_the_centre_square():
    for h, w in [(40, 72), (72, 40)]:
        out = images.center_crop_resize(_flower(h, w, (10, 250, 77)), 16)
        assert out.shape == (16, 16, 3)
        np.testing.assert_array_equal(out, np.broadcast_to([10, 250, 77], out.shape))
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    np.testing.assert_array_equal(images.center_crop_resize(grey, 8), grey)
    assert images.center_crop_resize(grey, 20).shape == (20, 20, 1)


def test_unprepared_data_set_names_the_directory_and_the_fix(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as info:
        images.TFDSImageSource("cifar10", "train", data_dir=tmp_path)
    message = str(info.value)
    assert "not prepared" in message and str(tmp_path) in message
    assert "tfds build cifar10" in message and "array_record" in message
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "from_env"))
    with pytest.raises(FileNotFoundError, match="from_env"):
        images.TFDSImageSource("mnist", "train")
    assert os.listdir(tmp_path) == []  # nothing downloaded or written


# ---------------------------------------------------------------------------- batches


def test_epoch_batch_indices_is_deterministic_and_covers_each_epoch_once():
    n, b, seed = 50, 8, 3
    steps = n // b
    epoch0 = np.concatenate([host_batches.epoch_batch_indices(s, b, n, seed) for s in range(steps)])
    epoch1 = np.concatenate(
        [host_batches.epoch_batch_indices(s, b, n, seed) for s in range(steps, 2 * steps)]
    )
    assert len(np.unique(epoch0)) == steps * b == len(np.unique(epoch1))
    np.testing.assert_array_equal(epoch0, np.random.default_rng([seed, 0]).permutation(n)[:48])
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(
        host_batches.epoch_batch_indices(9, b, n, seed),
        host_batches.epoch_batch_indices(9, b, n, seed),
    )
    assert not np.array_equal(
        host_batches.epoch_batch_indices(2, b, n, seed),
        host_batches.epoch_batch_indices(2, b, n, seed + 1),
    )


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_partition_the_global_batch(process_count):
    for step in (0, 5, 13):
        whole = host_batches.epoch_batch_indices(step, 8, 50, 7)
        parts = [
            host_batches.epoch_batch_indices(step, 8, 50, 7, p, process_count)
            for p in range(process_count)
        ]
        assert all(len(part) == 8 // process_count for part in parts)
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        assert len(np.unique(np.concatenate(parts))) == 8


@pytest.mark.parametrize(
    "args",
    [(0, 6, 50, 0, 0, 4), (0, 8, 50, 0, 2, 2), (0, 8, 5, 0, 0, 1), (-1, 8, 50, 0, 0, 1)],
)
def test_epoch_batch_indices_rejects_bad_layouts(args):
    with pytest.raises(ValueError):
        host_batches.epoch_batch_indices(*args)


class _CountingSource:
    """A numpy-backed source that records the index arrays it is asked for."""

    def __init__(self, data):
        self.data, self.requests = data, []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, indices):
        self.requests.append(np.asarray(indices))
        return self.data[indices]


def test_stack_batches_matches_indexing_the_source():
    data = np.random.default_rng(1).integers(0, 256, (30, 2, 3, 1), dtype=np.uint8)
    source = _CountingSource(data)
    out = host_batches.stack_batches(source, 2, 5, 8, 11, process_index=1, process_count=2)
    assert out.shape == (5, 4, 2, 3, 1) and out.dtype == np.uint8
    for k in range(5):
        rows = host_batches.epoch_batch_indices(2 + k, 8, 30, 11, 1, 2)
        np.testing.assert_array_equal(out[k], data[rows])
    (request,) = source.requests
    assert (np.diff(request) > 0).all()


def test_stack_batches_reads_a_tfds_source(prepared_dir):
    source = images.TFDSImageSource("mnist", "train", data_dir=prepared_dir)
    out = host_batches.stack_batches(source, 0, 4, 2, 0)
    assert out.shape == (4, 2, 28, 28, 1)
    for k in range(4):
        np.testing.assert_array_equal(out[k], source[host_batches.epoch_batch_indices(k, 2, 7, 0)])


def _row_multiset(array):
    return sorted(row.tobytes() for row in array.reshape(len(array), -1))


def test_digits_splits():
    from sklearn.datasets import load_digits

    train, test = images.digits_splits()
    assert train.shape == (1500, 8, 8, 1) and test.shape == (297, 8, 8, 1)
    assert train.dtype == np.uint8 == test.dtype
    assert train.max() == 16 and test.min() == 0
    full = load_digits().images.astype(np.uint8)
    assert _row_multiset(np.concatenate([train, test])) == _row_multiset(full)
    again_train, _ = images.digits_splits()
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(train, images.digits_splits(seed=1)[0])


# ------------------------------------------------------------------- dequantisation


@pytest.mark.parametrize("num_levels", [256, 17])
def test_dequantize_range_and_recovery(num_levels):
    x = jnp.tile(jnp.arange(num_levels, dtype=jnp.uint8), 2000).reshape(-1, num_levels)
    z = jax.jit(images.dequantize, static_argnums=2)(x, jax.random.key(0), num_levels)
    assert z.dtype == jnp.float32 and z.shape == x.shape
    z64 = np.asarray(z, np.float64)
    assert z64.min() > -1 and z64.max() < 1
    y = (z64 + 1) / 2
    np.testing.assert_array_equal(np.floor(y * num_levels), np.asarray(x))
    u = y * num_levels - np.asarray(x)
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 0.002


@pytest.mark.parametrize("num_levels", [256, 17, 2])
@pytest.mark.parametrize("u_value", [0.0, float(np.nextafter(np.float32(1), np.float32(0)))])
def test_dequantize_keeps_extreme_draws_inside_their_bin(monkeypatch, num_levels, u_value):
    monkeypatch.setattr(
        jax.random, "uniform", lambda key, shape, dtype: jnp.full(shape, u_value, dtype)
    )
    x = jnp.arange(num_levels, dtype=jnp.int32)
    z = images.dequantize(x, jax.random.key(0), num_levels)
    for dtype in (np.float64, np.float32):
        y = (np.asarray(z).astype(dtype) + dtype(1)) / dtype(2)
        np.testing.assert_array_equal(np.floor(y * dtype(num_levels)), np.asarray(x))


def test_dequantize_rejects_float_input():
    with pytest.raises(ValueError, match="integer"):
        images.dequantize(jnp.zeros(3), jax.random.key(0), 256)


def test_bits_per_dim_hand_computed():
    d = 3072
    uniform = jnp.full((4,), -d * math.log(2.0))  # uniform density on [-1, 1]^D
    np.testing.assert_allclose(images.bits_per_dim(uniform, d, 256), 8.0, rtol=1e-6)
    uniform_64 = jnp.asarray(-64 * math.log(2.0))
    np.testing.assert_allclose(images.bits_per_dim(uniform_64, 64, 17), math.log2(17), rtol=1e-6)
    # log p_z = 0: log p_y = D log 2, bits/dim = -(D log 2 - D log 256) / (D ln 2) = 7.
    np.testing.assert_allclose(images.bits_per_dim(jnp.zeros(()), d, 256), 7.0, rtol=1e-6)
    assert images.bits_per_dim(jnp.zeros((2, 5)), 10, 256).shape == (2, 5)


def test_to_uint8_grid_values_inverts_dequantize():
    x8 = jnp.arange(256, dtype=jnp.uint8)
    z = images.dequantize(x8, jax.random.key(1), 256)
    np.testing.assert_array_equal(images.to_uint8_grid_values(z, 256), x8)
    x17 = jnp.arange(17, dtype=jnp.uint8)
    shown = images.to_uint8_grid_values(images.dequantize(x17, jax.random.key(2), 17), 17)
    np.testing.assert_array_equal(shown, np.round(np.arange(17) * 255 / 16).astype(np.uint8))
    clipped = images.to_uint8_grid_values(jnp.array([-3.0, 1.0, 7.0]), 256)
    np.testing.assert_array_equal(clipped, [0, 255, 255])
    assert shown.dtype == jnp.uint8


# ------------------------------------------------------------------------------ grids


def test_image_grid_layout():
    tiles = np.stack([np.full((4, 5, 3), 10 * i, np.uint8) for i in range(1, 6)])
    grid = images.image_grid(tiles, num_rows=2, padding=1, pad_value=255)
    assert grid.shape == (2 * 4 + 3, 3 * 5 + 4, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[1:5, 1:6], tiles[0])
    np.testing.assert_array_equal(grid[6:10, 7:12], tiles[4])
    assert (grid[6:10, 13:18] == 255).all() and (grid[0] == 255).all()
    with pytest.raises(ValueError):
        images.image_grid(tiles.astype(np.float32), 2)
    with pytest.raises(ValueError):
        images.image_grid(tiles, 6)


@pytest.mark.parametrize("channels", [1, 3])
def test_save_image_grid_writes_a_readable_png(tmp_path, channels):
    tiles = np.random.default_rng(0).integers(0, 256, (6, 8, 8, channels), dtype=np.uint8)
    path = images.save_image_grid(tiles, tmp_path / "sub" / "grid.png", num_rows=3)
    with Image.open(path) as png:
        assert png.format == "PNG"
        read = np.asarray(png)
    expected = images.image_grid(tiles, 3)
    np.testing.assert_array_equal(read, expected[..., 0] if channels == 1 else expected)
