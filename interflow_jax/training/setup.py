"""The boundary where a config becomes objects: called once by the loop and `evaluate`.

Nothing below this module reads configs. Each builder validates its part of the config
and raises ValueError naming the bad value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from interflow_jax import (
    couplings,
    densities,
    diffusion,
    flows,
    interpolants,
    learnable,
    losses,
    time_sampling,
)
from interflow_jax.checks import check_positive_int
from interflow_jax.conditional import check_p_uncond
from interflow_jax.data import augment, images, mixtures, tabular, toy2d
from interflow_jax.data.image_folder import LabelledImages
from interflow_jax.models import (
    ResidualVelocityMLP,
    UNet,
    VelocityMLP,
    as_conditional_field,
    condition_kwargs,
    init_params,
)
from interflow_jax.training import optimizer as optimizer_lib
from interflow_jax.training import sharding
from interflow_jax.training.state import create_train_state

LEARNABLE = "learnable"


class FiniteData(NamedTuple):
    """A finite data set held on the host (tabular data, images).

    train: a source, `len(train)` and `train[indices] -> (k, *raw_shape)` (a numpy array
    is one); validation, test: numpy arrays (n, *raw_shape); preprocess(raw, key) -> x
    (n, *event_shape) maps raw examples to model space inside the jitted step.
    Labelled data: a split's `labels` attribute, int32 (n,) in 0..K-1 or indexable like
    the split (`split_labels`).
    """

    train: Any
    validation: np.ndarray | None
    test: np.ndarray
    preprocess: Any
    num_levels: int | None = None  # quantisation levels of discrete data (images)


class Problem(NamedTuple):
    """What to flow between: base rho0, target data, and the target's exact density.

    The target is either drawn in the graph (`sample_data(key, n)`, jax-traceable) or a
    finite data set read on the host (`finite`); `sample_data` is None for the latter.
    """

    event_shape: tuple[int, ...]
    base: densities.Density
    sample_data: Any  # (key, n) -> (n, *event_shape), jax-traceable, or None
    true_log_prob: Any  # (n, *event_shape) -> (n,), or None
    name: str
    finite: FiniteData | None = None
    # a user's files: their record and standardisation (own_data_problem.DataRecord)
    data_record: Any = None
    # labelled data (class-conditional flows, PAPER section 9): the number of classes K,
    # in-graph draws (key, n) -> ((n, *event_shape), (n,) int32) and the exact class
    # density (x, y) -> (n,), where known; finite data carry labels in their splits
    num_classes: int = 0
    sample_labelled: Any = None
    true_log_prob_given: Any = None


def _identity(raw, key):
    del key
    return raw


def _as_finite(splits) -> FiniteData:
    return FiniteData(splits.train, splits.validation, splits.test, _identity)


def build_problem(config) -> Problem:
    kind = config.data.kind
    builders = {"toy2d": _toy2d_problem, "gaussian": _gaussian_problem}
    builders.update(mixture=_mixture_problem, tabular=_tabular_problem, images=_image_problem)
    builders.update(own_data=_own_files_problem, image_folder=_own_files_problem)
    if kind not in builders:
        raise ValueError(f"config.data.kind must be one of {sorted(builders)}; got {kind!r}.")
    problem = builders[kind](config)
    if config.base.kind == FITTED_GAUSSIAN:
        problem = problem._replace(base=fitted_gaussian_base(config, problem))
    return problem


FITTED_GAUSSIAN = "fitted_gaussian"
FIT_KEY_OFFSET = 3 * 10**6  # fresh draws for the fit: disjoint from training and held out


def fitted_gaussian_base(config, problem: Problem) -> densities.Density:
    """N(m, S) with m, S the mean and covariance of the training data (PAPER section 5's
    Gaussian base, fitted instead of learned): the first base.num_fit_samples rows of a
    finite training split, or as many fresh draws from fold_in(seed_key, FIT_KEY_OFFSET).
    Deterministic given the config, so evaluation rebuilds the same base. The flow then
    only carries N(m, S) to the data; log-likelihoods stay exact."""
    if len(problem.event_shape) != 1:
        raise ValueError(
            f"base.kind='{FITTED_GAUSSIAN}' needs vector data (d,); the data "
            f"{problem.name!r} have events of shape {problem.event_shape}."
        )
    n = check_positive_int(config.base.get("num_fit_samples", 100_000), "base.num_fit_samples")
    key = jax.random.fold_in(seed_key(config), FIT_KEY_OFFSET)
    if problem.finite is not None:
        x = problem.finite.preprocess(jnp.asarray(problem.finite.train[:n]), key)
    elif problem.sample_data is not None:
        x = problem.sample_data(key, n)
    else:
        raise ValueError(
            f"base.kind='{FITTED_GAUSSIAN}' needs data to fit; {problem.name!r} has none."
        )
    return densities.full_gaussian(*densities.fit_gaussian(x))


def _own_files_problem(config) -> Problem:
    """A user's data matrix or image folder (training/own_data_problem.py)."""
    from interflow_jax.training import own_data_problem  # here: it builds on this module

    return own_data_problem.build_problem(config)


