"""Quadratic interpolant loss against maximum-likelihood CNF training: time to a test NLL.

Both objectives train the same velocity field (interflow_jax VelocityMLP, 3 x W, SiLU)
from N(0, I_d) with the same optimiser (clip 1, Adam), batch size and fresh data every
step (drawn in the jitted graph):

- quadratic: `losses.make_velocity_loss` (trig interpolant, one network evaluation per
  sample, no ODE);
- maximum likelihood: `max_likelihood.make_max_likelihood_loss` (FFJORD style: dopri5
  through diffrax at every step, Hutchinson divergence with one Rademacher probe,
  differentiated with the chosen diffrax adjoint).

Problems: the checkerboard (true NLL ln 32) and the exact-density Gaussian mixture in
d = 6 (`data.mixtures.make_gaussian_mixture(6)`). The test NLL is evaluated on a fixed
set of test points with the exact divergence and dopri5 at rtol = atol = 1e-5, after
calls on a geometric grid; evaluation time is excluded from the reported wall-clock.
The two runs alternate call by call (each with its own training-time cap). The common
threshold is the best test NLL the maximum-likelihood run reached within its cap (plus
--margin), so it is one that both reach. NFE counts the network evaluations of forward
passes (for maximum likelihood: the forward solve's, reported by diffrax; the backward
pass adds its own); the quadratic loss makes one per step.

  python benchmarks/quadratic_vs_max_likelihood.py
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import bench_common
import diffrax
import jax
import numpy as np
import optax

from interflow_jax import densities, flows, interpolants, losses, max_likelihood, time_sampling
from interflow_jax.data import mixtures, toy2d
from interflow_jax.models import VelocityMLP, as_field, init_params
from interflow_jax.training.state import create_train_state
from interflow_jax.training.step import make_multi_step, make_train_step

NAME = "quadratic_vs_max_likelihood"
ADJOINTS = {
    "recursive": diffrax.RecursiveCheckpointAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
}


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--problems", default="checkerboard,mixture6")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--ml_seconds", type=float, default=100.0, help="ML training cap")
    parser.add_argument("--quadratic_seconds", type=float, default=20.0)
    parser.add_argument("--ml_steps_per_call", type=int, default=5)
    parser.add_argument("--quadratic_steps_per_call", type=int, default=25)
    parser.add_argument("--ml_solver", default="dopri5", help="dopri5, tsit5, heun, euler")
    parser.add_argument("--ml_tolerance", type=float, default=1e-5, help="rtol = atol")
    parser.add_argument("--ml_max_steps", type=int, default=1000)
    parser.add_argument("--ml_num_steps", type=int, default=20, help="fixed-step solvers only")
    parser.add_argument("--adjoint", choices=sorted(ADJOINTS), default="recursive")
    parser.add_argument("--num_test_points", type=int, default=2000)
    parser.add_argument("--margin", type=float, default=0.0, help="threshold = ML best + margin")
    args = parser.parse_args(argv)
    args.problems = args.problems.split(",")
    if args.smoke:
        args.width, args.batch_size, args.num_test_points = 16, 32, 100
        args.problems, args.ml_seconds, args.quadratic_seconds = ["checkerboard"], 1e-3, 1e-3
        args.ml_steps_per_call, args.quadratic_steps_per_call = 1, 5
        args.ml_solver, args.ml_num_steps = "heun", 4
    return args


class Problem(NamedTuple):
    name: str
    dim: int
    sample: object  # (key, n) -> (n, d), jittable
    true_nll: object  # test points -> float


def get_problem(name: str) -> Problem:
    if name == "checkerboard":
        return Problem(name, 2, toy2d.checkerboard_sample, lambda x: math.log(32.0))
    if name.startswith("mixture"):
        mixture = mixtures.make_gaussian_mixture(int(name[len("mixture") :]))
        return Problem(
            name, mixture.dim, mixture.sample, lambda x: mixture.true_cross_entropy(x)[0]
        )
    raise ValueError(f"unknown problem {name!r}; expected checkerboard or mixtureD.")


class Run:
    """One objective's training: calls of K steps, timed, with a record of evaluations."""

    def __init__(self, label, loss_fn, problem, module, args, steps_per_call, cap, nfe_fn):
        optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.learning_rate))
        step = make_train_step(loss_fn, optimizer, ema_decay=0.0)

        def batch_fn(key, *unused):
            return {"x1": problem.sample(key, args.batch_size)}

        multi = make_multi_step(step, batch_fn, jax.random.key(1), steps_per_call)
        params = init_params(module, jax.random.key(0), (problem.dim,))
        self.state = create_train_state(params, optimizer)
        start = time.perf_counter()
        self.multi_step = jax.jit(multi, donate_argnums=0).lower(self.state).compile()
        self.compile_seconds = time.perf_counter() - start
        self.label, self.steps_per_call, self.cap, self.nfe_fn = label, steps_per_call, cap, nfe_fn
        self.steps, self.seconds, self.nfe, self.calls, self.record = 0, 0.0, 0.0, 0, []

    @property
    def done(self) -> bool:
        return self.seconds >= self.cap

    def train_call(self):
        start = time.perf_counter()
        self.state, metrics = self.multi_step(self.state)
        metrics = jax.device_get(metrics)
        self.seconds += time.perf_counter() - start
        self.steps += self.steps_per_call
        self.nfe += self.nfe_fn(metrics) * self.steps_per_call
        self.calls += 1

    def evaluate(self, test_nll):
        nll = test_nll(self.state.params)
        self.record.append((self.steps, self.seconds, self.nfe, nll))


