"""Train a flow with the quadratic interpolant loss, then evaluate it.

  python experiments/train.py --config=experiments/configs/toy2d.py:checkerboard \
      --workdir=runs/checkerboard

Rerunning the same command after an interruption resumes from the last checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from interflow_jax.training.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, figures.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
