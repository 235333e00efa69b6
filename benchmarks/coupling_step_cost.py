"""Train-step cost of minibatch couplings: interflow_jax against independent pairs and
against torchcfm's OT-CFM, batch sizes 256, 1024, 4096.

The same work on both sides: v(t, x) (concat(x, 32 sinusoidal time features) -> 3 hidden
layers of width W, SiLU) trained on N(0, I_2) -> checkerboard with the linear interpolant
x_t = (1 - t) x0 + t x1, t ~ U[0, 1), Adam. Ours: `make_train_step` in a `lax.scan` of
--scan_steps steps per jitted call (batch drawn in the graph), with each coupling of
`interflow_jax.couplings` computed inside the step:

- independent pairs;
- ot_exact over the whole batch (POT's network simplex on the host, `pure_callback`);
- ot_sinkhorn over the whole batch (ott-jax, epsilon 0.05 of the mean cost);
- both again within blocks of --block_size (plans of block x block, batched), the exact
  plan with each host solver of --block_solvers (POT's network simplex, scipy's
  `linear_sum_assignment`).

torchcfm 1.0.7: `ConditionalFlowMatcher(sigma=0)` (independent pairs) and
`ExactOptimalTransportConditionalFlowMatcher(sigma=0)` (OT-CFM: POT's `ot.emd` on the host
on the whole batch, pairs then drawn from the plan), eager, --torch_threads threads.

Every variant is timed once per repetition, in turn (~--rep_seconds each; steps calibrated
once after warm-up). Reported: median steps/s, the ratio to our independent step and to
torchcfm's OT-CFM step (median and range over repetitions).

  pip install -e ".[bench]" && pip install --no-deps torchcfm==1.0.7
  python benchmarks/coupling_step_cost.py
"""

from __future__ import annotations

import bench_common
import jax
import jax_side
import numpy as np

from interflow_jax import couplings, interpolants

NAME = "coupling_step_cost"
INDEPENDENT = "ours independent"
OT_CFM = "torchcfm OT-CFM (POT emd)"


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--batch_sizes", default="256,1024,4096")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument(
        "--block_solvers", default="pot,scipy", help="exact solvers timed within blocks"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rep_seconds", type=float, default=3.0)
    parser.add_argument("--scan_steps", type=int, default=10)
    parser.add_argument("--torch_threads", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--omp_wait_policy", default="PASSIVE")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.block_solvers = args.block_solvers.split(",")
    if args.smoke:
        args.batch_sizes, args.width, args.block_size = [32], 16, 16
        args.reps, args.rep_seconds, args.scan_steps = 1, 0.05, 2
    return args


def our_couplings(args, batch_size: int) -> dict[str, couplings.Coupling]:
    exact = couplings.Coupling("ot_exact")
    sinkhorn = couplings.Coupling("ot_sinkhorn", epsilon=args.epsilon)
    variants = {
        INDEPENDENT: couplings.Coupling(),
        "ours ot_exact (whole batch)": exact,
        "ours ot_sinkhorn (whole batch)": sinkhorn,
    }
    if args.block_size < batch_size:
        block = f"blocks of {args.block_size}"
        for solver in args.block_solvers:
            variants[f"ours ot_exact {solver} ({block})"] = couplings.Coupling(
                "ot_exact", block_size=args.block_size, exact_solver=solver
            )
        variants[f"ours ot_sinkhorn ({block})"] = couplings.Coupling(
            "ot_sinkhorn", epsilon=args.epsilon, block_size=args.block_size
        )
    return variants


def ours(args, batch_size: int, coupling: couplings.Coupling):
    training = jax_side.checkerboard_training(
        args.width,
        batch_size,
        args.learning_rate,
        interpolant=interpolants.LINEAR,
        coupling=coupling,
    )
    call = jax_side.make_runner(training, args.scan_steps)
    return call, args.scan_steps


def torchcfm_step(args, batch_size: int, optimal_transport: bool):
    """One torchcfm step (linear path, sigma = 0) as a callable, warmed up."""
    import torch
    import torch_side
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    torch.set_num_threads(args.torch_threads)
    net = torch_side.SinusoidalMLP(2, (args.width,) * 3, "silu")
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate)
    matcher_class = (
        ExactOptimalTransportConditionalFlowMatcher if optimal_transport else ConditionalFlowMatcher
    )
    matcher = matcher_class(sigma=0.0)

    def one_step():
        x1 = torch_side.checkerboard(batch_size)
        x0 = torch.randn_like(x1)
        t, x_t, u_t = matcher.sample_location_and_conditional_flow(x0, x1)
        optimizer.zero_grad(set_to_none=True)
        torch.mean((net(t, x_t) - u_t) ** 2).backward()
        optimizer.step()

    one_step()
    return one_step, 1


def measure(args, batch_size: int) -> dict[str, np.ndarray]:
    """Steps/s of every variant at one batch size, alternated over repetitions."""
    runs = {
        name: bench_common.calibrated(ours(args, batch_size, coupling), args.rep_seconds)
        for name, coupling in our_couplings(args, batch_size).items()
    }
    torch_independent = torchcfm_step(args, batch_size, False)
    runs["torchcfm independent"] = bench_common.calibrated(torch_independent, 1.0)
    ot_cfm = torchcfm_step(args, batch_size, True)
    runs[OT_CFM] = bench_common.calibrated(ot_cfm, args.rep_seconds)
    rates = bench_common.alternated_rates(runs, args.reps)
    return {name: np.asarray(values) for name, values in rates.items()}


def rows_for(batch_size: int, rates: dict) -> list[list]:
    rows = []
    for name, values in rates.items():
        row = [batch_size, name, float(np.median(values))]
        for reference in (INDEPENDENT, OT_CFM):
            med, low, high = bench_common.spread(list(values / rates[reference]))
            row += [med, f"{low:.3g}-{high:.3g}"]
        rows.append(row)
    return rows


def plot(results: dict, outdir: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sizes = sorted(results)
    for name in results[sizes[0]]:
        points = [(b, float(np.median(results[b][name]))) for b in sizes if name in results[b]]
        ax.plot(*zip(*points, strict=True), "o-", label=name)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="train steps / s")
    bench_common.finish_plot(fig, ax, "checkerboard train step", outdir, "steps_per_second.png")


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Train-step cost of couplings")
    policy = bench_common.set_omp_wait_policy(args.omp_wait_policy)
    lines.append(
        f"- width {args.width}, linear interpolant, Adam, {args.reps} repetitions alternated "
        f"(~{args.rep_seconds} s each), our scan {args.scan_steps} steps per call, Sinkhorn "
        f"epsilon {args.epsilon} of the mean cost, torch {args.torch_threads} threads "
        f"(OMP_WAIT_POLICY {policy}), jax devices {jax.devices()}"
    )
    results, rows = {}, []
    for batch_size in args.batch_sizes:
        results[batch_size] = measure(args, batch_size)
        rows += rows_for(batch_size, results[batch_size])
    columns = ["batch", "variant", "steps/s", "/ ours independent", "range"]
    columns += ["/ torchcfm OT-CFM", "range"]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    plot(results, args.outdir)
    return results


if __name__ == "__main__":
    main()
