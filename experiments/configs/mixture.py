"""Exact-density benchmarks: fixed-seed Gaussian mixtures with random full covariances at
the tabular data sets' dimensions (PAPER section 8: d = 6, 8, 21, 43, 63).

Usage: --config=experiments/configs/mixture.py:DIM[,smoke]. The true test
cross-entropy is known, so `nll_gap` in metrics.json (model NLL minus truth, paired on
the same test points) measures quality with no download. Training draws fresh samples
each step (an infinite training set).

Sizes are our choice (the paper's tabular MLPs are not specified in detail): widths
grow with d.
"""

import importlib.util
import pathlib

_TOY2D = pathlib.Path(__file__).with_name("toy2d.py")


def _toy2d_config(arg: str):
    spec = importlib.util.spec_from_file_location("_toy2d_config", _TOY2D)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg: str = "6"):
    parts = [p for p in (arg or "").split(",") if p]
    dim = int(next((p for p in parts if p.isdigit()), "6"))
    smoke = "smoke" in parts
    config = _toy2d_config("checkerboard" + (",smoke" if smoke else ""))
    config.data = {"kind": "mixture", "name": f"mixture{dim}", "dim": dim}
    if smoke:
        return config
    width = 256 if dim <= 8 else 512
    config.model.hidden_sizes = (width, width, width)
    config.training.update(num_steps=20_000, batch_size=1024, eval_every=5_000)
    config.eval.update(num_test_points=10_000, chunk_size=2_000, num_plot_samples=5_000)
    return config
