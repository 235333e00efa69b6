"""Training steps per second of a config against batch size and against variants of
it, side by side (by default the digits U-Net at batch 32, 64 and 128: BUILD_NOTES,
Images, the batch finding).

Each (variant, batch size) runs the library's own jitted training call
(`loop.build_multi_step`, training.steps_per_call steps per call as the config) fed as
`experiments/train.py` feeds it (the host reader of a finite data set, or batches drawn
in the graph). The variants are timed in turn, once per repetition (~--rep_seconds each,
calls calibrated once after warm-up), so slow drifts of a shared machine fall on all of
them alike. Reported: median steps/s and examples/s, each rate's ratio to the config's at
the largest batch (examples/s) and to the config's at the same batch (steps/s), as
median and range over repetitions.

  python benchmarks/step_rate.py [--batch_sizes=32,64,128] [--reps=5]
  python benchmarks/step_rate.py --batch_sizes=32 \
      "--variant=dihedral:model.augmentation='dihedral'" --variant=c24:model.unet.channels=24
  python benchmarks/step_rate.py --config=experiments/configs/mixture.py:43 \
      --batch_sizes=1024 --variant=skip4:model.linear_skip_terms=4
"""

from __future__ import annotations

import os

import bench_common
import jax
import numpy as np
from density_vs_spline_flow import apply_overrides

from interflow_jax.training import cpu_prng, loop, setup, sharding
from interflow_jax.training.config_io import sibling_config

NAME = "step_rate"
DIGITS = "experiments/configs/images.py:digits"


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--config", default=DIGITS, help="CONFIG_FILE:ARG, as train.py's")
    parser.add_argument("--batch_sizes", default="32,64,128")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rep_seconds", type=float, default=6.0)
    parser.add_argument(
        "--override", action="append", default=[], help="config settings, e.g. model.unet.dropout=0"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:SETTING[;SETTING...], a variant of the config timed beside it",
    )
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.variants = {"config": []}
    for item in args.variant:
        name, _, settings = item.partition(":")
        if not name or not settings:
            parser.error(f"--variant must be NAME:SETTING[;SETTING...]; got {item!r}")
        args.variants[name] = settings.split(";")
    if args.smoke:
        args.batch_sizes, args.reps, args.rep_seconds = [8, 16], 1, 0.05
        args.variants["hflip"] = ["model.augmentation='hflip'"]
    return args


def load_config(args, batch_size: int, variant: str = "config"):
    path, _, arg = args.config.partition(":")
    arg = f"{arg},smoke" if args.smoke else arg
    config = sibling_config(path, os.path.splitext(os.path.basename(path))[0], arg)
    config.training.batch_size = batch_size
    apply_overrides(config, args.override + args.variants[variant])
    return config


def training_call(args, batch_size: int, variant: str):
    """(call, steps per call): one jitted training call of the config, its state and
    (for finite data) the host-read batches carried across calls."""
    config = load_config(args, batch_size, variant)
    mesh = sharding.make_mesh()
    problem = setup.build_problem(config)
    _, field = setup.build_model(config)
    multi_step = loop.build_multi_step(config, problem, field, mesh)
    host_data = loop.build_host_batches(config, problem, mesh)
    init = setup.make_init_state(config, problem.event_shape)
    carry = {"state": jax.jit(init, out_shardings=sharding.replicated(mesh))(), "step": 0}
    per_call = config.training.steps_per_call

    def call():
        data = None if host_data is None else host_data.get(carry["step"])
        carry["state"], metrics = multi_step(carry["state"], data)
        carry["step"] += per_call
        jax.block_until_ready(metrics)

    return call, per_call


def ratio_cells(values: np.ndarray, reference: np.ndarray) -> list:
    med, low, high = bench_common.spread(list(values / reference))
    return [med, f"{low:.3g}-{high:.3g}"]


def rows_for(args, rates: dict) -> list[list]:
    """Per (variant, batch): steps/s, examples/s, examples/s against the config at the
    largest batch, and steps/s against the config at the same batch."""
    largest = max(args.batch_sizes)
    reference = rates[("config", largest)] * largest
    rows = []
    for (variant, batch_size), values in rates.items():
        steps = float(np.median(values))
        row = [variant, batch_size, steps, steps * batch_size]
        row += ratio_cells(values * batch_size, reference)
        row += ratio_cells(values, rates[("config", batch_size)])
        rows.append(row)
    return rows


def plot(args, rates: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizes = sorted(args.batch_sizes)
    for variant in args.variants:
        examples = [float(np.median(rates[(variant, b)])) * b for b in sizes]
        ax.plot(sizes, examples, "o-", label=variant)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="examples / s")
    bench_common.finish_plot(fig, ax, f"training: {args.config}", args.outdir, "rates.png")


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Training steps per second")
    if load_config(args, 1).training.unrolled_threefry:  # as the loop does
        cpu_prng.use_unrolled_threefry()
    runs = {
        (variant, b): bench_common.calibrated(training_call(args, b, variant), args.rep_seconds)
        for variant in args.variants
        for b in args.batch_sizes
    }
    rates = {k: np.asarray(v) for k, v in bench_common.alternated_rates(runs, args.reps).items()}
    variants = "; ".join(f"{k}: {v}" for k, v in args.variants.items() if v) or "none"
    lines.append(
        f"- config {args.config}, its training call as the loop runs it; "
        f"{args.reps} repetitions alternated (~{args.rep_seconds} s each); "
        f"overrides {args.override or 'none'}; variants {variants}; jax devices {jax.devices()}"
    )
    largest = max(args.batch_sizes)
    columns = ["variant", "batch", "steps/s", "examples/s", f"examples/s / config at {largest}"]
    columns += ["range", "steps/s / config", "range"]
    bench_common.write_table_report(args.outdir, lines, columns, rows_for(args, rates))
    plot(args, rates)
    return rates


if __name__ == "__main__":
    main()
