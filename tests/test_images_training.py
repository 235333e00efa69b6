"""Image configs end to end: train, checkpoint, resume, bits/dim, grids; digits offline,
the TFDS data sets on mocked TFDS data (random images, no files, no TensorFlow)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments.configs import images as images_config
from interflow_jax.training import checkpoint, setup
from interflow_jax.training.loop import train_and_evaluate


def _state(config, workdir):
    ckpt = checkpoint.Checkpointer(workdir)
    state, _ = ckpt.restore(setup.abstract_state(config))
    ckpt.close()
    return state


def _train_resume_and_check(config, workdir, resume=True):
    """Train the smoke run, then (resume) drop its last checkpoint and run again: the
    resumed run must end in the same state; the evaluation writes bits/dim and grids."""
    results = train_and_evaluate(config, workdir)
    if resume:
        reference = _state(config, workdir)
        shutil.rmtree(os.path.join(workdir, "checkpoints", str(config.training.num_steps)))
        resumed_results = train_and_evaluate(config, workdir)
        resumed = _state(config, workdir)
        for a, b in zip(
            jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(resumed), strict=True
        ):
            np.testing.assert_array_equal(a, b)
        assert resumed_results["test_bits_per_dim"] == results["test_bits_per_dim"]
    for name in ("samples.png", "data.png", "trajectories.png", "samples_step10.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "metrics.json")) as f:
        saved = json.load(f)
    assert np.isfinite(saved["test_bits_per_dim"]) and saved["nfe_per_solve"] > 0
    return saved


@pytest.mark.slow
def test_digits_smoke_end_to_end(tmp_path):
    config = images_config.get_config("digits,smoke")
    results = _train_resume_and_check(config, str(tmp_path))
    assert results["num_levels"] == 17 and results["num_test_points"] == 16
    # an untrained field is ~0: the flow is the base N(0, I), far worse than uniform
    assert results["test_bits_per_dim"] > np.log2(17)
    assert np.isfinite(results["hutchinson_minus_exact"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagenet32", "flowers128"])
def test_tfds_image_configs_smoke_end_to_end(name, tmp_path, mock_tfds_with):
    """Each TFDS config trains and evaluates; resume (the same code for every data set,
    on the same smoke U-Net) is checked on digits above and on cifar10 here."""
    config = images_config.get_config(f"{name},smoke")
    with mock_tfds_with(32):
        results = _train_resume_and_check(config, str(tmp_path), resume=name == "cifar10")
    assert results["num_levels"] == 256 and results["num_test_points"] == 16
    assert results["divergence"] == "hutchinson"
    assert results["fid_skipped"].startswith("FID skipped: no InceptionV3 weights file")


def test_unknown_image_config_name():
    with pytest.raises(ValueError, match=r"unknown config argument\(s\) \['cifar100'\]"):
        images_config.get_config("cifar100")
    with pytest.raises(ValueError, match="images config needs one of"):
        images_config.get_config("smoke")
    with pytest.raises(ValueError, match=r"\['sise='\]"):
        images_config.get_config("folder,dir=/tmp,sise=16")