def _toy2d_problem(config) -> Problem:
    target = toy2d.get_dataset(config.data.name)
    problem = Problem((2,), build_base(config, (2,)), target.sample, target.log_prob, target.name)
    return problem._replace(
        num_classes=target.num_classes,
        sample_labelled=target.sample_labelled,
        true_log_prob_given=target.log_prob_given,
    )


def _gaussian_problem(config) -> Problem:
    target = gaussian_target(config)
    shape = target.event_shape
    return Problem(shape, build_base(config, shape), target.sample, target.log_prob, "gaussian")


def _mixture_problem(config) -> Problem:
    """Exact-density mixture: fresh samples every step, or a finite training set of
    `data.num_train` points (validation and test sets of `data.num_validation`,
    `data.num_test`) when num_train > 0."""
    target = mixtures.make_gaussian_mixture(check_positive_int(config.data.dim, "data.dim"))
    shape = (target.dim,)
    base = build_base(config, shape)
    num_train = config.data.get("num_train", 0)
    if not num_train:
        return Problem(shape, base, target.sample, target.log_prob, target.name)
    splits = target.splits(num_train, config.data.num_validation, config.data.num_test)
    return Problem(shape, base, None, target.log_prob, target.name, _as_finite(splits))


def _tabular_problem(config) -> Problem:
    """A MAF benchmark (POWER, GAS, HEPMASS, MINIBOONE, BSDS300) from data.dir or
    $INTERFLOW_DATA_DIR; no exact density."""
    splits = tabular.load_tabular(config.data.name, config.data.dir or None)
    shape = (splits.dim,)
    return Problem(shape, build_base(config, shape), None, None, splits.name, _as_finite(splits))


def _image_problem(config) -> Problem:
    """Images (PAPER sections 4 and 8), dequantised uniformly to (-1, 1) in the step.

    data.name 'digits' (scikit-learn's 8 x 8 digits, 17 levels, no download) or a TFDS
    name of images.IMAGE_DATASETS read from data.dir (else $TFDS_DATA_DIR); the first
    data.num_test test images are evaluated (all when 0). No validation split: the paper
    selects no checkpoint for images.
    """
    data = config.data
    if data.name == "digits":
        train, train_labels, test, test_labels = images.digits_labelled_splits(int(config.seed))
        train, test = LabelledImages(train, train_labels), LabelledImages(test, test_labels)
        levels, num_classes = images.DIGITS_NUM_LEVELS, 10
    else:
        train, test = _tfds_splits(config)
        levels, num_classes = images.NUM_LEVELS_8BIT, train.num_classes
    shape = tuple(int(n) for n in test.shape[1:])

    def preprocess(raw, key):
        return images.dequantize(raw, key, levels)

    finite = FiniteData(train, None, test, preprocess, levels)
    problem = Problem(shape, build_base(config, shape), None, None, data.name, finite)
    return problem._replace(num_classes=num_classes)


