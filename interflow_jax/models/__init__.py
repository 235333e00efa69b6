"""Flax velocity networks and the adapter to `field(t, x, params)`."""

from interflow_jax.models.adapter import (
    as_conditional_field,
    as_field,
    condition_kwargs,
    init_params,
)
from interflow_jax.models.mlp import ResidualVelocityMLP, VelocityMLP, sinusoidal_embedding
from interflow_jax.models.unet import DDPM_CIFAR10, UNet, count_params

__all__ = [
    "DDPM_CIFAR10",
    "ResidualVelocityMLP",
    "UNet",
    "VelocityMLP",
    "as_conditional_field",
    "as_field",
    "condition_kwargs",
    "count_params",
    "init_params",
    "sinusoidal_embedding",
]
