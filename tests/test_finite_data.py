"""Finite data sets read on the host: epoch batches, exact resume, best-validation
selection, tabular end to end, the evaluator on an exactly known model in d = 21."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import mixture as mixture_config
from experiments.configs import tabular as tabular_config
from interflow_jax import densities, flows, gaussian, interpolants
from interflow_jax.training import best, checkpoint, evaluation, metrics_log, setup
from interflow_jax.training.loop import train_and_evaluate


def _finite_mixture_config():
    config = mixture_config.get_config("6,smoke,train=2000")
    config.unlock()
    config.training.update(num_steps=40, checkpoint_every=20, eval_every=20)
    return config


def _state(config, workdir, name="checkpoints"):
    ckpt = checkpoint.Checkpointer(workdir, name=name)
    state, _ = ckpt.restore(setup.abstract_state(config))
    ckpt.close()
    return state


@pytest.mark.slow
def test_finite_data_resume_matches_uninterrupted_run(tmp_path):
    config = _finite_mixture_config()
    reference, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    train_and_evaluate(config, reference)
    train_and_evaluate(config, resumed)
    # as if killed right after the step-20 save: drop what came later, run again
    shutil.rmtree(os.path.join(resumed, "checkpoints", "40"))
    shutil.rmtree(os.path.join(resumed, best.BEST_DIR))
    train_and_evaluate(config, resumed)
    a, b = _state(config, reference), _state(config, resumed)
    assert int(a.step) == int(b.step) == 40
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_best_checkpoint_keeps_the_lowest_validation_nll(tmp_path):
    config = _finite_mixture_config()
    state = jax.jit(setup.make_init_state(config, (6,)))()
    keeper = best.BestCheckpoint(str(tmp_path))
    saved = [keeper.offer(s, v, state.replace(step=s), {}) for s, v in ((10, 3.0), (20, 2.0))]
    saved.append(keeper.offer(30, 2.5, state.replace(step=30), {}))
    saved.append(keeper.offer(40, 2.0, state.replace(step=40), {}))  # a tie is no gain
    keeper.close()
    assert saved == [True, True, False, False]
    again = best.BestCheckpoint(str(tmp_path))
    assert again.validation_nll == 2.0 and again.ckpt.latest_step() == 20
    again.close()


@pytest.mark.slow
def test_evaluation_uses_the_best_validation_checkpoint(tmp_path):
    config = _finite_mixture_config()
    workdir = str(tmp_path)
    results = train_and_evaluate(config, workdir)
    assert results["selected_checkpoint"] == "best validation"
    records = [r for r in metrics_log.read(workdir) if "validation_nll" in r]
    best_step = min(records, key=lambda r: r["validation_nll"])["step"]
    assert results["step"] == best_step
    config.eval.select_best = False
    latest = evaluation.evaluate(config, workdir, metrics_name="latest.json", figures=False)
    assert latest["selected_checkpoint"] == "latest" and latest["step"] == 40


@pytest.mark.slow
def test_tabular_training_end_to_end_on_a_synthetic_release(tmp_path):
    root = tmp_path / "data"
    (root / "miniboone").mkdir(parents=True)
    np.save(root / "miniboone" / "data.npy", np.random.default_rng(0).normal(size=(400, 43)))
    config = tabular_config.get_config(f"miniboone,smoke,dir={root}")
    config.unlock()
    config.eval.hutchinson_check_probes = 2
    results = train_and_evaluate(config, str(tmp_path / "run"))
    assert results["num_test_points"] == 40  # the whole test split: int(0.1 * 400)
    assert np.isfinite(results["test_nll"]) and results["nfe_per_solve"] > 0
    assert np.isfinite(results["hutchinson_minus_exact"])
    assert "true_nll" not in results  # no exact density for real data


def test_tabular_config_needs_a_known_name():
    with pytest.raises(ValueError, match="tabular config needs one of"):
        tabular_config.get_config("powerr")


def test_evaluator_matches_the_exact_gaussian_model_in_21_dimensions(x64):
    d = 21
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(d, d)) / np.sqrt(d)
    mean = jnp.asarray(rng.normal(size=d))
    cov = jnp.asarray(factor @ factor.T + 0.3 * np.eye(d))
    field = gaussian.make_gaussian_velocity(interpolants.TRIGONOMETRIC)
    options = flows.ODEOptions(rtol=1e-9, atol=1e-9)
    flow = flows.make_flow(field, densities.standard_gaussian((d,)), options)
    x = jax.random.multivariate_normal(jax.random.key(1), mean, cov, (300,))
    config = tabular_config.get_config("hepmass,smoke")
    config.unlock()
    config.eval.chunk_size = 128  # three chunks, the last one partial
    result, nll = evaluation.test_nll(config, flow, {"mean": mean, "cov": cov}, x)
    exact = -np.asarray(gaussian.gaussian_log_prob(x, mean, cov))
    np.testing.assert_allclose(nll, exact, atol=1e-4, rtol=0)
    assert abs(result["test_nll"] - exact.mean()) < 1e-4
    assert result["num_test_points"] == 300 and result["nfe_per_solve"] > 0
