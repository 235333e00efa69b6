"""The interflow_jax side of the benchmarks: the checkerboard train step, built once.

The step is the library's own path: `losses.make_velocity_loss` (quadratic G, trig
interpolant, t ~ U[0, 1), x0 ~ N(0, I) drawn in the graph), `make_train_step` and
`make_multi_step` (lax.scan over the steps of one call, checkerboard batches drawn in
the graph), jitted with the train state donated.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from interflow_jax import couplings, densities, interpolants, losses, time_sampling
from interflow_jax.data import toy2d
from interflow_jax.models import VelocityMLP, as_field, init_params
from interflow_jax.training.state import create_train_state
from interflow_jax.training.step import make_multi_step, make_train_step


class CheckerboardTraining(NamedTuple):
    """step(state, batch, key); batch_fn(key) -> batch; the initial state; the module."""

    step: object
    batch_fn: object
    state: object
    module: VelocityMLP


def checkerboard_training(
    width: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    depth: int = 3,
    activation: str = "silu",
    seed: int = 0,
    interpolant: interpolants.Interpolant = interpolants.TRIGONOMETRIC,
    coupling: couplings.Coupling | None = None,
) -> CheckerboardTraining:
    """The pieces of quadratic-loss training on N(0, I_2) -> checkerboard with plain Adam;
    x0 paired with x1 by `coupling` (None: independent pairs)."""
    module = VelocityMLP(hidden_sizes=(width,) * depth, activation=activation)
    pair = None
    if coupling is not None and not coupling.is_independent:

        def pair(key, x0, x1, labels):
            return couplings.couple(coupling, key, x0, x1, labels)

    loss_fn = losses.make_velocity_loss(
        as_field(module),
        interpolant,
        time_sampling.make_time_sampler(),
        base=densities.standard_gaussian((2,)),
        pair=pair,
    )
    optimizer = optax.adam(learning_rate)
    step = make_train_step(loss_fn, optimizer, ema_decay=0.0)

    def batch_fn(key, *unused):
        return {"x1": toy2d.checkerboard_sample(key, batch_size)}

    params = init_params(module, jax.random.key(seed), (2,))
    return CheckerboardTraining(step, batch_fn, create_train_state(params, optimizer), module)


def jitted_multi_step(training: CheckerboardTraining, steps: int, seed: int = 1):
    """jit(make_multi_step(...), donate the state): `state -> (state, metrics)`."""
    multi_step = make_multi_step(training.step, training.batch_fn, jax.random.key(seed), steps)
    return jax.jit(multi_step, donate_argnums=0)


def make_runner(training: CheckerboardTraining, steps: int):
    """A callable that runs `steps` steps and blocks; compiled ahead of time and run once.

    The compiled executable is held by the runner, so clearing jax's caches later does
    not make it compile again.
    """
    multi_step = jitted_multi_step(training, steps).lower(training.state).compile()
    holder = {"state": training.state}

    def run():
        holder["state"], metrics = multi_step(holder["state"])
        jax.block_until_ready((holder["state"], metrics))

    run()
    return run


def step_flops(training: CheckerboardTraining) -> float:
    """FLOPs of one train step (batch drawn in the graph) from XLA's cost analysis.

    XLA counts a while loop's body once whatever its trip count, so the count is taken
    on a single step, not on the scan.
    """

    def single(state):
        key = jax.random.key(2)
        return training.step(state, training.batch_fn(jax.random.fold_in(key, 0)), key)

    return compiled_flops(jax.jit(single), training.state)


def compiled_flops(jitted, *args) -> float:
    """'flops' of XLA's cost analysis of `jitted` compiled for `args`."""
    analysis = jitted.lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return float(analysis["flops"])


def gemm_skeleton(width: int, batch_size: int, steps: int, depth: int = 3):
    """The matrix products of one train step of the MLP alone, `steps` per jitted call.

    Forward h_{i+1} = h_i W_i through (34, W), (W, W) x (depth - 1), (W, 2); backward
    h_i^T g and g W_i^T per layer, as backpropagation does. No activations, loss,
    optimiser or sampling: the time of this is what the matrix products alone cost.
    Returns (a runner that blocks, compiled and run once; FLOPs per step from XLA).
    """
    dims = [(34, width)] + [(width, width)] * (depth - 1) + [(width, 2)]
    keys = jax.random.split(jax.random.key(0), len(dims) + 1)
    weights = [0.01 * jax.random.normal(k, d) for k, d in zip(keys, dims, strict=False)]
    x = jax.random.normal(keys[-1], (batch_size, 34))

    def one_step(carry, weights, x):
        hs = [x + carry]  # depends on the carry: nothing is hoisted out of the loop
        for w in weights:
            hs.append(hs[-1] @ w)
        g, total = hs[-1], 0.0
        for i in reversed(range(len(weights))):
            total += jnp.sum(hs[i].T @ g)
            if i > 0:
                g = g @ weights[i].T
        return carry + 1e-30 * total

    def multi(carry, weights, x):
        body = lambda c, _: (one_step(c, weights, x), None)  # noqa: E731
        return jax.lax.scan(body, carry, None, length=steps)[0]

    flops = compiled_flops(jax.jit(one_step), jnp.zeros(()), weights, x)
    jitted = jax.jit(multi)

    def run():
        jitted(jnp.zeros(()), weights, x).block_until_ready()

    run()
    return run, flops


@contextlib.contextmanager
def unrolled_threefry():
    """Compile with threefry's unrolled lowering on CPU (as on GPU), then restore.

    jax lowers the threefry2x32 PRNG on CPU as rolled while loops (5 iterations per
    call), each iteration a separate runtime step; the unrolled lowering computes the
    same bits as straight-line code. Used only to measure a proposed change: compile
    (ahead of time) inside this context; caches are cleared on entry and exit so that
    nothing lowered one way is reused the other way. Uses jax internals.
    """
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32

    primitive = threefry2x32.threefry2x32_p
    jax.clear_caches()
    mlir.register_lowering(primitive, threefry2x32._threefry2x32_lowering_rule, platform="cpu")
    try:
        yield
    finally:
        rolled = threefry2x32._threefry2x32_cpu_lowering_rule
        mlir.register_lowering(primitive, rolled, platform="cpu")
        jax.clear_caches()