def _tfds_splits(config):
    """(train source, the first data.num_test test images): the test images with their
    labels when the model is conditional."""
    data = config.data
    spec = images.IMAGE_DATASETS.get(data.name)
    if spec is None:
        raise ValueError(
            f"config.data.name must be 'digits' or one of {list(images.IMAGE_DATASETS)}; "
            f"got {data.name!r}."
        )
    size = data.image_size or None
    train = images.TFDSImageSource(data.name, spec.train_split, data.dir or None, size)
    test_source = images.TFDSImageSource(data.name, spec.test_split, data.dir or None, size)
    rows = np.arange(min(len(test_source), data.num_test or len(test_source)))
    if not num_classes(config):
        return train, test_source[rows]
    return train, LabelledImages(test_source[rows], test_source.labels[rows])


def gaussian_target(config) -> densities.Density:
    """N(mean, scale^2 I) from config.data.mean (d,) and config.data.scale > 0."""
    mean = jnp.asarray(config.data.mean, dtype=jnp.result_type(float))
    if mean.ndim != 1 or not config.data.scale > 0:
        raise ValueError(
            f"gaussian data needs a mean vector and a positive scale; got mean="
            f"{config.data.mean}, scale={config.data.scale}."
        )
    return densities.diagonal_gaussian(mean, config.data.scale * jnp.ones_like(mean))


def build_base(config, event_shape) -> densities.Density:
    kind = config.base.kind
    if kind == "standard_gaussian":
        return densities.standard_gaussian(event_shape)
    if kind == "toy2d":
        source = toy2d.get_dataset(config.base.name)
        return densities.from_sampler(source.sample, event_shape, name=source.name)
    if kind == FITTED_GAUSSIAN:  # replaced by the fit in build_problem, once data exist
        return densities.standard_gaussian(event_shape)
    raise ValueError(
        f"config.base.kind must be 'standard_gaussian', 'toy2d' or '{FITTED_GAUSSIAN}'; "
        f"got {kind!r}."
    )


def build_model(config):
    """(flax module, field(t, x, params)) with the network's weights at params['velocity'].

    config.model.kind 'mlp' (VelocityMLP of model.hidden_sizes), 'resmlp'
    (ResidualVelocityMLP of the keyword arguments in model.resmlp) or 'unet' (UNet of the
    keyword arguments in model.unet). With model.num_classes = K > 0 the field is
    class-conditional: labels in params['labels'], the null label without them
    (`models.as_conditional_field`).
    """
    module = build_module(config.model)
    return module, as_conditional_field(module)


def num_classes(config) -> int:
    """K of a class-conditional model (config.model.num_classes), 0 for an unconditional one."""
    value = config.model.get("num_classes", 0)
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"config.model.num_classes must be an integer >= 0; got {value!r}.")
    return int(value)


def split_labels(problem: Problem, split: str):
    """The labels of a finite data set's split ('train', 'validation', 'test'), or None."""
    source = None if problem.finite is None else getattr(problem.finite, split)
    return getattr(source, "labels", None)


def check_labels(config, problem: Problem) -> None:
    """ValueError unless a conditional model (model.num_classes = K > 0) has labelled data
    with K classes; an unconditional model ignores labels."""
    k = num_classes(config)
    if not k:
        return
    labelled = problem.sample_labelled is not None or split_labels(problem, "train") is not None
    if not labelled:
        raise ValueError(
            f"config.model.num_classes={k} asks for a class-conditional model, but the data "
            f"{problem.name!r} have no labels."
        )
    if problem.num_classes and problem.num_classes != k:
        raise ValueError(
            f"config.model.num_classes={k} but the data {problem.name!r} have "
            f"{problem.num_classes} classes."
        )
    labels = split_labels(problem, "train")
    if isinstance(labels, np.ndarray) and labels.size and not 0 <= labels.min() <= labels.max() < k:
        raise ValueError(
            f"config.model.num_classes={k} but the labels of {problem.name!r} run from "
            f"{labels.min()} to {labels.max()}; they must lie in 0..{k - 1}."
        )


