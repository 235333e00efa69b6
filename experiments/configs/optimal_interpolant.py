"""Learned shortest-path interpolants (PAPER section 5): max over a(t), b(t), min over v.

Usage: --config=experiments/configs/optimal_interpolant.py:ARG with ARG a comma-separated
list: 'gaussian' (default; N(0, I_2) -> N(m, s^2 I_2), m = (2, 1), s = 0.5, so
W2^2 = |m|^2 + d (1 - s)^2 = 5.5 exactly) or 'checkerboard', optionally 'smoke', and
optionally 'fixed=trigonometric' or 'fixed=linear' to train the same budget with a fixed
interpolant for comparison.

All values are our choice (the paper gives no settings for these runs): a linear base
pair plus 8 sine terms each for a and b, and Adam ascent on the interpolant at a
learning rate below the network's so that the network tracks the inner minimum.
"""

from interflow_jax.training.config_io import parse_config_arg, sibling_config


def get_config(arg: str = "gaussian"):
    words, options = parse_config_arg(
        arg, words=("gaussian", "checkerboard", "smoke"), options=("fixed",)
    )
    problem = "checkerboard" if "checkerboard" in words else "gaussian"
    fixed, smoke = options.get("fixed"), "smoke" in words
    config = sibling_config(__file__, "toy2d", "checkerboard" + (",smoke" if smoke else ""))
    config.interpolant = fixed or "learnable"
    config.learnable.update(base="linear", num_terms=8, inner_steps=1)
    if problem == "gaussian":
        _gaussian_problem(config, smoke)
    else:  # start from the paper's trig pair; same budget as toy2d.py:checkerboard
        config.learnable.update(base="trigonometric", learning_rate=5e-4, inner_steps=5)
    return config


def _gaussian_problem(config, smoke: bool) -> None:
    config.data = {"kind": "gaussian", "name": "gaussian", "mean": (2.0, 1.0), "scale": 0.5}
    config.learnable.update(learning_rate=1e-3, inner_steps=5)
    if smoke:
        return
    config.model.hidden_sizes = (128, 128)
    config.training.update(num_steps=12_000, batch_size=4096, eval_every=4_000)
    config.optimizer.warmup_steps = 200
    config.eval.update(num_test_points=10_000, grid_size=100)
