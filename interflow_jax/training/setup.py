"""The boundary where a config becomes objects: called once by the loop and `evaluate`.

Nothing below this module reads configs. Each builder validates its part of the config
and raises ValueError naming the bad value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from interflow_jax import densities, flows, interpolants, losses, time_sampling
from interflow_jax.checks import check_positive_int
from interflow_jax.data import toy2d
from interflow_jax.models import VelocityMLP, as_field, init_params
from interflow_jax.training import optimizer as optimizer_lib
from interflow_jax.training.state import create_train_state


class Problem(NamedTuple):
    """What to flow between: base rho0, target data, and the target's exact density."""

    event_shape: tuple[int, ...]
    base: densities.Density
    sample_data: Any  # (key, n) -> (n, *event_shape), jax-traceable
    true_log_prob: Any  # (n, *event_shape) -> (n,), or None
    name: str


def build_problem(config) -> Problem:
    if config.data.kind != "toy2d":
        raise ValueError(f"config.data.kind must be 'toy2d'; got {config.data.kind!r}.")
    target = toy2d.get_dataset(config.data.name)
    return Problem((2,), build_base(config, (2,)), target.sample, target.log_prob, target.name)


def build_base(config, event_shape) -> densities.Density:
    kind = config.base.kind
    if kind == "standard_gaussian":
        return densities.standard_gaussian(event_shape)
    if kind == "toy2d":
        source = toy2d.get_dataset(config.base.name)
        return densities.from_sampler(source.sample, event_shape, name=source.name)
    raise ValueError(f"config.base.kind must be 'standard_gaussian' or 'toy2d'; got {kind!r}.")


def build_model(config):
    """(flax module, field(t, x, params))."""
    model = config.model
    if not model.hidden_sizes or any(int(w) < 1 for w in model.hidden_sizes):
        raise ValueError(f"model.hidden_sizes must be positive widths; got {model.hidden_sizes}.")
    module = VelocityMLP(
        hidden_sizes=tuple(int(w) for w in model.hidden_sizes),
        activation=model.activation,
        time_embedding_dim=model.time_embedding_dim,
    )
    return module, as_field(module)


def build_loss(config, field, base):
    ts = config.time_sampler
    sampler = time_sampling.make_time_sampler(ts.kind, ts.alpha, ts.beta, ts.t_min, ts.t_max)
    return losses.make_velocity_loss(
        field,
        interpolants.get_interpolant(config.interpolant),
        sampler,
        base=base,
        estimator=config.loss.estimator,
        num_times=check_positive_int(config.loss.num_times, "loss.num_times"),
        num_base_samples=config.loss.num_base_samples or None,
    )


def build_ode_options(eval_config) -> flows.ODEOptions:
    options = flows.ODEOptions(
        solver=eval_config.solver,
        rtol=eval_config.rtol,
        atol=eval_config.atol,
        num_steps=eval_config.num_steps,
    )
    flows.check_ode_options(options)
    return options


def build_flow(config, field, base) -> flows.Flow:
    ev = config.eval
    return flows.make_flow(
        field,
        base,
        build_ode_options(ev),
        divergence_kind=ev.divergence,
        num_probes=ev.num_probes,
        probe_kind=ev.probe_kind,
    )


def seed_key(config) -> jax.Array:
    return jax.random.key(int(config.seed))


def build_optimizer(config):
    opt, training = config.optimizer, config.training
    return optimizer_lib.make_optimizer(
        opt.learning_rate,
        opt.warmup_steps,
        check_positive_int(training.num_steps, "training.num_steps"),
        opt.grad_clip_norm,
        opt.weight_decay,
    )


def make_init_state(config, event_shape):
    """Return a no-argument function building the initial TrainState (for jit/eval_shape)."""
    module, _ = build_model(config)
    optimizer = build_optimizer(config)

    def init():
        params = init_params(module, jax.random.fold_in(seed_key(config), 1), event_shape)
        return create_train_state(params, optimizer)

    return init


def abstract_state(config):
    """Shapes and dtypes of the TrainState, to restore a checkpoint into."""
    return jax.eval_shape(make_init_state(config, build_problem(config).event_shape))
