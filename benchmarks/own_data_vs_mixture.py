"""A file through `own_data.py` against the same data through `mixture.py`: equal test NLL.

The d-dimensional exact-density mixture's finite data set (`mixture.py:D,train=N`: N
training points, and the validation and test points its evaluation uses) is written to
a .npy and a .csv file, with the rows placed so that the own-data split (seeded
permutation, data.validation_fraction, data.test_fraction) gives back exactly the same
three sets. Then three runs of `experiments/train.py` with the same model, steps,
batch, optimiser and evaluation settings: the mixture config, and the own-data config
on each file. The own-data runs standardise with the training split's statistics and
report the test NLL in data units (the log-determinant added), which must agree with
the mixture run's within 2 standard errors (unpaired: sqrt(se_a^2 + se_b^2); the test
points are the same set, so this is conservative).

  python benchmarks/own_data_vs_mixture.py --dim=21 --num_train=20000 --num_steps=6000
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import bench_common
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.configs import mixture as mixture_config  # noqa: E402
from interflow_jax.data import mixtures  # noqa: E402

NAME = "own_data_vs_mixture"
SHARED_KEYS = (  # every setting that shapes training or evaluation, copied to each run
    "model.hidden_sizes",
    "optimizer.learning_rate",
    "optimizer.warmup_steps",
    "training.num_steps",
    "training.batch_size",
    "training.steps_per_call",
    "training.log_every",
    "training.eval_every",
    "training.checkpoint_every",
    "eval.num_validation_points",
    "eval.chunk_size",
    "eval.rtol",
    "eval.atol",
    "eval.num_plot_samples",
    "eval.num_path_length_pairs",
    "eval.num_energy_points",
)


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--dim", type=int, default=21)
    parser.add_argument("--num_train", type=int, default=20_000)
    parser.add_argument("--num_steps", type=int, default=6_000)
    parser.add_argument("--eval_every", type=int, default=1_000)
    parser.add_argument("--split_seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_train, args.num_steps, args.eval_every = 2_000, 400, 200
    return args


def mixture_arg(args) -> str:
    return f"{args.dim},train={args.num_train}" + (",smoke" if args.smoke else "")


def budget_config(args):
    """The mixture config with the budget of this comparison."""
    config = mixture_config.get_config(mixture_arg(args))
    config.training.update(
        num_steps=args.num_steps, eval_every=args.eval_every, checkpoint_every=args.eval_every
    )
    config.training.log_every = math.gcd(config.training.log_every, args.eval_every)
    return config


def arranged_rows(config, split_seed: int):
    """(rows, validation_fraction, test_fraction): the mixture run's train, validation and
    test points placed where the own-data split of `split_seed` will find them."""
    data, ev = config.data, config.eval
    splits = mixtures.make_gaussian_mixture(data.dim).splits(
        data.num_train, data.num_validation, data.num_test
    )
    test, validation = splits.test[: ev.num_test_points], splits.validation
    validation = validation[: ev.num_validation_points]
    total = len(splits.train) + len(validation) + len(test)
    order = np.random.default_rng(split_seed).permutation(total)
    rows = np.empty((total, data.dim), np.float32)
    n_test, n_validation = len(test), len(validation)
    rows[np.sort(order[:n_test])] = test
    rows[np.sort(order[n_test : n_test + n_validation])] = validation
    rows[np.sort(order[n_test + n_validation :])] = splits.train
    return rows, n_validation / total, n_test / total


def write_files(rows, outdir: str) -> dict:
    os.makedirs(outdir, exist_ok=True)
    paths = {"npy": os.path.join(outdir, "mixture.npy"), "csv": os.path.join(outdir, "mixture.csv")}
    np.save(paths["npy"], rows)
    header = ",".join(f"x{i}" for i in range(rows.shape[1]))
    np.savetxt(paths["csv"], rows, fmt="%.9g", delimiter=",", header=header, comments="")
    return paths


def _flag(key: str, value) -> str:
    if isinstance(value, tuple):
        value = "(" + ",".join(str(v) for v in value) + ")"
    return f"--config.{key}={value}"


def commands(args, config, paths, fractions, outdir: str) -> dict:
    train = os.path.join(ROOT, "experiments", "train.py")
    configs = os.path.join(ROOT, "experiments", "configs")
    shared = [_flag(k, config[k.split(".")[0]][k.split(".")[1]]) for k in SHARED_KEYS]
    smoke = ",smoke" if args.smoke else ""
    runs = {"mixture.py": [f"--config={configs}/mixture.py:{mixture_arg(args)}"]}
    for kind, path in paths.items():
        runs[f"own_data.py ({kind})"] = [
            f"--config={configs}/own_data.py:path={path}{smoke}",
            f"--config.data.validation_fraction={fractions[0]!r}",
            f"--config.data.test_fraction={fractions[1]!r}",
            f"--config.data.split_seed={args.split_seed}",
        ]
    return {
        name: [sys.executable, train, *flags, *shared, f"--workdir={outdir}/run_{i}"]
        for i, (name, flags) in enumerate(runs.items())
    }


def run(command) -> tuple[dict, float]:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    workdir = command[-1].split("=", 1)[1]
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f), time.perf_counter() - start


def report_rows(results: dict) -> list:
    reference = results["mixture.py"][0]
    rows = []
    for name, (metrics, seconds) in results.items():
        diff = metrics["test_nll"] - reference["test_nll"]
        se = math.hypot(metrics["test_nll_stderr"], reference["test_nll_stderr"])
        rows.append(
            [
                name,
                f"{metrics['test_nll']:.4f} +- {metrics['test_nll_stderr']:.4f}",
                metrics.get("test_nll_standardized", metrics["test_nll"]),
                metrics.get("nll_gap", float("nan")),
                f"{diff:+.4f} +- {se:.4f}",
                "yes" if abs(diff) <= 2 * se else "NO",
                metrics["num_test_points"],
                int(metrics["step"]),
                f"{seconds:.0f} s",
            ]
        )
    return rows


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    lines = bench_common.header(NAME)
    config = budget_config(args)
    rows, *fractions = arranged_rows(config, args.split_seed)
    paths = write_files(rows, os.path.join(args.outdir, "data"))
    results = {}
    for name, command in commands(args, config, paths, fractions, args.outdir).items():
        lines.append(f"- {name}: `{' '.join(command)}`")
        results[name] = run(command)
    columns = ["run", "test NLL (data units)", "standardised", "nll_gap (mixture)"]
    columns += ["minus mixture", "within 2 SE", "test points", "best step", "wall-clock"]
    lines += ["", *bench_common.markdown_table(columns, report_rows(results))]
    bench_common.write_report(args.outdir, lines)
    return {name: metrics for name, (metrics, _) in results.items()}


if __name__ == "__main__":
    main()
