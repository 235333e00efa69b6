"""Class-conditional flows and classifier-free guidance (PAPER section 9, conditioning).

A label is data, not a new signature. A conditional field is still `field(t, x, params)`
and reads its labels from `params['labels']`: integers of shape () or (batch,) in
{0, ..., K - 1}, or the null label K; without that entry it is the unconditional field
v(t, x | null). So diffrax `args`, sharding, divergences and every likelihood function
work unchanged (see `models.as_conditional_field`).

- Conditional flow: pairs drawn from rho0 x rho1(. | y) give v_t(x | y), whose flow carries
  rho0 to rho1(. | y), so `flows` gives log p(x | y) with params carrying the labels and
  log p(x) with the null label (no labels in params).
- Label dropout: the loss replaces each label by the null label K with probability
  p_uncond (independently per example), so one network learns both v(. | y) and
  v(. | null) (Ho & Salimans 2022, classifier-free guidance).
- Guidance: v_w = v(null) + w (v(y) - v(null)) (`make_guided_field`); w = 1 is the
  conditional field and w = 0 the unconditional one. Only those two are flows of known
  densities: for w != 1 (and w != 0) the guided field transports rho0 to *some* density,
  which is not p(x | y) (nor any density the model names), so a likelihood computed with a
  guided field is not a likelihood of the model. Use it for sampling only.
- Consistency: p(x) = sum_y p(y) p(x | y) (`log_prob_mixture`) checks a jointly trained
  model's unconditional field against its conditional ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from interflow_jax.checks import check_positive_int

LABELS = "labels"
GUIDANCE = "guidance"
VelocityField = Callable[[jax.Array, jax.Array, Any], jax.Array]


def _check_mapping(params) -> None:
    if not isinstance(params, Mapping):
        raise ValueError(
            "A conditional field reads its labels from params['labels']: params must be a "
            f"dict such as {{'velocity': weights}}; got {type(params).__name__}."
        )


def with_labels(params, labels) -> dict:
    """params with params['labels'] = labels (int32, shape () or (batch,))."""
    _check_mapping(params)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers; got dtype {labels.dtype}.")
    return {**params, LABELS: labels.astype(jnp.int32)}


def without_labels(params) -> dict:
    """params without 'labels': a conditional field then uses the null label."""
    _check_mapping(params)
    return {k: v for k, v in params.items() if k != LABELS}


def check_p_uncond(p_uncond) -> float:
    """p_uncond as a float in [0, 1], else ValueError naming it."""
    if not 0.0 <= float(p_uncond) <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1]; got {p_uncond!r}.")
    return float(p_uncond)


def drop_labels(key: jax.Array, labels: jax.Array, p_uncond: float, num_classes: int):
    """Labels (N,) with each replaced by the null label K = num_classes w.p. p_uncond.

    The draws are independent per example (Bernoulli(p_uncond) from `key`).
    """
    drop = jax.random.bernoulli(key, p_uncond, labels.shape)
    return jnp.where(drop, num_classes, labels).astype(jnp.int32)


def make_label_binder(num_classes: int, p_uncond: float):
    """Return `bind(params, batch, key, repeats=()) -> params` for the loss.

    Without 'y' in the batch, params are returned as they are. With batch['y'] (N,) the
    labels are dropped to the null label w.p. p_uncond (`drop_labels`), broadcast to
    (*repeats, N) and flattened (one label per network input: the all-pairs estimator
    repeats the N targets over times and base samples), and bound as params['labels'].
    The transform indices batch['augmentation'] (N,) of augmented images
    (`data.augment`) are broadcast the same way, never dropped, as params['augmentation'].
    """
    p_uncond = check_p_uncond(p_uncond)

    def bind(params, batch, key, repeats=()):
        if "augmentation" in batch:
            indices = batch["augmentation"]
            indices = jnp.broadcast_to(indices, (*repeats, indices.shape[0])).reshape(-1)
            params = {**params, "augmentation": indices.astype(jnp.int32)}
        if "y" not in batch:
            return params
        if num_classes < 1:
            raise ValueError(
                "The batch carries labels 'y' but the loss was made with num_classes = "
                f"{num_classes}; pass the number of classes to condition on them."
            )
        labels = drop_labels(key, batch["y"], p_uncond, num_classes)
        labels = jnp.broadcast_to(labels, (*repeats, labels.shape[0])).reshape(-1)
        return with_labels(params, labels)

    return bind


def with_guidance(params, guidance) -> dict:
    """params with params['guidance'] = w, read by `make_guided_field(field)` (w = None)."""
    _check_mapping(params)
    return {**params, GUIDANCE: jnp.asarray(guidance, jnp.result_type(float))}


def make_guided_field(field: VelocityField, guidance=None) -> VelocityField:
    """Classifier-free guidance: `guided(t, x, params) = v(null) + w (v(y) - v(null))`.

    field: a conditional field (labels in params['labels'], null label without them).
    guidance: w, a float; or None to read w from params['guidance'] (`with_guidance`), a
    scalar passed like the weights, so that one compiled solver serves every w.
    v(y) = field(t, x, params) and v(null) = field(t, x, without_labels(params)) (the
    field never sees 'guidance'); t (batch,), x (batch, *dims) -> (batch, *dims).
    w = 1 gives the conditional field, w = 0 the unconditional one (both to rounding; the
    formula is always evaluated). A guided field with w != 0, 1 defines no density of the
    model: sample with it, never report its likelihood.
    """

    def guided(t, x, params):
        w = params[GUIDANCE] if guidance is None else guidance
        params = {k: v for k, v in params.items() if k != GUIDANCE}
        conditional = field(t, x, params)
        unconditional = field(t, x, without_labels(params))
        w = jnp.asarray(w, conditional.dtype)
        return unconditional + w * (conditional - unconditional)

    return guided


def _pad(values: jax.Array, total: int) -> jax.Array:
    """values (n, ...) padded to (total, ...) with repeats of values[0]."""
    extra = jnp.repeat(values[:1], total - values.shape[0], axis=0)
    return jnp.concatenate([values, extra])


def log_prob_in_chunks(flow, params, x, labels, chunk_size: int, t: float = 1.0, key=None):
    """log rho_t(x | y) over x (n, *dims) with labels (n,) or (), `chunk_size` per solve.

    As `flows.log_prob_in_chunks` (same padding and keys: chunk i uses fold_in(key, i)),
    with each chunk's labels bound into params. labels=None gives log p(x | null) = log
    p(x) of the unconditional field. Returns (log_prob (n,), standard_error (n,), NFEs).
    """
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    key = jax.random.key(0) if key is None else key
    n = x.shape[0]
    num_chunks = -(-n // chunk_size)
    padded = _pad(x, num_chunks * chunk_size)
    if labels is not None:
        labels = _pad(jnp.broadcast_to(jnp.asarray(labels), (n,)), num_chunks * chunk_size)
    values, errors, nfes = [], [], []
    for i in range(num_chunks):
        part = slice(i * chunk_size, (i + 1) * chunk_size)
        chunk_params = (
            without_labels(params) if labels is None else with_labels(params, labels[part])
        )
        out = flow.log_prob(chunk_params, padded[part], t, jax.random.fold_in(key, i))
        values.append(out.log_prob)
        errors.append(out.standard_error)
        nfes.append(int(out.nfe))
    return jnp.concatenate(values)[:n], jnp.concatenate(errors)[:n], nfes


def log_prob_mixture(
    flow, params, x, num_classes: int, chunk_size: int, class_log_probs=None, key=None
):
    """log sum_y p(y) p(x | y) over the K classes, (n,), from K conditional solves.

    class_log_probs: log p(y) (K,); default uniform, log(1/K). Every class uses the same
    Hutchinson probes (the same key). Returns (log p(x) (n,), per-class log p(x | y) (K, n)).
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if class_log_probs is None:
        class_log_probs = np.full(num_classes, -np.log(num_classes))
    class_log_probs = jnp.asarray(class_log_probs, x.dtype)
    if class_log_probs.shape != (num_classes,):
        raise ValueError(
            f"class_log_probs must have shape ({num_classes},); got {class_log_probs.shape}."
        )
    per_class = jnp.stack(
        [
            log_prob_in_chunks(flow, params, x, jnp.asarray(y), chunk_size, key=key)[0]
            for y in range(num_classes)
        ]
    )
    return logsumexp(per_class + class_log_probs[:, None], axis=0), per_class
