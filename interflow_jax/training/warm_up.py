"""Compile the final evaluation's likelihood solve while the model trains.

The test NLL integrates the probability-flow ODE with its divergence (PAPER section 4,
eq. (8)); for the digits U-Net that solve takes XLA about ten seconds to compile on a
CPU, and without help it is compiled after the last training step, on the critical
path. Here a background thread calls the same jitted `flow.log_prob` on a placeholder
chunk of the evaluation's shape over a tiny time interval (a few solver steps), so the
compiled solve is in the jit cache when `evaluation.evaluate` reuses that flow. The
training step uses few of a small machine's cores for small models, so the compilation
runs beside it; the results are unchanged (jit caches by shapes and dtypes, not values).
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
from absl import logging

from interflow_jax.training import setup, sharding

WARM_UP_TIME = 1e-3  # solve log rho_t from t = 1e-3 to 0: a few steps, the same program


def start(config, problem, flow, params, mesh) -> threading.Thread | None:
    """Start compiling `flow.log_prob` for (eval.chunk_size, *event_shape) points (every
    chunk of `flows.log_prob_in_chunks` has that shape) on a replicated copy of `params`
    (the training step donates the state's buffers); returns the thread (join it before
    evaluating), or None where there is nothing to warm (no base density, a learned base,
    several processes)."""
    if flow.base.log_prob is None or "base" in params or jax.process_count() > 1:
        return None
    params = jax.jit(_copy, out_shardings=sharding.replicated(mesh))(params)
    shape = (int(config.eval.chunk_size), *problem.event_shape)
    key = jax.random.fold_in(setup.held_out_key(config, 1), 0)

    def compile_solve():
        try:
            placeholder = jnp.zeros(shape)  # the default float type, as the test points'
            jax.block_until_ready(flow.log_prob(params, placeholder, WARM_UP_TIME, key))
        except Exception as error:  # the evaluation compiles it again; say why
            logging.warning("Compiling the evaluation ahead of time failed: %s", error)

    thread = threading.Thread(target=compile_solve, name="compile-evaluation", daemon=True)
    thread.start()
    return thread


def _copy(tree):
    return jax.tree.map(jnp.copy, tree)


def finish(thread: threading.Thread | None) -> None:
    """Wait for a thread from `start` (no-op for None)."""
    if thread is not None:
        thread.join()
