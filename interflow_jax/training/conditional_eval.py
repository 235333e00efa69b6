"""Evaluation of class-conditional flows (PAPER section 9): likelihoods and guided samples.

For a model with config.model.num_classes = K > 0, `evaluation.evaluate` reports
`test_nll` = -log p(x | null) (the unconditional field, comparable with unconditional
models) and adds:

- `likelihood_metrics`: -log p(x | y) of the labelled test points under the conditional
  field (w = 1) as `conditional_test_nll`, its paired difference to -log p(x | null),
  bits/dim for images, the gap to the exact class density where it is known (8 Gaussians);
  with eval.consistency_check the paired difference
  log (1/K sum_y p(x | y)) - log p(x | null), which is 0 for a consistent model (uniform
  p(y); K likelihood solves per point). A guided field with w != 0, 1 defines no density,
  so no likelihood is reported for it.
- `guided_sample_metrics`: eval.samples_per_class ODE samples of each class at each
  guidance scale w of eval.guidance, from the same base draws for every w; where the class
  densities are known, the fraction of samples whose most likely class (argmax_y
  log p(x | y), i.e. the nearest centre for 8 Gaussians) is the requested one; a figure
  per w (one row per class for images).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from interflow_jax import conditional, flows, plotting
from interflow_jax.data import images
from interflow_jax.training import figures as pictures
from interflow_jax.training import own_data_problem, setup

MAX_GRID_CLASSES = 10  # classes shown in evaluation grids (ImageNet has 1,000)
GUIDED_KEY = 8  # guided samples draw from setup.held_out_key(config, GUIDED_KEY)
DEFAULT_GUIDANCE = (0.0, 1.0)  # without eval.guidance (config_io.make_conditional sets it)
DEFAULT_SAMPLES_PER_CLASS = 8


def test_labels(config, problem, num_points: int) -> np.ndarray:
    """int32 labels (n,) of `evaluation.test_points(config, problem, num_points)`: the first
    num_points of the test split (all when 0), or the labels of the same in-graph draws."""
    if problem.finite is not None:
        labels = setup.split_labels(problem, "test")
        if labels is None:
            raise ValueError(f"The test split of {problem.name!r} has no labels.")
        return np.asarray(labels[: num_points or len(problem.finite.test)], np.int32)
    if problem.sample_labelled is None:
        raise ValueError(f"The data {problem.name!r} have no labels.")
    return np.asarray(problem.sample_labelled(setup.held_out_key(config), num_points)[1])


def _nll_summary(prefix: str, log_prob, probe_error):
    """({prefix}_nll, {prefix}_nll_stderr over points and probes), per-point NLL (n,)."""
    nll = -np.asarray(log_prob, dtype=np.float64)
    n = nll.size
    probe_part = math.sqrt(float(np.sum(np.asarray(probe_error, np.float64) ** 2))) / n
    stderr = math.sqrt((nll.std(ddof=1) / math.sqrt(n)) ** 2 + probe_part**2)
    return {f"{prefix}_nll": float(nll.mean()), f"{prefix}_nll_stderr": stderr}, nll


def _paired(name: str, difference: np.ndarray) -> dict:
    """Mean of a per-point difference (n,) and its standard error over points."""
    return {
        name: float(difference.mean()),
        f"{name}_stderr": float(difference.std(ddof=1) / math.sqrt(difference.size)),
    }


def _bits_per_dim(problem, metrics: dict, prefix: str) -> dict:
    """bits/dim of dequantised images from an NLL of z in (-1, 1)^D (PAPER section 4)."""
    levels = None if problem.finite is None else problem.finite.num_levels
    if levels is None:
        return {}
    dims = math.prod(problem.event_shape)
    bpd = float(images.bits_per_dim(-metrics[f"{prefix}_nll"], dims, levels))
    stderr = metrics[f"{prefix}_nll_stderr"] / (dims * math.log(2))
    return {f"{prefix}_bits_per_dim": bpd, f"{prefix}_bits_per_dim_stderr": stderr}


def _true_class_nll(problem, x, labels, model_nll) -> dict:
    """-log p(x | y) of the exact class densities and the model's paired gap to it."""
    if problem.true_log_prob_given is None:
        return {}
    true_nll = -np.asarray(problem.true_log_prob_given(x, jnp.asarray(labels)), np.float64)
    return {
        "conditional_true_nll": float(true_nll.mean()),
        **_paired("conditional_nll_gap", model_nll - true_nll),
    }


