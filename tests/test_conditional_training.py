"""Labels through the data paths, the training step, the configs, `evaluate` and `sample.py`
for class-conditional flows (PAPER section 9); end-to-end smoke runs are marked slow."""

import json
import os
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from experiments.configs import images as images_config
from experiments.configs import toy2d as toy2d_config
from interflow_jax.data import images, toy2d
from interflow_jax.training import conditional_eval, host_input, setup, sharding
from interflow_jax.training.loop import train_and_evaluate
from interflow_jax.training.step import make_multi_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------- data


def test_eight_gaussians_labels_are_the_components(x64):
    data = toy2d.get_dataset("8gaussians")
    key = jax.random.key(0)
    x, y = data.sample_labelled(key, 4000)
    np.testing.assert_array_equal(x, data.sample(key, 4000))
    assert data.num_classes == 8 and y.dtype == jnp.int32
    assert set(np.unique(np.asarray(y))) == set(range(8))
    per_class = jnp.stack([data.log_prob_given(x, jnp.full((4000,), k)) for k in range(8)])
    np.testing.assert_allclose(logsumexp(per_class, axis=0) - np.log(8), data.log_prob(x))
    # the component's centre is the nearest one for all but ~0.2% of the points
    nearest = jnp.argmin(jnp.sum((x[:, None] - toy2d.eight_gaussians_means()) ** 2, -1), -1)
    assert np.mean(np.asarray(nearest) == np.asarray(y)) > 0.99


def test_class_accuracy_of_true_and_shuffled_labels():
    problem = setup.build_problem(toy2d_config.get_config("8gaussians,conditional,smoke"))
    x, y = problem.sample_labelled(jax.random.key(1), 8000)
    y = np.asarray(y)
    assert conditional_eval.class_accuracy(problem, x, y) > 0.99
    shuffled = np.random.default_rng(0).permutation(y)
    assert abs(conditional_eval.class_accuracy(problem, x, shuffled) - 1 / 8) < 0.03


def test_digits_labels_are_the_scikit_learn_targets():
    from sklearn.datasets import load_digits

    train, train_labels, test, test_labels = images.digits_labelled_splits(3)
    plain_train, plain_test = images.digits_splits(3)
    np.testing.assert_array_equal(train, plain_train)
    np.testing.assert_array_equal(test, plain_test)
    digits = load_digits()
    lookup = {
        d.astype(np.uint8).tobytes(): t for d, t in zip(digits.images, digits.target, strict=True)
    }
    for pixels, label in zip(test[:50], test_labels[:50], strict=True):
        assert lookup[pixels[..., 0].tobytes()] == label
    assert train_labels.dtype == np.int32 and train_labels.shape == (1500,)


def test_tfds_labels_match_the_records(mock_tfds):
    source = images.TFDSImageSource("mnist", "train")
    records = source._records.__getitems__(list(range(len(source))))
    expected = np.array([int(r["label"]) for r in records])
    np.testing.assert_array_equal(source.labels[np.array([4, 0, 4, 2])], expected[[4, 0, 4, 2]])
    np.testing.assert_array_equal(source.labels[:], expected)
    assert len(source.labels) == len(source) and source.num_classes == 10


def test_tfds_problem_carries_train_and_test_labels(mock_tfds_with):
    config = images_config.get_config("mnist,conditional,smoke")
    with mock_tfds_with(12):
        problem = setup.build_problem(config)
        setup.check_labels(config, problem)
        train_labels = setup.split_labels(problem, "train")
        assert problem.num_classes == 10 and len(train_labels) == len(problem.finite.train)
        test = conditional_eval.test_labels(config, problem, 0)
    assert test.shape == (len(problem.finite.test),) and test.dtype == np.int32
    assert np.all((test >= 0) & (test < 10))


