"""Tests for the Frechet distance, FID plumbing and the InceptionV3 weight file round trip."""

import math

import numpy as np
import pytest
import scipy.linalg
from flax import traverse_util

from interflow_jax import fid


def _random_spd(rng, k, jitter=0.1):
    a = rng.normal(size=(k, k))
    return a @ a.T / k + jitter * np.eye(k)


def _sqrtm_reference(mean1, cov1, mean2, cov2):
    """The textbook formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(cov1 @ cov2).real
    return np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * covmean)


def test_diagonal_covariances_match_closed_form():
    """For commuting (diagonal) covariances, tr(...) = sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(m1, np.diag(a), m2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_one_dimensional_gaussians():
    """W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2."""
    got = fid.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), [[9.0]])
    assert got == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_random_spd_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    k = 8
    stats = (rng.normal(size=k), _random_spd(rng, k), rng.normal(size=k), _random_spd(rng, k))
    got = fid.frechet_distance(*stats)
    assert got == pytest.approx(_sqrtm_reference(*stats), rel=1e-9)


def test_identical_statistics_give_zero_and_distance_is_symmetric():
    rng = np.random.default_rng(2)
    m1, c1, m2, c2 = (
        rng.normal(size=5),
        _random_spd(rng, 5),
        rng.normal(size=5),
        _random_spd(rng, 5),
    )
    assert fid.frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-10)
    d12, d21 = fid.frechet_distance(m1, c1, m2, c2), fid.frechet_distance(m2, c2, m1, c1)
    assert d12 > 0 and d12 == pytest.approx(d21, rel=1e-10)


def test_singular_covariances_from_few_samples():
    """n < k samples give rank-deficient covariances; the result stays finite and >= 0."""
    rng = np.random.default_rng(3)
    features_a, features_b = rng.normal(size=(5, 10)), rng.normal(size=(6, 10)) + 1.0
    assert fid.fid_from_features(features_a, features_a) == pytest.approx(0.0, abs=1e-9)
    value = fid.fid_from_features(features_a, features_b)
    assert math.isfinite(value) and value > 0


