"""2-D experiments (PAPER section 8): flows from N(0, I) (or another data set) to toy data.

Usage: --config=experiments/configs/toy2d.py[:ARG] with ARG a comma-separated list:
  a target data set (checkerboard, 8gaussians, moons, pinwheel, rings, spirals;
  default checkerboard), optionally 'smoke' (a run of seconds, for tests),
  optionally 'from=NAME' to flow from the data set NAME instead of a Gaussian, and
  optionally 'conditional' for a class-conditional flow with classifier-free guidance on
  a labelled data set (8gaussians: the component is the label).
Example: --config=experiments/configs/toy2d.py:8gaussians or :moons,from=8gaussians.

The paper gives no exact 2-D hyperparameters; the values below are our choice, tuned
to reach the checkerboard's ln 32 floor within 0.2 nats in a few minutes on 2 CPU cores.
"""

import ml_collections

from interflow_jax.data import toy2d
from interflow_jax.training.config_io import make_conditional, parse_config_arg


def _parse(arg: str):
    """(dataset, base or None, smoke, conditional); unknown words are named."""
    words, options = parse_config_arg(
        arg, words=(*toy2d.DATASETS, "smoke", "conditional"), options=("from",)
    )
    datasets = [w for w in words if w in toy2d.DATASETS]
    if len(datasets) > 1:
        raise ValueError(f"toy2d config: one target data set, got {datasets} in {arg!r}.")
    dataset = datasets[0] if datasets else "checkerboard"
    return dataset, options.get("from"), "smoke" in words, "conditional" in words


