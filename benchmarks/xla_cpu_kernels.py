"""Training steps per second with XLA's own CPU kernels against YNNPACK's, side by side.

Importing interflow_jax sets `--xla_cpu_experimental_ynn_fusion_type=` (no YNNPACK
fusions; interflow_jax/xla_cpu.py) unless $INTERFLOW_KEEP_XLA_FLAGS is set. XLA reads its
flags once per process, so the two settings run in alternated child processes, each
timing the config's training call (benchmarks/step_rate.py, one repetition, its variants
alternated inside the child). Reported per config and setting: median steps/s over the
rounds and its ratio to YNNPACK's.

  python benchmarks/xla_cpu_kernels.py [--rounds=3] [--configs=CONFIG:ARG@BATCH,...]

By default the digits U-Net at batch 32, the d = 43 mixture MLP at 1,024 and the 2-D
default experiment (toy2d.py:checkerboard) at 2,048.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import bench_common
import numpy as np

NAME = "xla_cpu_kernels"
SETTINGS = {"ynnpack": {"INTERFLOW_KEEP_XLA_FLAGS": "1"}, "xla": {"INTERFLOW_KEEP_XLA_FLAGS": ""}}
DEFAULT_CONFIGS = ",".join(
    [
        "experiments/configs/images.py:digits@32",
        "experiments/configs/mixture.py:43@1024",
        "experiments/configs/toy2d.py:checkerboard@2048",
    ]
)


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="CONFIG:ARG@BATCH,...")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rep_seconds", type=float, default=8.0)
    parser.add_argument("--variant", action="append", default=[], help="as step_rate.py's")
    parser.add_argument("--child", action="store_true", help="internal: one config, rates as JSON")
    args = parser.parse_args(argv)
    args.configs = [tuple(item.rsplit("@", 1)) for item in args.configs.split(",")]
    if args.smoke:
        args.rounds, args.rep_seconds, args.configs = 1, 0.05, args.configs[:1]
    return args


def passed_on(args, outdir: str) -> list[str]:
    """The arguments a child (and its step_rate run) shares with this run."""
    argv = [f"--rep_seconds={args.rep_seconds}", f"--outdir={outdir}"]
    return argv + [f"--variant={item}" for item in args.variant] + ["--smoke"] * args.smoke


def child_rates(args, config: str, batch: str) -> dict[str, float]:
    """steps/s of each step_rate variant, timed in this process."""
    import step_rate

    argv = [f"--config={config}", f"--batch_sizes={batch}", "--reps=1"]
    rates = step_rate.main(argv + passed_on(args, f"{args.outdir}/child"))
    return {variant: float(np.median(values)) for (variant, _), values in rates.items()}


def run_child(args, config: str, batch: str, setting: str) -> dict[str, float]:
    env = {**os.environ, **SETTINGS[setting]}
    command = [sys.executable, __file__, "--child", f"--configs={config}@{batch}"]
    command += passed_on(args, args.outdir)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"child {setting} {config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        config, batch = args.configs[0]
        print(json.dumps(child_rates(args, config, batch)))
        return None
    args, lines = bench_common.start(parse_args, argv, "XLA's CPU kernels against YNNPACK's")
    rates: dict = {}
    for _ in range(args.rounds):
        for config, batch in args.configs:
            for setting in SETTINGS:
                for variant, rate in run_child(args, config, batch, setting).items():
                    rates.setdefault((config, batch, variant, setting), []).append(rate)
    rows = []
    for (config, batch, variant, setting), values in rates.items():
        reference = rates[(config, batch, variant, "ynnpack")]
        ratios = np.asarray(values) / np.asarray(reference)
        med, low, high = bench_common.spread(list(ratios))
        rows.append([config, batch, variant, setting, float(np.median(values)), med])
        rows[-1].append(f"{low:.3g}-{high:.3g}")
    lines.append(
        f"- {args.rounds} rounds of alternated child processes, ~{args.rep_seconds} s each"
    )
    columns = ["config", "batch", "variant", "kernels", "steps/s", "/ YNNPACK", "range"]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    plot(args, rows)
    return rates


def plot(args, rows) -> None:
    import matplotlib.pyplot as plt

    xla_rows = [row for row in rows if row[3] == "xla"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{row[0].rsplit('/', 1)[-1]} {row[2]}" for row in xla_rows]
    ax.bar(labels, [row[5] for row in xla_rows], label="XLA's kernels")
    ax.axhline(1.0, color="k", lw=0.8, label="YNNPACK")
    ax.set(ylabel="steps/s ratio")
    ax.tick_params(axis="x", labelrotation=20)
    bench_common.finish_plot(fig, ax, "training steps/s on CPU", args.outdir, "ratios.png")


if __name__ == "__main__":
    main()
