"""Density quality per wall-clock: interflow_jax against flowjax neural spline flows.

Cases: the exact-density Gaussian mixtures at d = 6, 21, 43, 63 (fresh samples every
step, the project's fixed-seed mixtures) and scikit-learn's digits (64-d, 17 levels,
bits/dim on the 297 held-out digits with the project's split and dequantisation).

For each case, in one run and on one machine:
1. interflow_jax trains with its config (`mixture.py:D`, `images.py:digits`) through the
   library's loop; its wall-clock T (training and the evaluation inside the loop) is the
   budget.
2. flowjax coupling flows with rational-quadratic splines (Durkan et al. 2019), trained by
   maximum likelihood with Adam for the same T seconds each, at every size of --sizes
   (layers x width): fresh samples for the mixtures; for the digits the 1,500 training
   digits split 90/10. The validation NLL (2,000 fresh points; the digits' 10%) is
   checked every --validate_seconds (5 s) and the best state kept (early stopping).
   The data are standardised by an affine map fitted on training data, its
   log-determinant included, so every NLL is in the data's units.

Reported per case and model: the paired gap to the true cross-entropy on the same test
points (mixtures) or bits/dim (digits), with standard errors; training seconds and steps;
evaluation seconds and NFE per 1,000 test points (one network pass for a spline flow);
and a plot of held-out quality against training wall-clock for every model.

  pip install -e ".[bench]"
  python benchmarks/density_vs_spline_flow.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

import bench_common
import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.configs import images as images_config  # noqa: E402
from experiments.configs import mixture as mixture_config  # noqa: E402
from interflow_jax.data import images  # noqa: E402
from interflow_jax.training import evaluation, setup  # noqa: E402
from interflow_jax.training.loop import train_and_evaluate  # noqa: E402

NAME = "density_vs_spline_flow"
CASES = ("6", "21", "43", "63", "digits")
SIZES = ((4, 128), (8, 256), (8, 512))  # (coupling layers, hidden width): our choice


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--sizes", default=",".join(f"{n}x{w}" for n, w in SIZES))
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--knots", type=int, default=8)
    parser.add_argument("--eval_points", type=int, default=0, help="0: the config's test set")
    parser.add_argument(
        "--validate_seconds",
        type=float,
        default=5.0,
        help="seconds between a spline flow's validation passes (early stopping, curve): the"
        " digits overfit within a minute",
    )
    parser.add_argument(
        "--reuse_ours",
        default="",
        help="results.json of an earlier run: interflow_jax's rows are taken from it (their"
        " wall-clock is the budget) instead of training again",
    )
    parser.add_argument(
        "--ours_workdir",
        default="",
        help="a finished train.py run of the case's config (e.g. its README command): its"
        " metrics and validation curve are ours, --ours_seconds its wall-clock (the budget)",
    )
    parser.add_argument("--ours_seconds", type=float, default=0.0)
    parser.add_argument("--override", action="append", default=[], help="NAME=VALUE on ours")
    parser.add_argument(
        "--spline_seconds", type=float, default=0.0, help="0: interflow_jax's wall-clock"
    )
    args = parser.parse_args(argv)
    args.cases = args.cases.split(",")
    args.sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if args.smoke:
        args.cases, args.sizes, args.batch_size, args.validate_seconds = ["6"], [(2, 16)], 64, 1
        args.spline_seconds = 2.0
    if args.ours_workdir and len(args.cases) != 1:
        parser.error(f"--ours_workdir is one case's run; got --cases={','.join(args.cases)}")
    return args


# ----------------------------------------------------------------------------- ours


def our_config(case: str, args):
    """The case's config (smoke variant with --smoke) with the --override settings."""
    smoke = ",smoke" if args.smoke else ""
    if case == "digits":
        config = images_config.get_config("digits" + smoke)
    else:
        config = mixture_config.get_config(case + smoke)
    apply_overrides(config, args.override)
    return config


def apply_overrides(config, overrides):
    """--override model.hidden_sizes=(512,512) style settings (Python literals)."""
    import ast

    for item in overrides:
        name, value = item.split("=", 1)
        *path, leaf = name.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = ast.literal_eval(value)


