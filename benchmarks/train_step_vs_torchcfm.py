"""Training-step throughput: interflow_jax against torchcfm on identical work.

Both sides train v(t, x) on N(0, I_2) -> checkerboard with the trigonometric interpolant
x_t = cos(pi t / 2) x0 + sin(pi t / 2) x1 and t ~ U[0, 1):

- data: each library draws its batch in its own step by the same recipe (FFJORD
  checkerboard, x0 ~ N(0, I), t ~ U[0, 1)): ours inside the jitted graph (jax.random,
  `make_multi_step`), torch with torch.rand/randn in the step;
- network: concat(x, 32 sinusoidal time features) -> 3 hidden layers of width W with
  SiLU -> 2 outputs (interflow_jax.models.VelocityMLP and torch_side.SinusoidalMLP);
- loss: ours the quadratic G of `losses.make_velocity_loss`; torchcfm's
  `VariancePreservingConditionalFlowMatcher(sigma=0)` with mean((v - u)^2);
- optimiser: Adam, same learning rate, no clipping, no schedule. Ours goes through the
  library's `make_train_step` (which also keeps an EMA copy, checks finiteness and
  computes the gradient norm: extra work on our side) and `make_multi_step` (lax.scan
  over --scan_steps steps per call), jitted with the state donated.

Torch runs eagerly with each of --torch_threads (torch.set_num_threads before each of
its runs) and, with --torch_compile (the default), with torch.compile on the network
and loss. Every variant is timed once per repetition, in turn, for about --rep_seconds
(step counts calibrated once after warm-up); the ratio of a repetition is ours / torch
in steps/s, reported as median and range over repetitions, against each torch variant.

  python benchmarks/train_step_vs_torchcfm.py
"""

from __future__ import annotations

import argparse

import bench_common
import jax
import jax_side
import numpy as np

