"""Fraction of the machine's measured matmul peak that the jitted train step reaches.

Peak: a large float32 `jnp.dot` (N x N by N x N, 2 N^3 FLOPs), jitted and timed with
block_until_ready. Train step: the checkerboard quadratic-loss step of interflow_jax
(benchmarks/jax_side.py: MLP 3 x W, SiLU, Adam, batch drawn in the graph), FLOPs per step
from XLA's cost analysis of one compiled step, time from `lax.scan` over S steps per
call with the state donated. Both are measured in one run, alternated: each repetition
times the matmul and then every train-step configuration once.

  python benchmarks/machine_peak.py
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import bench_common
import jax
import jax.numpy as jnp
import jax_side
import numpy as np

NAME = "machine_peak"


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--widths", default="256,1024")
    parser.add_argument("--batch_sizes", default="2048,8192")
    parser.add_argument("--matmul_size", type=int, default=4096)
    parser.add_argument("--target_seconds", type=float, default=1.0, help="time per call")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    args.widths = [int(w) for w in args.widths.split(",")]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.smoke:
        args.widths, args.batch_sizes, args.matmul_size = [32], [128], 256
        args.target_seconds, args.reps = 0.05, 2
    return args


def make_matmul(n: int):
    """(callable doing one blocked N x N matmul, its FLOPs from XLA and from 2 N^3)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    return (lambda: dot(a, b).block_until_ready()), jax_side.compiled_flops(dot, a, b), 2.0 * n**3


class Entry(NamedTuple):
    """A timed configuration: `run()` does `steps` steps of `flops` FLOPs each."""

    what: str
    width: int
    batch: int
    run: object
    flops: float
    steps: int


def steps_for(flops: float, target_seconds: float, peak: float) -> int:
    """Steps per call for about target_seconds at half the peak."""
    return max(1, int(target_seconds * 0.5 * peak / flops))


def train_step_entry(what, width, batch, args, peak, activation="silu") -> Entry:
    training = jax_side.checkerboard_training(width, batch, activation=activation)
    flops = jax_side.step_flops(training)
    steps = steps_for(flops, args.target_seconds, peak)
    return Entry(what, width, batch, jax_side.make_runner(training, steps), flops, steps)


def gemm_entry(width, batch, args, peak) -> Entry:
    estimate = 6.0 * batch * (34 * width + 2 * width * width + 2 * width)
    steps = steps_for(estimate, args.target_seconds, peak)
    run, flops = jax_side.gemm_skeleton(width, batch, steps)
    return Entry("matrix products only", width, batch, run, flops, steps)


def make_entries(args, peak) -> list[Entry]:
    """The train step at every (W, batch); at the first batch size also its matrix
    products alone and the step with ReLU instead of SiLU (where the time goes)."""
    entries = []
    for width in args.widths:
        for batch in args.batch_sizes:
            entries.append(train_step_entry("train step", width, batch, args, peak))
        if args.breakdown:
            batch = args.batch_sizes[0]
            entries.append(gemm_entry(width, batch, args, peak))
            if not args.smoke:  # one compilation less in the smoke run
                entries.append(
                    train_step_entry("train step, ReLU", width, batch, args, peak, "relu")
                )
    return entries


def measure(args):
    """Alternate the matmul and every entry; returns times per repetition."""
    matmul, matmul_flops, analytic = make_matmul(args.matmul_size)
    peak_guess = analytic / min(bench_common.timed(matmul) for _ in range(2))
    entries = make_entries(args, peak_guess)
    times = {"matmul": [], **{i: [] for i in range(len(entries))}}
    for _ in range(args.reps):
        times["matmul"].append(bench_common.timed(matmul))
        for i, entry in enumerate(entries):
            times[i].append(bench_common.timed(entry.run))
    return times, entries, matmul_flops, analytic


def table(args, times, entries, matmul_flops, analytic):
    """Rows of the peak and of each entry as a fraction of the peak (paired per rep)."""
    peak_times = np.asarray(times["matmul"])
    peak = analytic / float(np.median(peak_times))
    rows = [["matmul", args.matmul_size, "-", analytic / 1e9, "-", "-", peak / 1e9, "100%", "-"]]
    for i, entry in enumerate(entries):
        seconds = np.asarray(times[i])
        rate = entry.flops * entry.steps / seconds
        fraction = rate / (analytic / peak_times)
        med, low, high = bench_common.spread(list(fraction))
        row = [entry.what, entry.width, entry.batch, entry.flops / 1e9, entry.steps]
        row += [float(np.median(seconds)) / entry.steps * 1e3, float(np.median(rate)) / 1e9]
        rows.append(row + [f"{med:.1%}", f"{low:.1%}-{high:.1%}"])
    note = (
        f"- matmul FLOPs: XLA cost analysis {matmul_flops:.4g}, analytic 2 N^3 = {analytic:.4g}; "
        f"peak {peak / 1e9:.1f} GFLOP/s (median of {len(peak_times)})"
    )
    return rows, note


def plot(rows, outdir: str) -> None:
    """Fraction of peak per configuration (bar chart)."""
    import matplotlib.pyplot as plt

    labels = [f"{r[0]}\nW={r[1]} B={r[2]}" for r in rows[1:]]
    values = [float(r[7].rstrip("%")) for r in rows[1:]]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(labels)), 4.5))
    ax.bar(range(len(labels)), values)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.axhline(60, color="k", ls="--", lw=1, label="60% target")
    ax.set(ylabel="% of measured matmul peak", title="jitted train step vs jnp.dot peak")
    ax.legend()
    bench_common.save_figure(fig, outdir, "fraction_of_peak.png")


def main(argv=None):
    args, lines = bench_common.start(
        parse_args, argv, "Train step FLOP/s against the measured matmul peak"
    )
    times, entries, matmul_flops, analytic = measure(args)
    rows, note = table(args, times, entries, matmul_flops, analytic)
    columns = ["what", "W / N", "batch", "GFLOP per step", "steps per call", "ms per step"]
    columns += ["GFLOP/s", "of peak (median)", "of peak (range)"]
    lines += [note, f"- {args.reps} repetitions, alternated", ""]
    lines += bench_common.markdown_table(columns, rows)
    bench_common.write_report(args.outdir, lines)
    plot(rows, args.outdir)
    return rows


if __name__ == "__main__":
    main()