def run_ours(case: str, args, workdir: str) -> dict:
    """Train from scratch (an earlier run in `workdir` is removed: its wall-clock is the
    budget) and read the validation curve from metrics.jsonl."""
    shutil.rmtree(workdir, ignore_errors=True)
    config = our_config(case, args)
    start = time.perf_counter()
    train_and_evaluate(config, workdir)
    return ours_from_workdir(workdir, time.perf_counter() - start, config)


def ours_from_workdir(workdir: str, seconds: float, config) -> dict:
    """Our run's figures from a finished train.py workdir: metrics.json, and the validation
    NLLs of metrics.jsonl placed at step / mean logged steps/s; `seconds` its wall-clock."""
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    rates = [r["steps_per_second"] for r in records if "steps_per_second" in r]
    rate = float(np.mean(rates)) if rates else float("nan")
    curve = [(r["step"] / rate, r["validation_nll"]) for r in records if "validation_nll" in r]
    return {
        "model": "interflow_jax",
        "seconds": seconds,
        "steps": int(metrics["step"]),
        "metrics": metrics,
        "curve": curve,
        "config": config,
    }


def readme_run_ours(case: str, args) -> dict:
    """Ours from --ours_workdir, a finished run of the case's README command (the config
    unchanged but for --override), with --ours_seconds its wall-clock."""
    if not args.ours_seconds > 0:
        raise ValueError(f"--ours_workdir needs --ours_seconds > 0; got {args.ours_seconds}.")
    config = our_config(case, args)
    return ours_from_workdir(args.ours_workdir, args.ours_seconds, config)


def reused_ours(case: str, args) -> dict:
    """interflow_jax's row of `case` from an earlier run's results.json (--reuse_ours),
    with the case's config (configs are deterministic) for the mixtures' test points."""
    with open(args.reuse_ours) as f:
        earlier = json.load(f)
    if case not in earlier:
        raise ValueError(f"--reuse_ours {args.reuse_ours} has no case {case!r}: {sorted(earlier)}")
    row = next(r for r in earlier[case] if r["model"] == "interflow_jax")
    config = our_config(case, args)
    return {"row": row, "seconds": row["seconds"], "curve": row["curve"], "config": config}


# --------------------------------------------------------------------- spline flow


def make_spline_flow(key, dim: int, layers: int, width: int, knots: int, shift, scale):
    """A coupling NSF on N(0, I) composed with x = shift + scale * y (fitted affine)."""
    from flowjax.bijections import Affine, RationalQuadraticSpline
    from flowjax.distributions import Normal, Transformed
    from flowjax.flows import coupling_flow

    flow = coupling_flow(
        key,
        base_dist=Normal(jnp.zeros(dim)),
        transformer=RationalQuadraticSpline(knots=knots, interval=5),
        flow_layers=layers,
        nn_width=width,
        nn_depth=2,
    )
    return Transformed(flow, Affine(jnp.asarray(shift), jnp.asarray(scale)))


def train_spline(flow, draw_batch, seconds: float, args, validation, curve_every: float):
    """Adam on -mean log q for `seconds` of wall-clock; returns (best flow, steps, curve).

    draw_batch(key) -> (batch, dim). validation: held-out points for early stopping and
    the quality curve (the best validation state is returned)."""
    import equinox as eqx
    import optax
    import paramax

    params, static = eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    optimizer = optax.adam(args.learning_rate)
    opt_state = optimizer.init(params)

    def loss(p, x):
        return -jnp.mean(paramax.unwrap(eqx.combine(p, static)).log_prob(x))

    @jax.jit
    def step(p, state, key):
        value, grads = jax.value_and_grad(loss)(p, draw_batch(key))
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    validate = jax.jit(loss)
    key, steps, curve = jax.random.key(0), 0, []
    best = (float(validate(params, validation)), params)
    start = last = time.perf_counter()
    while time.perf_counter() - start < seconds:
        params, opt_state, _ = step(params, opt_state, jax.random.fold_in(key, steps))
        steps += 1
        if time.perf_counter() - last >= curve_every:
            jax.block_until_ready(params)
            last = time.perf_counter()
            value = float(validate(params, validation))
            curve.append((last - start, value))
            if value < best[0]:
                best = (value, params)
    value = float(validate(params, validation))
    if value < best[0]:
        best = (value, params)
    return paramax.unwrap(eqx.combine(best[1], static)), steps, curve


