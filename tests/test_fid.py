"""Tests for the Frechet distance, FID plumbing and the InceptionV3 weight file round trip."""

import math

import numpy as np
import pytest
import scipy.linalg

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
