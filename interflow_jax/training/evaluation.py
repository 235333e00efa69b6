"""Evaluate a trained 2-D flow: test NLL (exact or Hutchinson), samples, figures.

Writes into the workdir: metrics.json, samples.png, density.png, trajectories.png and
curves.png.
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from interflow_jax import flows, plotting
from interflow_jax.training import checkpoint, metrics_log, setup

TEST_KEY_OFFSET = 10**6  # test points come from fold_in(seed_key, this): never trained on
EXTENT = (-4.5, 4.5, -4.5, 4.5)


def test_points(config, problem, num_points: int):
    key = jax.random.fold_in(setup.seed_key(config), TEST_KEY_OFFSET)
    return problem.sample_data(key, num_points)


def test_nll(config, flow, params, x):
    """Mean NLL over x with its standard error (over points, plus probes when Hutchinson)."""
    start = time.perf_counter()
    key = jax.random.fold_in(setup.seed_key(config), TEST_KEY_OFFSET + 1)
    log_prob, probe_error, nfes = flows.log_prob_in_chunks(
        flow, params, x, config.eval.chunk_size, key=key
    )
    nll = -np.asarray(log_prob, dtype=np.float64)
    n = nll.size
    point_error = nll.std(ddof=1) / math.sqrt(n)
    probe_part = math.sqrt(float(np.sum(np.asarray(probe_error, np.float64) ** 2))) / n
    return {
        "test_nll": float(nll.mean()),
        "test_nll_stderr": math.sqrt(point_error**2 + probe_part**2),
        "test_nll_probe_stderr": probe_part,
        "nfe_per_solve": float(np.mean(nfes)),
        "num_test_points": n,
        "eval_seconds": time.perf_counter() - start,
    }, nll


def true_cross_entropy(problem, x, model_nll):
    """E[-log p(x)] over the same test points, and the paired gap of the model to it."""
    if problem.true_log_prob is None:
        return {}
    true_nll = -np.asarray(problem.true_log_prob(x), dtype=np.float64)
    gap = model_nll - true_nll
    return {
        "true_nll": float(true_nll.mean()),
        "true_nll_stderr": float(true_nll.std(ddof=1) / math.sqrt(true_nll.size)),
        "nll_gap": float(gap.mean()),
        "nll_gap_stderr": float(gap.std(ddof=1) / math.sqrt(gap.size)),
    }


def _grid(size: int):
    xs = np.linspace(EXTENT[0], EXTENT[1], size)
    ys = np.linspace(EXTENT[2], EXTENT[3], size)
    mesh = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return jnp.asarray(mesh, dtype=jnp.result_type(float))


def write_figures(config, workdir, problem, flow, field, params, true_nll=None):
    ev = config.eval
    key = jax.random.fold_in(setup.seed_key(config), TEST_KEY_OFFSET + 2)
    samples = flow.sample(params, key, ev.num_plot_samples).x
    data = test_points(config, problem, ev.num_plot_samples)
    plotting.plot_samples(samples, data, os.path.join(workdir, "samples.png"), EXTENT)
    x0 = problem.base.sample(jax.random.fold_in(key, 1), ev.num_trajectories)
    paths = flows.make_trajectories(field, setup.build_ode_options(ev))(
        params, x0, jnp.linspace(0.0, 1.0, 64, dtype=x0.dtype)
    )
    plotting.plot_trajectories(paths, os.path.join(workdir, "trajectories.png"), EXTENT)
    if problem.base.log_prob is not None:
        grid = _grid(ev.grid_size)
        log_prob, _, _ = flows.log_prob_in_chunks(flow, params, grid, ev.chunk_size)
        shape = (ev.grid_size, ev.grid_size)
        model = np.exp(np.asarray(log_prob)).reshape(shape)
        truth = None
        if problem.true_log_prob is not None:
            truth = np.exp(np.asarray(problem.true_log_prob(grid))).reshape(shape)
        plotting.plot_density(model, truth, EXTENT, os.path.join(workdir, "density.png"))
    records = metrics_log.read(workdir)
    plotting.plot_curves(records, os.path.join(workdir, "curves.png"), true_nll)


def restore_params(config, workdir, use_ema: bool):
    """Parameters of the latest checkpoint in `workdir` (EMA or raw)."""
    ckpt = checkpoint.Checkpointer(workdir)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train first.")
    state, _ = ckpt.restore(setup.abstract_state(config))
    ckpt.close()
    return state.ema_params if use_ema else state.params, int(state.step)


def evaluate(
    config,
    workdir: str,
    params=None,
    step: int | None = None,
    metrics_name: str = "metrics.json",
    figures: bool = True,
) -> dict:
    """Test NLL, samples and figures for the model in `workdir` (or the given params).

    Results go to `<workdir>/<metrics_name>`; figures are skipped with figures=False.
    """
    problem = setup.build_problem(config)
    _, field = setup.build_model(config)
    if params is None:
        params, step = restore_params(config, workdir, config.eval.use_ema)
    flow = setup.build_flow(config, field, problem.base)
    results = {"step": step, "divergence": config.eval.divergence, "solver": config.eval.solver}
    if problem.base.log_prob is not None:
        x = test_points(config, problem, config.eval.num_test_points)
        nll_metrics, nll = test_nll(config, flow, params, x)
        results.update(nll_metrics, **true_cross_entropy(problem, x, nll))
        logging.info("test NLL %.4f +- %.4f nats", results["test_nll"], results["test_nll_stderr"])
    if jax.process_index() == 0:
        checkpoint.write_json_atomic(os.path.join(workdir, metrics_name), results)
    if figures and jax.process_index() == 0:
        write_figures(config, workdir, problem, flow, field, params, results.get("true_nll"))
    return results
