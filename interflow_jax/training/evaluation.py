"""Evaluate a trained flow: the numbers. Test NLL (exact or Hutchinson) with the gap to the
true cross-entropy or bits/dim, path length, sample quality (energy distance) and FID.

`evaluate` writes `<workdir>/metrics.json` and hands the pictures to `figures.py`. Every
process computes; process 0 writes the files.
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from interflow_jax import (
    fid,
    flows,
    gaussian,
    interpolants,
    learnable,
    losses,
    sample_quality,
)
from interflow_jax.checks import check_positive_int
from interflow_jax.data import images
from interflow_jax.training import best, checkpoint, conditional_eval, own_data_problem, setup
from interflow_jax.training import figures as pictures

TEST_KEY_OFFSET = setup.TEST_KEY_OFFSET  # test points: fold_in(seed_key, this), never trained on
VALIDATION_KEY_OFFSET = 2 * 10**6  # validation points: disjoint draws from test and training


def _held_out(config, problem, split: str, offset: int, num_points: int):
    """The first num_points of a finite split (all of it when num_points is 0), else fresh
    draws from fold_in(seed_key, offset)."""
    if problem.finite is not None:
        x = getattr(problem.finite, split)
        x = x[:num_points] if num_points else x
        key = jax.random.fold_in(setup.seed_key(config), offset)
        return problem.finite.preprocess(jnp.asarray(x), key)
    if num_points < 1:
        raise ValueError(f"A {split} set drawn from the target needs a positive size.")
    return problem.sample_data(jax.random.fold_in(setup.seed_key(config), offset), num_points)


def test_points(config, problem, num_points: int):
    """Test points (n, *event_shape): never used in training or model selection."""
    return _held_out(config, problem, "test", TEST_KEY_OFFSET, num_points)


def validation_points(config, problem, num_points: int):
    """Validation points (n, *event_shape), for model selection during training."""
    return _held_out(config, problem, "validation", VALIDATION_KEY_OFFSET, num_points)


def test_nll(config, flow, params, x):
    """Mean NLL over x with its standard error (over points, plus probes when Hutchinson)."""
    start = time.perf_counter()
    key = setup.held_out_key(config, 1)
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


def hutchinson_check(config, field, base, params, x, exact_nll):
    """Hutchinson NLL (eval.hutchinson_check_probes probes) on the points of the exact one.

    Reports its mean and the paired difference to the exact NLL with that difference's
    standard error over points: an unbiased estimator differs by noise only, so the
    difference should be within a few standard errors of 0.
    """
    ev = config.eval
    flow = flows.make_flow(
        field,
        base,
        setup.build_ode_options(ev),
        divergence_kind="hutchinson",
        num_probes=check_positive_int(ev.hutchinson_check_probes, "eval.hutchinson_check_probes"),
        probe_kind=ev.probe_kind,
        hutchinson_mode=ev.get("hutchinson_mode", "forward"),
    )
    result, nll = test_nll(config, flow, params, x)
    difference = nll - exact_nll
    return {
        "hutchinson_nll": result["test_nll"],
        "hutchinson_probes": int(ev.hutchinson_check_probes),
        "hutchinson_eval_seconds": result["eval_seconds"],
        "hutchinson_minus_exact": float(difference.mean()),
        "hutchinson_minus_exact_stderr": float(difference.std(ddof=1) / math.sqrt(nll.size)),
    }


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


def bits_per_dim_metrics(problem, nll_metrics, prefix: str = "test"):
    """bits/dim of dequantised images from the NLL of z in (-1, 1)^D (PAPER section 4):
    bpd = (NLL_z - D ln 2 + D ln L) / (D ln 2); affine, so the standard error scales."""
    levels = None if problem.finite is None else problem.finite.num_levels
    if levels is None:
        return {}
    dims = math.prod(problem.event_shape)
    nll = nll_metrics[f"{prefix}_nll"]
    bpd = float(images.bits_per_dim(-nll, dims, levels))
    return {
        f"{prefix}_bits_per_dim": bpd,
        f"{prefix}_bits_per_dim_stderr": nll_metrics[f"{prefix}_nll_stderr"] / (dims * math.log(2)),
        "num_levels": levels,
    }


def draw_samples(config, problem, flow, field, params):
    """ODE samples (and SDE samples when config.eval.sde.enabled) with energy distances."""
    ev = config.eval
    key = setup.held_out_key(config, 2)
    data = test_points(config, problem, ev.num_plot_samples)
    samples = {"ode": flow.sample(params, key, ev.num_plot_samples).x}
    if ev.sde.enabled:
        samples["sde"] = sde_samples(config, problem, field, params, jax.random.fold_in(key, 3))
    n = min(ev.num_energy_points, ev.num_plot_samples, len(data))
    metrics = {
        f"energy_distance_{kind}": float(sample_quality.energy_distance(x[:n], data[:n]))
        for kind, x in samples.items()
    }
    return samples, data, metrics


def sde_samples(config, problem, field, params, key):
    """X_{t_end} from dX = [v + eps s] dt + sqrt(2 eps) dW (PAPER section 6)."""
    sampler = setup.build_sde_sampler(config, field)
    x0 = setup.base_for(params, problem).sample(
        jax.random.fold_in(key, 1), config.eval.num_plot_samples
    )
    return sampler(params, x0, key, params.get("interpolant"))


def path_length_metrics(config, problem, field, params):
    """int E|v^_t(x_t)|^2 dt of the trained field (any interpolant), and for a Gaussian
    target the exact path lengths of the trig, linear and (learned) interpolants and W2^2."""
    interpolant, _ = setup.build_interpolant(config)
    key = setup.held_out_key(config, 4)
    n = config.eval.num_path_length_pairs
    if problem.finite is None:
        x1 = problem.sample_data(jax.random.fold_in(key, 1), n)
    else:
        x1 = test_points(config, problem, n)
    x0 = setup.base_for(params, problem).sample(key, x1.shape[0])
    estimate, stderr = losses.estimate_path_length(
        field, params, interpolant, x0, x1, interpolant_params=params.get("interpolant")
    )
    results = {"path_length": float(estimate), "path_length_stderr": float(stderr)}
    if config.data.kind == "gaussian" and "base" not in params:
        results.update(gaussian_reference_lengths(config, interpolant, params))
    return results


def gaussian_reference_lengths(config, interpolant, params):
    mean = jnp.asarray(config.data.mean, jnp.result_type(float))
    cov = config.data.scale**2 * jnp.eye(mean.shape[0], dtype=mean.dtype)
    exact = {
        "w2_squared": float(mean @ mean + mean.shape[0] * (1 - config.data.scale) ** 2),
        "path_length_exact_trigonometric": float(
            gaussian.gaussian_path_length(interpolants.TRIGONOMETRIC, mean, cov)
        ),
        "path_length_exact_linear": float(
            gaussian.gaussian_path_length(interpolants.LINEAR, mean, cov)
        ),
    }
    if "interpolant" in params:
        bound = learnable.bind_params(interpolant, params["interpolant"])
        exact["path_length_exact_learned"] = float(gaussian.gaussian_path_length(bound, mean, cov))
    return exact


def fid_metrics(config, problem, flow, params) -> dict:
    """FID of eval.num_fid_samples ODE samples against the test images (images only), or
    the reason it was skipped (no Inception weights file at eval.fid_weights)."""
    ev = config.eval
    if len(problem.event_shape) != 3 or not ev.get("num_fid_samples", 0):
        return {}
    extractor, reason = fid.load_inception_extractor(ev.get("fid_weights", "") or None)
    if extractor is None:
        logging.warning(reason)
        return {"fid_skipped": reason}
    levels = problem.finite.num_levels
    key = setup.held_out_key(config, 7)
    batches = []
    for start in range(0, ev.num_fid_samples, ev.chunk_size):
        n = min(ev.chunk_size, ev.num_fid_samples - start)
        z = flow.sample(params, jax.random.fold_in(key, start), n).x
        batches.append(np.asarray(images.to_uint8_grid_values(z, levels)))
    test = np.asarray(images.to_uint8_grid_values(test_points(config, problem, 0), levels))
    value = fid.compute_fid(extractor, np.concatenate(batches), test, ev.chunk_size)
    logging.info("FID %.2f (%s)", value, reason)
    return {"fid": value, "fid_num_samples": int(ev.num_fid_samples)}


def restore_params(
    config, workdir: str, use_ema: bool, select_best: bool = False, event_shape=None
):
    """(params, step, selection) of the checkpoint to evaluate (EMA or raw params).

    The best-validation one when select_best and it restores, else the newest step in
    `<workdir>/checkpoints` that restores; the choice is logged. `selection` says which:
    {'selected_checkpoint': 'best validation' or 'latest', 'checkpoint_path': its folder,
    'skipped_checkpoints': folders of newer steps that did not restore}. `event_shape`
    (the problem's) spares building the problem again to learn it."""
    abstract = setup.abstract_state(config, event_shape)
    candidates = ((best.BEST_DIR, "best validation"),) if select_best else ()
    for name, how in candidates + (("checkpoints", "latest"),):
        found = _newest_restorable(workdir, name, how, abstract)
        if found is not None:
            state, selection = found
            return (state.ema_params if use_ema else state.params), int(state.step), selection
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints; train first.")


def _newest_restorable(workdir: str, name: str, how: str, abstract):
    """(state, selection) of the newest step in `<workdir>/<name>` that restores; None if
    there is no step (or no best-validation step restores: a warning, and the latest is
    evaluated). A skipped step is logged by the Checkpointer."""
    ckpt = checkpoint.Checkpointer(workdir, name=name)
    try:
        restored = ckpt.restore_newest_valid(abstract)
    except checkpoint.DamagedCheckpointError as error:
        if name != best.BEST_DIR:
            raise
        logging.warning("%s; evaluating the latest checkpoint instead.", error)
        return None
    finally:
        ckpt.close()
    if restored.state is None:
        return None
    path = ckpt.step_path(restored.step)
    logging.info("Evaluating the %s checkpoint: step %d at %s.", how, restored.step, path)
    skipped = [ckpt.step_path(step) for step in restored.skipped]
    selection = {"selected_checkpoint": how, "checkpoint_path": path}
    return restored.state, {**selection, "skipped_checkpoints": skipped}


def evaluate(
    config,
    workdir: str,
    params=None,
    step: int | None = None,
    metrics_name: str = "metrics.json",
    figures: bool = True,
    flow=None,
) -> dict:
    """Test NLL, samples and figures for the model in `workdir` (or the given params).

    Results go to `<workdir>/<metrics_name>`; figures are skipped with
    figures=False. `flow`, the training loop's flow for a fixed base, is reused so that
    the solves it compiled (progress figures, validation, `warm_up`) are not compiled
    again; by default one is built. For a class-conditional model (model.num_classes > 0)
    `test_nll` is -log p(x | null) and `conditional_eval` adds -log p(x | y) and guided
    samples.
    """
    problem = setup.build_problem(config)
    problem = own_data_problem.bind_to_workdir(problem, workdir, write=False)
    _, field = setup.build_model(config)
    selected = {"selected_checkpoint": "given"}
    if params is None:
        params, step, selected = restore_params(
            config,
            workdir,
            config.eval.use_ema,
            config.eval.get("select_best", False),
            problem.event_shape,
        )
    if flow is None or "base" in params:
        flow = setup.build_flow(config, field, setup.base_for(params, problem))
    results = {"step": step, **selected}
    results.update(divergence=config.eval.divergence, solver=config.eval.solver)
    if flow.base.log_prob is not None:
        x = test_points(config, problem, config.eval.num_test_points)
        nll_metrics, nll = test_nll(config, flow, params, x)
        results.update(nll_metrics, **true_cross_entropy(problem, x, nll))
        results.update(bits_per_dim_metrics(problem, nll_metrics))
        if setup.num_classes(config):
            results.update(
                conditional_eval.likelihood_metrics(config, problem, flow, params, x, nll)
            )
        if config.eval.divergence == "exact" and config.eval.get("hutchinson_check_probes", 0):
            results.update(hutchinson_check(config, field, flow.base, params, x, nll))
        results.update(own_data_problem.data_unit_metrics(problem, results))  # data units
        logging.info("test NLL %.4f +- %.4f nats", results["test_nll"], results["test_nll_stderr"])
    results.update(path_length_metrics(config, problem, field, params))
    samples, data, sample_metrics = draw_samples(config, problem, flow, field, params)
    results.update(sample_metrics, **fid_metrics(config, problem, flow, params))
    if setup.num_classes(config):
        results.update(
            conditional_eval.guided_sample_metrics(config, workdir, problem, field, params, figures)
        )
    if jax.process_index() == 0:
        checkpoint.write_json_atomic(os.path.join(workdir, metrics_name), results)
    if figures:
        arrays = pictures.figure_arrays(config, problem, flow, field, params, data)
        pictures.write_figures(config, workdir, problem, params, samples, data, arrays, results)
    return results
