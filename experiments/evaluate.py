"""Evaluate the latest checkpoint in a workdir: test NLL, NFE, samples and figures.

  python experiments/evaluate.py --workdir=runs/checkerboard
  python experiments/evaluate.py --workdir=runs/checkerboard \
      --config=experiments/configs/toy2d.py:checkerboard \
      --config.eval.divergence=hutchinson --config.eval.num_probes=8 \
      --metrics_name=metrics_hutchinson.json --nofigures

Without --config the config stored with the checkpoint is used; with it, --config.*
flags can change the evaluation settings.
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

from interflow_jax.training import distributed
from interflow_jax.training.checkpoint import Checkpointer
from interflow_jax.training.config_io import config_from_dict
from interflow_jax.training.evaluation import evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (default: the saved one).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory a training run wrote.")
_METRICS_NAME = flags.DEFINE_string(
    "metrics_name", "metrics.json", "File in the workdir that receives the results."
)
_FIGURES = flags.DEFINE_bool("figures", True, "Also write samples, density and trajectories.")
_INITIALIZE_DISTRIBUTED = distributed.define_flags()
flags.adopt_module_key_flags(distributed)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _INITIALIZE_DISTRIBUTED()
    config = _CONFIG.value
    if config is None:
        ckpt = Checkpointer(_WORKDIR.value)
        config = config_from_dict(ckpt.restore_config())
        ckpt.close()
    results = evaluate(
        config, _WORKDIR.value, metrics_name=_METRICS_NAME.value, figures=_FIGURES.value
    )
    logging.info("results: %s", json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
