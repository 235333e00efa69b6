"""A folder of a user's PNG/JPEG images, with classes from sub-folders (ImageFolder layout).

`load_image_folder(root, size=None) -> ImageFolder`:

* layout: either every image directly in `root` (no labels), or one sub-folder per class
  (`root/<class>/**/<image>`, searched recursively, as torchvision's ImageFolder);
  classes are the sub-folder names in sorted order, class k = `classes[k]`. Hidden
  entries (names starting with '.') are ignored.
* every other file is an error naming it, as is a file with an image extension that
  Pillow cannot decode, a class folder without images, and images beside class folders.
* images are decoded with Pillow, centre-cropped to a square and resized to `size`
  (default: the smallest side among the images) with the bicubic filter of the TFDS
  path (`images.center_crop_resize`), and stored as uint8 (N, size, size, C): C = 1
  when every image is grey, else 3 (RGB; an alpha channel is dropped).

The decoded images are held in memory (the folder is decoded once, at the size the
model sees), so bad files are reported before training starts rather than mid-run.
Dequantisation and bits/dim are those of `images.py` with L = 256 levels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from interflow_jax.data import images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_NAMED_FILES = 10


class ImageFolder(NamedTuple):
    """Decoded images of a folder.

    images: uint8 (N, size, size, C); labels: int32 (N,) in 0..K-1 or None;
    classes: the class folders' names (K,) or None; files: the N image paths, relative
    to `root`, in the order of `images`.
    """

    root: Path
    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...] | None
    files: tuple[str, ...]


def _named(paths, root: Path) -> str:
    names = [os.fspath(Path(p).relative_to(root)) for p in paths[:MAX_NAMED_FILES]]
    more = f" and {len(paths) - MAX_NAMED_FILES} more" if len(paths) > MAX_NAMED_FILES else ""
    return ", ".join(names) + more


def _visible_files(folder: Path) -> list[Path]:
    """Files under `folder` (recursively, sorted), hidden files and folders skipped."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(parent) / f for f in sorted(files) if not f.startswith(".")]
    return found


def list_image_files(root) -> tuple[list[Path], np.ndarray | None, tuple[str, ...] | None]:
    """(image paths, int32 labels or None, class names or None) of a folder's layout."""
    root = Path(os.fspath(root)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image folder.")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    class_dirs = [p for p in entries if p.is_dir()]
    if class_dirs:
        paths, labels = _class_files(root, entries, class_dirs)
        classes = tuple(p.name for p in class_dirs)
    else:
        paths, labels, classes = _visible_files(root), None, None
    others = [p for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        raise ValueError(
            f"{root}: files that are not PNG or JPEG images ({', '.join(IMAGE_SUFFIXES)}): "
            f"{_named(others, root)}."
        )
    if not paths:
        raise ValueError(f"{root}: no PNG or JPEG images found.")
    return paths, labels, classes


def _class_files(root: Path, entries: list[Path], class_dirs: list[Path]):
    """(paths, int32 labels) of the files under the class folders; class k = class_dirs[k]."""
    loose = [p for p in entries if not p.is_dir()]
    if loose:
        raise ValueError(
            f"{root}: files beside the class folders {[p.name for p in class_dirs]}: "
            f"{_named(loose, root)}; move them into a class folder or out of {root}."
        )
    paths, labels = [], []
    for k, folder in enumerate(class_dirs):
        files = _visible_files(folder)
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
            raise ValueError(f"{root}: the class folder {folder.name!r} holds no images.")
        paths += files
        labels += [k] * len(files)
    return paths, np.asarray(labels, np.int32)


def _probe(paths: list[Path], root: Path) -> tuple[list[tuple[int, int]], bool]:
    """(sizes (w, h), all grey?) from the images' headers; unreadable files named."""
    sizes, grey, bad = [], True, []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
                grey &= len(set(image.getbands()) - {"A"}) == 1 and image.mode != "P"
        except (UnidentifiedImageError, OSError, ValueError):
            bad.append(path)
    if bad:
        raise ValueError(f"{root}: unreadable image files: {_named(bad, root)}.")
    return sizes, grey


def _decode(path: Path, size: int, grey: bool) -> np.ndarray:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L" if grey else "RGB"), np.uint8)
    pixels = pixels[..., None] if grey else pixels
    return images.center_crop_resize(pixels, size)


def load_image_folder(root, size: int | None = None) -> ImageFolder:
    """Decode the images of `root` (see the module docstring) to uint8 (N, S, S, C)."""
    paths, labels, classes = list_image_files(root)
    root = Path(os.fspath(root)).expanduser()
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
        raise ValueError(f"image size must be a positive integer; got {size!r}.")
    sizes, grey = _probe(paths, root)
    size = int(size) if size is not None else min(min(s) for s in sizes)
    out = np.empty((len(paths), size, size, 1 if grey else 3), np.uint8)
    bad = []
    for i, path in enumerate(paths):
        try:
            out[i] = _decode(path, size, grey)
        except (OSError, ValueError, SyntaxError):
            bad.append(path)
    if bad:
        raise ValueError(f"{root}: image files that cannot be decoded: {_named(bad, root)}.")
    files = tuple(os.fspath(p.relative_to(root)) for p in paths)
    return ImageFolder(root, out, labels, classes, files)


def split_images(folder: ImageFolder, test_fraction: float, seed: int):
    """(train, test) index arrays (sorted): the first round(test_fraction N) images of
    `default_rng(seed).permutation(N)` are the test split. ValueError if either is empty."""
    n = len(folder.images)
    if not 0 < test_fraction < 1:
        raise ValueError(f"the test fraction must lie in (0, 1); got {test_fraction}.")
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(test_fraction * n)
    if n_test < 1 or n_test >= n:
        raise ValueError(
            f"{folder.root}: {n} images are too few to split with a test fraction of "
            f"{test_fraction} (test {n_test}, train {n - n_test})."
        )
    return np.sort(order[n_test:]), np.sort(order[:n_test])


class LabelledImages:
    """uint8 images (n, S, S, C) with their labels: `source[indices]` -> the images;
    `labels` int32 (n,) or None. A source for `host_batches`; `np.asarray` gives all."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray | None):
        self.pixels, self.labels = pixels, labels
        self.shape, self.dtype = pixels.shape, pixels.dtype

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, indices) -> np.ndarray:
        return self.pixels[indices]

    def __array__(self, dtype=None, copy=None):
        del copy
        return np.asarray(self.pixels, dtype=dtype)


def describe(folder: ImageFolder) -> dict:
    """A JSON-ready record of the folder: root, image shape and classes."""
    return {
        "path": os.fspath(folder.root.resolve()),
        "num_images": len(folder.images),
        "image_shape": list(folder.images.shape[1:]),
        "classes": None if folder.classes is None else list(folder.classes),
    }