def spline_log_prob_timed(flow, x) -> tuple[np.ndarray, float]:
    log_prob = jax.jit(lambda points: flow.log_prob(points))
    log_prob(x).block_until_ready()  # compile for this shape outside the timing
    start = time.perf_counter()
    values = np.asarray(log_prob(x), np.float64)
    return values, time.perf_counter() - start


# ----------------------------------------------------------------------------- cases


def spline_row(name, seconds, steps, per_point, eval_seconds, curve) -> dict:
    """A spline flow's result: the mean of a per-test-point quality (NLL gap or bits/dim)
    with its standard error, and the evaluation cost per 1,000 points (one pass: NFE 1)."""
    return {
        "model": name,
        "seconds": seconds,
        "steps": steps,
        "quality": float(per_point.mean()),
        "stderr": float(per_point.std(ddof=1) / math.sqrt(per_point.size)),
        "eval_per_1000": 1000 * eval_seconds / per_point.size,
        "nfe": 1,
        "curve": list(curve),
    }


def budget(args, ours) -> float:
    """Training seconds of each spline flow: interflow_jax's wall-clock unless set."""
    return args.spline_seconds or ours["seconds"]


def mixture_case(case, args, ours, outdir) -> list[dict]:
    config = ours["config"]
    problem = setup.build_problem(config)
    test = evaluation.test_points(config, problem, args.eval_points or config.eval.num_test_points)
    true_nll = -np.asarray(problem.true_log_prob(test), np.float64)
    validation = problem.sample_data(jax.random.key(123), 2_000)
    fit = np.asarray(problem.sample_data(jax.random.key(321), 20_000))
    shift, scale = fit.mean(0), fit.std(0)
    sample = jax.jit(lambda key: problem.sample_data(key, args.batch_size))
    rows = []
    for layers, width in args.sizes:
        flow = make_spline_flow(
            jax.random.key(1), test.shape[1], layers, width, args.knots, shift, scale
        )
        seconds = budget(args, ours)
        flow, steps, curve = train_spline(
            flow, sample, seconds, args, validation, args.validate_seconds
        )
        log_q, eval_seconds = spline_log_prob_timed(flow, test)
        gap = -log_q - true_nll
        name = f"NSF {layers} x {width}"
        rows.append(spline_row(name, seconds, steps, gap, eval_seconds, curve))
    rows.insert(0, ours_row(ours, "nll_gap", ours["curve"]))
    return rows


def digits_case(args, ours, outdir) -> list[dict]:
    levels = images.DIGITS_NUM_LEVELS
    train, test = images.digits_splits(seed=0)
    dims = int(np.prod(train.shape[1:]))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    n_val = len(train) // 10
    val_int, train_int = train[order[:n_val]], train[order[n_val:]]
    flat = jnp.asarray(train_int.reshape(len(train_int), -1))
    val_flat = jnp.asarray(val_int.reshape(n_val, -1))
    validation = images.dequantize(val_flat, jax.random.key(5), levels)
    test_flat = jnp.asarray(test.reshape(len(test), -1))
    test_z = images.dequantize(test_flat, jax.random.key(6), levels)
    fit = np.asarray(images.dequantize(flat, jax.random.key(7), levels))
    shift, scale = fit.mean(0), np.maximum(fit.std(0), 1e-3)

    def draw(key):
        index_key, noise_key = jax.random.split(key)
        index = jax.random.randint(index_key, (args.batch_size,), 0, flat.shape[0])
        return images.dequantize(flat[index], noise_key, levels)

    def bpd(nll_z):
        return (nll_z - dims * math.log(2) + dims * math.log(levels)) / (dims * math.log(2))

    rows = []
    for layers, width in args.sizes:
        flow = make_spline_flow(jax.random.key(1), dims, layers, width, args.knots, shift, scale)
        seconds = budget(args, ours)
        flow, steps, curve = train_spline(
            flow, draw, seconds, args, validation, args.validate_seconds
        )
        log_q, eval_seconds = spline_log_prob_timed(flow, test_z)
        per_image = bpd(-log_q)
        name = f"NSF {layers} x {width}"
        curve = [(t, bpd(v)) for t, v in curve]
        rows.append(spline_row(name, seconds, steps, per_image, eval_seconds, curve))
    rows.insert(0, ours_row(ours, "test_bits_per_dim", [(t, bpd(v)) for t, v in ours["curve"]]))
    return rows


