"""Couplings of base and target samples within a batch (minibatch optimal transport).

The quadratic loss (PAPER section 3) needs pairs (x0, x1) whose marginals are rho0 and
rho1; it never needs them independent. With a coupling pi(x0, x1) of those marginals the
interpolant's density rho_t still runs from rho0 (t = 0) to rho1 (t = 1), the minimiser of
G is its velocity v_t(x) = E_pi[dI/dt | x_t = x], and the ODE of v carries rho0 to rho1:
likelihoods of the learned flow are computed exactly as before. Pairing the samples of a
batch by an optimal-transport plan for the cost |x0 - x1|^2 (Pooladian et al. 2023; Tong
et al. 2023) gives straighter paths: a smaller path length int E|v|^2 dt, fewer steps
for an adaptive solver, usable few-step samplers.

Kinds (`COUPLINGS`):
- 'independent': the pairs as drawn (x0_i, x1_i).
- 'ot_exact': the permutation sigma minimising sum_j |x0_sigma(j) - x1_j|^2 (the exact
  assignment). Both marginals are exact: every x0 and every x1 of the batch is used once.
  `exact_solver`: 'pot' (POT's network simplex `ot.emd`, run to optimality) or 'scipy'
  (`linear_sum_assignment`), both on the host through `jax.pure_callback` (the call sits
  inside the jitted step), or 'jax', optax's Hungarian algorithm in the graph (what
  `ott.tools.unreg.hungarian` calls); 'auto' (the default) takes scipy for plans of up
  to AUTO_SCIPY_MAX_SIZE pairs and POT above. Measured on 2 CPU cores (see BUILD_NOTES):
  at n = 1024 POT 0.5 s, scipy 3-4 s, optax 16 s; at n = 64 scipy 0.16 ms, POT 0.38 ms;
  at n = 256 scipy 4.3 ms, POT 4.6 ms.
- 'ot_sinkhorn': the entropic plan P (ott-jax's Sinkhorn, log domain) for the cost
  divided by its batch mean, regularisation `epsilon`; each x1_j keeps its place and
  draws its partner i ~ P[:, j] / sum_i P[i, j]. Sampling from the plan, not its argmax:
  an argmax sends several x1 to one x0 and leaves others out, which biases a marginal
  (the field would then carry rho0 to a distorted rho1); sampling keeps the x1 marginal
  exact (each x1 and its label used once) and the x0 marginal exact up to Sinkhorn's
  tolerance on the plan's row sums.

With labels (class-conditional flows), pairs are made within a class: x0_j is given the
label of x1_j (the base samples are i.i.d., so this gives each class its count of base
samples) and pairs across classes cost a penalty larger than any within-class
assignment, so the exact plan never crosses classes and the Sinkhorn plan puts
exp(-penalty / epsilon) = 0 mass there.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

COUPLINGS = ("independent", "ot_exact", "ot_sinkhorn")
EXACT_SOLVERS = ("auto", "pot", "scipy", "jax")
AUTO_SCIPY_MAX_SIZE = 256  # 'auto': scipy's assignment up to this plan size, POT above


@dataclasses.dataclass(frozen=True)
class Coupling:
    """How x0 and x1 of a batch are paired.

    kind: one of COUPLINGS. epsilon: Sinkhorn's entropic regularisation, relative to the
    batch's mean cost (ot_sinkhorn). max_iterations, threshold: Sinkhorn's limits (the
    plan's marginal error at which it stops). exact_solver: 'auto' (scipy for small
    plans, POT for large), 'pot', 'scipy' (host) or 'jax' (optax Hungarian in the graph)
    for ot_exact.
    """

    kind: str = "independent"
    epsilon: float = 0.05
    max_iterations: int = 200
    threshold: float = 1e-3
    exact_solver: str = "auto"
    block_size: int = 0

    def __post_init__(self):
        if self.kind not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}; got {self.kind!r}.")
        if not (np.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(
                f"The Sinkhorn regularisation epsilon must be a positive number; got "
                f"{self.epsilon!r}."
            )
        if int(self.max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1; got {self.max_iterations!r}.")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive; got {self.threshold!r}.")
        if int(self.block_size) < 0 or int(self.block_size) == 1:
            raise ValueError(
                f"block_size must be 0 (the whole batch) or at least 2; got {self.block_size!r}."
            )
        if self.exact_solver not in EXACT_SOLVERS:
            raise ValueError(
                f"exact_solver must be one of {EXACT_SOLVERS}; got {self.exact_solver!r}."
            )

    @property
    def is_independent(self) -> bool:
        return self.kind == "independent"


def check_batch_size(coupling: Coupling, batch_size: int) -> None:
    """A plan over fewer than 2 pairs is the identity: say so rather than train on it;
    blocks must tile the batch."""
    if coupling.is_independent:
        return
    if batch_size < 2:
        raise ValueError(
            f"coupling {coupling.kind!r} pairs the samples of a batch and needs at least 2 "
            f"per batch (per device with per-device coupling); got {batch_size}."
        )
    if coupling.block_size and batch_size % coupling.block_size:
        raise ValueError(
            f"coupling block_size={coupling.block_size} must divide the batch (per device "
            f"with per-device coupling) of {batch_size}."
        )


def squared_distances(x0: jax.Array, x1: jax.Array) -> jax.Array:
    """C[i, j] = |x0_i - x1_j|^2 over the flattened event: (n, *dims), (n, *dims) -> (n, n)."""
    a = x0.reshape(x0.shape[0], -1)
    b = x1.reshape(x1.shape[0], -1)
    cross = a @ b.T
    return jnp.maximum(jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * cross, 0.0)


def _within_class(cost: jax.Array, labels: jax.Array | None) -> jax.Array:
    """cost[i, j] + penalty where labels[i] != labels[j]; penalty > n max(cost) >= any
    within-class assignment's total cost."""
    if labels is None:
        return cost
    penalty = cost.shape[0] * jnp.max(cost) + 1.0
    return cost + penalty * (labels[:, None] != labels[None, :])


