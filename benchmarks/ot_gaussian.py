"""Exact discrete optimal transport vs the learned interpolant's path length.

N(0, I_2) -> N(m, s^2 I_2) with m = (2, 1), s = 0.5: W2^2 = 5.5 exactly (PAPER s. 5).
Computes the exact discrete OT cost (POT's network simplex, `ot.emd2`, squared Euclidean
cost) between n base and n target samples for several seeds, and prints it beside the
closed form and, if a trained run exists, the path lengths in its metrics.json.

  pip install -e ".[bench]"
  python benchmarks/ot_gaussian.py --workdir=runs/oi_gaussian --num_points=5000
"""

import argparse
import json
import os

import numpy as np
import ot

MEAN, SCALE = np.array([2.0, 1.0]), 0.5


def discrete_ot_cost(num_points: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((num_points, 2))
    x1 = MEAN + SCALE * rng.standard_normal((num_points, 2))
    cost = ot.dist(x0, x1, metric="sqeuclidean")
    weights = np.full(num_points, 1.0 / num_points)
    return float(ot.emd2(weights, weights, cost, numItermax=10_000_000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/oi_gaussian")
    parser.add_argument("--num_points", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    costs = [discrete_ot_cost(args.num_points, seed) for seed in range(args.seeds)]
    w2 = float(MEAN @ MEAN + 2 * (1 - SCALE) ** 2)
    print(f"closed-form W2^2                       {w2:.4f}")
    print(
        f"discrete OT (ot.emd2), n={args.num_points}, {args.seeds} seeds  "
        f"{np.mean(costs):.4f} +- {np.std(costs, ddof=1) / np.sqrt(len(costs)):.4f}  {costs}"
    )
    path = os.path.join(args.workdir, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            metrics = json.load(f)
        for key in (
            "path_length",
            "path_length_exact_learned",
            "path_length_exact_linear",
            "path_length_exact_trigonometric",
        ):
            if key in metrics:
                print(f"{key:38s} {metrics[key]:.4f}  ({metrics[key] / w2 - 1:+.2%} vs W2^2)")


if __name__ == "__main__":
    main()
