"""Draw samples from a trained flow: the probability-flow ODE or the SDE (PAPER s. 4, 6).

  python experiments/sample.py --workdir=runs/checkerboard --num_samples=10000
  python experiments/sample.py --workdir=runs/checkerboard --sde --eps=0.5 \
      --eps_schedule=constant --sde_solver=euler_maruyama --t_end=0.98

Writes <workdir>/samples_<method>.npy and a PNG beside it (2-D data).

Class-conditional models (model.num_classes > 0), with classifier-free guidance
v_w = v(null) + w (v(y) - v(null)) (w = 1 the conditional field, w = 0 the unconditional):

  python experiments/sample.py --workdir=runs/digits_cond --label=all --guidance=2 \
      --num_samples=100 --output=runs/digits_cond/guided.npz

writes the .npz (`samples` in data units, `labels`) and PATH.png with one row per class;
--label=K samples class K only, --label=all num_samples of every class; --sde works too.
"""

import os

import jax
import numpy as np
from absl import app, flags, logging

from interflow_jax import plotting
from interflow_jax.training import (
    conditional_eval,
    distributed,
    evaluation,
    figures,
    own_data_problem,
    setup,
)
from interflow_jax.training.checkpoint import Checkpointer
from interflow_jax.training.config_io import config_from_dict

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory a training run wrote.")
_NUM = flags.DEFINE_integer("num_samples", 10_000, "How many samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_SDE = flags.DEFINE_bool("sde", False, "Sample the SDE dX = [v + eps s] dt + sqrt(2 eps) dW.")
_EPS = flags.DEFINE_float("eps", 1.0, "Diffusion strength eps (SDE only).")
_SCHEDULE = flags.DEFINE_enum("eps_schedule", "vanishing", ["constant", "vanishing"], "eps(t).")
_SOLVER = flags.DEFINE_enum("sde_solver", "heun", ["euler_maruyama", "heun", "shark"], "Solver.")
_STEPS = flags.DEFINE_integer("sde_steps", 500, "Fixed SDE steps.")
_T_END = flags.DEFINE_float("t_end", 0.99, "SDE stopping time, short of the singular t = 1.")
_EMA = flags.DEFINE_bool("ema", True, "Use the EMA parameters.")
_LABEL = flags.DEFINE_string(
    "label", None, "Conditional models: a class 0..K-1, or 'all' (num_samples of each class)."
)
_GUIDANCE = flags.DEFINE_float(
    "guidance", 1.0, "Guidance scale w (with --label): 1 conditional, 0 unconditional."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "With --label: the .npz to write (default <workdir>/samples_label<L>_w<W>.npz)."
)
_INITIALIZE_DISTRIBUTED = distributed.define_flags()
flags.adopt_module_key_flags(distributed)
flags.mark_flags_as_required(["workdir"])


def _config(workdir):
    ckpt = Checkpointer(workdir)
    config = config_from_dict(ckpt.restore_config())
    ckpt.close()
    config.unlock()
    config.eval.use_ema = _EMA.value
    config.eval.num_plot_samples = _NUM.value
    config.eval.sde.update(
        enabled=_SDE.value,
        eps=_EPS.value,
        eps_schedule=_SCHEDULE.value,
        solver=_SOLVER.value,
        num_steps=_STEPS.value,
        t_end=_T_END.value,
    )
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _INITIALIZE_DISTRIBUTED()
    config = _config(_WORKDIR.value)
    if _LABEL.value is not None:
        return _sample_labelled(config)
    # a user's data: the workdir's record suffices (the data files are not read)
    problem = own_data_problem.problem_from_record(config, _WORKDIR.value)
    problem = problem or setup.build_problem(config)
    _, field = setup.build_model(config)
    params, _, _ = evaluation.restore_params(
        config,
        _WORKDIR.value,
        config.eval.use_ema,
        config.eval.get("select_best", False),
        problem.event_shape,
    )
    key = jax.random.key(_SEED.value)
    if _SDE.value:
        method, x = "sde", evaluation.sde_samples(config, problem, field, params, key)
    else:
        flow = setup.build_flow(config, field, setup.base_for(params, problem))
        method, x = "ode", flow.sample(params, key, _NUM.value).x
    x = np.asarray(jax.device_get(x))
    if not distributed.is_main_process():
        return
    path = os.path.join(_WORKDIR.value, f"samples_{method}.npy")
    x = own_data_problem.to_data_units(problem, x)  # standardised data: back to its units
    np.save(path, x)
    if own_data_problem.write_table(problem, x, path.replace(".npy", ".csv")):
        logging.info("wrote %s", path.replace(".npy", ".csv"))
    if x.ndim == 4:  # images: a grid of (up to) the first 64
        figures.write_image_grid(problem, x[:64], path.replace(".npy", ".png"))
    elif x.shape[1:] == (2,) and problem.data_record is None:
        data = evaluation.test_points(config, problem, _NUM.value)
        plotting.plot_samples(x, data, path.replace(".npy", ".png"), figures.extent_of(data))
    logging.info("wrote %s", path)


def _sample_labelled(config) -> None:
    """--label: guided samples of the requested classes, written as .npz and a grid."""
    labels = conditional_eval.requested_labels(_LABEL.value, setup.num_classes(config), _NUM.value)
    w = _GUIDANCE.value
    path = _OUTPUT.value or os.path.join(_WORKDIR.value, f"samples_label{_LABEL.value}_w{w:g}.npz")
    conditional_eval.check_output_path(path)
    problem = setup.build_problem(config)
    _, field = setup.build_model(config)
    ev = config.eval
    params, _, _ = evaluation.restore_params(
        config, _WORKDIR.value, ev.use_ema, ev.get("select_best", False), problem.event_shape
    )
    key = jax.random.key(_SEED.value)
    sample = conditional_eval.make_guided_sampler(config, problem, field, _SDE.value)
    x = sample(params, labels, w, key)
    if distributed.is_main_process():
        conditional_eval.write_labelled_samples(config, problem, x, labels, w, path)
        logging.info("wrote %s", path)


if __name__ == "__main__":
    app.run(main)