def _scipy_assignment(cost: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(np.asarray(cost, np.float64))[1]


def _pot_assignment(cost: np.ndarray) -> np.ndarray:
    """The network simplex on uniform weights ends at a vertex of the assignment
    polytope: a permutation matrix / n, read off by its row maxima."""
    import ot

    n = cost.shape[0]
    uniform = np.full(n, 1.0 / n)
    plan = ot.emd(uniform, uniform, np.asarray(cost, np.float64), numItermax=10**9)
    return np.argmax(plan, axis=1)


def _on_host(solve):
    """A host callback over (..., n, n) costs: one call for every leading index (a
    vmapped block solve crosses to the host once, not once per block)."""

    def batched(cost):
        cost = np.asarray(cost)
        flat = cost.reshape(-1, *cost.shape[-2:])
        columns = np.stack([solve(c) for c in flat]).astype(np.int32)
        return columns.reshape(cost.shape[:-1])

    return batched


def exact_assignment(cost: jax.Array, solver: str = "auto") -> jax.Array:
    """sigma (n,) int32 minimising sum_j cost[j, sigma(j)] over permutations (jit-able;
    under vmap the host solvers receive every block in one call)."""
    if solver == "auto":
        solver = "scipy" if cost.shape[-1] <= AUTO_SCIPY_MAX_SIZE else "pot"
    if solver == "jax":
        from optax import assignment

        rows, columns = assignment.hungarian_algorithm(cost)
        return jnp.zeros(cost.shape[0], jnp.int32).at[rows].set(columns.astype(jnp.int32))
    host = _on_host(_pot_assignment if solver == "pot" else _scipy_assignment)
    shape = jax.ShapeDtypeStruct(cost.shape[:-1], jnp.int32)
    return jax.pure_callback(host, shape, cost, vmap_method="expand_dims")


def sinkhorn_plan(cost: jax.Array, coupling: Coupling) -> jax.Array:
    """The entropic plan (n, n) (total mass 1, uniform marginals) of ott-jax's Sinkhorn for
    cost / mean(cost) at regularisation coupling.epsilon."""
    with warnings.catch_warnings():  # ott-jax imports jaxopt, which warns it is unmaintained
        warnings.simplefilter("ignore", DeprecationWarning)
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn

    scaled = cost / jnp.maximum(jnp.mean(cost), jnp.finfo(cost.dtype).tiny)
    geom = geometry.Geometry(cost_matrix=scaled, epsilon=coupling.epsilon)
    solver = sinkhorn.Sinkhorn(
        max_iterations=int(coupling.max_iterations), threshold=coupling.threshold
    )
    return solver(linear_problem.LinearProblem(geom)).matrix


def partners(coupling: Coupling, key, x0, x1, labels=None) -> jax.Array:
    """sigma (n,): x1_j is paired with x0_sigma(j). Independent of gradients.

    x0, x1: (n, *dims); labels: (n,) ints or None (pairs then stay within a class).
    """
    n = x1.shape[0]
    if coupling.is_independent:
        return jnp.arange(n)
    check_batch_size(coupling, n)
    if x0.shape[0] != n:
        raise ValueError(
            f"a coupling pairs equal numbers of base and target samples; got {x0.shape[0]} and {n}."
        )
    if coupling.block_size and coupling.block_size < n:
        return _block_partners(coupling, key, x0, x1, labels)
    return _plan_partners(coupling, key, x0, x1, labels)


def _plan_partners(coupling, key, x0, x1, labels):
    cost = jax.lax.stop_gradient(squared_distances(x1, x0))  # rows: x1, columns: x0
    cost = _within_class(cost, labels)
    if coupling.kind == "ot_exact":
        return exact_assignment(cost, coupling.exact_solver)
    return draw_from_plan(key, sinkhorn_plan(cost, coupling))


def _block_partners(coupling, key, x0, x1, labels):
    """Pairs within consecutive blocks of coupling.block_size, the blocks' plans batched."""
    b = coupling.block_size
    blocks = x1.shape[0] // b

    def split(a):
        return None if a is None else a.reshape(blocks, b, *a.shape[1:])

    keys = None if key is None else jax.random.split(key, blocks)
    axes = (None if keys is None else 0, 0, 0, None if labels is None else 0)
    local = jax.vmap(partial(_plan_partners, coupling), axes)(
        keys, split(x0), split(x1), split(labels)
    )
    return (local + b * jnp.arange(blocks)[:, None]).reshape(-1)


def draw_from_plan(key, plan: jax.Array) -> jax.Array:
    """sigma (n,) with sigma(j) ~ plan[j, :] / sum_i plan[j, i], independently per row."""
    return jax.random.categorical(key, jnp.log(plan), axis=1)


def couple(coupling: Coupling, key, x0, x1, labels=None) -> jax.Array:
    """x0 reordered (or resampled, for Sinkhorn) so that (x0'_j, x1_j) are the coupled pairs.

    Returns x0' (n, *dims); x1 and labels keep their order.
    """
    return x0[partners(coupling, key, x0, x1, labels)]


def per_device(coupling: Coupling, mesh, axis: str):
    """`couple` applied to each device's shard of the batch (no communication): a plan
    over n / D pairs on each of D devices, each with its own key."""
    from jax.sharding import PartitionSpec as P

    def local(key, x0, x1, labels=None):
        key = jax.random.fold_in(key, jax.lax.axis_index(axis))
        return couple(coupling, key, x0, x1, labels)

    def apply(key, x0, x1, labels=None):
        arrays = (x0, x1) if labels is None else (x0, x1, labels)
        mapped = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(),) + (P(axis),) * len(arrays),
            out_specs=P(axis),
            check_vma=False,  # ott-jax's Sinkhorn loop mixes per-device and replicated values
        )
        return mapped(key, *arrays)

    return apply
