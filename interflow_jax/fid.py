"""Frechet Inception Distance: the Frechet distance and an InceptionV3 feature extractor.

FID(A, B) = ||m_A - m_B||^2 + tr(C_A + C_B - 2 (C_A C_B)^{1/2}), where (m, C) are the mean
and covariance of the 2048-d pool3 features of InceptionV3 over each set of images
(Heusel et al. 2017).

`InceptionV3` below is the FID variant of the network (the 2015-12-05 TensorFlow graph as
ported by pytorch-fid): batch-norm with frozen statistics (eps 1e-3), average pools that
exclude padding, a max pool in the last block's pool branch, pool3 = the spatial mean of
the last block. Images are preprocessed as in pytorch-fid: x / 255, bilinear resize to
299x299 (half-pixel centres; the TensorFlow code's resize differs slightly), 2 x - 1.

Module and parameter names follow torchvision (`Mixed_5b/branch1x1/conv/kernel`,
`.../bn/mean`), so converting pytorch-fid's checkpoint (`pt_inception-2015-12-05-
6726825d.pth`) is a rename plus a kernel transpose (torch (O, I, kh, kw) -> flax
(kh, kw, I, O); `weight`, `running_mean`, `running_var` -> `scale`, `mean`, `var`):

    python -m interflow_jax.fid --convert pt_inception-2015-12-05-6726825d.pth --out inception.npz

(`convert_pytorch_fid_weights`; reading the .pth needs torch). With random weights in
pytorch-fid's `InceptionV3([3])` and the same weights converted here, the pool3 features
of the same image files (pytorch-fid's loader, resize and scaling) agree to a relative
error below 1e-6 in float32 and the FID of two image sets to 2.5e-7 relative
(`tests/test_fid.py::test_features_and_fid_agree_with_pytorch_fid`; figures in
BUILD_NOTES.md). The real weights are not shipped: download them on a connected machine.
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

INCEPTION_SIZE = 299
MIN_INCEPTION_SIZE = 75
FEATURE_DIM = 2048


class FeatureExtractor(Protocol):
    """images uint8 (n, H, W, C) -> features (n, k) numpy; one image's features must not
    depend on the other images in the batch."""

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------
# Frechet distance
# ---------------------------------------------------------------------------------------


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (n, k), n >= 2 -> (mean (k,), unbiased covariance (k, k)) in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape (n, k) with n >= 2; got {features.shape}.")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; tiny negative eigenvalues -> 0."""
    eigvals, eigvecs = np.linalg.eigh((cov + cov.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def _check_statistics(mean1, cov1, mean2, cov2) -> None:
    k = mean1.shape[0] if mean1.ndim == 1 else -1
    shapes = (mean1.shape, cov1.shape, mean2.shape, cov2.shape)
    if k < 0 or shapes != ((k,), (k, k), (k,), (k, k)):
        raise ValueError(f"expected means (k,) and covariances (k, k); got shapes {shapes}.")


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """||m1 - m2||^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2}) for means (k,), PSD covariances (k, k).

    Computed in float64 by the symmetric form tr (C1 C2)^{1/2} = sum_i sqrt(lambda_i) with
    lambda_i the eigenvalues of the PSD matrix C1^{1/2} C2 C1^{1/2} (they equal those of
    C1 C2); rounding-level negative eigenvalues are clipped, so singular covariances
    (fewer samples than features) are fine. The result is clipped at 0.
    """
    mean1, cov1, mean2, cov2 = (np.asarray(a, np.float64) for a in (mean1, cov1, mean2, cov2))
    _check_statistics(mean1, cov1, mean2, cov2)
    sqrt1 = _psd_sqrt(cov1)
    middle = sqrt1 @ cov2 @ sqrt1
    eigvals = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(eigvals, 0.0, None)))
    diff = mean1 - mean2
    value = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of features (n_a, k) and (n_b, k)."""
    features_a, features_b = np.asarray(features_a), np.asarray(features_b)
    if features_a.ndim != 2 or features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError(
            f"features must be (n, k) with equal k; got {features_a.shape}, {features_b.shape}."
        )
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def extract_features(extractor: FeatureExtractor, images: np.ndarray, batch_size: int):
    """Apply `extractor` to images (n, H, W, C) in batches of `batch_size` -> (n, k)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}.")
    batches = [extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate([np.asarray(b) for b in batches], axis=0)


def compute_fid(
    extractor: FeatureExtractor, images_a: np.ndarray, images_b: np.ndarray, batch_size: int
) -> float:
    """FID between uint8 image sets (n_a, H, W, C) and (n_b, H', W', C') under `extractor`."""
    return fid_from_features(
        extract_features(extractor, images_a, batch_size),
        extract_features(extractor, images_b, batch_size),
    )


# ---------------------------------------------------------------------------------------
# InceptionV3 (FID variant), NHWC
# ---------------------------------------------------------------------------------------


def _pairs(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


class FrozenBatchNorm(nn.Module):
    """(x - mean) * scale / sqrt(var + eps) + bias over the last axis; all four are params."""

    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = x.shape[-1]
        mean = self.param("mean", nn.initializers.zeros_init(), (k,))
        var = self.param("var", nn.initializers.ones_init(), (k,))
        scale = self.param("scale", nn.initializers.ones_init(), (k,))
        bias = self.param("bias", nn.initializers.zeros_init(), (k,))
        return (x - mean) * (scale / jnp.sqrt(var + self.epsilon)) + bias


class BasicConv(nn.Module):
    """relu(bn(conv(x))): a bias-free conv with symmetric zero padding, then frozen BN."""

    features: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad_h, pad_w = _pairs(self.padding)
        conv = nn.Conv(
            self.features,
            _pairs(self.kernel),
            strides=_pairs(self.strides),
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            use_bias=False,
            name="conv",
        )
        return nn.relu(FrozenBatchNorm(name="bn")(conv(x)))


def _avg_pool_same(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool, padding 1, padded zeros not counted."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _max_pool_down(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    """(n, 35, 35, c) -> (n, 35, 35, 224 + pool_features)."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(64, 1, name="branch1x1")(x)
        b5 = BasicConv(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, 1, name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """(n, 35, 35, 288) -> (n, 17, 17, 768)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(384, 3, strides=2, name="branch3x3")(x)
        bd = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class InceptionC(nn.Module):
    """(n, 17, 17, 768) -> (n, 17, 17, 768), factorised 7x7 convolutions."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv(192, 1, name="branch1x1")(x)
        b7 = BasicConv(c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv(c7, **row, name="branch7x7_2")(b7)
        b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv(c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, 1, name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """(n, 17, 17, 768) -> (n, 8, 8, 1280)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class InceptionE(nn.Module):
    """(n, 8, 8, c) -> (n, 8, 8, 2048); the pool branch averages (E_1) or maxes (E_2)."""

    max_pool: bool = False

    def _split(self, h: jax.Array, prefix: str) -> jax.Array:
        a = BasicConv(384, (1, 3), padding=(0, 1), name=f"{prefix}a")(h)
        b = BasicConv(384, (3, 1), padding=(1, 0), name=f"{prefix}b")(h)
        return jnp.concatenate([a, b], axis=-1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(320, 1, name="branch1x1")(x)
        b3 = self._split(BasicConv(384, 1, name="branch3x3_1")(x), "branch3x3_2")
        bd = BasicConv(448, 1, name="branch3x3dbl_1")(x)
        bd = self._split(BasicConv(384, 3, padding=1, name="branch3x3dbl_2")(bd), "branch3x3dbl_3")
        pooled = _max_pool_same(x) if self.max_pool else _avg_pool_same(x)
        bp = BasicConv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """FID InceptionV3 to pool3: x (n, S, S, 3) in [-1, 1], S >= 75 (299 for FID) -> (n, 2048)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = BasicConv(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, 3, name="Conv2d_2a_3x3")(x)
        x = _max_pool_down(BasicConv(64, 3, padding=1, name="Conv2d_2b_3x3")(x))
        x = BasicConv(80, 1, name="Conv2d_3b_1x1")(x)
        x = _max_pool_down(BasicConv(192, 3, name="Conv2d_4a_3x3")(x))
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


# ---------------------------------------------------------------------------------------
# Preprocessing, parameters and the extractor
# ---------------------------------------------------------------------------------------


def preprocess_images(images: jax.Array, size: int = INCEPTION_SIZE) -> jax.Array:
    """uint8 (n, H, W, 1 or 3) -> float32 (n, size, size, 3) in [-1, 1].

    x / 255, bilinear resize (half-pixel centres, no antialiasing), then 2 x - 1; grey
    images are repeated over three channels.
    """
    x = images.astype(jnp.float32) / 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear", antialias=False)
    return 2.0 * x - 1.0


def _check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be uint8 (n, H, W, 1 or 3); got {images.dtype} {images.shape}."
        )


def inception_param_shapes() -> dict[str, tuple[int, ...]]:
    """'/'-joined param path -> shape for `InceptionV3` (independent of the input size)."""
    x = jax.ShapeDtypeStruct((1, MIN_INCEPTION_SIZE, MIN_INCEPTION_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(InceptionV3().init, jax.random.key(0), x)["params"]
    return {k: v.shape for k, v in traverse_util.flatten_dict(shapes, sep="/").items()}


def random_inception_params(seed: int = 0) -> dict:
    """Random InceptionV3 params for architecture checks: He-normal kernels, identity BN.

    Drawn with numpy (no per-parameter XLA compilation); not a substitute for weights.
    """
    rng = np.random.default_rng(seed)
    constants = {"mean": 0.0, "var": 1.0, "scale": 1.0, "bias": 0.0}
    flat = {}
    for key, shape in inception_param_shapes().items():
        leaf = key.rsplit("/", 1)[-1]
        if leaf == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            flat[key] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        else:
            flat[key] = np.full(shape, constants[leaf], np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


@functools.partial(jax.jit, static_argnames="input_size")
def inception_features(params: dict, images: jax.Array, input_size: int = INCEPTION_SIZE):
    """uint8 images (n, H, W, 1 or 3) -> pool3 features float32 (n, 2048)."""
    return InceptionV3().apply({"params": params}, preprocess_images(images, input_size))


def make_inception_extractor(params: dict, input_size: int = INCEPTION_SIZE) -> FeatureExtractor:
    """Extractor: uint8 (n, H, W, 1 or 3) -> pool3 features float32 (n, 2048) numpy.

    `input_size` other than 299 (at least 75) is for quick tests, not for FID.
    """
    if input_size < MIN_INCEPTION_SIZE:
        raise ValueError(f"input_size must be >= {MIN_INCEPTION_SIZE}; got {input_size}.")
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def extractor(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        _check_images(images)
        return np.asarray(inception_features(params, images, input_size=input_size))

    return extractor


def save_inception_params(params: dict, path: str) -> None:
    """Write params (or {'params': params}) to the .npz `path`, keys '/'-joined param paths."""
    params = params.get("params", params)
    flat = traverse_util.flatten_dict(params, sep="/")
    with open(path, "wb") as f:
        np.savez(f, **{key: np.asarray(value) for key, value in flat.items()})


def _check_param_shapes(flat: dict[str, np.ndarray], path: str) -> None:
    expected = inception_param_shapes()
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    wrong = sorted(k for k in set(expected) & set(flat) if flat[k].shape != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not hold InceptionV3 params: {len(missing)} missing (e.g. "
            f"{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} with wrong shapes (e.g. "
            f"{[(k, flat[k].shape, expected[k]) for k in wrong[:3]]})."
        )


def load_inception_params(path: str) -> dict:
    """Read an .npz written by `save_inception_params`; checks every key and shape."""
    with np.load(path) as data:
        flat = {key: data[key] for key in data.files}
    _check_param_shapes(flat, path)
    flat = {key: jnp.asarray(value, jnp.float32) for key, value in flat.items()}
    return traverse_util.unflatten_dict(flat, sep="/")


# ---------------------------------------------------------------------------------------
# Conversion of pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth)
# ---------------------------------------------------------------------------------------

# torch BatchNorm2d name -> FrozenBatchNorm param name.
_TORCH_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
# The 1008-way classifier (fc) and the auxiliary head are not used by pool3 features.
_TORCH_UNUSED_PREFIXES = ("fc.", "AuxLogits.")


def _flax_param_key(torch_key: str) -> str | None:
    """'Mixed_5b.branch1x1.conv.weight' -> 'Mixed_5b/branch1x1/conv/kernel'; '...bn.running_var'
    -> '.../bn/var'; None for entries pool3 does not use (fc, AuxLogits, num_batches_tracked)."""
    if torch_key.startswith(_TORCH_UNUSED_PREFIXES) or torch_key.endswith("num_batches_tracked"):
        return None
    parts = torch_key.split(".")
    layer, leaf = (parts[-2], parts[-1]) if len(parts) >= 3 else ("", "")
    if layer == "conv" and leaf == "weight":
        name = "kernel"
    elif layer == "bn" and leaf in _TORCH_BN_NAMES:
        name = _TORCH_BN_NAMES[leaf]
    else:
        raise ValueError(
            f"unexpected entry {torch_key!r} in the state dict: expected pytorch-fid's "
            "FID InceptionV3 entries '<block>.conv.weight' and '<block>.bn.{weight, bias, "
            "running_mean, running_var}' (plus fc.* and num_batches_tracked, ignored)."
        )
    return "/".join([*parts[:-1], name])


def convert_pytorch_fid_state_dict(state_dict) -> dict:
    """pytorch-fid's FID InceptionV3 state dict {name: array} -> Flax params of `InceptionV3`.

    Conv weights (O, I, kh, kw) -> kernels (kh, kw, I, O); BatchNorm weight, bias,
    running_mean, running_var -> scale, bias, mean, var (eps 1e-3 in both networks); fc.*,
    AuxLogits.* and num_batches_tracked are dropped. Every Flax param must be present with
    its shape (ValueError naming the first offenders otherwise).
    """
    flat = {}
    for torch_key, value in state_dict.items():
        key = _flax_param_key(torch_key)
        if key is not None:
            value = np.asarray(value, np.float32)
            flat[key] = value.transpose(2, 3, 1, 0) if key.endswith("/kernel") else value
    _check_param_shapes(flat, "the converted state dict")
    return traverse_util.unflatten_dict(flat, sep="/")


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict file (.pth) -> {name: float numpy array}; needs torch."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch weights file {path!r} not found.")
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"reading {path!r} needs PyTorch: pip install torch (the CPU build is enough)."
        ) from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds a {type(state).__name__}; expected a state dict.")
    return {k: v.detach().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert_pytorch_fid_weights(pth_path: str, npz_path: str) -> dict:
    """Convert pytorch-fid's `pt_inception-2015-12-05-*.pth` to the .npz that
    `load_inception_extractor` reads; returns the Flax params."""
    if not npz_path.endswith(".npz"):
        raise ValueError(f"output path must end in .npz; got {npz_path!r}.")
    params = convert_pytorch_fid_state_dict(load_torch_state_dict(pth_path))
    save_inception_params(params, npz_path)
    return params


_HOW_TO_PROVIDE = (
    "expected an .npz of InceptionV3 (FID variant, pool3 2048-d) Flax params whose keys are "
    "'/'-joined parameter paths, as written by interflow_jax.fid.save_inception_params "
    "(convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth once with `python -m "
    "interflow_jax.fid --convert PATH.pth --out PATH.npz`); pass that file's path to "
    "load_inception_extractor (--config.eval.fid_weights=PATH.npz)"
)


def load_inception_extractor(
    path: str | None, input_size: int = INCEPTION_SIZE
) -> tuple[FeatureExtractor | None, str]:
    """(extractor, description), or (None, why FID is skipped) when `path` is unset/missing.

    An existing file that is not a valid .npz of InceptionV3 params raises ValueError.
    """
    if not path:
        return None, f"FID skipped: no InceptionV3 weights file given; {_HOW_TO_PROVIDE}."
    if not os.path.isfile(path):
        return None, f"FID skipped: InceptionV3 weights file {path!r} not found; {_HOW_TO_PROVIDE}."
    if not path.endswith(".npz"):
        raise ValueError(f"InceptionV3 weights {path!r}: unsupported format; {_HOW_TO_PROVIDE}.")
    params = load_inception_params(path)
    extractor = make_inception_extractor(params, input_size)
    return extractor, f"FID with InceptionV3 pool3 features, weights from {path!r}."


def main(argv: list[str] | None = None) -> None:
    """`python -m interflow_jax.fid --convert PATH.pth --out PATH.npz`."""
    parser = argparse.ArgumentParser(
        prog="python -m interflow_jax.fid",
        description="Convert pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-"
        "6726825d.pth) to the .npz read by --config.eval.fid_weights.",
    )
    parser.add_argument("--convert", required=True, metavar="PATH.pth", help="pytorch-fid weights")
    parser.add_argument("--out", required=True, metavar="PATH.npz", help="where to write")
    args = parser.parse_args(argv)
    params = convert_pytorch_fid_weights(args.convert, args.out)
    count = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params))
    print(f"wrote {args.out}: InceptionV3 pool3 params, {count:,} numbers")


if __name__ == "__main__":
    main()
