"""optax optimiser: Adam(W) with linear warm-up, cosine decay and gradient clipping."""

from __future__ import annotations

import optax

from interflow_jax.checks import check_positive_int


def make_learning_rate(peak: float, warmup_steps: int, total_steps: int, final_fraction=0.01):
    """Linear warm-up 0 -> peak over `warmup_steps`, then cosine decay to final_fraction*peak."""
    if peak <= 0:
        raise ValueError(f"learning_rate must be positive; got {peak}.")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < num_steps; got warmup_steps={warmup_steps}, "
            f"num_steps={total_steps}."
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=final_fraction * peak,
    )


def make_optimizer(
    learning_rate: float,
    warmup_steps: int,
    total_steps: int,
    grad_clip_norm: float = 1.0,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    flatten: bool = False,
) -> optax.GradientTransformation:
    """clip_by_global_norm(grad_clip_norm) then AdamW (moment decays b1, b2) with the
    warm-up/cosine schedule.

    flatten: run both on the parameters raveled into one vector (`optax.flatten`; the
    same updates up to summation order, Adam's moments stored as one vector each). A
    model of many small tensors then costs a few large kernels instead of a few per
    tensor: for the digits U-Net (~130 tensors) on a CPU, 1.04x the steps/s side by side
    (inside the noise), 1.19x between separate processes (BUILD_NOTES, Architecture
    decisions).
    """
    if grad_clip_norm <= 0:
        raise ValueError(f"grad_clip_norm must be positive; got {grad_clip_norm}.")
    for name, value in (("b1", b1), ("b2", b2)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"optimizer.{name} must lie in [0, 1); got {value}.")
    schedule = make_learning_rate(learning_rate, warmup_steps, total_steps)
    optimizer = optax.chain(
        optax.clip_by_global_norm(grad_clip_norm),
        optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay),
    )
    return optax.flatten(optimizer) if flatten else optimizer


def make_max_min_optimizer(
    velocity: optax.GradientTransformation,
    ascent_learning_rate: float,
    inner_steps: int,
    total_steps: int,
) -> optax.GradientTransformation:
    """Descent on params['velocity'], Adam *ascent* on every other entry (PAPER section 5).

    The max-min game min_v max_{interpolant, base} G: `velocity` updates the network each
    step; the other entries ('interpolant', 'base') take one ascent step per
    `inner_steps` steps, at a rate cosine-decayed to 0 over the run's outer updates.
    params must be a dict with a 'velocity' entry.
    """
    if not ascent_learning_rate > 0:
        raise ValueError(f"ascent learning rate must be positive; got {ascent_learning_rate}.")
    inner_steps = check_positive_int(inner_steps, "inner_steps")
    schedule = optax.cosine_decay_schedule(ascent_learning_rate, max(total_steps // inner_steps, 1))
    ascent = optax.chain(optax.scale(-1.0), optax.adam(schedule))
    outer = optax.MultiSteps(ascent, every_k_schedule=inner_steps)
    return optax.multi_transform({"velocity": velocity, "outer": outer}, _max_min_labels)


def _max_min_labels(params):
    return {name: ("velocity" if name == "velocity" else "outer") for name in params}