def test_host_batches_pair_examples_with_their_labels():
    examples = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    labels = (np.arange(40) % 7).astype(np.int32)
    mesh = sharding.make_mesh()
    reader = host_input.HostBatches(examples, 2, 8, 5, mesh, labels)
    try:
        x, y = reader.get(0)
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == (2, 8, 3) and y.shape == (2, 8)
        np.testing.assert_array_equal(y, x[..., 0].astype(np.int32) % 7)
        with pytest.raises(ValueError, match="3 labels for 40 training examples"):
            host_input.HostBatches(examples, 2, 8, 5, mesh, labels[:3])
    finally:
        reader.close()


class _Counter(NamedTuple):
    step: jax.Array
    total: jax.Array


@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_multi_step_slices_examples_and_labels_together(steps_per_call):
    def step(state, batch, key):
        del key
        total = state.total + jnp.sum(batch["x1"] * batch["y"])
        return _Counter(state.step + 1, total), {"loss": jnp.zeros(())}

    def batch_fn(key, data):
        del key
        return {"x1": data[0], "y": data[1]}

    x = jnp.arange(steps_per_call * 4, dtype=jnp.float32).reshape(steps_per_call, 4)
    y = jnp.arange(steps_per_call * 4).reshape(steps_per_call, 4) % 3
    multi = make_multi_step(step, batch_fn, jax.random.key(0), steps_per_call)
    state, _ = multi(_Counter(jnp.zeros((), jnp.int32), jnp.zeros(())), (x, y))
    assert int(state.step) == steps_per_call
    assert float(state.total) == float(jnp.sum(x * y))


# ----------------------------------------------------------------------------- configs


def test_conditional_configs_set_classes_and_label_dropout():
    toy = toy2d_config.get_config("8gaussians,conditional")
    assert toy.model.num_classes == 8 and toy.loss.p_uncond == 0.1
    assert 1.0 in toy.eval.guidance and 0.0 in toy.eval.guidance
    for name, classes in (("digits", 10), ("mnist", 10), ("cifar10", 10), ("imagenet32", 1000)):
        config = images_config.get_config(f"{name},conditional")
        assert config.model.num_classes == classes, name
    for plain in (toy2d_config.get_config("8gaussians"), images_config.get_config("digits")):
        assert "num_classes" not in plain.model and "p_uncond" not in plain.loss
    with pytest.raises(ValueError, match="labelled data set"):
        toy2d_config.get_config("checkerboard,conditional")


def test_folder_conditional_config_counts_the_class_folders(tmp_path):
    from PIL import Image

    for name in ("cats", "dogs", "owls"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / "a.png")
    config = images_config.get_config(f"folder,dir={tmp_path},conditional,smoke")
    assert config.model.num_classes == 3
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="one sub-folder per class"):
        images_config.get_config(f"folder,dir={tmp_path / 'flat'},conditional,smoke")


def test_check_labels_names_unlabelled_data_and_wrong_class_counts():
    config = toy2d_config.get_config("checkerboard,smoke")
    config.model.num_classes = 4
    with pytest.raises(ValueError, match="have no labels"):
        setup.check_labels(config, setup.build_problem(config))
    config = toy2d_config.get_config("8gaussians,conditional,smoke")
    config.model.num_classes = 5
    with pytest.raises(ValueError, match="have 8 classes"):
        setup.check_labels(config, setup.build_problem(config))
    config.model.num_classes = -1
    with pytest.raises(ValueError, match="model.num_classes must be an integer"):
        setup.num_classes(config)
    digits = images_config.get_config("digits,conditional,smoke")
    digits.model.num_classes = 5
    unstated = setup.build_problem(digits)._replace(num_classes=0)  # labels 0..9 in the splits
    with pytest.raises(ValueError, match="run from 0 to 9; they must lie in 0..4"):
        setup.check_labels(digits, unstated)


