"""Sample quality against the number of field evaluations (NFE) for each path choice.

For 8 Gaussians, the checkerboard (2-D, exact log-densities) and the d = 21 Gaussian
mixture (exact density), each path choice is trained by the library's own loop
(`train_and_evaluate`) with the same budget (steps, batch, network):

- trig independent, linear independent: the fixed interpolants, independent pairs;
- learned interpolant: the max-min of PAPER section 5 (linear base + sine series);
- linear + ot_exact, linear + ot_sinkhorn: minibatch OT couplings
  (`interflow_jax.couplings`) within blocks of --block_size.

Then, on the EMA parameters: the path length int E|v|^2 dt (`estimate_path_length`), the
exact test NLL and its paired gap to the true cross-entropy (dopri5, rtol = atol = 1e-5,
the library's evaluation) and the NFE of a dopri5 sampling solve at rtol = atol = 1e-5;
sample quality of --sample_points samples against as many held-out points: energy
distance, and exact W2 (POT's emd) in 2-D or a sliced W2 (POT, 256 projections) in d = 21,
for Euler, Heun and midpoint at NFE 2, 4, 8, 16, 32, 64, for dopri5, and for the SDE
sampler (Euler-Maruyama, NFE steps, the config's eps schedule) on the independent paths
(its score-from-velocity identity needs x0 independent of x1, so coupled paths have none).
The energy distance is the unbiased U-statistic; its floor, held-out data against the test
points at the same size, is reported per problem beside the samplers.

Writes results.md (tables), quality_vs_nfe.png (energy distance against NFE, one curve per
path choice and panel per problem) and each run's workdir under --outdir.

  python benchmarks/quality_vs_nfe.py
"""

from __future__ import annotations

import json
import os
import sys
import time

import bench_common
import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.configs import mixture as mixture_config  # noqa: E402
from experiments.configs import toy2d as toy2d_config  # noqa: E402
from interflow_jax import flows, losses, sample_quality  # noqa: E402
from interflow_jax.training import evaluation, setup  # noqa: E402
from interflow_jax.training.loop import train_and_evaluate  # noqa: E402

NAME = "quality_vs_nfe"
PROBLEMS = {
    "8gaussians": lambda: toy2d_config.get_config("8gaussians"),
    "checkerboard": lambda: toy2d_config.get_config("checkerboard"),
    "mixture d=21": lambda: mixture_config.get_config("21"),
}
PATHS = {
    "trig independent": {"interpolant": "trigonometric"},
    "linear independent": {"interpolant": "linear"},
    "learned interpolant": {"interpolant": "learnable"},
    "linear + ot_exact": {"interpolant": "linear", "coupling": "ot_exact"},
    "linear + ot_sinkhorn": {"interpolant": "linear", "coupling": "ot_sinkhorn"},
}
FIXED_SOLVERS = ("euler", "heun", "midpoint")
NFES = (2, 4, 8, 16, 32, 64)


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--num_steps", type=int, default=4_000)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--test_points", type=int, default=5_000, help="exact NLL points")
    parser.add_argument("--sample_points", type=int, default=2_000)
    parser.add_argument("--nfes", default=",".join(map(str, NFES)))
    parser.add_argument(
        "--replot", action="store_true", help="redraw the figure from the runs in --outdir"
    )
    args = parser.parse_args(argv)
    args.problems = args.problems.split(",")
    args.paths = args.paths.split(",")
    args.nfes = [int(n) for n in args.nfes.split(",")]
    if args.smoke:
        args.problems, args.paths = ["8gaussians"], ["linear independent", "linear + ot_sinkhorn"]
        args.num_steps, args.batch_size, args.block_size = 20, 64, 32
        args.test_points, args.sample_points, args.nfes = 64, 64, [2, 4]
    return args


def config_for(problem: str, path: str, args):
    config = PROBLEMS[problem]()
    settings = PATHS[path]
    config.interpolant = settings["interpolant"]
    config.loss.update(
        coupling=settings.get("coupling", "independent"), coupling_block_size=args.block_size
    )
    steps_per_call = min(100, args.num_steps)
    config.training.update(
        num_steps=args.num_steps,
        batch_size=args.batch_size,
        steps_per_call=steps_per_call,
        log_every=steps_per_call,
        checkpoint_every=args.num_steps,
        eval_every=args.num_steps,
    )
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, args.num_steps // 10)
    n = args.sample_points
    config.eval.update(
        solver="dopri5",
        rtol=1e-5,
        atol=1e-5,
        num_test_points=args.test_points,
        num_validation_points=0,
        chunk_size=min(5_000, args.test_points),
        num_plot_samples=n,
        num_energy_points=n,
        num_path_length_pairs=n,
        num_trajectories=min(100, n),
        grid_size=min(80, config.eval.grid_size),
        select_best=False,
    )
    return config