def get_config(arg: str = "checkerboard") -> ml_collections.ConfigDict:
    dataset, base, smoke, conditional = _parse(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({"kind": "toy2d", "name": dataset})
    config.base = ml_collections.ConfigDict(
        {"kind": "toy2d" if base else "standard_gaussian", "name": base or ""}
    )
    config.interpolant = "trigonometric"  # the paper's default; or 'linear', 'learnable'
    # Used when interpolant == 'learnable' (PAPER section 5): a, b = base pair + sine series
    # with `num_terms` terms each, trained by gradient ascent of G (max-min), one update
    # per `inner_steps` velocity steps; learn_base adds a learnable Gaussian base.
    config.learnable = ml_collections.ConfigDict(
        {
            "base": "linear",
            "num_terms": 8,
            "learning_rate": 1e-3,
            "inner_steps": 1,
            "learn_base": False,
        }
    )
    # time_sampler.kind: 'uniform', 'beta' (alpha, beta) or 'stratified' (one time per
    # 1/batch cell of [t_min, t_max]; interflow_jax/time_sampling.py)
    config.time_sampler = ml_collections.ConfigDict(
        {"kind": "uniform", "alpha": 1.0, "beta": 1.0, "t_min": 0.0, "t_max": 1.0}
    )
    # estimator: 'plain', 'all_pairs' (every x0 with every x1 at num_times times) or
    # 'antithetic' (each pair also with -x0: network batch 2 x batch_size); losses.py.
    # coupling: 'independent', 'ot_exact' (exact assignment within the batch) or
    # 'ot_sinkhorn' (pairs drawn from the entropic plan; sinkhorn_epsilon is relative to
    # the batch's mean squared distance). coupling_scope: 'global' (the whole batch) or
    # 'per_device' (each device's shard); coupling_block_size b > 0 pairs within blocks of
    # b (plans of b x b). See interflow_jax/couplings.py.
    config.loss = ml_collections.ConfigDict(
        {
            "estimator": "plain",
            "num_times": 1,
            "num_base_samples": 0,
            "coupling": "independent",
            "coupling_scope": "global",
            "sinkhorn_epsilon": 0.05,
            "sinkhorn_max_iterations": 200,
            "sinkhorn_threshold": 1e-3,
            "exact_solver": "auto",
            "coupling_block_size": 0,
        }
    )
    # time_conditioning: 'concat' (embed(t) joins the input) or 'film' (also a
    # time-dependent gain on every hidden layer; models.VelocityMLP).
    # time_embedding_scale: the sinusoidal embedding's highest angular frequency in t;
    # logit_time_dim: k > 0 adds k sinusoids of logit(t) (models.mlp.logit_time_embedding).
    # gated_layers: k > 0 multiplies the first k hidden layers by affine gates of the input.
    config.model = ml_collections.ConfigDict(
        {
            "hidden_sizes": (256, 256, 256),
            "activation": "silu",
            "time_embedding_dim": 32,
            "time_conditioning": "concat",
            "time_embedding_scale": 1e3,
            "logit_time_dim": 0,
            "gated_layers": 0,
            # linear_skip_terms: m > 0 adds sum_j phi_j(t) x K_j (Bernstein phi_j) to v
            "linear_skip_terms": 0,
        }
    )
    config.optimizer = ml_collections.ConfigDict(
        {
            "learning_rate": 2e-3,
            "warmup_steps": 500,
            "grad_clip_norm": 1.0,
            "weight_decay": 0.0,
            "b1": 0.9,  # Adam's moment decays
            "b2": 0.999,
            # one flat vector for the clipping and Adam (optax.flatten): fewer, larger
            # kernels for models of many small tensors (the U-Nets; a few % on a CPU)
            "flatten": False,
        }
    )
    config.training = ml_collections.ConfigDict(
        {
            "num_steps": 20_000,
            "batch_size": 2048,
            "ema_decay": 0.999,
            "steps_per_call": 100,
            "log_every": 500,
            "checkpoint_every": 2_000,
            "eval_every": 5_000,
            # threefry's unrolled lowering on CPU: the same random bits, a faster step
            # for small networks (training/cpu_prng.py)
            "unrolled_threefry": True,
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "num_test_points": 20_000,  # 0: the whole test split of a finite data set
            "num_validation_points": 5_000,  # validation NLL every training.eval_every
            # evaluate the best-validation checkpoint rather than the last (finite data)
            "select_best": False,
            "divergence": "exact",  # or 'hutchinson'
            "num_probes": 1,
            # > 0: also a Hutchinson NLL with this many probes on the same test points,
            # reported with its paired difference to the exact NLL (estimator check)
            "hutchinson_check_probes": 0,
            "probe_kind": "rademacher",
            # Hutchinson products by jvp ('forward') or vjp ('reverse'); forward is faster
            # for convolutional fields on CPU (divergence.hutchinson_divergence)
            "hutchinson_mode": "forward",
            "solver": "dopri5",
            "rtol": 1e-5,
            "atol": 1e-5,
            "num_steps": 100,  # fixed-step solvers only
            "show_progress": False,  # a progress bar for each ODE solve (long solves)
            "chunk_size": 5_000,
            "use_ema": True,
            "grid_size": 160,
            "num_plot_samples": 20_000,
            "num_trajectories": 300,
            "num_path_length_pairs": 20_000,
            "num_energy_points": 2_000,
            # SDE sampling from the velocity's score (PAPER section 6), off by default.
            "sde": ml_collections.ConfigDict(
                {
                    "enabled": False,
                    "eps_schedule": "vanishing",  # or 'constant'
                    "eps": 1.0,
                    "solver": "heun",  # or 'euler_maruyama', 'shark'
                    "num_steps": 500,
                    "t_end": 0.99,
                }
            ),
        }
    )
    if smoke:
        _shrink(config)
    if conditional:
        _conditional(config, dataset, smoke)
    return config


def _conditional(config, dataset: str, smoke: bool) -> None:
    classes = toy2d.get_dataset(dataset).num_classes
    if not classes:
        raise ValueError(
            f"toy2d config: 'conditional' needs a labelled data set (8gaussians); got {dataset!r}."
        )
    make_conditional(config, classes, samples_per_class=50 if smoke else 1_000)


def _shrink(config) -> None:
    config.model.hidden_sizes = (32, 32)
    config.optimizer.warmup_steps = 5
    config.training.update(
        num_steps=40,
        batch_size=256,
        steps_per_call=10,
        log_every=10,
        checkpoint_every=20,
        eval_every=20,
    )
    config.eval.update(
        num_test_points=600,
        num_validation_points=300,
        chunk_size=300,
        grid_size=20,
        num_plot_samples=500,
        num_trajectories=20,
        num_path_length_pairs=500,
        sde=dict(num_steps=20, t_end=0.95),
        num_energy_points=300,
        rtol=1e-3,
        atol=1e-3,
    )
