"""The training loop: the only place where a config drives the run.

`train_and_evaluate(config, workdir)` trains, checkpoints, logs and finally evaluates.
Run the same command again after an interruption (even SIGKILL) and it resumes from the
latest checkpoint to exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging as pylogging
import os
import time

import jax
import numpy as np
from absl import logging
from tqdm.auto import tqdm

from interflow_jax.data import augment
from interflow_jax.training import (
    checkpoint,
    cpu_prng,
    evaluation,
    figures,
    host_input,
    metrics_log,
    own_data_problem,
    setup,
    sharding,
    tensorboard,
    warm_up,
)
from interflow_jax.training.best import BestCheckpoint
from interflow_jax.training.step import make_multi_step, make_train_step


class _DropLibraryChatter(pylogging.Filter):
    """Hide orbax's per-save INFO lines; its warnings and errors still show."""

    def filter(self, record):
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def quiet_checkpoint_logs() -> None:
    pylogging.getLogger("absl").addFilter(_DropLibraryChatter())


def check_schedule(training) -> None:
    """Every interval must be a multiple of steps_per_call (steps run in scanned groups)."""
    per_call = training.steps_per_call
    for name in ("num_steps", "log_every", "checkpoint_every", "eval_every"):
        value = training[name]
        if value < 1 or value % per_call:
            raise ValueError(
                f"training.{name}={value} must be a positive multiple of "
                f"training.steps_per_call={per_call}."
            )
    if training.batch_size < 1:
        raise ValueError(f"training.batch_size must be positive; got {training.batch_size}.")


def target_batch(problem, key, data, batch_size: int, conditional: bool) -> dict:
    """{'x1': (B, *event_shape)}, plus {'y': (B,) labels} for a conditional model: drawn in
    the graph (data None) or from the host-read examples (and labels)."""
    if data is None and conditional:
        x1, y = problem.sample_labelled(key, batch_size)
        return {"x1": x1, "y": y}
    if data is None:
        return {"x1": problem.sample_data(key, batch_size)}
    if conditional:
        raw, y = data
        return {"x1": problem.finite.preprocess(raw, key), "y": y}
    return {"x1": problem.finite.preprocess(data, key)}


def build_multi_step(config, problem, field, mesh):
    """The jitted call `(state, data) -> (state, metrics)` of training.steps_per_call steps;
    data is None (drawn in the graph) or the host-read stack of a finite data set (with
    its labels for a conditional model)."""
    training = config.training
    loss_fn = setup.build_loss(config, field, problem.base, mesh)
    step = make_train_step(loss_fn, setup.build_optimizer(config), training.ema_decay)
    conditional = setup.num_classes(config) > 0

    augmentation, p_identity = setup.augmentation(config.model)

    def batch_fn(key, data):
        batch = target_batch(problem, key, data, training.batch_size, conditional)
        if augmentation != "none":  # (T_a x1, a): data.augment
            batch["x1"], batch["augmentation"] = augment.augment(
                jax.random.fold_in(key, 5), batch["x1"], augmentation, p_identity
            )
        if problem.base.log_prob is None:  # data -> data: draw the base data set here
            batch["x0"] = problem.base.sample(jax.random.fold_in(key, 1), training.batch_size)
        return sharding.constrain_batch(batch, mesh)

    multi = make_multi_step(step, batch_fn, setup.seed_key(config), training.steps_per_call)
    replicated = sharding.replicated(mesh)
    return jax.jit(multi, out_shardings=(replicated, replicated), donate_argnums=0)


def build_host_batches(config, problem, mesh):
    """A host reader of the training set (and its labels for a conditional model) for
    finite data, else None."""
    if problem.finite is None:
        return None
    training = config.training
    labels = setup.split_labels(problem, "train") if setup.num_classes(config) else None
    return host_input.HostBatches(
        problem.finite.train,
        training.steps_per_call,
        training.batch_size,
        config.seed,
        mesh,
        labels,
    )