def eval_grid(ratio: float = 1.3, limit: int = 100_000) -> set[int]:
    """Call counts after which to evaluate: 1, 2, 3, ... growing by ~`ratio`."""
    grid, value = set(), 1.0
    while value < limit:
        grid.add(int(value))
        value = max(value * ratio, int(value) + 1)
    return grid


def make_test_nll(module, problem: Problem, args):
    """test_nll(params) -> mean -log rho_1 on fixed test points (exact div, dopri5 1e-5)."""
    x = problem.sample(jax.random.key(10**6), args.num_test_points)
    options = flows.ODEOptions(solver="heun", num_steps=4) if args.smoke else flows.ODEOptions()
    base = densities.standard_gaussian((problem.dim,))
    log_prob = flows.make_log_prob(as_field(module), base, options)

    def test_nll(params):
        out = log_prob(params, x, np.float32(1.0), jax.random.key(0))
        return float(-np.mean(np.asarray(out.log_prob, np.float64)))

    return test_nll, problem.true_nll(x)


def make_runs(problem: Problem, module, args):
    """(quadratic Run, maximum-likelihood Run) for the problem."""
    field = as_field(module)
    base = densities.standard_gaussian((problem.dim,))
    quadratic_loss = losses.make_velocity_loss(
        field, interpolants.TRIGONOMETRIC, time_sampling.make_time_sampler(), base=base
    )
    options = flows.ODEOptions(
        solver=args.ml_solver,
        num_steps=args.ml_num_steps,
        rtol=args.ml_tolerance,
        atol=args.ml_tolerance,
        max_steps=args.ml_max_steps,
        adjoint=ADJOINTS[args.adjoint](),
    )
    ml_loss = max_likelihood.make_max_likelihood_loss(field, base, options, "hutchinson", 1)
    quadratic = Run(
        "quadratic",
        quadratic_loss,
        problem,
        module,
        args,
        args.quadratic_steps_per_call,
        args.quadratic_seconds,
        lambda metrics: 1.0,
    )
    ml = Run(
        "max likelihood",
        ml_loss,
        problem,
        module,
        args,
        args.ml_steps_per_call,
        args.ml_seconds,
        lambda metrics: float(metrics["nfe"]),
    )
    return quadratic, ml


def train_alternating(runs, test_nll):
    """Round robin: each unfinished run does one call, evaluating on the grid."""
    grid = eval_grid()
    for run in runs:
        run.evaluate(test_nll)
    while not all(run.done for run in runs):
        for run in runs:
            if run.done:
                continue
            run.train_call()
            if run.calls in grid or run.done:
                run.evaluate(test_nll)


