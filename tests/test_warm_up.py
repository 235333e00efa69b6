"""The evaluation's likelihood solve compiled beside training (training/warm_up.py)."""

import jax
import numpy as np

from experiments.configs import mixture as mixture_config
from interflow_jax.training import evaluation, setup, sharding, warm_up


def _problem_flow_params():
    config = mixture_config.get_config("6,smoke")
    config.eval.chunk_size = 64
    problem = setup.build_problem(config)
    _, field = setup.build_model(config)
    flow = setup.build_flow(config, field, problem.base)
    state = jax.jit(setup.make_init_state(config, problem.event_shape))()
    return config, problem, flow, state


def test_the_test_nll_reuses_the_solve_compiled_beside_training():
    config, problem, flow, state = _problem_flow_params()
    mesh = sharding.make_mesh()
    thread = warm_up.start(config, problem, flow, state.ema_params, mesh)
    assert thread is not None
    warm_up.finish(thread)
    assert flow.log_prob_fn._cache_size() == 1
    params = jax.jit(lambda p: p, out_shardings=sharding.replicated(mesh))(state.ema_params)
    x = evaluation.test_points(config, problem, 100)  # two chunks of 64, the last padded
    result, nll = evaluation.test_nll(config, flow, params, x)
    assert flow.log_prob_fn._cache_size() == 1  # no second compilation
    assert nll.shape == (100,) and np.all(np.isfinite(nll))
    assert np.isfinite(result["test_nll"])


def test_nothing_to_warm_without_a_base_density():
    config, problem, flow, state = _problem_flow_params()
    no_density = flow._replace(base=flow.base._replace(log_prob=None))
    assert warm_up.start(config, problem, no_density, state.ema_params, None) is None
    warm_up.finish(None)
