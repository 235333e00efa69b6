"""Best-validation checkpoint selection.

The state with the lowest validation NLL so far is saved under `<workdir>/best` together
with that NLL (one atomic orbax save), so a resumed run knows the value to beat and a
replayed evaluation (same step, same NLL) does not count as an improvement.
"""

from __future__ import annotations

import math

from absl import logging

from interflow_jax.training import checkpoint

BEST_DIR = "best"


class BestCheckpoint:
    """Keeps the lowest-validation-NLL state of a run."""

    def __init__(self, workdir: str):
        self.ckpt = checkpoint.Checkpointer(workdir, max_to_keep=1, name=BEST_DIR)
        self.validation_nll = self._saved_validation_nll()

    def _saved_validation_nll(self) -> float:
        """The saved best's validation NLL; inf if there is none, or if it does not restore
        (a warning; it is moved to `<workdir>/best_damaged/` and the next validation
        replaces it)."""
        try:
            extra = self.ckpt.restore_extra()
        except checkpoint.DamagedCheckpointError as error:
            logging.warning("%s; the next validation replaces it.", error)
            self.ckpt.set_aside((error.step,))
            return math.inf
        return math.inf if extra is None else float(extra["validation_nll"])

    def offer(self, step: int, validation_nll: float, state, config: dict) -> bool:
        """Save `state` if `validation_nll` beats the best so far; True if it was saved."""
        if not validation_nll < self.validation_nll:
            return False
        self.ckpt.save(step, state, config, extra={"validation_nll": validation_nll})
        self.validation_nll = validation_nll
        logging.info("step %d: best validation NLL so far, %.4f (saved).", step, validation_nll)
        return True

    def close(self) -> None:
        self.ckpt.close()
