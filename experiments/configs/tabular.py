"""Tabular density estimation on the MAF benchmark release (PAPER section 8, Table 2).

Usage: --config=experiments/configs/tabular.py:NAME[,smoke][,dir=PATH] with NAME one of
power, gas, hepmass, miniboone, bsds300. The files are read from dir=PATH, else
config.data.dir, else $INTERFLOW_DATA_DIR (see interflow_jax/data/tabular.py for the
expected layout and where to obtain the release); nothing is downloaded.

The paper states MLP velocity fields and the test NLL with an adaptive solver, but not
the widths, steps or optimiser for the tabular runs: every size below is our choice,
scaled with the data set's dimension and size (marked per entry). Training reads the
finite training split on the host in epochs; the validation NLL (exact divergence) is
computed every training.eval_every steps and the best-validation checkpoint is
evaluated on the whole test split (num_test_points = 0) with the exact divergence.
"""

from interflow_jax.training.config_io import parse_config_arg, sibling_config

# name: (hidden widths, training steps). Our choice; batch 1024 throughout.
SIZES = {
    "power": ((512, 512, 512, 512), 200_000),  # d = 6, 1.66M training points
    "gas": ((512, 512, 512, 512), 200_000),  # d = 8, 852k
    "hepmass": ((1024, 1024, 1024, 1024), 100_000),  # d = 21, 315k
    "miniboone": ((1024, 1024, 1024), 20_000),  # d = 43, 30k: few steps, overfits
    "bsds300": ((1024, 1024, 1024, 1024), 200_000),  # d = 63, 1M
}


def _parse(arg: str):
    words, _ = parse_config_arg(arg)
    names = [w for w in words if w in SIZES]
    if len(names) != 1:
        raise ValueError(
            f"tabular config needs one of {sorted(SIZES)} in its argument; got {arg!r}."
        )
    words, options = parse_config_arg(arg, words=(*SIZES, "smoke"), options=("dir",))
    return names[0], "smoke" in words, options.get("dir", "")


def get_config(arg: str = "power"):
    name, smoke, data_dir = _parse(arg)
    config = sibling_config(__file__, "toy2d", "checkerboard" + (",smoke" if smoke else ""))
    config.data = {"kind": "tabular", "name": name, "dir": data_dir}
    config.eval.select_best = True
    if smoke:
        config.training.batch_size = 64
        config.eval.update(num_test_points=0, num_validation_points=16)
        return config
    widths, num_steps = SIZES[name]
    config.model.hidden_sizes = widths
    config.optimizer.update(learning_rate=1e-3, warmup_steps=1_000)
    config.training.update(
        num_steps=num_steps,
        batch_size=1024,
        log_every=1_000,
        checkpoint_every=5_000,
        eval_every=10_000,
    )
    config.eval.update(
        num_test_points=0,  # the whole test split
        num_validation_points=10_000,
        chunk_size=5_000,
        num_plot_samples=5_000,
        num_path_length_pairs=10_000,
    )
    return config
