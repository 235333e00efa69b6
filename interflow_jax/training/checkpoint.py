"""Atomic checkpoints with orbax, the config stored beside the state.

orbax writes each step into a temporary directory and renames it when complete, so a
run killed mid-save keeps its previous checkpoint. `restore_latest` restores into an
abstract target (shapes, dtypes, shardings), so the state comes back laid out as before.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Save/restore `TrainState` under `<workdir>/<name>`, config in each step.

    name 'checkpoints' holds the latest states (resume); 'best' the best-validation one.
    """

    def __init__(self, workdir: str, max_to_keep: int = 3, name: str = "checkpoints"):
        directory = os.path.abspath(os.path.join(workdir, name))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, config: dict, extra: dict | None = None) -> None:
        """Save atomically: the state, the config and optional JSON `extra` (e.g. the
        validation NLL of a best checkpoint) land together or not at all."""
        items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config)}
        if extra is not None:
            items["extra"] = ocp.args.JsonSave(extra)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(self, abstract_state, step: int | None = None):
        """(state, config) at `step` (default the latest), or (None, None) if none exists."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None, None
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore()
        )
        restored = self.manager.restore(step, args=args)
        return restored.state, restored.config

    def restore_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint found in {self.manager.directory}.")
        args = ocp.args.Composite(config=ocp.args.JsonRestore())
        return self.manager.restore(step, args=args).config

    def restore_extra(self, step: int | None = None) -> dict | None:
        """The `extra` JSON saved at `step` (default the latest), or None."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        args = ocp.args.Composite(extra=ocp.args.JsonRestore())
        return self.manager.restore(step, args=args).extra

    def close(self) -> None:
        self.manager.close()


def abstract_like(state):
    """Shapes, dtypes and shardings of `state`, to restore into."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def write_json_atomic(path: str, payload: dict) -> None:
    """Write JSON to `path` through a temporary file and an atomic rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
