"""Where the coupling plan is computed under data parallelism: the whole batch (global)
against each device's shard (per_device), as train-step cost.

The library's training step (`training.loop.build_multi_step`, the checkerboard config
`toy2d.py:checkerboard` with the linear interpolant, batch --batch_size, MLP 3 x --width)
runs on D devices of one process (XLA's forced host device count, a child process per
D), its batch split over the mesh's data axis. For each coupling (independent pairs,
ot_exact, ot_sinkhorn) and each loss.coupling_scope:

- global: the cost matrix gathers every device's shard and one plan over the whole batch
  is solved (n x n; the exact plan on the host through one callback);
- per_device: `couplings.per_device`, a plan over n / D pairs on each device, no
  communication (D plans of (n / D)^2).

The exact plan uses --exact_solver, by default 'jax' (optax's Hungarian algorithm in the
graph): with several forced CPU devices, the host solvers (scipy, POT through
`pure_callback`) stopped at XLA's 40 s collective rendezvous timeout for plans of 256
pairs and more (128 ran), so they are timed only where they run (--exact_solver=auto).

Each variant is timed --reps times in turn (~--rep_seconds each; calls calibrated once
after warm-up). Reported: median steps/s and its ratio to independent pairs at the same
D. The forced devices share this machine's cores, so compare ratios within a D, not
steps/s across D.

  python benchmarks/coupling_scope_cost.py --devices=1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import bench_common
import numpy as np

NAME = "coupling_scope_cost"
VARIANTS = (
    ("independent", "global"),
    ("ot_exact", "global"),
    ("ot_exact", "per_device"),
    ("ot_sinkhorn", "global"),
    ("ot_sinkhorn", "per_device"),
)


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps_per_call", type=int, default=10)
    parser.add_argument(
        "--exact_solver", default="jax", help="loss.exact_solver of ot_exact (see README)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rep_seconds", type=float, default=2.0)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.devices = [int(d) for d in args.devices.split(",")]
    if args.smoke:
        args.devices, args.batch_size, args.width = [2], 64, 16
        args.steps_per_call, args.reps, args.rep_seconds = 2, 1, 0.05
    return args


def variant_config(args, coupling: str, scope: str):
    from experiments.configs import toy2d

    config = toy2d.get_config("checkerboard")
    config.interpolant = "linear"
    config.model.hidden_sizes = (args.width,) * 3
    config.training.update(batch_size=args.batch_size, steps_per_call=args.steps_per_call)
    config.loss.update(coupling=coupling, coupling_scope=scope, exact_solver=args.exact_solver)
    return config


def runner(config):
    """(call, steps per call): one jitted call of training.steps_per_call steps."""
    import jax

    from interflow_jax.training import loop, setup, sharding

    mesh = sharding.make_mesh()
    problem = setup.build_problem(config)
    _, field = setup.build_model(config)
    init = setup.make_init_state(config, problem.event_shape)
    state = jax.jit(init, out_shardings=sharding.replicated(mesh))()
    multi_step = loop.build_multi_step(config, problem, field, mesh)

    def call():
        nonlocal state
        state, metrics = multi_step(state, None)
        jax.block_until_ready(metrics)

    return call, config.training.steps_per_call


def child(args) -> None:
    """Time every variant on this process's devices; print one JSON line of steps/s."""
    import jax

    from interflow_jax.training import cpu_prng

    cpu_prng.use_unrolled_threefry()
    runs = {
        f"{coupling} {scope}": bench_common.calibrated(
            runner(variant_config(args, coupling, scope)), args.rep_seconds
        )
        for coupling, scope in VARIANTS
    }
    rates = bench_common.alternated_rates(runs, args.reps)
    print(json.dumps({"devices": jax.device_count(), "rates": rates}))


def run_child(args, devices: int) -> dict:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, os.path.abspath(__file__), f"--child={devices}"]
    names = ("batch_size", "width", "steps_per_call", "exact_solver")
    command += [f"--{k}={getattr(args, k)}" for k in names]
    command += [f"--reps={args.reps}", f"--rep_seconds={args.rep_seconds}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"child with {devices} devices failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def rows_for(record: dict) -> list[list]:
    rates = {name: np.asarray(values) for name, values in record["rates"].items()}
    reference = rates["independent global"]
    rows = []
    for name, values in rates.items():
        med, low, high = bench_common.spread(list(values / reference))
        coupling, scope = name.split()
        scope = "(none)" if coupling == "independent" else scope
        rows.append([record["devices"], coupling, scope, float(np.median(values)), med])
        rows[-1].append(f"{low:.3g}-{high:.3g}")
    return rows


def plot(rows: list[list], outdir: str) -> None:
    """Steps/s relative to independent pairs against D, one line per coupling and scope."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys((r[1], r[2]) for r in rows if r[1] != "independent"):
        points = [(r[0], r[4]) for r in rows if (r[1], r[2]) == name]
        ax.plot(*zip(*points, strict=True), "o-", label=" ".join(name))
    ax.set(xscale="log", xlabel="devices D", ylabel="steps/s / independent pairs", ylim=(0, 1.05))
    bench_common.finish_plot(fig, ax, "coupling scope", outdir, "ratio_vs_devices.png")


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Coupling scope under data parallelism")
    if args.child:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return child(args)
    lines.append(
        f"- checkerboard, linear interpolant, MLP 3 x {args.width}, batch {args.batch_size} "
        f"split over D forced host devices (sharing {os.cpu_count()} cores), "
        f"{args.steps_per_call} steps per jitted call, {args.reps} repetitions alternated "
        f"(~{args.rep_seconds} s each); ot_exact solver {args.exact_solver!r}, Sinkhorn "
        "epsilon 0.05"
    )
    rows = []
    for devices in args.devices:
        rows += rows_for(run_child(args, devices))
        print(rows[-len(VARIANTS) :], flush=True)
    columns = ["devices D", "coupling", "scope", "steps/s", "/ independent", "range"]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    plot(rows, args.outdir)
    return rows


if __name__ == "__main__":
    main()
