"""Flows of a velocity field with diffrax: sampling, inversion and likelihoods (PAPER s. 4).

A velocity field is `field(t, x, params) -> dx/dt` with t of shape (batch,) and x of
shape (batch, *dims). Parameters travel through diffrax `args`, never in a closure, so
adjoints see them. The whole batch is one ODE state: the adaptive step size is shared
by the batch and controlled on the error norm of the batch (as in FFJORD).

Likelihood at any time t in (0, 1]: solve the augmented state (X, L) backward from
X_t = x, L_t = 0 to s = 0 with dX/ds = v_s(X), dL/ds = div v_s(X); then

    log rho_t(x) = log rho0(X_0) + L_0 = log rho0(X_0) - int_0^t div v_s(X_s) ds.

The exact divergence is the field's own closed form where it has one
(`field.value_and_divergence`, e.g. an MLP with 1 or 2 hidden layers), else D = dim(x)
Jacobian-vector products (`divergence.exact_divergence`).

NFE is counted from diffrax's step statistics: `stages * num_steps + init_evals`, where
`stages` is the number of new field evaluations a step makes (FSAL reused) and
`init_evals` is the one evaluation at the start (diffrax reuses it to choose dt0); the test
suite checks the formula against a counter inside the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from interflow_jax import divergence
from interflow_jax.checks import check_batch, check_positive_int, check_time_interval
from interflow_jax.densities import Density, require_log_prob

VelocityField = Callable[[jax.Array, jax.Array, Any], jax.Array]


class SolverSpec(NamedTuple):
    """What a named solver costs: new field evaluations per step and at start."""

    make: Callable[[], diffrax.AbstractSolver]
    stages: int
    adaptive: bool
    init_evals_adaptive: int


SOLVERS = {
    "dopri5": SolverSpec(diffrax.Dopri5, 6, True, 1),
    "tsit5": SolverSpec(diffrax.Tsit5, 6, True, 1),
    "heun": SolverSpec(diffrax.Heun, 2, False, 0),
    "midpoint": SolverSpec(diffrax.Midpoint, 2, False, 0),
    "euler": SolverSpec(diffrax.Euler, 1, False, 0),
}


class ODEOptions(NamedTuple):
    """How to solve the flow ODE.

    solver: 'dopri5' (default, as the paper), 'tsit5' (adaptive), 'heun', 'midpoint' or
      'euler' (fixed step, `num_steps` steps; 2, 2 and 1 field evaluations a step).
    rtol, atol: tolerances of the adaptive PID controller (the paper's code: 1e-5).
    max_steps: the solve fails loudly past this many steps.
    adjoint: a diffrax adjoint, for gradients through the solve (maximum likelihood).
    progress: show a progress bar of the solve's time (diffrax's tqdm meter), for long
      solves such as image likelihoods.
    """

    solver: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    num_steps: int = 100
    max_steps: int = 8192
    adjoint: Any = None
    progress: bool = False


DEFAULT_ODE_OPTIONS = ODEOptions()


class TransportOutput(NamedTuple):
    x: jax.Array
    nfe: jax.Array


class LogProbOutput(NamedTuple):
    """log_prob (batch,), its standard error over probes (0 when exact), NFE (scalar)."""

    log_prob: jax.Array
    standard_error: jax.Array
    nfe: jax.Array


def check_ode_options(options: ODEOptions) -> None:
    if options.solver not in SOLVERS:
        raise ValueError(f"Unknown solver {options.solver!r}; expected one of {sorted(SOLVERS)}.")
    if not (options.rtol > 0 and options.atol > 0):
        raise ValueError(f"rtol and atol must be positive; got {options.rtol}, {options.atol}.")
    check_positive_int(options.num_steps, "num_steps")
    check_positive_int(options.max_steps, "max_steps")


def solve(vector_field, y0, t0, t1, args, options: ODEOptions, save_times=None):
    """Integrate dy/ds = vector_field(s, y, args) from t0 to t1; returns (y(t1), NFE).

    With `save_times` (T,), returns y at those times instead (leading axis T).
    """
    spec = SOLVERS[options.solver]
    if spec.adaptive:
        controller = diffrax.PIDController(rtol=options.rtol, atol=options.atol)
        dt0 = None
    else:
        controller = diffrax.ConstantStepSize()
        dt0 = (t1 - t0) / options.num_steps
    extra = {} if options.adjoint is None else {"adjoint": options.adjoint}
    if options.progress:
        extra["progress_meter"] = diffrax.TqdmProgressMeter(refresh_steps=10)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        spec.make(),
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=y0,
        args=args,
        stepsize_controller=controller,
        saveat=diffrax.SaveAt(t1=True) if save_times is None else diffrax.SaveAt(ts=save_times),
        max_steps=options.max_steps,
        **extra,
    )
    init = spec.init_evals_adaptive if spec.adaptive else 0
    nfe = spec.stages * solution.stats["num_steps"] + init
    if save_times is not None:
        return solution.ys, nfe
    return jax.tree_util.tree_map(lambda leaf: leaf[0], solution.ys), nfe


def _batched_time(s, x):
    return jnp.full((x.shape[0],), s, dtype=x.dtype)


def make_transport(field: VelocityField, options: ODEOptions = DEFAULT_ODE_OPTIONS):
    """Return jitted `transport(params, x, t0, t1) -> TransportOutput`.

    Carries samples x (batch, *dims) of rho_{t0} to rho_{t1} along dX/dt = v_t(X):
    `t0=0, t1=1` samples, `t0=1, t1=0` inverts; t0, t1 are traced (no recompiles).
    """
    check_ode_options(options)

    def vector_field(s, x, params):
        return field(_batched_time(s, x), x, params)

    @jax.jit
    def transport(params, x, t0, t1):
        x1, nfe = solve(vector_field, x, t0, t1, params, options)
        return TransportOutput(x1, nfe)

    return transport


def make_trajectories(field: VelocityField, options: ODEOptions = DEFAULT_ODE_OPTIONS):
    """Return jitted `trajectories(params, x0, save_times) -> (T, batch, *dims)`, X at each time.

    `save_times` (T,) must be monotone; the solve runs from save_times[0] to save_times[-1].
    """
    check_ode_options(options)

    def vector_field(s, x, params):
        return field(_batched_time(s, x), x, params)

    @jax.jit
    def trajectories(params, x0, save_times):
        path, _ = solve(
            vector_field, x0, save_times[0], save_times[-1], params, options, save_times
        )
        return path

    return trajectories


def log_prob_in_chunks(flow: Flow, params, x, chunk_size: int, t: float = 1.0, key=None):
    """log rho_t over a large set x (n, *dims), `chunk_size` points per solve.

    Memory is bounded by one chunk; the last chunk is padded with repeats of x[0] so
    every solve has one shape (one compilation). Chunk i uses key fold_in(key, i).
    Returns (log_prob (n,), standard_error (n,) over probes, NFE of each chunk (list)).
    """
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    key = jax.random.key(0) if key is None else key
    n = x.shape[0]
    num_chunks = -(-n // chunk_size)
    padded = jnp.concatenate([x, jnp.repeat(x[:1], num_chunks * chunk_size - n, axis=0)])
    values, errors, nfes = [], [], []
    for i in range(num_chunks):
        chunk = padded[i * chunk_size : (i + 1) * chunk_size]
        out = flow.log_prob(params, chunk, t, jax.random.fold_in(key, i))
        values.append(out.log_prob)
        errors.append(out.standard_error)
        nfes.append(int(out.nfe))
    return jnp.concatenate(values)[:n], jnp.concatenate(errors)[:n], nfes


def _divergence_fn(field, divergence_kind, hutchinson_mode):
    """(s, x, params, probes) -> (v, per-estimate divergences (k, batch))."""

    closed_form = getattr(field, "value_and_divergence", None)

    def exact(s, x, params, probes):
        del probes
        if closed_form is not None:
            value, div = closed_form(_batched_time(s, x), x, params)
        else:
            f = lambda y: field(_batched_time(s, y), y, params)  # noqa: E731
            value, div = divergence.exact_divergence(f, x)
        return value, div[None]

    def hutchinson(s, x, params, probes):
        f = lambda y: field(_batched_time(s, y), y, params)  # noqa: E731
        return divergence.hutchinson_divergence(f, x, probes, hutchinson_mode)

    if divergence_kind == "exact":
        return exact
    if divergence_kind == "hutchinson":
        return hutchinson
    raise ValueError(f"divergence must be 'exact' or 'hutchinson'; got {divergence_kind!r}.")


def _augmented_vector_field(
    field, options, divergence_kind, num_probes, probe_kind, sign, hutchinson_mode
):
    """Check the settings; return (vector field of (X, L) with dL/ds = sign div v, k probes)."""
    check_ode_options(options)
    check_positive_int(num_probes, "num_probes")
    divergence.check_probe_kind(probe_kind)
    divergence.check_hutchinson_mode(hutchinson_mode)
    div_fn = _divergence_fn(field, divergence_kind, hutchinson_mode)

    def vector_field(s, state, args):
        params, probes = args
        value, div = div_fn(s, state[0], params, probes)
        return value, sign * div

    return vector_field, (num_probes if divergence_kind == "hutchinson" else 1)


def make_log_prob(
    field: VelocityField,
    base: Density,
    options: ODEOptions = DEFAULT_ODE_OPTIONS,
    divergence_kind: str = "exact",
    num_probes: int = 1,
    probe_kind: str = "rademacher",
    hutchinson_mode: str = "forward",
):
    """Return jitted `log_prob(params, x, t, key) -> LogProbOutput`: log rho_t(x), t in (0, 1].

    Exact divergence: one estimate, standard error 0. Hutchinson: `num_probes` probes
    drawn once per call and held fixed along the solve; each gives a full
    log-likelihood estimate, the output is their mean with standard error std/sqrt(k).
    `key` is needed for Hutchinson only; `hutchinson_mode` 'forward' (jvp) or 'reverse'
    (vjp) chooses how its products are computed (see `divergence.hutchinson_divergence`).
    """
    base_log_prob = require_log_prob(base)
    vector_field, k = _augmented_vector_field(
        field, options, divergence_kind, num_probes, probe_kind, 1.0, hutchinson_mode
    )

    @jax.jit
    def log_prob(params, x, t, key):
        probes = divergence.sample_probes(key, k, x.shape, x.dtype, probe_kind)
        delta0 = jnp.zeros((k, x.shape[0]), x.dtype)
        (x0, delta), nfe = solve(vector_field, (x, delta0), t, 0.0, (params, probes), options)
        mean, stderr = divergence.mean_and_standard_error(base_log_prob(x0)[None] + delta)
        return LogProbOutput(mean, stderr, nfe)

    return log_prob


def make_sample_with_log_prob(
    field: VelocityField,
    base: Density,
    options: ODEOptions = DEFAULT_ODE_OPTIONS,
    divergence_kind: str = "exact",
    num_probes: int = 1,
    probe_kind: str = "rademacher",
    hutchinson_mode: str = "forward",
):
    """Return jitted `fn(params, x0, key) -> (x1, LogProbOutput)` in one forward solve.

    From X_0 = x0 ~ rho0, L_0 = log rho0(x0), integrate dX/ds = v, dL/ds = -div v to 1:
    X_1 is a sample and L_1 its model log-density log rho_1(X_1).
    """
    base_log_prob = require_log_prob(base)
    vector_field, k = _augmented_vector_field(
        field, options, divergence_kind, num_probes, probe_kind, -1.0, hutchinson_mode
    )

    @jax.jit
    def sample_with_log_prob(params, x0, key):
        probes = divergence.sample_probes(key, k, x0.shape, x0.dtype, probe_kind)
        logp0 = jnp.broadcast_to(base_log_prob(x0), (k, x0.shape[0]))
        (x1, logp1), nfe = solve(vector_field, (x0, logp0), 0.0, 1.0, (params, probes), options)
        mean, stderr = divergence.mean_and_standard_error(logp1)
        return x1, LogProbOutput(mean, stderr, nfe)

    return sample_with_log_prob


class Flow(NamedTuple):
    """A trained velocity field with its base density, ready to sample and evaluate.

    Every method is a thin wrapper that checks its input, then calls a function that
    was jitted once when the Flow was made.
    """

    base: Density
    transport_fn: Callable
    log_prob_fn: Callable | None
    sample_with_log_prob_fn: Callable | None

    def transport(self, params, x, t0: float, t1: float) -> TransportOutput:
        """Carry x ~ rho_{t0} to rho_{t1}."""
        check_batch(x, self.base.event_shape)
        check_time_interval(t0, t1)
        return self.transport_fn(params, x, jnp.asarray(t0, x.dtype), jnp.asarray(t1, x.dtype))

    def sample(self, params, key, num_samples: int) -> TransportOutput:
        """Draw x0 ~ rho0 and carry it to t = 1."""
        x0 = self.base.sample(key, check_positive_int(num_samples, "num_samples"))
        return self.transport(params, x0, 0.0, 1.0)

    def invert(self, params, x1) -> TransportOutput:
        """Carry x1 at t = 1 back to t = 0."""
        return self.transport(params, x1, 1.0, 0.0)

    def log_prob(self, params, x, t: float = 1.0, key=None) -> LogProbOutput:
        """log rho_t(x) for x (batch, *dims) and t in (0, 1]."""
        check_batch(x, self.base.event_shape)
        check_time_interval(0.0, t)
        key = jax.random.key(0) if key is None else key
        return _require(self.log_prob_fn, self.base)(params, x, jnp.asarray(t, x.dtype), key)

    def sample_with_log_prob(self, params, key, num_samples: int):
        """(x1, LogProbOutput) for fresh samples, from one forward solve."""
        base_key, probe_key = jax.random.split(key)
        x0 = self.base.sample(base_key, check_positive_int(num_samples, "num_samples"))
        return _require(self.sample_with_log_prob_fn, self.base)(params, x0, probe_key)


def _require(fn, base):
    if fn is None:
        require_log_prob(base)
    return fn


def make_flow(
    field: VelocityField,
    base: Density,
    options: ODEOptions = DEFAULT_ODE_OPTIONS,
    divergence_kind: str = "exact",
    num_probes: int = 1,
    probe_kind: str = "rademacher",
    hutchinson_mode: str = "forward",
) -> Flow:
    """Bundle sampling, inversion and (where the base has a density) likelihoods."""
    likelihood_args = (
        field,
        base,
        options,
        divergence_kind,
        num_probes,
        probe_kind,
        hutchinson_mode,
    )
    has_density = base.log_prob is not None
    return Flow(
        base=base,
        transport_fn=make_transport(field, options),
        log_prob_fn=make_log_prob(*likelihood_args) if has_density else None,
        sample_with_log_prob_fn=make_sample_with_log_prob(*likelihood_args)
        if has_density
        else None,
    )
