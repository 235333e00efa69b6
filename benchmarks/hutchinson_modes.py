"""Hutchinson likelihoods by forward mode (jvp) against reverse mode (vjp).

`flows.make_log_prob` with the Hutchinson divergence, the same probes and the same
fixed-step Heun solve, once with `hutchinson_mode='forward'` and once with 'reverse',
for two untrained fields: the digits config's U-Net (8 x 8 x 1) and an MLP 3 x 256 in
d = 64. The two modes compute the same numbers (the report gives their largest
difference); only the cost differs. Inside the solver's loop XLA's CPU backend runs the
transposed convolutions of a vjp several times slower than forward convolutions, which
is why forward mode is the default. Repetitions alternate the two modes.

  python benchmarks/hutchinson_modes.py
"""

from __future__ import annotations

import bench_common
import jax
import numpy as np

from interflow_jax import densities, flows
from interflow_jax.models import UNet, VelocityMLP, as_field, init_params

NAME = "hutchinson_modes"
DIGITS_UNET = dict(
    channels=16, channel_multipliers=(1, 2), num_res_blocks=1, attention_resolutions=(4,)
)


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--num_points", type=int, default=128)
    parser.add_argument("--num_steps", type=int, default=8, help="Heun steps per solve")
    parser.add_argument("--num_probes", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_points, args.num_steps, args.num_probes, args.reps = 8, 1, 2, 1
    return args


def perturbed(params, key, scale=0.05):
    """Params plus small Gaussian noise, so that zero-initialised output layers are not zero."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        p + scale * jax.random.normal(k, p.shape, p.dtype)
        for p, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(tree, noisy)


def fields(args):
    """{name: (module, event shape)}; the smoke run keeps only a small MLP (compiling a
    U-Net's reverse-mode solve alone takes tens of seconds)."""
    if args.smoke:
        return {"MLP 3x16, d = 64": (VelocityMLP(hidden_sizes=(16,) * 3), (64,))}
    unet = UNet(**DIGITS_UNET)
    mlp = VelocityMLP(hidden_sizes=(256,) * 3)
    return {"digits U-Net 8x8x1": (unet, (8, 8, 1)), "MLP 3x256, d = 64": (mlp, (64,))}


def make_calls(module, event_shape, args):
    """{mode: blocking call returning the per-point log-probs}, each compiled once."""
    params = perturbed(init_params(module, jax.random.key(0), event_shape), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (args.num_points, *event_shape))
    options = flows.ODEOptions(solver="heun", num_steps=args.num_steps)
    base = densities.standard_gaussian(event_shape)
    calls = {}
    for mode in ("forward", "reverse"):
        log_prob = flows.make_log_prob(
            as_field(module), base, options, "hutchinson", args.num_probes, "rademacher", mode
        )
        calls[mode] = _blocking(log_prob, params, x)
    return calls


def _blocking(log_prob, params, x):
    key, t = jax.random.key(3), np.float32(1.0)

    def call():
        return np.asarray(jax.block_until_ready(log_prob(params, x, t, key)).log_prob)

    return call


def measure(calls, reps):
    """(median seconds per mode, largest |forward - reverse| log-prob difference)."""
    difference = float(np.max(np.abs(calls["forward"]() - calls["reverse"]())))
    times = {mode: [] for mode in calls}
    for _ in range(reps):
        for mode, call in calls.items():
            times[mode].append(bench_common.timed(call))
    return {mode: float(np.median(v)) for mode, v in times.items()}, difference


def plot(rows, args) -> None:
    """Seconds per solve for each field, forward beside reverse."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    positions = np.arange(len(rows))
    ax.bar(positions - 0.2, [r[1] for r in rows], 0.4, label="forward (jvp)")
    ax.bar(positions + 0.2, [r[2] for r in rows], 0.4, label="reverse (vjp)")
    ax.set_xticks(positions, [r[0] for r in rows])
    ax.set(ylabel="seconds per likelihood solve", yscale="log")
    bench_common.finish_plot(
        fig,
        ax,
        f"Hutchinson, {args.num_probes} probes, Heun {args.num_steps} steps",
        args.outdir,
        "seconds.png",
    )


def main(argv=None):
    args, lines = bench_common.start(
        parse_args, argv, "Hutchinson likelihood: forward mode (jvp) vs reverse mode (vjp)"
    )
    lines.append(
        f"- Heun {args.num_steps} fixed steps (NFE {2 * args.num_steps}), {args.num_points} "
        f"points, {args.num_probes} Rademacher probes, median of {args.reps} alternated reps"
    )
    rows = []
    for name, (module, shape) in fields(args).items():
        seconds, difference = measure(make_calls(module, shape, args), args.reps)
        speedup = seconds["reverse"] / seconds["forward"]
        rows.append([name, seconds["forward"], seconds["reverse"], speedup, difference])
    columns = ["field", "forward s", "reverse s", "reverse / forward", "max |difference|"]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    plot(rows, args)
    return rows


if __name__ == "__main__":
    main()