def start_state(config, workdir, problem, mesh, ckpt):
    """A fresh replicated state, or the newest checkpoint's that restores (resume). Newer
    steps that do not restore are named in a warning and moved to
    `<workdir>/checkpoints_damaged/`, so the run saves those steps again."""
    init = setup.make_init_state(config, problem.event_shape)
    state = jax.jit(init, out_shardings=sharding.replicated(mesh))()
    restored = ckpt.restore_newest_valid(checkpoint.abstract_like(state))
    if restored.state is None:
        return state
    ckpt.set_aside(restored.skipped)
    if restored.config != json.loads(config.to_json()):
        logging.warning("Resuming with a config that differs from the checkpoint's.")
    logging.info("Resumed from step %d.", restored.step)
    if jax.process_index() == 0:
        metrics_log.truncate_after(workdir, restored.step)
    return restored.state


def raise_if_nonfinite(state, ckpt) -> None:
    bad = int(state.nonfinite_step)
    if bad >= 0:
        raise FloatingPointError(
            f"Non-finite loss or gradient at step {bad + 1}; stopped. The last good "
            f"checkpoint (step {ckpt.latest_step()}) is kept."
        )


def log_train(workdir, step, metrics, rate, learning_rate, bar, board) -> None:
    record = {k: float(v) for k, v in jax.device_get(metrics).items()}
    record.update(steps_per_second=rate, learning_rate=learning_rate)
    board.scalars(step, record, "train")
    record["step"] = step
    bar.set_postfix(loss=f"{record['loss']:.4f}", gap=f"{record['convergence_gap']:.4f}")
    logging.info(
        "step %d loss %.5f gap %.5f path length E|v|^2 %.4f (%.1f steps/s)",
        step,
        record["loss"],
        record["convergence_gap"],
        record["velocity_sq"],
        rate,
    )
    if jax.process_index() == 0:
        metrics_log.append(workdir, record)


def bound_flow(config, flow, params):
    """The flow with the current value of a learned base (it changes as it trains)."""
    if "base" not in params:
        return flow
    return setup.build_flow(config, flow_field(config), setup.base_for(params, None))


def log_validation(config, workdir, step, problem, state, flow, validation_x, best, board) -> None:
    """Validation NLL of the evaluated parameters; keeps the best state (model selection)."""
    params = params_to_evaluate(config, state)
    result, _ = evaluation.test_nll(config, bound_flow(config, flow, params), params, validation_x)
    nll, stderr = result["test_nll"], result["test_nll_stderr"]
    logging.info("step %d validation NLL %.4f +- %.4f", step, nll, stderr)
    bits = evaluation.bits_per_dim_metrics(problem, result).get("test_bits_per_dim")
    extra = {} if bits is None else {"bits_per_dim": bits}
    board.scalars(step, {"nll": nll, "nll_stderr": stderr, **extra}, "validation")
    if jax.process_index() == 0:
        metrics_log.append(
            workdir, {"step": step, "validation_nll": nll, "validation_nll_stderr": stderr}
        )
    best.offer(step, nll, state, json.loads(config.to_json()))


def progress_figures(config, workdir, step, problem, flow, state, board) -> None:
    """A picture of the evaluated parameters' samples while training, in TensorBoard (an
    image grid, or a 2-D scatter of a few samples), and samples_step<k>.png for images
    before the last step. Every process samples; process 0 writes."""
    params = params_to_evaluate(config, state)
    picture = figures.progress_picture(config, problem, bound_flow(config, flow, params), params)
    board.image("samples", step, picture)
    if figures.is_image(problem) and step < config.training.num_steps:
        figures.write_picture(picture, os.path.join(workdir, f"samples_step{step}.png"))


def flow_field(config):
    return setup.build_model(config)[1]


