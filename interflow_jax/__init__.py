"""interflow_jax: normalizing flows with stochastic interpolants in JAX.

Albergo & Vanden-Eijnden, "Building Normalizing Flows with Stochastic Interpolants",
ICLR 2023. The core (interpolants, losses, divergence, flows, densities) is pure JAX
and never reads configs; `interflow_jax.training` turns configs into runs.
"""

from interflow_jax import (
    conditional,
    densities,
    divergence,
    flows,
    gaussian,
    interpolants,
    losses,
    time_sampling,
)

__version__ = "0.1.0"
__all__ = [
    "conditional",
    "densities",
    "divergence",
    "flows",
    "gaussian",
    "interpolants",
    "losses",
    "time_sampling",
]