def augmentation(model) -> tuple[str, float]:
    """(kind, p_identity) of model.augmentation / model.augmentation_p_identity ('none' and
    1.0 when absent): the transforms a U-Net is conditioned on (`data.augment`)."""
    kind = model.get("augmentation", "none")
    augment.num_transforms(kind)
    p_identity = augment.check_p_identity(model.get("augmentation_p_identity", 1.0))
    if kind != "none" and model.get("kind", "mlp") != "unet":
        raise ValueError(
            f"model.augmentation={kind!r} transforms images and needs model.kind='unet'; got "
            f"{model.get('kind', 'mlp')!r}."
        )
    return kind, p_identity


def num_augmentations(model) -> int:
    """A of an augmentation-conditioned U-Net, 0 without augmentation."""
    kind, _ = augmentation(model)
    return 0 if kind == "none" else augment.num_transforms(kind)


def build_module(model):
    kind = model.get("kind", "mlp")
    classes = model.get("num_classes", 0)
    if kind == "unet":
        return UNet(
            **model.unet.to_dict(), num_classes=classes, num_augmentations=num_augmentations(model)
        )
    num_augmentations(model)  # a clear error for augmentation without a U-Net
    if kind == "resmlp":
        return ResidualVelocityMLP(**model.resmlp.to_dict(), num_classes=classes)
    if kind != "mlp":
        raise ValueError(f"config.model.kind must be 'mlp', 'resmlp' or 'unet'; got {kind!r}.")
    if not model.hidden_sizes or any(int(w) < 1 for w in model.hidden_sizes):
        raise ValueError(f"model.hidden_sizes must be positive widths; got {model.hidden_sizes}.")
    return VelocityMLP(
        hidden_sizes=tuple(int(w) for w in model.hidden_sizes),
        activation=model.activation,
        time_embedding_dim=model.time_embedding_dim,
        num_classes=classes,
        time_conditioning=model.get("time_conditioning", "concat"),
        time_embedding_scale=float(model.get("time_embedding_scale", 1e3)),
        logit_time_dim=int(model.get("logit_time_dim", 0)),
        gated_layers=int(model.get("gated_layers", 0)),
        linear_skip_terms=int(model.get("linear_skip_terms", 0)),
    )


def build_training_field(config):
    """`key -> field(t, x, params)` running the network in training mode (dropout drawn
    from `key`), or None when the model has no dropout (the plain field is used)."""
    module = build_module(config.model)
    if config.model.get("kind", "mlp") != "unet" or not module.dropout:
        return None

    def field_for(key):
        def field(t, x, params):
            rngs = {"dropout": key}
            kwargs = condition_kwargs(module, params)
            return module.apply(params["velocity"], t, x, train=True, rngs=rngs, **kwargs)

        return field

    return field_for


def is_learnable(config) -> bool:
    return config.interpolant == LEARNABLE


def build_interpolant(config):
    """(Interpolant, initial interpolant params or None)."""
    if is_learnable(config):
        spec = config.learnable
        return learnable.make_learnable_interpolant(spec.base, spec.num_terms)
    return interpolants.get_interpolant(config.interpolant), None


COUPLING_SCOPES = ("global", "per_device")


def build_coupling(config) -> couplings.Coupling:
    """config.loss.coupling and its settings (absent in older configs: independent)."""
    loss = config.loss
    return couplings.Coupling(
        kind=loss.get("coupling", "independent"),
        epsilon=loss.get("sinkhorn_epsilon", 0.05),
        max_iterations=loss.get("sinkhorn_max_iterations", 200),
        threshold=loss.get("sinkhorn_threshold", 1e-3),
        exact_solver=loss.get("exact_solver", "auto"),
        block_size=loss.get("coupling_block_size", 0),
    )


