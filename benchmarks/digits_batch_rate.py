"""Digits training step against batch size, side by side: steps/s and digits/s of the
digits config's U-Net at batch 32, 64 and 128 (BUILD_NOTES, Images: the batch finding),
and of variants of the config (--variant NAME:SETTING[;SETTING...], repeatable).

Each batch size runs the library's own jitted training call (`loop.build_multi_step` on
`images.py:digits`, one step per call as the config) fed by its host reader of the
training digits, exactly as `experiments/train.py` runs it. The variants are timed in
turn, once per repetition (~--rep_seconds each, calls calibrated once after warm-up), so
slow drifts of a shared machine fall on all of them alike. Reported: median steps/s and
digits/s per batch size, and each rate's ratio to the largest batch's (median and range
over repetitions) and to the config's at the same batch size.

  python benchmarks/digits_batch_rate.py [--batch_sizes=32,64,128] [--reps=5]
  python benchmarks/digits_batch_rate.py --batch_sizes=32 \
      "--variant=dihedral:model.augmentation='dihedral'" --variant=c24:model.unet.channels=24
"""

from __future__ import annotations

import bench_common
import jax
import numpy as np
from density_vs_spline_flow import apply_overrides

from experiments.configs import images as images_config
from interflow_jax.training import cpu_prng, loop, setup, sharding

NAME = "digits_batch_rate"


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
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


def digits_config(args, batch_size: int, variant: str = "config"):
    config = images_config.get_config("digits,smoke" if args.smoke else "digits")
    config.training.batch_size = batch_size
    apply_overrides(config, args.override + args.variants[variant])
    return config


def training_call(args, batch_size: int, variant: str):
    """(call, steps per call): one jitted training call of the digits config, its state
    and the host-read batches carried across calls."""
    config = digits_config(args, batch_size, variant)
    mesh = sharding.make_mesh()
    problem = setup.build_problem(config)
    _, field = setup.build_model(config)
    multi_step = loop.build_multi_step(config, problem, field, mesh)
    host_data = loop.build_host_batches(config, problem, mesh)
    init = setup.make_init_state(config, problem.event_shape)
    carry = {"state": jax.jit(init, out_shardings=sharding.replicated(mesh))(), "step": 0}
    per_call = config.training.steps_per_call

    def call():
        data = host_data.get(carry["step"])
        carry["state"], metrics = multi_step(carry["state"], data)
        carry["step"] += per_call
        jax.block_until_ready(metrics)

    return call, per_call


def ratio_cells(values: np.ndarray, reference: np.ndarray) -> list:
    med, low, high = bench_common.spread(list(values / reference))
    return [med, f"{low:.3g}-{high:.3g}"]


def rows_for(args, rates: dict) -> list[list]:
    """Per (variant, batch): steps/s, digits/s, digits/s against the config at the largest
    batch, and steps/s against the config at the same batch."""
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
        digits = [float(np.median(rates[(variant, b)])) * b for b in sizes]
        ax.plot(sizes, digits, "o-", label=f"{variant}: digits/s")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="digits / s")
    bench_common.finish_plot(fig, ax, "digits U-Net training", args.outdir, "rates.png")


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Digits training rate against batch size")
    if digits_config(args, 1).training.unrolled_threefry:  # as the loop does
        cpu_prng.use_unrolled_threefry()
    runs = {
        (variant, b): bench_common.calibrated(training_call(args, b, variant), args.rep_seconds)
        for variant in args.variants
        for b in args.batch_sizes
    }
    rates = {k: np.asarray(v) for k, v in bench_common.alternated_rates(runs, args.reps).items()}
    variants = "; ".join(f"{k}: {v}" for k, v in args.variants.items() if v) or "none"
    lines.append(
        f"- the digits config's U-Net and optimiser, one step per jitted call, host-read "
        f"batches; {args.reps} repetitions alternated (~{args.rep_seconds} s each); "
        f"overrides {args.override or 'none'}; variants {variants}; jax devices {jax.devices()}"
    )
    largest = max(args.batch_sizes)
    columns = ["variant", "batch", "steps/s", "digits/s", f"digits/s / config at {largest}"]
    columns += ["range", "steps/s / config", "range"]
    bench_common.write_table_report(args.outdir, lines, columns, rows_for(args, rates))
    plot(args, rates)
    return rates


if __name__ == "__main__":
    main()