def train_and_evaluate(config, workdir: str) -> dict:
    """Train per `config`, checkpointing into `workdir`, then evaluate; returns metrics."""
    training = config.training
    check_schedule(training)
    if training.get("unrolled_threefry", True):
        cpu_prng.use_unrolled_threefry()  # the same bits, a faster small-model step on CPU
    quiet_checkpoint_logs()
    mesh = sharding.make_mesh()
    sharding.check_divisible(training.batch_size, mesh, "training.batch_size")
    problem = setup.build_problem(config)
    setup.check_labels(config, problem)
    os.makedirs(workdir, exist_ok=True)  # only once the data have been read and checked
    problem = own_data_problem.bind_to_workdir(problem, workdir, write=True)
    module, field = setup.build_model(config)
    ckpt, best = checkpoint.Checkpointer(workdir), BestCheckpoint(workdir)
    state = start_state(config, workdir, problem, mesh, ckpt)
    num_params = sum(np.size(p) for p in jax.tree_util.tree_leaves(state.params))
    logging.info("%s: %d parameters, %d devices.", module.__class__.__name__, num_params, mesh.size)
    multi_step = build_multi_step(config, problem, field, mesh)
    host_data = build_host_batches(config, problem, mesh)
    flow = setup.build_flow(config, field, problem.base)
    validate = problem.base.log_prob is not None and config.eval.num_validation_points > 0
    if validate:
        validation_x = evaluation.validation_points(
            config, problem, config.eval.num_validation_points
        )
    config_dict = json.loads(config.to_json())
    if jax.process_index() == 0:
        checkpoint.write_json_atomic(os.path.join(workdir, "config.json"), config_dict)
    step = int(state.step)
    board, learning_rate = tensorboard.Writer(workdir, step), tensorboard.learning_rate_fn(config)
    bar = tqdm(
        total=training.num_steps,
        initial=step,
        desc="train",
        unit="step",
        mininterval=2,
        disable=jax.process_index() != 0,
    )
    compiling = warm_up.start(config, problem, flow, params_to_evaluate(config, state), mesh)
    last_time, last_step = time.perf_counter(), step
    while step < training.num_steps:
        data = None if host_data is None else host_data.get(step)
        state, metrics = multi_step(state, data)
        step += training.steps_per_call
        bar.update(training.steps_per_call)
        if step % training.log_every == 0 or step == training.num_steps:
            raise_if_nonfinite(state, ckpt)
            now = time.perf_counter()
            rate = (step - last_step) / (now - last_time)
            log_train(workdir, step, metrics, rate, learning_rate(step), bar, board)
            last_time, last_step = now, step
        if step % training.eval_every == 0 or step == training.num_steps:
            raise_if_nonfinite(state, ckpt)
            if validate:
                log_validation(
                    config, workdir, step, problem, state, flow, validation_x, best, board
                )
            progress_figures(config, workdir, step, problem, flow, state, board)
            last_time = time.perf_counter()  # keep evaluation out of steps/s
        if step % training.checkpoint_every == 0 or step == training.num_steps:
            raise_if_nonfinite(state, ckpt)
            board.flush()  # the events up to a checkpoint reach the disk before it
            ckpt.save(step, state, config_dict)
    bar.close()
    for closable in (ckpt, best, board) + (() if host_data is None else (host_data,)):
        closable.close()
    warm_up.finish(compiling)
    params = evaluated_params(config, state)
    return evaluation.evaluate(config, workdir, params=params, step=step, flow=flow)


def params_to_evaluate(config, state):
    """The state's EMA or raw parameters, as config.eval.use_ema says."""
    return state.ema_params if config.eval.use_ema else state.params


def evaluated_params(config, state):
    """The parameters the final evaluation uses: EMA or raw; the best-validation ones when
    config.eval.select_best (restored by `evaluate` from <workdir>/best)."""
    if config.eval.get("select_best", False):
        return None
    return params_to_evaluate(config, state)