def build_pairing(config, base, mesh=None):
    """`pair(key, x0, x1, labels) -> x0'` of config.loss.coupling, or None (independent).

    loss.coupling_scope 'global' pairs the whole batch (under data parallelism the cost
    matrix gathers every device's shard); 'per_device' pairs each device's shard alone
    (no communication, plans over batch / devices pairs).
    """
    coupling = build_coupling(config)
    if coupling.is_independent:
        return None
    if base is not None and base.sample is None:
        raise ValueError(
            f"coupling {coupling.kind!r} pairs base samples with data, but the base "
            f"{base.name!r} is known only by its density and cannot be sampled."
        )
    scope = config.loss.get("coupling_scope", "global")
    if scope not in COUPLING_SCOPES:
        raise ValueError(f"loss.coupling_scope must be one of {COUPLING_SCOPES}; got {scope!r}.")
    devices = 1 if mesh is None else mesh.size
    couplings.check_batch_size(coupling, config.training.batch_size // devices)
    if devices > 1 and coupling.kind == "ot_exact" and coupling.exact_solver != "jax":
        logging.warning(
            "ot_exact with the host solver %r on %d devices: on CPU with several devices, "
            "host-solved plans of 256 pairs and more inside the step have stopped at XLA's "
            "collective rendezvous timeout; if the run stops there, set "
            "loss.exact_solver='jax' (in the graph) or use ot_sinkhorn.",
            coupling.exact_solver,
            devices,
        )
    if scope == "per_device" and mesh is not None:
        return couplings.per_device(coupling, mesh, sharding.DATA_AXIS)

    def pair(key, x0, x1, labels=None):
        return couplings.couple(coupling, key, x0, x1, labels)

    return pair


def build_loss(config, field, base, mesh=None):
    """loss_fn(params, batch, key) over params {'velocity', 'interpolant'?, 'base'?}.

    A learnable Gaussian base (params['base']) is sampled by reparameterisation, so the
    max-min game can move it (PAPER section 5). A batch with labels 'y' trains a
    conditional model with label dropout at loss.p_uncond (default 0.1, PAPER section 9).
    """
    ts = config.time_sampler
    sampler = time_sampling.make_time_sampler(ts.kind, ts.alpha, ts.beta, ts.t_min, ts.t_max)
    interpolant, _ = build_interpolant(config)
    num_base_samples = config.loss.num_base_samples or None
    num_times = check_positive_int(config.loss.num_times, "loss.num_times")
    training_field = build_training_field(config)
    pair = build_pairing(config, base, mesh)

    def make_core(velocity_field):
        return losses.make_velocity_loss(
            velocity_field,
            interpolant,
            sampler,
            base=base,
            estimator=config.loss.estimator,
            num_times=num_times,
            num_base_samples=num_base_samples,
            num_classes=num_classes(config),
            p_uncond=check_p_uncond(config.loss.get("p_uncond", 0.1)),
            pair=pair,
        )

    core = make_core(field)

    def loss_fn(params, batch, key):
        if "base" in params and "x0" not in batch:
            n = num_base_samples or batch["x1"].shape[0]
            x0 = learnable.gaussian_base_sample(params["base"], jax.random.fold_in(key, 7), n)
            batch = dict(batch, x0=x0)
        step_core = core
        if training_field is not None:  # dropout: a fresh mask per step
            step_core = make_core(training_field(jax.random.fold_in(key, 11)))
        return step_core(params, batch, key, params.get("interpolant"))

    return loss_fn


def build_ode_options(eval_config) -> flows.ODEOptions:
    options = flows.ODEOptions(
        solver=eval_config.solver,
        rtol=eval_config.rtol,
        atol=eval_config.atol,
        num_steps=eval_config.num_steps,
        progress=eval_config.get("show_progress", False),
    )
    flows.check_ode_options(options)
    return options


def build_sde_sampler(config, field):
    """`sample(params, x0, key, interpolant_params=None) -> X_{t_end}` of the SDE
    dX = [v + eps s] dt + sqrt(2 eps) dW (PAPER section 6) set by config.eval.sde."""
    spec = config.eval.sde
    if not build_coupling(config).is_independent:
        raise ValueError(
            f"The SDE sampler's score comes from the velocity through Gaussian x0 independent "
            f"of x1 (PAPER section 6); loss.coupling={config.loss.coupling!r} pairs them, so "
            "that identity does not hold. Sample with the ODE for coupled models."
        )
    if config.base.kind != "standard_gaussian":
        raise ValueError(
            f"The SDE sampler's score comes from the velocity through x0 ~ N(0, I) (PAPER "
            f"section 6); base.kind={config.base.kind!r} is another base. Sample with the ODE."
        )
    schedules = {"constant": diffusion.constant_eps, "vanishing": diffusion.vanishing_eps}
    if spec.eps_schedule not in schedules:
        raise ValueError(
            f"eval.sde.eps_schedule must be one of {sorted(schedules)}; got {spec.eps_schedule!r}."
        )
    interpolant, _ = build_interpolant(config)
    eps_fn = schedules[spec.eps_schedule](spec.eps)
    return diffusion.make_sde_sampler(
        field, interpolant, eps_fn, spec.solver, spec.num_steps, spec.t_end
    )


def build_flow(config, field, base) -> flows.Flow:
    ev = config.eval
    return flows.make_flow(
        field,
        base,
        build_ode_options(ev),
        divergence_kind=ev.divergence,
        num_probes=ev.num_probes,
        probe_kind=ev.probe_kind,
        hutchinson_mode=ev.get("hutchinson_mode", "forward"),
    )


def seed_key(config) -> jax.Array:
    return jax.random.key(int(config.seed))


TEST_KEY_OFFSET = 10**6  # held-out draws come from fold_in(seed_key, this + k): never trained on


def held_out_key(config, k: int = 0) -> jax.Array:
    """fold_in(seed_key, TEST_KEY_OFFSET + k): the evaluation's k-th stream of randomness
    (test points, probes, samples, figures), disjoint from every training step's key."""
    return jax.random.fold_in(seed_key(config), TEST_KEY_OFFSET + k)


def build_optimizer(config):
    """AdamW for params['velocity']; gradient *ascent* for the learned parts.

    The learned parts ('interpolant', 'base') take Adam ascent steps at a cosine-decayed
    rate, one per `learnable.inner_steps` steps: the max-min game of PAPER section 5
    (min over v, max over the interpolant).
    """
    opt, training = config.optimizer, config.training
    velocity = optimizer_lib.make_optimizer(
        opt.learning_rate,
        opt.warmup_steps,
        check_positive_int(training.num_steps, "training.num_steps"),
        opt.grad_clip_norm,
        opt.weight_decay,
        b1=float(opt.get("b1", 0.9)),
        b2=float(opt.get("b2", 0.999)),
        flatten=bool(opt.get("flatten", False)),
    )
    if not is_learnable(config):
        return optax.multi_transform(
            {"velocity": velocity}, lambda params: dict.fromkeys(params, "velocity")
        )
    spec = config.learnable
    if not spec.learning_rate > 0:
        raise ValueError(f"learnable.learning_rate must be positive; got {spec.learning_rate}.")
    every = check_positive_int(spec.inner_steps, "learnable.inner_steps")
    return optimizer_lib.make_max_min_optimizer(
        velocity, spec.learning_rate, every, training.num_steps
    )


def make_init_state(config, event_shape):
    """Return a no-argument function building the initial TrainState (for jit/eval_shape)."""
    module, _ = build_model(config)
    optimizer = build_optimizer(config)
    _, interpolant_params = build_interpolant(config)
    learn_base = is_learnable(config) and config.learnable.learn_base

    def init():
        key = jax.random.fold_in(seed_key(config), 1)
        params = {"velocity": init_params(module, key, event_shape)}
        if interpolant_params is not None:
            params["interpolant"] = interpolant_params
        if learn_base:
            params["base"] = learnable.learnable_gaussian_base_params(event_shape[0])
        return create_train_state(params, optimizer)

    return init


def base_for(params, problem) -> densities.Density:
    """The base density: a learned Gaussian when params hold one, else the problem's."""
    if "base" in params:
        return learnable.as_density(params["base"])
    return problem.base


def abstract_state(config, event_shape: tuple[int, ...] | None = None):
    """Shapes and dtypes of the TrainState, to restore a checkpoint into.

    Pass the problem's `event_shape` when it is at hand; otherwise the problem is built
    to find it (for a finite mixture that draws its data).
    """
    if event_shape is None:
        event_shape = build_problem(config).event_shape
    return jax.eval_shape(make_init_state(config, tuple(event_shape)))
