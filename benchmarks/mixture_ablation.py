"""What makes the velocity field learn faster in high dimension: ablations on the
exact-density Gaussian mixtures (d = 43, 63 by default).

Each variant is the mixture config (`mixture.py:D`, its README command) with a few
settings changed, trained from scratch through the library's loop and evaluated as that
command does (best-validation checkpoint, exact divergence, 2,000 test points). Reported:
the paired gap to the true cross-entropy with its standard error, the wall-clock of
training plus evaluation, the training steps and steps/s. Variants run one after another
on the same machine; their per-step costs differ, so compare the wall-clock column too.

  python benchmarks/mixture_ablation.py --dims=43,63 --variants=baseline,fitted_base,resmlp
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import bench_common
from density_vs_spline_flow import apply_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.configs import mixture as mixture_config  # noqa: E402
from interflow_jax.training.loop import train_and_evaluate  # noqa: E402

NAME = "mixture_ablation"
VARIANTS = {
    "baseline": [],
    # PAPER section 5's Gaussian base, fitted to the data's mean and covariance
    "fitted_base": ["base.kind='fitted_gaussian'"],
    # residual MLP, LayerNorm, FiLM time conditioning; width 128 with 2x expansion costs
    # about the multiply-adds of the 4 x 256 MLP
    "resmlp": ["model.kind='resmlp'", "model.resmlp.width=128"],
    "resmlp_fitted_base": [
        "model.kind='resmlp'",
        "model.resmlp.width=128",
        "base.kind='fitted_gaussian'",
    ],
    # the residual MLP runs at half the MLP's steps/s at d = 63: the same wall-clock
    "resmlp_equal_time": [
        "model.kind='resmlp'",
        "model.resmlp.width=128",
        "training.num_steps=15000",
    ],
    "lr_4e-3": ["optimizer.learning_rate=4e-3"],
    # wider and shallower, steps cut by the multiply-adds per step (1.43x, 2.6x of 4 x 256)
    "mlp_2x512_equal_time": ["model.hidden_sizes=(512, 512)", "training.num_steps=21000"],
    "mlp_3x512_equal_time": ["model.hidden_sizes=(512, 512, 512)", "training.num_steps=11500"],
    "mlp_2x1024": ["model.hidden_sizes=(1024, 1024)", "training.num_steps=12000"],
    # one time in each of the batch's n cells of [0, 1): a lower-variance loss estimate
    "stratified_time": ["time_sampler.kind='stratified'"],
    "linear_interpolant": ["interpolant='linear'"],
    # more training times near the data end t = 1, where thin components make the field
    # sharp: Beta(1, 0.6) has P(t > 0.8) = 0.38 against 0.2 for U[0, 1)
    "late_times": ["time_sampler.kind='beta'", "time_sampler.beta=0.6"],
    "ema_0.9999": ["training.ema_decay=0.9999"],
    # minibatch optimal-transport pairs within blocks of 128 (interflow_jax/couplings.py):
    # straighter paths, a less noisy regression target
    "ot_exact_b128": ["loss.coupling='ot_exact'", "loss.coupling_block_size=128"],
    "ot_sinkhorn_b128": ["loss.coupling='ot_sinkhorn'", "loss.coupling_block_size=128"],
    # a time-dependent gain on each hidden layer (models.VelocityMLP): t multiplies x's
    # features directly, about 6% more multiply-adds for the 2 x 1024 MLP
    "film": ["model.time_conditioning='film'"],
    # every pair of 32 data points and 32 base points: the same network batch of 1,024
    # as the config, built from 32 data points instead of 1,024
    "all_pairs_32x32": [
        "loss.estimator='all_pairs'",
        "training.batch_size=32",
        "loss.num_base_samples=32",
    ],
    "batch_512": ["training.batch_size=512"],
    "ema_0.9995": ["training.ema_decay=0.9995"],
    # each of 512 data points with a base sample x0 and with -x0: the network batch of
    # 1,024 as the config, the x0 noise of the late-time targets cancelling in pairs
    "antithetic": ["loss.estimator='antithetic'", "training.batch_size=512"],
    "gelu": ["model.activation='gelu'"],
    # 16 sinusoids of logit(t) beside those of t: features that resolve the late-time
    # turn of each fine data direction (models.mlp.logit_time_embedding)
    "logit_time_16": ["model.logit_time_dim=16"],
    # 32 sinusoids of t instead of 16 for the input and the FiLM gains
    "time_dim_64": ["model.time_embedding_dim=64"],
    # the time embedding's frequencies up to 50 rad per unit t instead of 1,000: a field
    # smoother in t
    "time_scale_50": ["model.time_embedding_scale=50.0"],
    # a gated first layer, act(a) * (1 + B z + c): quadratic features of x, as the
    # log-densities of a mixture's components are (models.VelocityMLP)
    "gated": ["model.gated_layers=1"],
    "gated_gelu": ["model.gated_layers=1", "model.activation='gelu'"],
    # both hidden layers gated by the input (the d >= 43 configs' default since
    # 2026-12-06); `gated` on those configs measures the first gate alone
    "gated2": ["model.gated_layers=2"],
    # a time-dependent linear map of x added to the output (4 Bernstein terms in t)
    "linear_skip_4": ["model.linear_skip_terms=4"],
}


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--dims", default="43,63")
    parser.add_argument("--variants", default="baseline,fitted_base,resmlp")
    parser.add_argument("--override", action="append", default=[], help="NAME=VALUE, all runs")
    args = parser.parse_args(argv)
    args.dims = args.dims.split(",")
    args.variants = args.variants.split(",")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {sorted(VARIANTS)}")
    if args.smoke:
        args.dims = ["6"]
    return args


def run(dim: str, variant: str, args) -> dict:
    workdir = os.path.join(args.outdir, f"d{dim}_{variant}")
    shutil.rmtree(workdir, ignore_errors=True)
    config = mixture_config.get_config(dim + (",smoke" if args.smoke else ""))
    apply_overrides(config, VARIANTS[variant] + args.override)
    start = time.perf_counter()
    metrics = train_and_evaluate(config, workdir)
    seconds = time.perf_counter() - start
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rates = [r["steps_per_second"] for r in map(json.loads, f) if "steps_per_second" in r]
    return {
        "dim": dim,
        "variant": variant,
        "gap": f"{metrics['nll_gap']:.4f} +- {metrics['nll_gap_stderr']:.4f}",
        "seconds": round(seconds),
        "steps": config.training.num_steps,
        "steps_per_second": round(sorted(rates)[len(rates) // 2], 1),
        "nfe": metrics["nfe_per_solve"],
    }


def plot(results, outdir: str) -> None:
    """Gap per variant, one group of bars per dimension."""
    import matplotlib.pyplot as plt
    import numpy as np

    dims = list(dict.fromkeys(r["dim"] for r in results))
    variants = list(dict.fromkeys(r["variant"] for r in results))
    fig, ax = plt.subplots(figsize=(2 + 1.5 * len(dims) * len(variants) / 2, 3.5))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        gaps = [
            next(
                (
                    float(r["gap"].split()[0])
                    for r in results
                    if r["dim"] == d and r["variant"] == variant
                ),
                np.nan,
            )
            for d in dims
        ]
        ax.bar(np.arange(len(dims)) + i * width, gaps, width, label=variant)
    ax.set_xticks(np.arange(len(dims)) + 0.4 - width / 2, [f"d = {d}" for d in dims])
    ax.set_ylabel("gap to the true cross-entropy (nats)")
    bench_common.finish_plot(fig, ax, "mixture ablations", outdir, "gaps.png")


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Mixture ablations")
    results = []
    for dim in args.dims:
        for variant in args.variants:
            results.append(run(dim, variant, args))
            print(results[-1], flush=True)
    rows = [list(r.values()) for r in results]
    columns = ["d", "variant", "gap (nats)", "train + eval s", "steps", "steps/s (median)"]
    lines += [""] + bench_common.markdown_table([*columns, "NFE"], rows)
    bench_common.write_report(args.outdir, lines)
    plot(results, args.outdir)


if __name__ == "__main__":
    main()