def distances(x, data) -> dict[str, float]:
    """Energy distance (the unbiased U-statistic: centred on 0 when the laws agree), and W2
    (exact in 2-D, sliced beyond) between equal-size samples."""
    import ot

    x, data = np.asarray(x, np.float64), np.asarray(data, np.float64)
    out = {"energy": float(sample_quality.energy_distance(x, data, unbiased=True))}
    if x.shape[1] == 2:
        cost = ot.dist(x, data)  # squared Euclidean
        out["w2"] = float(np.sqrt(ot.emd2(ot.unif(len(x)), ot.unif(len(data)), cost)))
    else:
        out["w2"] = float(ot.sliced_wasserstein_distance(x, data, n_projections=256, seed=0))
    return out


def sample_quality_table(config, problem, field, params, args) -> list[dict]:
    """Quality of every sampler at every NFE, all from the same base samples."""
    n = args.sample_points
    data = evaluation.test_points(config, problem, n)
    key = setup.held_out_key(config, 2)
    base = setup.base_for(params, problem)
    rows = []
    for solver in FIXED_SOLVERS:
        stages = flows.SOLVERS[solver].stages
        for nfe in args.nfes:
            options = flows.ODEOptions(solver=solver, num_steps=max(1, nfe // stages))
            x = flows.make_flow(field, base, options).sample(params, key, n).x
            rows.append({"sampler": solver, "nfe": nfe, **distances(x, data)})
    out = flows.make_flow(field, base, flows.ODEOptions(rtol=1e-5, atol=1e-5)).sample(
        params, key, n
    )
    rows.append({"sampler": "dopri5", "nfe": int(out.nfe), **distances(out.x, data)})
    if setup.build_coupling(config).is_independent:
        x0 = base.sample(jax.random.fold_in(key, 1), n)
        for nfe in args.nfes:
            sde_config = config.copy_and_resolve_references()
            sde_config.eval.sde.update(solver="euler_maruyama", num_steps=nfe)
            sampler = setup.build_sde_sampler(sde_config, field)
            x = sampler(params, x0, jax.random.fold_in(key, 3), params.get("interpolant"))
            rows.append({"sampler": "sde euler_maruyama", "nfe": nfe, **distances(x, data)})
    return rows


def reference_row(problem: str, args) -> dict:
    """The floor of the sample metrics: held-out data (the validation draws) against the
    test points, at the same sample size as every sampler."""
    config = config_for(problem, "linear independent", args)
    problem_obj = setup.build_problem(config)
    n = args.sample_points
    data = evaluation.test_points(config, problem_obj, n)
    other = evaluation.validation_points(config, problem_obj, n)
    return {"problem": problem, **distances(other, data)}


def run_one(problem: str, path: str, args) -> dict:
    config = config_for(problem, path, args)
    workdir = os.path.join(args.outdir, problem.replace(" ", "_").replace("=", ""), path)
    workdir = workdir.replace(" + ", "_").replace(" ", "_")
    start = time.perf_counter()
    metrics = train_and_evaluate(config, workdir)
    train_seconds = time.perf_counter() - start
    problem_obj = setup.build_problem(config)
    _, field = setup.build_model(config)
    params, _, _ = evaluation.restore_params(
        config, workdir, use_ema=True, event_shape=problem_obj.event_shape
    )
    interpolant, _ = setup.build_interpolant(config)
    key = setup.held_out_key(config, 4)
    x1 = problem_obj.sample_data(jax.random.fold_in(key, 1), args.sample_points)
    x0 = setup.base_for(params, problem_obj).sample(key, args.sample_points)
    length, length_se = losses.estimate_path_length(
        field, params, interpolant, x0, x1, interpolant_params=params.get("interpolant")
    )
    quality = sample_quality_table(config, problem_obj, field, params, args)
    result = {
        "problem": problem,
        "path": path,
        "seconds": train_seconds,
        "test_nll": metrics["test_nll"],
        "nll_gap": metrics.get("nll_gap", float("nan")),
        "nll_gap_stderr": metrics.get("nll_gap_stderr", float("nan")),
        "nfe_log_prob": metrics["nfe_per_solve"],
        "path_length": float(length),
        "path_length_stderr": float(length_se),
        "quality": quality,
    }
    with open(os.path.join(workdir, "quality_vs_nfe.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def summary_rows(results):
    rows = []
    for r in results:
        dopri = next(q for q in r["quality"] if q["sampler"] == "dopri5")
        best8 = min(
            (q for q in r["quality"] if q["nfe"] == 8 and q["sampler"] in ("heun", "midpoint")),
            key=lambda q: q["energy"],
            default=None,
        )
        rows.append(
            [
                r["problem"],
                r["path"],
                f"{r['path_length']:.4f} +- {r['path_length_stderr']:.4f}",
                dopri["nfe"],
                r["nfe_log_prob"],
                f"{r['nll_gap']:.4f} +- {r['nll_gap_stderr']:.4f}",
                dopri["energy"],
                best8["energy"] if best8 else float("nan"),
                dopri["w2"],
                round(r["seconds"]),
            ]
        )
    return rows


def quality_rows(results):
    rows = []
    for r in results:
        for q in r["quality"]:
            rows.append([r["problem"], r["path"], q["sampler"], q["nfe"], q["energy"], q["w2"]])
    return rows


def plot(results, references, outdir: str) -> None:
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in results))
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        for r in (r for r in results if r["problem"] == problem):
            best = {}
            for q in r["quality"]:
                if q["sampler"] in FIXED_SOLVERS:
                    best[q["nfe"]] = min(best.get(q["nfe"], np.inf), q["energy"])
            nfes = sorted(best)
            line = ax.plot(nfes, [best[k] for k in nfes], "o-", label=r["path"])[0]
            dopri = next(q for q in r["quality"] if q["sampler"] == "dopri5")
            ax.plot([dopri["nfe"]], [dopri["energy"]], "*", ms=12, color=line.get_color())
        floor = next(r["energy"] for r in references if r["problem"] == problem)
        # the unbiased estimate scatters around 0: the band is +-|held-out data's value|,
        # the metric's noise at this sample size
        ax.axhspan(-abs(floor), abs(floor), color="gray", alpha=0.2, label="held-out data (noise)")
        ax.set_yscale("symlog", linthresh=1e-3)  # linear within +-1e-3, logarithmic beyond
        ax.set(xscale="log", xlabel="NFE", ylabel="energy distance (U-statistic)")
        ax.set_title(f"{problem}: best fixed-step solver (stars: dopri5)")
        ax.legend(fontsize=7)
    bench_common.save_figure(fig, outdir, "quality_vs_nfe.png")


def replot(args) -> None:
    """The figure again from the runs' quality_vs_nfe.json under args.outdir."""
    import glob

    results = []
    for path in sorted(glob.glob(os.path.join(args.outdir, "*", "*", "quality_vs_nfe.json"))):
        with open(path) as f:
            results.append(json.load(f))
    problems = list(dict.fromkeys(r["problem"] for r in results))
    plot(results, [reference_row(p, args) for p in problems], args.outdir)


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Sample quality against NFE per path")
    if args.replot:
        return replot(args)
    lines.append(
        f"- {args.num_steps} steps of batch {args.batch_size} per run (the configs' networks "
        f"and optimiser), OT couplings within blocks of {args.block_size}; "
        f"{args.sample_points} samples against as many held-out points; exact NLL on "
        f"{args.test_points} test points (dopri5, rtol = atol = 1e-5)"
    )
    references = [reference_row(p, args) for p in args.problems]
    results = [run_one(p, path, args) for p in args.problems for path in args.paths]
    columns = ["problem", "path", "path length", "dopri5 NFE (sampling)", "NFE (log-prob)"]
    columns += ["NLL gap (nats)", "energy dist. dopri5", "energy dist. NFE 8 (best of"]
    columns[-1] += " heun/midpoint)"
    columns += ["W2 dopri5 (sliced in d=21)", "train s"]
    lines += ["", "### Summary", ""] + bench_common.markdown_table(columns, summary_rows(results))
    lines += ["", "### The floor: held-out data against the test points", ""]
    lines += bench_common.markdown_table(
        ["problem", "energy distance", "W2"],
        [[r["problem"], r["energy"], r["w2"]] for r in references],
    )
    lines += ["", "### Every sampler", ""]
    lines += bench_common.markdown_table(
        ["problem", "path", "sampler", "NFE", "energy distance", "W2"], quality_rows(results)
    )
    bench_common.write_report(args.outdir, lines)
    plot(results, references, args.outdir)
    return results


if __name__ == "__main__":
    main()
