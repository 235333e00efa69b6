"""The one bridge from Flax modules to the core's `field(t, x, params)` signature."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def as_field(module: nn.Module):
    """Return `field(t, x, params) = module.apply(params, t, x)`.

    t: (batch,) times; x: (batch, *dims). The module must map (t, x) to dx/dt of x's shape.
    A module with a closed-form trace (`VelocityMLP` with 1 or 2 hidden layers) also gives
    `field.value_and_divergence(t, x, params) -> (v, div_x v)`, which exact likelihoods
    (`flows`) use instead of dim(x) Jacobian-vector products.
    """

    def field(t, x, params):
        return module.apply(params, t, x)

    if getattr(module, "has_closed_form_divergence", False):

        def value_and_divergence(t, x, params):
            return module.apply(params, t, x, method="velocity_and_divergence")

        field.value_and_divergence = value_and_divergence
    return field


def as_conditional_field(module: nn.Module):
    """Return `field(t, x, params) = module.apply(params['velocity'], t, x, y=labels)`.

    For a module with `num_classes = K > 0` (`models.labels`): the labels travel inside
    params, as params['labels'] of shape () or (batch,) with values in {0, ..., K}; without
    that entry the null label K is used, which gives the unconditional field. Keeping the
    labels in params keeps the one signature field(t, x, params), so flows, likelihoods
    and samplers work unchanged (`interflow_jax.conditional.with_labels`). As `as_field`,
    a closed-form trace comes as `field.value_and_divergence`. A module with
    `num_augmentations > 0` also reads params['augmentation'] (transform indices; without
    it, the identity), `condition_kwargs`.
    """

    def field(t, x, params):
        return module.apply(params["velocity"], t, x, **condition_kwargs(module, params))

    if getattr(module, "has_closed_form_divergence", False):

        def value_and_divergence(t, x, params):
            return module.apply(
                params["velocity"],
                t,
                x,
                **condition_kwargs(module, params),
                method="velocity_and_divergence",
            )

        field.value_and_divergence = value_and_divergence
    return field


def condition_kwargs(module: nn.Module, params) -> dict:
    """The keyword arguments a conditional field passes its module from params: the labels
    y = params.get('labels'), and the augmentation indices params.get('augmentation') for a
    module with `num_augmentations > 0`."""
    kwargs = {"y": params.get("labels")}
    if getattr(module, "num_augmentations", 0):
        kwargs["augmentation"] = params.get("augmentation")
    return kwargs


def init_params(module: nn.Module, key: jax.Array, event_shape: tuple[int, ...]):
    """Initialise `module` on a dummy batch of one sample of `event_shape`."""
    t = jnp.zeros((1,))
    x = jnp.zeros((1, *event_shape))
    return module.init(key, t, x)