def test_test_labels_belong_to_the_test_points():
    from interflow_jax.training import evaluation

    config = toy2d_config.get_config("8gaussians,conditional,smoke")
    problem = setup.build_problem(config)
    x = evaluation.test_points(config, problem, 500)
    labels = conditional_eval.test_labels(config, problem, 500)
    assert conditional_eval.class_accuracy(problem, x, labels) > 0.98
    digits = images_config.get_config("digits,conditional,smoke")
    problem = setup.build_problem(digits)
    assert conditional_eval.test_labels(digits, problem, 16).shape == (16,)
    assert conditional_eval.test_labels(digits, problem, 0).shape == (297,)


def test_requested_labels_and_output_paths(tmp_path):
    np.testing.assert_array_equal(
        conditional_eval.requested_labels("all", 3, 2), [0, 0, 1, 1, 2, 2]
    )
    np.testing.assert_array_equal(conditional_eval.requested_labels("2", 3, 2), [2, 2])
    for bad in ("3", "-1", "two"):
        with pytest.raises(ValueError, match="class in 0..2"):
            conditional_eval.requested_labels(bad, 3, 2)
    with pytest.raises(ValueError, match="unconditional"):
        conditional_eval.requested_labels("1", 0, 2)
    with pytest.raises(ValueError, match=r"\.npz"):
        conditional_eval.check_output_path(str(tmp_path / "out.npy"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        conditional_eval.check_output_path(str(tmp_path / "missing" / "out.npz"))


def test_data_units_of_image_samples_are_their_levels():
    problem = setup.build_problem(images_config.get_config("digits,conditional,smoke"))
    levels = np.arange(17, dtype=np.uint8).reshape(1, 17, 1, 1)
    z = images.dequantize(jnp.asarray(levels), jax.random.key(0), 17)
    np.testing.assert_array_equal(conditional_eval.to_data_units(problem, z), levels)


# ----------------------------------------------------------------------------- end to end


def _run(args, timeout=600):
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    return result


@pytest.mark.slow
def test_eight_gaussians_conditional_smoke_run_and_guided_sampling(tmp_path):
    workdir = str(tmp_path / "run")
    config = toy2d_config.get_config("8gaussians,conditional,smoke")
    results = train_and_evaluate(config, workdir)
    for name in ("conditional_test_nll", "conditional_nll_gap", "guided_accuracy_w1"):
        assert np.isfinite(results[name]), name
    for w in ("0", "1", "2", "4"):
        assert os.path.exists(os.path.join(workdir, f"samples_guided_w{w}.png"))
    output = str(tmp_path / "guided.npz")
    sample = os.path.join(ROOT, "experiments", "sample.py")
    args = [sample, f"--workdir={workdir}", "--label=all", "--guidance=2", "--num_samples=5"]
    result = _run([*args, f"--output={output}"])
    assert result.returncode == 0, result.stderr[-3000:]
    saved = np.load(output)
    assert saved["samples"].shape == (40, 2) and float(saved["guidance"]) == 2.0
    np.testing.assert_array_equal(saved["labels"], np.repeat(np.arange(8), 5))
    assert os.path.exists(str(tmp_path / "guided.png"))
    bad = _run([sample, f"--workdir={workdir}", "--label=8"])
    assert bad.returncode != 0 and "class in 0..7" in bad.stderr


@pytest.mark.slow
def test_digits_conditional_smoke_run_reports_both_likelihoods(tmp_path):
    workdir = str(tmp_path / "run")
    config = images_config.get_config("digits,conditional,smoke")
    config.eval.consistency_check = True
    results = train_and_evaluate(config, workdir)
    names = ("test_bits_per_dim", "conditional_test_bits_per_dim", "conditional_minus_null_nll")
    for name in (*names, "consistency_log_mixture_minus_null"):
        assert np.isfinite(results[name]), name
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f)["conditional_test_nll"] == results["conditional_test_nll"]
    assert os.path.exists(os.path.join(workdir, "samples_guided_w2.png"))
