"""Flax velocity networks and the adapter to `field(t, x, params)`."""

from interflow_jax.models.adapter import as_field, init_params
from interflow_jax.models.mlp import VelocityMLP, sinusoidal_embedding

__all__ = ["VelocityMLP", "as_field", "init_params", "sinusoidal_embedding"]