def test_gaussian_statistics_on_explicit_and_sampled_features():
    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    mean, cov = fid.gaussian_statistics(square)
    np.testing.assert_allclose(mean, [1.0, 1.0])
    np.testing.assert_allclose(cov, np.eye(2) * 4.0 / 3.0)
    rng = np.random.default_rng(4)
    true_cov = np.array([[2.0, 0.6], [0.6, 0.5]])
    samples = rng.multivariate_normal([1.0, -1.0], true_cov, size=200_000)
    mean, cov = fid.gaussian_statistics(samples)
    np.testing.assert_allclose(mean, [1.0, -1.0], atol=0.02)
    np.testing.assert_allclose(cov, true_cov, atol=0.02)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fid.gaussian_statistics(np.zeros((1, 3))), "n >= 2"),
        (lambda: fid.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "(k, k)"),
        (lambda: fid.fid_from_features(np.zeros((4, 2)), np.zeros((4, 3))), "equal k"),
        (lambda: fid.extract_features(lambda x: x, np.zeros((2, 1)), 0), "batch_size"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _mean_colour(images):
    """A toy extractor: per-image mean of each channel, (n, C)."""
    return images.reshape(images.shape[0], -1, images.shape[-1]).mean(axis=1)


def test_compute_fid_with_a_toy_extractor_is_batch_size_independent():
    rng = np.random.default_rng(5)
    images_a = rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    images_b = rng.integers(0, 200, (17, 4, 4, 3), dtype=np.uint8)
    expected = fid.fid_from_features(_mean_colour(images_a), _mean_colour(images_b))
    for batch_size in (1, 7, 64):
        got = fid.compute_fid(_mean_colour, images_a, images_b, batch_size)
        assert got == pytest.approx(expected, rel=1e-12)
    assert fid.compute_fid(_mean_colour, images_a, images_a, 6) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("path", [None, ""])
def test_no_weights_path_skips_fid_with_a_reason(path):
    extractor, reason = fid.load_inception_extractor(path)
    assert extractor is None
    assert "FID skipped" in reason and ".npz" in reason and "save_inception_params" in reason


def test_missing_weights_file_skips_fid_with_a_reason(tmp_path):
    path = str(tmp_path / "inception.npz")
    extractor, reason = fid.load_inception_extractor(path)
    assert extractor is None
    assert "FID skipped" in reason and path in reason and "not found" in reason


def test_existing_file_of_the_wrong_kind_raises(tmp_path):
    wrong_format = tmp_path / "inception.pt"
    wrong_format.write_bytes(b"not weights")
    with pytest.raises(ValueError, match="unsupported format"):
        fid.load_inception_extractor(str(wrong_format))
    wrong_keys = tmp_path / "other.npz"
    np.savez(wrong_keys, **{"Dense_0/kernel": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="470 missing .* 1 unexpected"):
        fid.load_inception_extractor(str(wrong_keys))


def test_inception_trunk_matches_torchvision_parameter_count():
    """torchvision's inception_v3 has 27,161,264 parameters; without its fc layer
    (2,049,000) and auxiliary head (3,326,696) that leaves 21,785,568. Batch-norm
    running statistics are buffers there, parameters (mean, var) here."""
    shapes = fid.inception_param_shapes()
    trainable = [s for k, s in shapes.items() if not k.endswith(("/mean", "/var"))]
    assert sum(math.prod(s) for s in trainable) == 21_785_568


@pytest.mark.slow
def test_inception_features_shape_and_npz_round_trip(tmp_path):
    """Random weights -> .npz -> load_inception_extractor -> (n, 2048) features at 299x299."""
    params = fid.random_inception_params(seed=0)
    path = str(tmp_path / "inception.npz")
    fid.save_inception_params(params, path)
    extractor, reason = fid.load_inception_extractor(path)
    assert extractor is not None and path in reason
    images = np.random.default_rng(6).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    features = extractor(images)
    assert features.shape == (2, fid.FEATURE_DIM)
    assert np.all(np.isfinite(features)) and np.std(features) > 0
    direct = fid.make_inception_extractor(params)(images)
    np.testing.assert_array_equal(features, direct)
    grey = extractor(images[..., :1])
    np.testing.assert_array_equal(grey, extractor(np.repeat(images[..., :1], 3, axis=-1)))
    with pytest.raises(ValueError, match="uint8"):
        extractor(images.astype(np.float32))


# ---------------------------------------------------------------------------------------
# Conversion of pytorch-fid's state dict (no torch needed: arrays in torch's layout)
# ---------------------------------------------------------------------------------------

_TORCH_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _random_flax_params(seed):
    """Random values for every InceptionV3 param (BN statistics too), keyed by '/' paths."""
    rng = np.random.default_rng(seed)
    shapes = fid.inception_param_shapes()
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def _as_torch_state_dict(flat_params):
    """Flax params -> pytorch-fid's names and layouts, with the entries it must drop."""
    state = {"fc.weight": np.zeros((1008, 2048)), "fc.bias": np.zeros(1008)}
    for key, value in flat_params.items():
        *path, leaf = key.split("/")
        if leaf == "kernel":
            state[".".join([*path, "weight"])] = value.transpose(3, 2, 0, 1)
        else:
            state[".".join([*path, _TORCH_BN[leaf]])] = value
            state[".".join([*path, "num_batches_tracked"])] = np.array(0)
    return state


def test_convert_state_dict_maps_names_and_transposes_kernels():
    flat = _random_flax_params(seed=7)
    state = _as_torch_state_dict(flat)
    kernel = state["Mixed_6b.branch7x7_2.conv.weight"]
    assert kernel.shape == (128, 128, 1, 7)  # (O, I, kh, kw): the 1x7 conv of Mixed_6b
    params = fid.convert_pytorch_fid_state_dict(state)
    converted = traverse_util.flatten_dict(params, sep="/")
    assert converted.keys() == flat.keys()
    for key, value in flat.items():
        np.testing.assert_array_equal(converted[key], value, err_msg=key)
    np.testing.assert_array_equal(
        params["Mixed_7c"]["branch_pool"]["bn"]["var"], state["Mixed_7c.branch_pool.bn.running_var"]
    )


def test_convert_state_dict_rejects_unknown_missing_and_misshapen_entries():
    state = _as_torch_state_dict(_random_flax_params(seed=8))
    with pytest.raises(ValueError, match="unexpected entry 'Mixed_5b.extra.weight'"):
        fid.convert_pytorch_fid_state_dict({**state, "Mixed_5b.extra.weight": np.zeros(3)})
    missing = {k: v for k, v in state.items() if k != "Conv2d_1a_3x3.bn.running_mean"}
    with pytest.raises(ValueError, match="1 missing .*Conv2d_1a_3x3/bn/mean"):
        fid.convert_pytorch_fid_state_dict(missing)
    misshapen = {**state, "Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 5, 5))}
    with pytest.raises(ValueError, match="1 with wrong shapes"):
        fid.convert_pytorch_fid_state_dict(misshapen)


def test_convert_command_checks_its_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        fid.main(["--convert", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "w.npz")])
    with pytest.raises(ValueError, match="must end in .npz"):
        fid.main(["--convert", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "w.bin")])


# ---------------------------------------------------------------------------------------
# Agreement with pytorch-fid (the reference network behind published FIDs)
# ---------------------------------------------------------------------------------------


def _import_pytorch_fid():
    """(torch, pytorch_fid.inception, pytorch_fid.fid_score), or skip with the reason."""
    try:
        import torch
        from pytorch_fid import fid_score, inception
    except (ImportError, RuntimeError) as error:  # torchvision beside a CPU torch: RuntimeError
        pytest.skip(f"pytorch-fid reference not importable ({error!r}); pip install '.[fid]'")
    return torch, inception, fid_score


def _random_torch_state_dict(torch, torchvision, seed):
    """A random state dict of the FID InceptionV3's names and shapes (torchvision's
    inception_v3 with 1008 classes and no auxiliary head has the same entries): He-normal
    convolutions, non-trivial BatchNorm statistics."""
    template = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    ).state_dict()
    gen = torch.Generator().manual_seed(seed)

    def draw(key, value):
        if key.endswith("conv.weight"):
            return torch.randn(value.shape, generator=gen) * (2.0 / value[0].numel()) ** 0.5
        if key.endswith(("bn.weight", "running_var")):
            return 0.5 + torch.rand(value.shape, generator=gen)
        if key.endswith(("bn.bias", "running_mean")):
            return 0.1 * torch.randn(value.shape, generator=gen)
        return value  # fc, num_batches_tracked: not used by pool3

    return {key: draw(key, value) for key, value in template.items()}


