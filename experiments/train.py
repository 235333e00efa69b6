"""Train a flow with the quadratic interpolant loss, then evaluate it.

  python experiments/train.py --config=experiments/configs/toy2d.py:checkerboard \
      --workdir=runs/checkerboard

Rerunning the same command after an interruption resumes from the last checkpoint.

Multi-process (multi-host) data parallelism: start the same command on every host,
with a workdir on a file system all of them share, adding

  --coordinator_address=HOST0:PORT --num_processes=N --process_id=I

(I = 0 .. N - 1; process 0 runs the coordinator at HOST0:PORT), or set
$INTERFLOW_COORDINATOR, $INTERFLOW_NUM_PROCESSES and $INTERFLOW_PROCESS_ID. On Cloud TPU,
SLURM or Open MPI, --coordinator_address=auto detects the rest. Only process 0 writes
metrics, figures and the config; all processes take part in checkpoint saves.
"""

from absl import app, flags
from ml_collections import config_flags

from interflow_jax.training import distributed
from interflow_jax.training.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, figures.")
_INITIALIZE_DISTRIBUTED = distributed.define_flags()
flags.adopt_module_key_flags(distributed)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _INITIALIZE_DISTRIBUTED()
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