NAME = "train_step_vs_torchcfm"


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--widths", default="64,256,1024", help="comma-separated widths W")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rep_seconds", type=float, default=3.0, help="per variant and rep")
    parser.add_argument("--scan_steps", type=int, default=50, help="our steps per jitted call")
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--peak_size", type=int, default=2048, help="N of the N^3 matmul")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--torch_threads", default="2,1", help="thread counts to try")
    parser.add_argument("--torch_compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--proposed", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--omp_wait_policy", default="PASSIVE", help="PASSIVE, ACTIVE or keep")
    args = parser.parse_args(argv)
    args.widths = [int(w) for w in args.widths.split(",")]
    args.torch_threads = [int(n) for n in args.torch_threads.split(",")]
    if args.smoke:
        args.widths, args.reps, args.rep_seconds, args.batch_size = [16], 2, 0.05, 64
        args.scan_steps, args.torch_threads, args.torch_compile = 5, [2], False
        args.proposed = False
        args.peak_size = 128
    return args


class Variant:
    """A way to train: `run(units)` does units x steps_per_unit steps and blocks."""

    def __init__(self, name, run, steps_per_unit, threads=None):
        self.name, self._run, self.steps_per_unit, self.threads = name, run, steps_per_unit, threads
        self.units = 1

    def run(self, units):
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        self._run(units)

    def calibrate(self, seconds: float) -> None:
        """Choose the units per repetition for about `seconds` (one warm-up run first)."""
        self.run(1)
        self.units = max(1, round(seconds / bench_common.timed(lambda: self.run(1))))

    def rate(self) -> float:
        """Steps per second over one repetition."""
        return self.units * self.steps_per_unit / bench_common.timed(lambda: self.run(self.units))


OURS = "interflow_jax"
PROPOSED = "interflow_jax + unrolled threefry (proposed)"


def make_ours(width: int, args, name: str = OURS) -> tuple[Variant, float]:
    """interflow_jax: `scan_steps` steps per jitted call (compiled and run once here), and
    the FLOPs of one step from XLA's cost analysis."""
    training = jax_side.checkerboard_training(width, args.batch_size, args.learning_rate)
    flops = jax_side.step_flops(training)
    call = jax_side.make_runner(training, args.scan_steps)

    def run(units):
        for _ in range(units):
            call()

    return Variant(name, run, args.scan_steps), flops


def make_peak(size: int):
    """GFLOP/s of one jitted float32 size x size matmul (blocks), compiled here."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    dot = jax.jit(jax.numpy.dot)
    dot(a, a).block_until_ready()
    return lambda: 2.0 * size**3 / bench_common.timed(lambda: dot(a, a).block_until_ready()) / 1e9


def make_torch_step(width: int, batch_size: int, learning_rate: float, compiled: bool):
    """One torchcfm training step as a callable (warmed up; compiled if asked)."""
    import torch
    import torch_side
    from torchcfm.conditional_flow_matching import VariancePreservingConditionalFlowMatcher

    net = torch_side.SinusoidalMLP(2, (width,) * 3, "silu")
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    matcher = VariancePreservingConditionalFlowMatcher(sigma=0.0)

    def loss_of(t, x_t, u_t):
        return torch.mean((net(t, x_t) - u_t) ** 2)

    loss_fn = torch.compile(loss_of) if compiled else loss_of

    def one_step():
        x1 = torch_side.checkerboard(batch_size)
        x0 = torch.randn_like(x1)
        t, x_t, u_t = matcher.sample_location_and_conditional_flow(x0, x1)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(t, x_t, u_t).backward()
        optimizer.step()

    for _ in range(3):
        one_step()
    return one_step


def torch_variant(name, width, args, compiled, threads) -> Variant:
    import torch

    torch.set_num_threads(threads)
    one_step = make_torch_step(width, args.batch_size, args.learning_rate, compiled)

    def run(units):
        for _ in range(units):
            one_step()

    return Variant(name, run, 1, threads)


def make_variants(width: int, args, lines: list[str]) -> tuple[list[Variant], float]:
    """Ours (and with the proposed PRNG lowering), torch eager per thread count, torch
    compiled (if it compiles); and the FLOPs of one step."""
    ours, flops = make_ours(width, args)
    variants = [ours]
    if args.proposed:
        with jax_side.unrolled_threefry():
            variants.append(make_ours(width, args, PROPOSED)[0])
    for threads in args.torch_threads:
        variants.append(torch_variant(f"torch eager, {threads} thr", width, args, False, threads))
    if args.torch_compile:
        threads = args.torch_threads[0]
        try:
            name = f"torch.compile, {threads} thr"
            variants.append(torch_variant(name, width, args, True, threads))
        except Exception as err:  # noqa: BLE001 - report why compile failed, keep going
            lines.append(f"- torch.compile failed at W={width}: {type(err).__name__}: {err}")
    return variants, flops


def measure_width(width: int, args, lines: list[str]) -> dict[str, np.ndarray]:
    """Steps/s of every variant and the matmul peak (GFLOP/s), alternated over reps; the
    FLOPs of a step under the key 'flops'."""
    variants, flops = make_variants(width, args, lines)
    peak = make_peak(args.peak_size)
    for variant in variants:
        variant.calibrate(args.rep_seconds)
    rates = {variant.name: [] for variant in variants} | {"peak": []}
    for _ in range(args.reps):
        rates["peak"].append(peak())
        for variant in variants:
            rates[variant.name].append(variant.rate())
    return {name: np.asarray(values) for name, values in rates.items()} | {"flops": flops}


def rows_for(width: int, rates: dict) -> list[list]:
    """Ours against each torch variant and against the best torch variant of each
    repetition (and so the proposed variant): median steps/s and fraction of the matmul
    peak (the same FLOPs per step, from XLA), median and range of the per-repetition ratio."""
    peak, flops = rates["peak"], rates["flops"]
    ours_names = [name for name in (OURS, PROPOSED) if name in rates]
    torch_rates = {n: v for n, v in rates.items() if n.startswith("torch")}
    best = np.max(np.stack(list(torch_rates.values())), 0)
    pairs = [(OURS, name, values) for name, values in torch_rates.items()]
    pairs += [(name, "best torch variant per rep", best) for name in ours_names]

    def of_peak(steps_per_second):
        return f"{np.median(steps_per_second * flops / 1e9 / peak):.0%}"

    rows = []
    for ours_name, torch_name, values in pairs:
        ours = rates[ours_name]
        med, low, high = bench_common.spread(list(ours / values))
        row = [width, ours_name, float(np.median(ours)), of_peak(ours), torch_name]
        rows.append(row + [float(np.median(values)), of_peak(values), med, f"{low:.3g}-{high:.3g}"])
    return rows


def plot(results: dict, outdir: str) -> None:
    """Median steps/s against width for each library, log-log."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    widths = sorted(results)
    names = [n for n in results[widths[0]] if n not in ("peak", "flops")]
    for name in names:
        points = [(w, float(np.median(results[w][name]))) for w in widths if name in results[w]]
        ax.plot(*zip(*points, strict=True), "o-", label=name)
    ax.set(xscale="log", yscale="log", xlabel="hidden width W", ylabel="train steps / s")
    bench_common.finish_plot(
        fig, ax, "checkerboard train step, batch fixed", outdir, "steps_per_second.png"
    )


def main(argv=None):
    args, lines = bench_common.start(
        parse_args, argv, "Train-step throughput: interflow_jax vs torchcfm"
    )
    policy = bench_common.set_omp_wait_policy(args.omp_wait_policy)
    lines.append(f"- torch OMP_WAIT_POLICY: {policy}")
    lines.append(
        f"- batch {args.batch_size}, Adam lr {args.learning_rate}, {args.reps} repetitions "
        f"alternated (~{args.rep_seconds} s per variant each), our scan {args.scan_steps} steps "
        f"per call, jax devices {jax.devices()}"
    )
    results, rows = {}, []
    for width in args.widths:
        results[width] = measure_width(width, args, lines)
        rows += rows_for(width, results[width])
    columns = ["W", "ours", "steps/s", "of peak", "torch variant", "steps/s"]
    columns += ["of peak", "ratio ours/torch", "ratio range"]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    plot(results, args.outdir)
    return results


if __name__ == "__main__":
    main()
