"""Maximum-likelihood training of a continuous flow (FFJORD style), the paper's baseline.

    L(theta) = -E_x[ log rho^_1(x) ],  log rho^_1(x) = log rho0(X_0) - int_0^1 div v(X_s) ds

computed by solving the augmented ODE backward from x at every step and
differentiating through the solve (PAPER sections 4 and 8: this is the cost the
quadratic interpolant loss avoids). The solver, tolerances and diffrax adjoint come from
`flows.ODEOptions` (e.g. `adjoint=diffrax.BacksolveAdjoint()` for O(1) memory).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from interflow_jax import flows
from interflow_jax.densities import Density


def make_max_likelihood_loss(
    field: flows.VelocityField,
    base: Density,
    options: flows.ODEOptions = flows.DEFAULT_ODE_OPTIONS,
    divergence_kind: str = "hutchinson",
    num_probes: int = 1,
    probe_kind: str = "rademacher",
):
    """Return `loss_fn(params, batch, key) -> (NLL, metrics)` with batch {'x1': (n, *dims)}.

    metrics: 'loss' (mean NLL in nats) and 'nfe' (function evaluations of the forward
    solve; the backward pass adds its own).
    """
    log_prob = flows.make_log_prob(field, base, options, divergence_kind, num_probes, probe_kind)

    def loss_fn(params, batch, key):
        x = batch["x1"]
        out = log_prob(params, x, jnp.ones((), x.dtype), key)
        nll = -jnp.mean(out.log_prob)
        return nll, {"loss": nll, "nfe": jax.lax.stop_gradient(out.nfe).astype(x.dtype)}

    return loss_fn