def _write_pngs(images, directory):
    from PIL import Image

    directory.mkdir()
    paths = [str(directory / f"{i:03d}.png") for i in range(len(images))]
    for image, path in zip(images, paths, strict=True):
        Image.fromarray(image).save(path)
    return paths


def _reference_features(fid_score, model, paths):
    """pytorch-fid's own loader (PIL, ToTensor), resize, scaling and network -> (n, 2048)."""
    return fid_score.get_activations(paths, model, len(paths), 2048, "cpu", num_workers=0)


def _reference_fid(fid_score, features_a, features_b):
    """pytorch-fid's statistics (np.mean, np.cov) and Frechet distance (scipy sqrtm)."""
    stats = [(np.mean(f, axis=0), np.cov(f, rowvar=False)) for f in (features_a, features_b)]
    return fid_score.calculate_frechet_distance(*stats[0], *stats[1])


def _test_image_sets(n):
    """Two clearly different sets of n uint8 32x32x3 images: white noise, and smooth darker
    images (4x4 noise upsampled by 8)."""
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    coarse = rng.integers(0, 160, (n, 4, 4, 3), dtype=np.uint8)
    smooth = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    return noise, smooth


def _relative_error(ours, reference):
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


@pytest.mark.slow
def test_features_and_fid_agree_with_pytorch_fid(tmp_path, monkeypatch):
    """pytorch-fid's InceptionV3([3]) with random weights (its weight loader patched to
    return them; any download attempt fails the test) against ours on the converted
    weights: the pool3 features of the same images (PNG files read by pytorch-fid's loader,
    32x32 upsampled and 341x403 downsampled to 299) and the FID between two sets."""
    torch, inception, fid_score = _import_pytorch_fid()
    import torchvision

    def no_download(*args, **kwargs):
        raise AssertionError(f"pytorch-fid tried to download {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    state = _random_torch_state_dict(torch, torchvision, seed=0)
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: state)
    model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    torch.save(state, tmp_path / "pt_inception-random.pth")
    npz = str(tmp_path / "inception.npz")
    fid.main(["--convert", str(tmp_path / "pt_inception-random.pth"), "--out", npz])
    extractor, _ = fid.load_inception_extractor(npz)

    large = np.random.default_rng(12).integers(0, 256, (2, 341, 403, 3), dtype=np.uint8)
    images_a, images_b = _test_image_sets(48)
    ours, reference = {}, {}
    for name, images in (("large", large), ("a", images_a), ("b", images_b)):
        paths = _write_pngs(images, tmp_path / name)
        with torch.no_grad():
            reference[name] = _reference_features(fid_score, model, paths)
        ours[name] = fid.extract_features(extractor, images, batch_size=16)
        max_abs = float(np.max(np.abs(ours[name] - reference[name])))
        error = _relative_error(ours[name], reference[name])
        print(f"features {name}: max abs diff {max_abs:.3g}, relative error {error:.3g}")
        assert error < 1e-5, (name, max_abs, error)

    ours_fid = fid.fid_from_features(ours["a"], ours["b"])  # = fid.compute_fid on the images
    reference_fid = _reference_fid(fid_score, reference["a"], reference["b"])
    difference = abs(ours_fid - reference_fid) / reference_fid
    print(f"FID ours {ours_fid:.9g}, pytorch-fid {reference_fid:.9g}, relative {difference:.2g}")
    assert ours_fid == pytest.approx(reference_fid, rel=1e-3)
