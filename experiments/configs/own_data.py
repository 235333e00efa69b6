"""Density estimation on your own data matrix: a .npy, .npz, .csv or .tsv file.

Usage: --config=experiments/configs/own_data.py:path=FILE[,label=COLUMN][,key=NAME]
       [,conditional][,smoke]

  path=FILE     .npy (2-D, memory-mapped: read by row on the host, so a file larger than
                memory trains), .npz (key=NAME, or the only array), .csv / .tsv with a
                header row and numeric columns. A relative path is made absolute here.
  label=COLUMN  the class column (CSV/TSV: its name; .npy: its index; .npz: an array of
                one class per row), mapped to classes 0..K-1 (sorted) and left out of
                the model's columns; the mapping is saved in <workdir>/data_record.json.
  key=NAME      the array of a .npz archive.
  conditional   a class-conditional model of the label column with classifier-free
                guidance (PAPER section 9; `config_io.make_conditional`): its K classes
                are counted here, when the config is built (the file is read once).
  smoke         a seconds-long run.

The rows are split by a seeded permutation (data.validation_fraction, data.test_fraction,
data.split_seed) and standardised with the training split's mean and std (stored in
<workdir>/data_record.json). metrics.json reports `test_nll` in the data's own units
(the standardisation's log-determinant sum_i log s_i included) and
`test_nll_standardized`; the validation NLL in metrics.jsonl (model selection) is in
standardised units. The best-validation checkpoint is evaluated on the whole test split
with the exact divergence. A path holding a comma can be given as --config.data.path.

Sizes are our choice for tabular data of up to a few dozen columns (the MLP of the d = 21
mixture benchmark): change them with --config.model.hidden_sizes, --config.training.*.
"""

import os

from interflow_jax.training.config_io import make_conditional, parse_config_arg, sibling_config

GUIDED_SAMPLES_PER_CLASS = 500  # guided samples of each class in the evaluation


def _parse(arg: str):
    words, options = parse_config_arg(
        arg, words=("smoke", "conditional"), options=("path", "label", "key")
    )
    if not options.get("path"):
        raise ValueError(f"the own_data config needs path=FILE in its argument; got {arg!r}.")
    if "conditional" in words and not options.get("label"):
        raise ValueError(
            f"the own_data config's 'conditional' needs the class column as label=COLUMN; "
            f"got {arg!r}."
        )
    path = os.path.abspath(os.path.expanduser(options["path"]))
    return path, options.get("label", ""), options.get("key", ""), set(words)


def _num_classes(path: str, label: str, key: str) -> int:
    """K, the classes of the label column (the file is read and checked as for training)."""
    from interflow_jax.data import own_data

    return len(own_data.load_table(path, label, key).classes)


def get_config(arg: str = ""):
    path, label, key, words = _parse(arg)
    config = _unconditional(path, label, key, "smoke" in words)
    if "conditional" in words:
        per_class = 8 if "smoke" in words else GUIDED_SAMPLES_PER_CLASS
        make_conditional(config, _num_classes(path, label, key), samples_per_class=per_class)
    return config


def _unconditional(path: str, label: str, key: str, smoke: bool):
    config = sibling_config(__file__, "toy2d", "checkerboard" + (",smoke" if smoke else ""))
    config.data = {
        "kind": "own_data",
        "name": os.path.splitext(os.path.basename(path))[0],
        "path": path,
        "label": label,  # "" for none
        "key": key,  # "" for none
        "validation_fraction": 0.1,
        "test_fraction": 0.1,
        "split_seed": 0,
    }
    config.eval.update(select_best=True, num_test_points=0)  # the whole test split
    if smoke:
        config.training.batch_size = 64
        config.eval.num_validation_points = 16
        return config
    config.model.hidden_sizes = (256,) * 4
    config.training.update(
        num_steps=20_000, batch_size=1024, eval_every=2_000, checkpoint_every=2_000
    )
    config.eval.update(
        num_validation_points=2_000,
        chunk_size=1_000,
        num_plot_samples=5_000,
        num_path_length_pairs=5_000,
    )
    return config