def likelihood_metrics(config, problem, flow, params, x, null_nll) -> dict:
    """Conditional likelihoods on the test points x (n, *event_shape); null_nll (n,) is
    -log p(x | null) of the same points with the same probes (`evaluation.test_nll`)."""
    labels = test_labels(config, problem, config.eval.num_test_points)
    key = setup.held_out_key(config, 1)  # the probes of evaluation.test_nll: paired
    log_prob, probe_error, _ = conditional.log_prob_in_chunks(
        flow, params, x, labels, config.eval.chunk_size, key=key
    )
    results, nll = _nll_summary("conditional_test", log_prob, probe_error)
    results.update(_paired("conditional_minus_null_nll", nll - null_nll))
    results.update(_bits_per_dim(problem, results, "conditional_test"))
    results.update(_true_class_nll(problem, x, labels, nll))
    if config.eval.get("consistency_check", False):
        mixture, _ = conditional.log_prob_mixture(
            flow, params, x, setup.num_classes(config), config.eval.chunk_size, key=key
        )
        mixture = np.asarray(mixture, np.float64)
        results["consistency_mixture_nll"] = float(-mixture.mean())
        results.update(_paired("consistency_log_mixture_minus_null", mixture + null_nll))
    return results


def class_labels(classes, per_class: int) -> np.ndarray:
    """int32 labels (len(classes) * per_class,): each class repeated per_class times."""
    return np.repeat(np.asarray(classes, np.int32), per_class)