def ours_row(ours: dict, quality: str, curve) -> dict:
    """The table row of our run: metrics.json's `quality` (and its stderr), cost, curve."""
    if "row" in ours:  # --reuse_ours
        return ours["row"]
    m = ours["metrics"]
    return {
        "model": "interflow_jax",
        "seconds": ours["seconds"],
        "steps": ours["steps"],
        "quality": m[quality],
        "stderr": m[quality + "_stderr"],
        "eval_per_1000": 1000 * m["eval_seconds"] / m["num_test_points"],
        "nfe": m["nfe_per_solve"],
        "curve": curve,
    }


def _y_range(rows: list) -> tuple[float, float]:
    """Axis limits that show the end of the curves: the first validation points of a
    spline flow lie tens of nats above the rest. From the lowest value to three times its
    distance to the median (at most the highest value)."""
    values = [y for row in rows for _, y in row["curve"]]
    values += [row["quality"] for row in rows if not row["curve"]]  # drawn as a star
    low, middle, high = min(values), float(np.median(values)), max(values)
    span = max(3 * (middle - low), 1e-3)
    return low - 0.05 * span, min(high, low + span) + 0.05 * span


def plot(results: dict, outdir: str) -> None:
    import matplotlib.pyplot as plt

    cases = list(results)
    fig, axes = plt.subplots(1, len(cases), figsize=(4.5 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        for row in results[case]:
            if row["curve"]:
                ax.plot(*zip(*row["curve"], strict=True), "o-", ms=3, label=row["model"])
            else:  # no validation set in the config (the digits): the test figure at T
                label = f"{row['model']} (test, end of run)"
                ax.plot(row["seconds"], row["quality"], "*", ms=10, label=label)
        what = "validation bits/dim" if case == "digits" else "validation NLL (nats)"
        ax.set(xlabel="training wall-clock (s)", ylabel=what, title=f"case {case}")
        ax.set_ylim(*_y_range(results[case]))
        ax.legend(fontsize=7)
    bench_common.save_figure(fig, outdir, "quality_vs_wallclock.png")


def main(argv=None):
    args, lines = bench_common.start(parse_args, argv, "Density quality: ours vs spline flows")
    lines.append(
        f"- spline flows: flowjax coupling NSF, {args.knots} knots, sizes {args.sizes} "
        f"(layers x width, 2 hidden layers per conditioner), Adam {args.learning_rate}, batch "
        f"{args.batch_size}, each trained for interflow_jax's wall-clock of the case"
    )
    results, rows = {}, []
    for case in args.cases:
        workdir = os.path.join(args.outdir, f"ours_{case}")
        if args.ours_workdir:
            ours = readme_run_ours(case, args)
        elif args.reuse_ours:
            ours = reused_ours(case, args)
        else:
            ours = run_ours(case, args, workdir)
        if case == "digits":
            results[case] = digits_case(args, ours, args.outdir)
        else:
            results[case] = mixture_case(case, args, ours, args.outdir)
        for row in results[case]:
            rows.append(
                [
                    case,
                    row["model"],
                    f"{row['quality']:.4f} +- {row['stderr']:.4f}",
                    round(row["seconds"]),
                    row["steps"],
                    row["eval_per_1000"],
                    row["nfe"],
                ]
            )
    columns = ["case", "model", "gap (nats) or bits/dim", "train s", "steps"]
    columns += ["eval s / 1000 pts", "NFE"]
    bench_common.write_table_report(args.outdir, lines, columns, rows)
    with open(os.path.join(args.outdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, args.outdir)
    return results


if __name__ == "__main__":
    main()
