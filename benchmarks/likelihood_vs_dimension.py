"""Likelihood evaluation throughput against dimension: exact vs Hutchinson divergence.

`flows.make_log_prob` (log rho_1(x) by solving the augmented ODE from t = 1 to 0) for a
fixed, untrained MLP velocity field 3 x W (SiLU, its zero-initialised output layer
replaced by a random one so the field is not zero) with N(0, I_d) as base, at several
d. The solver is fixed-step Heun with a fixed number of steps, so every evaluation
makes the same number of field evaluations (NFE = 2 x steps) at every d and for both
divergences: the cost differences are the divergence's alone. Exact: d batched jvps of
one linearisation per field evaluation; Hutchinson: one vjp applied to k probes.
Repetitions alternate over all (d, divergence) pairs. With --depth 1 or 2 a third
column times the MLP's closed-form exact trace (`VelocityMLP.velocity_and_divergence`:
one h_1 x h_2 product per sample instead of d jvps), which likelihoods use by default for
such MLPs; the "exact" column then forces the generic d-jvp divergence.

  python benchmarks/likelihood_vs_dimension.py
  python benchmarks/likelihood_vs_dimension.py --depth=2 --width=1024 --dims=8,21,43,63
"""

from __future__ import annotations

import bench_common
import jax
import numpy as np

from interflow_jax import densities, flows
from interflow_jax.models import VelocityMLP, as_field, init_params

NAME = "likelihood_vs_dimension"


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--dims", default="2,8,32,64,128")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3, help="hidden layers of the MLP")
    parser.add_argument("--num_points", type=int, default=500)
    parser.add_argument("--num_steps", type=int, default=10, help="Heun steps per solve")
    parser.add_argument("--num_probes", type=int, default=1, help="Hutchinson probes")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    args.dims = [int(d) for d in args.dims.split(",")]
    if args.smoke:
        args.dims, args.width, args.num_points, args.num_steps, args.reps = [2, 8], 16, 64, 2, 2
        args.depth = 2  # all three columns
    return args


def random_output_layer(params, key):
    """Params with the output Dense kernel drawn N(0, 1/fan_in) instead of zeros."""
    inner = dict(params["params"])
    last = sorted(inner, key=lambda name: int(name.split("_")[-1]))[-1]
    kernel = inner[last]["kernel"]
    scale = 1.0 / np.sqrt(kernel.shape[0])
    inner[last] = dict(inner[last], kernel=scale * jax.random.normal(key, kernel.shape))
    return {"params": inner}


def make_evaluators(dim: int, args):
    """{divergence kind: callable computing log-probs of num_points points (blocks)}."""
    module = VelocityMLP(hidden_sizes=(args.width,) * args.depth)
    params = random_output_layer(init_params(module, jax.random.key(0), (dim,)), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (args.num_points, dim))
    options = flows.ODEOptions(solver="heun", num_steps=args.num_steps)
    base = densities.standard_gaussian((dim,))
    generic = lambda t, y, p: module.apply(p, t, y)  # noqa: E731 (no closed form attached)
    cases = {"exact": (generic, "exact", 1)}
    cases["hutchinson"] = (generic, "hutchinson", args.num_probes)
    if module.has_closed_form_divergence:
        cases["closed form"] = (as_field(module), "exact", 1)
    evaluators = {}
    for name, (field, kind, probes) in cases.items():
        log_prob = flows.make_log_prob(field, base, options, kind, probes)
        call = _blocking(log_prob, params, x)
        call()
        evaluators[name] = call
    return evaluators


def _blocking(log_prob, params, x):
    key = jax.random.key(3)
    t = np.float32(1.0)

    def call():
        return jax.block_until_ready(log_prob(params, x, t, key))

    return call


def measure(args):
    """Median points/s per (d, kind), all pairs alternated in every repetition."""
    evaluators = {d: make_evaluators(d, args) for d in args.dims}
    times = {(d, k): [] for d in args.dims for k in evaluators[d]}
    for _ in range(args.reps):
        for (d, kind), values in times.items():
            values.append(bench_common.timed(evaluators[d][kind]))
    return {key: args.num_points / float(np.median(values)) for key, values in times.items()}


def kinds(args) -> list[str]:
    """The timed divergences: generic exact, Hutchinson, and the MLP's closed form where
    it has one."""
    closed_form = VelocityMLP(hidden_sizes=(args.width,) * args.depth).has_closed_form_divergence
    return ["exact", "hutchinson"] + (["closed form"] if closed_form else [])


def plot(rates, args) -> None:
    """points/s against d for each divergence, log-log."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind in kinds(args):
        ax.plot(args.dims, [rates[(d, kind)] for d in args.dims], "o-", label=kind)
    ax.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="points / s")
    bench_common.finish_plot(
        fig,
        ax,
        f"log-likelihood, Heun {args.num_steps} steps, MLP {args.depth} x {args.width}",
        args.outdir,
        "points_per_second.png",
    )


def main(argv=None):
    args, lines = bench_common.start(
        parse_args, argv, "Likelihood throughput: exact vs Hutchinson divergence"
    )
    lines.append(
        f"- MLP {args.depth} x {args.width} (SiLU, untrained, random output layer), Heun "
        f"{args.num_steps} fixed steps (NFE {2 * args.num_steps}), {args.num_points} points "
        f"per call, Hutchinson {args.num_probes} Rademacher probe(s), median of {args.reps} "
        "alternated repetitions"
    )
    rates = measure(args)
    rows = [
        [d, *(rates[(d, kind)] for kind in kinds(args))]
        + [rates[(d, kind)] / rates[(d, "exact")] for kind in kinds(args)[1:]]
        for d in args.dims
    ]
    columns = ["d", *(f"{kind} points/s" for kind in kinds(args))]
    columns += [f"{kind} / exact" for kind in kinds(args)[1:]]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    plot(rates, args)
    return rates


if __name__ == "__main__":
    main()
