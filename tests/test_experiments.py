"""End-to-end runs of the binaries, kill/resume, non-finite stops and bad configs."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import toy2d as toy2d_config
from interflow_jax.training import checkpoint, setup
from interflow_jax.training.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "toy2d.py")


def _train_command(workdir, arg="checkerboard,smoke", *overrides):
    return [
        sys.executable,
        os.path.join(ROOT, "experiments", "train.py"),
        f"--config={CONFIG}:{arg}",
        f"--workdir={workdir}",
        *overrides,
    ]


def _run(command, timeout=300):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# A few steps and a two-step Euler evaluation: every binary runs, in seconds of compute.
TINY = (
    "--config.training.num_steps=20",
    "--config.eval.solver=euler",
    "--config.eval.num_steps=2",
    "--config.eval.num_test_points=64",
    "--config.eval.num_validation_points=0",
    "--config.eval.num_plot_samples=64",
    "--config.eval.num_energy_points=64",
    "--config.eval.num_path_length_pairs=64",
    "--config.eval.grid_size=8",
    "--config.eval.num_trajectories=4",
)


def test_each_binary_runs_a_few_steps(tmp_path):
    """train.py, evaluate.py and sample.py on a 20-step checkerboard run."""
    workdir = str(tmp_path / "run")
    _run(_train_command(workdir, "checkerboard,smoke", *TINY))
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 20 and np.isfinite(metrics["test_nll"])
    assert os.path.exists(os.path.join(workdir, "samples.png"))
    evaluate = os.path.join(ROOT, "experiments", "evaluate.py")
    _run([sys.executable, evaluate, f"--workdir={workdir}", "--nofigures", "--metrics_name=m.json"])
    with open(os.path.join(workdir, "m.json")) as f:
        assert json.load(f)["test_nll"] == pytest.approx(metrics["test_nll"], abs=1e-4)
    sample = os.path.join(ROOT, "experiments", "sample.py")
    _run([sys.executable, sample, f"--workdir={workdir}", "--num_samples=32"])
    samples = np.load(os.path.join(workdir, "samples_ode.npy"))
    assert samples.shape == (32, 2) and np.all(np.isfinite(samples))


@pytest.mark.slow
def test_train_and_evaluate_binaries_end_to_end(tmp_path):
    workdir = str(tmp_path / "run")
    _run(_train_command(workdir))
    for name in (
        "metrics.json",
        "metrics.jsonl",
        "samples.png",
        "density.png",
        "trajectories.png",
        "curves.png",
        "config.json",
    ):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert np.isfinite(metrics["test_nll"]) and metrics["nfe_per_solve"] > 0
    assert abs(metrics["true_nll"] - np.log(32)) < 1e-5
    out = _run(
        [sys.executable, os.path.join(ROOT, "experiments", "evaluate.py"), f"--workdir={workdir}"]
    )
    again = json.loads(out.stdout[out.stdout.index("{") :])
    assert again["test_nll"] == pytest.approx(metrics["test_nll"], abs=1e-4)


def _final_state(workdir, arg):
    config = toy2d_config.get_config(arg)
    ckpt = checkpoint.Checkpointer(workdir)
    state, _ = ckpt.restore(setup.abstract_state(config))
    ckpt.close()
    return state


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    arg = "checkerboard,smoke"
    overrides = ("--config.training.num_steps=600", "--config.training.checkpoint_every=20")
    reference = str(tmp_path / "reference")
    _run(_train_command(reference, arg, *overrides))

    interrupted = str(tmp_path / "interrupted")
    process = subprocess.Popen(
        _train_command(interrupted, arg, *overrides),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = os.path.join(interrupted, "checkpoints", "40")
    deadline = time.time() + 240
    while not os.path.isdir(first) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = checkpoint.Checkpointer(interrupted).latest_step()
    assert killed_at is not None and killed_at < 600
    _run(_train_command(interrupted, arg, *overrides))

    config_arg = arg
    a = _final_state(reference, config_arg)
    b = _final_state(interrupted, config_arg)
    assert int(a.step) == int(b.step) == 600
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    with (
        open(os.path.join(reference, "metrics.json")) as f,
        open(os.path.join(interrupted, "metrics.json")) as g,
    ):
        assert json.load(f)["test_nll"] == json.load(g)["test_nll"]


def _smoke_config():
    config = toy2d_config.get_config("checkerboard,smoke")
    config.unlock()
    return config


@pytest.mark.slow
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path)
    config = _smoke_config()
    train_and_evaluate(config, workdir)  # a good run to step 40, checkpointed
    good = _final_state_from(config, workdir)
    diverging = _smoke_config()
    diverging.optimizer.learning_rate = 1e30
    diverging.optimizer.grad_clip_norm = 1e30
    diverging.training.update(num_steps=400, checkpoint_every=10, log_every=10)
    with pytest.raises(FloatingPointError, match=r"Non-finite loss or gradient at step \d+"):
        train_and_evaluate(diverging, workdir)
    ckpt = checkpoint.Checkpointer(workdir)
    assert ckpt.latest_step() == 40
    ckpt.close()
    kept = _final_state_from(config, workdir)
    for x, y in zip(jax.tree_util.tree_leaves(good), jax.tree_util.tree_leaves(kept), strict=True):
        np.testing.assert_array_equal(x, y)


def _final_state_from(config, workdir):
    ckpt = checkpoint.Checkpointer(workdir)
    state, _ = ckpt.restore(setup.abstract_state(config))
    ckpt.close()
    return state


@pytest.mark.parametrize(
    "path, value, match",
    [
        ("training.batch_size", 100, "batch_size=100"),
        ("training.log_every", 15, "log_every=15"),
        ("data.name", "swissroll", "'swissroll'"),
        ("interpolant", "cubic", "'cubic'"),
        ("eval.solver", "rk45", "'rk45'"),
        ("optimizer.learning_rate", -1.0, "learning_rate"),
        ("loss.estimator", "mse", "'mse'"),
    ],
)
def test_bad_config_values_raise(tmp_path, path, value, match):
    config = _smoke_config()
    section, _, field = path.rpartition(".")
    target = config[section] if section else config
    target[field] = value
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_optimal_interpolant_sde_and_sample_binaries(tmp_path):
    workdir = str(tmp_path / "oi")
    config = os.path.join(ROOT, "experiments", "configs", "optimal_interpolant.py")
    _run(
        [
            sys.executable,
            os.path.join(ROOT, "experiments", "train.py"),
            f"--config={config}:gaussian,smoke",
            f"--workdir={workdir}",
            "--config.eval.sde.enabled=True",
        ]
    )
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["w2_squared"] == pytest.approx(5.5)
    assert metrics["path_length_exact_linear"] > metrics["w2_squared"]
    assert metrics["path_length_exact_trigonometric"] > metrics["path_length_exact_linear"]
    assert np.isfinite(metrics["energy_distance_sde"]) and np.isfinite(
        metrics["energy_distance_ode"]
    )
    for name in ("interpolant.png", "path_length.png", "samples_sde.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    _run(
        [
            sys.executable,
            os.path.join(ROOT, "experiments", "sample.py"),
            f"--workdir={workdir}",
            "--num_samples=200",
            "--sde",
            "--sde_steps=10",
            "--t_end=0.9",
        ]
    )
    samples = np.load(os.path.join(workdir, "samples_sde.npy"))
    assert samples.shape == (200, 2) and np.all(np.isfinite(samples))


@pytest.mark.slow
def test_mixture_benchmark_smoke_run_reports_gap_to_truth(tmp_path):
    from experiments.configs import mixture as mixture_config

    results = train_and_evaluate(mixture_config.get_config("6,smoke"), str(tmp_path))
    assert results["num_test_points"] == 600
    assert np.isfinite(results["nll_gap"]) and results["nll_gap_stderr"] > 0
    assert results["true_nll"] == pytest.approx(results["test_nll"] - results["nll_gap"])
    assert os.path.exists(os.path.join(str(tmp_path), "samples.png"))