def first_reaching(record, threshold):
    """(steps, seconds, NFE, nll) of the first evaluation with nll <= threshold, or None."""
    return next((row for row in record if row[3] <= threshold), None)


def summarise(problem, runs, truth, args):
    """Rows of the table, and the threshold used."""
    quadratic, ml = runs
    threshold = min(row[3] for row in ml.record) + args.margin
    rows = []
    for run in runs:
        hit = first_reaching(run.record, threshold)
        per_step = run.seconds / max(run.steps, 1)
        rows.append(
            [
                problem.name,
                run.label,
                threshold,
                hit[1] if hit else "not reached",
                hit[0] if hit else "-",
                f"{hit[2]:.4g}" if hit else "-",
                per_step * 1e3,
                run.steps,
                run.record[-1][3],
                truth,
            ]
        )
    q_hit, ml_hit = (
        first_reaching(quadratic.record, threshold),
        first_reaching(ml.record, threshold),
    )
    speedup = ml_hit[1] / q_hit[1] if q_hit and ml_hit and q_hit[1] > 0 else float("nan")
    return rows, threshold, speedup


def plot(curves, outdir):
    """Test NLL against training wall-clock, one panel per problem."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (name, (runs, truth, threshold)) in zip(axes[0], curves.items(), strict=True):
        for run in runs:
            record = np.asarray(run.record, dtype=np.float64)
            ax.plot(np.maximum(record[:, 1], 1e-2), record[:, 3], "o-", ms=3, label=run.label)
        ax.axhline(truth, color="k", lw=1, label="true NLL")
        ax.axhline(threshold, color="gray", ls="--", lw=1, label="common threshold")
        ax.set(xscale="log", xlabel="training wall-clock (s)", ylabel="test NLL (nats)")
        ax.set_title(name)
        ax.legend()
    bench_common.save_figure(fig, outdir, "nll_vs_time.png")


def run_problem(name, args):
    problem = get_problem(name)
    module = VelocityMLP(hidden_sizes=(args.width,) * 3)
    test_nll, truth = make_test_nll(module, problem, args)
    runs = make_runs(problem, module, args)
    train_alternating(runs, test_nll)
    rows, threshold, speedup = summarise(problem, runs, truth, args)
    compile_note = ", ".join(f"{run.label} {run.compile_seconds:.1f} s" for run in runs)
    return rows, threshold, speedup, runs, truth, compile_note


def main(argv=None):
    args, lines = bench_common.start(
        parse_args, argv, "Quadratic loss vs maximum-likelihood CNF: time to a test NLL"
    )
    lines.append(
        f"- MLP 3 x {args.width} SiLU, batch {args.batch_size}, clip 1 + Adam lr "
        f"{args.learning_rate}; ML: dopri5 rtol = atol = {args.ml_tolerance}, Hutchinson 1 "
        f"probe, {args.adjoint} adjoint, cap {args.ml_seconds} s; quadratic cap "
        f"{args.quadratic_seconds} s; test NLL on {args.num_test_points} points (exact div)"
    )
    rows, curves, speedups = [], {}, []
    for name in args.problems:
        p_rows, threshold, speedup, runs, truth, compile_note = run_problem(name, args)
        rows += p_rows
        curves[name] = (runs, truth, threshold)
        speedups.append(
            f"- {name}: ML time / quadratic time to NLL <= {threshold:.4f}: "
            f"**{speedup:.1f}x** (compile: {compile_note})"
        )
    columns = ["problem", "objective", "threshold", "s to threshold", "steps to threshold"]
    columns += ["NFE to threshold", "ms / step", "steps in cap", "final NLL", "true NLL"]
    lines += speedups + [""] + bench_common.markdown_table(columns, rows)
    bench_common.write_report(args.outdir, lines)
    plot(curves, args.outdir)
    return rows


if __name__ == "__main__":
    main()