def make_guided_sampler(config, problem, field, sde: bool = False):
    """Return `sample(params, labels, w, key) -> (n, *event_shape)` numpy samples.

    Guided samples of the classes `labels` (n,) at guidance w (v(null) + w (v(y) - v(null)),
    w read from params so that one compilation serves every w): the ODE from 0 to 1 as set
    by config.eval, or the SDE of config.eval.sde (to its t_end), in chunks of
    eval.chunk_size (the last one padded) from base draws of `key`.
    """
    velocity = conditional.make_guided_field(field)
    if sde:
        solve = setup.build_sde_sampler(config, velocity)
    else:
        transport = flows.make_transport(velocity, setup.build_ode_options(config.eval))

        def solve(bound, x0, key, interpolant_params):
            del key, interpolant_params
            zero, one = jnp.asarray(0.0, x0.dtype), jnp.asarray(1.0, x0.dtype)
            return transport(bound, x0, zero, one).x

    def sample(params, labels, guidance, key):
        n, size = len(labels), config.eval.chunk_size
        total = -(-n // size) * size
        x0 = setup.base_for(params, problem).sample(key, total)
        padded = np.concatenate([labels, np.repeat(labels[:1], total - n)])
        weighted = conditional.with_guidance(params, guidance)
        chunks = []
        for i in range(0, total, size):
            bound = conditional.with_labels(weighted, padded[i : i + size])
            chunk_key = jax.random.fold_in(key, i)
            chunk = solve(bound, x0[i : i + size], chunk_key, params.get("interpolant"))
            chunks.append(np.asarray(chunk))
        return np.concatenate(chunks)[:n]

    return sample


def class_accuracy(problem, x, labels) -> float | None:
    """Fraction of samples whose most likely class argmax_y log p(x | y) under the exact
    class densities (equal priors) is their label; None when those are unknown."""
    if problem.true_log_prob_given is None:
        return None
    x = jnp.asarray(x)
    scores = jnp.stack(
        [
            problem.true_log_prob_given(x, jnp.full(x.shape[:1], k, jnp.int32))
            for k in range(problem.num_classes)
        ]
    )
    return float(np.mean(np.asarray(jnp.argmax(scores, axis=0)) == labels))


def write_class_figure(config, problem, x, labels, path: str, title: str) -> None:
    """Images: a grid with one row per class (in the order of `labels`); 2-D (or more):
    the first two coordinates coloured by class."""
    x = np.asarray(x)
    if pictures.is_image(problem):
        pixels = pictures.image_grid_pixels(problem, x)
        images.save_image_grid(pixels, path, num_rows=len(np.unique(labels)))
        return
    extent = pictures.plot_extent(config, x)
    plotting.plot_labelled_samples(x[:, :2], labels, path, extent, title)


def guided_sample_metrics(config, workdir, problem, field, params, figures: bool) -> dict:
    """Guided ODE samples of each class at each w of eval.guidance; accuracies where the
    class densities are known, and the figures `samples_guided_w<w>.png` (process 0)."""
    per_class = config.eval.get("samples_per_class", DEFAULT_SAMPLES_PER_CLASS)
    shown = setup.num_classes(config)
    if pictures.is_image(problem):
        shown = min(shown, MAX_GRID_CLASSES)
    labels = class_labels(range(shown), per_class)
    key = setup.held_out_key(config, GUIDED_KEY)
    sample = make_guided_sampler(config, problem, field)
    results = {"guided_samples_per_class": int(per_class)}
    for w in config.eval.get("guidance", DEFAULT_GUIDANCE):
        x = sample(params, labels, w, key)  # the same base draws for every w
        accuracy = class_accuracy(problem, x, labels)
        if accuracy is not None:
            results[f"guided_accuracy_w{w:g}"] = accuracy
        if figures and jax.process_index() == 0:
            path = os.path.join(workdir, f"samples_guided_w{w:g}.png")
            write_class_figure(config, problem, x, labels, path, f"guided samples, w = {w:g}")
    return results


def to_data_units(problem, x) -> np.ndarray:
    """Samples in the data's units: images as their integer levels 0..L-1 (uint8, the
    inverse of the dequantisation), standardised tables scaled back, else unchanged."""
    if pictures.is_image(problem):
        levels = problem.finite.num_levels
        z = np.asarray(x, np.float64)
        return np.clip(np.floor((z + 1.0) / 2.0 * levels), 0, levels - 1).astype(np.uint8)
    return np.asarray(own_data_problem.to_data_units(problem, x))


GRID_COLUMNS = 16  # samples of each class shown in a grid row


def requested_labels(label: str, num_classes: int, num_samples: int) -> np.ndarray:
    """Labels (n,) for `sample.py --label`: 'all' gives num_samples of each class, an
    integer K in 0..num_classes-1 gives num_samples of class K."""
    if not num_classes:
        raise ValueError(
            f"--label={label} needs a class-conditional model (model.num_classes > 0); this "
            "model is unconditional."
        )
    if label == "all":
        return class_labels(range(num_classes), num_samples)
    if not label.strip().isdigit() or int(label) >= num_classes:
        raise ValueError(
            f"--label must be 'all' or a class in 0..{num_classes - 1}; got {label!r}."
        )
    return class_labels([int(label)], num_samples)


def check_output_path(path: str) -> None:
    """ValueError unless `path` names a .npz file in an existing folder."""
    if not path.endswith(".npz"):
        raise ValueError(f"--output must name a .npz file; got {path!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--output {path!r}: the folder {folder} does not exist.")


def write_labelled_samples(config, problem, x, labels, guidance, path: str) -> str:
    """Write `path` (.npz: 'samples' in data units, 'labels' (n,), 'guidance') and beside
    it a figure (PATH.png) with one row per class (up to GRID_COLUMNS samples each)."""
    check_output_path(path)
    data = to_data_units(problem, x)
    np.savez(path, samples=data, labels=labels, guidance=np.float64(guidance))
    shown = np.concatenate([np.flatnonzero(labels == k)[:GRID_COLUMNS] for k in np.unique(labels)])
    points = np.asarray(x)[shown] if pictures.is_image(problem) else data
    labels = labels[shown] if pictures.is_image(problem) else labels
    figure = path[: -len(".npz")] + ".png"
    title = f"guided samples, w = {guidance:g}"
    write_class_figure(config, problem, points, labels, figure, title)
    return figure
