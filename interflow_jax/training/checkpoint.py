"""Atomic checkpoints with orbax, the config stored beside the state.

orbax writes each step into a temporary directory and renames it when complete, so a
run killed mid-save keeps its previous checkpoint. `restore` restores into an abstract
target (shapes, dtypes, shardings), so the state comes back laid out as before.

A step whose files were damaged afterwards (a truncated data file, a deleted folder)
raises `DamagedCheckpointError` naming the step and its path, with orbax's root cause
in one line; `restore_newest_valid` tries the steps newest first and reports the ones
it skipped, so training can resume and evaluation can run from the newest step that
restores.
"""

from __future__ import annotations

import json
import logging as pylogging
import os
import sys
from typing import NamedTuple

import jax
import orbax.checkpoint as ocp
from absl import logging


class DamagedCheckpointError(ValueError):
    """A checkpoint step that exists but cannot be restored (damaged, partial, or not
    the state expected); `step`, `path` and orbax's root cause `reason` say which and why."""

    def __init__(self, step: int, path: str, reason: str):
        self.step, self.path, self.reason = step, path, reason
        super().__init__(
            f"Checkpoint step {step} at {path} cannot be restored (damaged, partial, or "
            f"saved for another model): {reason}"
        )


class Restored(NamedTuple):
    """What `Checkpointer.restore_newest_valid` found: the state and config of `step`, and
    the newer steps it skipped (newest first) because they did not restore."""

    state: object
    config: dict | None
    step: int | None
    skipped: tuple[int, ...]


class Checkpointer:
    """Save/restore `TrainState` under `<workdir>/<name>`, config in each step.

    name 'checkpoints' holds the latest states (resume); 'best' the best-validation one.
    """

    def __init__(self, workdir: str, max_to_keep: int = 3, name: str = "checkpoints"):
        self.workdir, self.name = os.path.abspath(workdir), name
        self.directory = os.path.join(self.workdir, name)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def step_path(self, step: int) -> str:
        """The folder of `step`: `<workdir>/<name>/<step>`."""
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state, config: dict, extra: dict | None = None) -> None:
        """Save atomically: the state, the config and optional JSON `extra` (e.g. the
        validation NLL of a best checkpoint) land together or not at all. A step saved
        before is replaced (a run resumed from an older step, e.g. past a damaged one, and
        with a changed config, can beat the best it saved at that step the first time)."""
        items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config)}
        if extra is not None:
            items["extra"] = ocp.args.JsonSave(extra)
        if step in self.manager.all_steps():
            self.manager.delete(step)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(self, abstract_state, step: int | None = None):
        """(state, config) at `step` (default the latest), or (None, None) if none exists.

        Raises `DamagedCheckpointError` (naming the step and path) if that step exists but
        does not restore."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None, None
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore()
        )
        restored = self._restore_step(step, args)
        return restored.state, restored.config

    def restore_newest_valid(self, abstract_state) -> Restored:
        """The newest step that restores, trying every step newest first.

        Each step that fails is logged as a warning naming it and its path, and listed in
        `skipped`. Returns `Restored(None, None, None, ())` when there is no step at all;
        raises `DamagedCheckpointError` (for the newest step, naming all) when none
        restores, rather than letting a run start again from scratch."""
        failures = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state, config = self.restore(abstract_state, step)
            except DamagedCheckpointError as error:
                logging.warning(
                    "Skipping checkpoint step %d at %s, which does not restore: %s",
                    step,
                    error.path,
                    error.reason,
                )
                failures.append(error)
                continue
            return Restored(state, config, step, tuple(e.step for e in failures))
        if not failures:
            return Restored(None, None, None, ())
        newest = failures[0]
        others = ", ".join(f"step {e.step} at {e.path}" for e in failures[1:])
        reason = newest.reason + (f". No older step restores either: {others}" if others else "")
        raise DamagedCheckpointError(newest.step, newest.path, reason)

    def set_aside(self, steps) -> None:
        """Move the folders of `steps` (e.g. damaged ones a resumed run skipped) to
        `<workdir>/<name>_damaged/`, so the run can save those steps again; kept, not
        deleted, for inspection. Process 0 moves; every process waits for it."""
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                destination = _free_path(os.path.join(f"{self.directory}_damaged", str(step)))
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                os.replace(self.step_path(step), destination)
                logging.warning("Moved checkpoint step %d to %s.", step, destination)
        ocp.multihost.sync_global_processes(f"interflow_jax_set_aside_{self.name}_{max(steps)}")
        self.manager.reload()

    def restore_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint found in {self.directory}.")
        args = ocp.args.Composite(config=ocp.args.JsonRestore())
        return self._restore_step(step, args).config

    def restore_extra(self, step: int | None = None) -> dict | None:
        """The `extra` JSON saved at `step` (default the latest), or None."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        args = ocp.args.Composite(extra=ocp.args.JsonRestore())
        return self._restore_step(step, args).extra

    def _restore_step(self, step: int, args):
        """orbax's restore of `step`; any failure becomes one `DamagedCheckpointError`."""
        quiet_abandoned_reads()
        try:
            return self.manager.restore(step, args=args)
        except Exception as error:  # orbax and tensorstore raise many types for bad files
            reason = root_cause(error)
        raise DamagedCheckpointError(step, self.step_path(step), reason)

    def close(self) -> None:
        self.manager.close()


def root_cause(error: BaseException, max_chars: int = 400) -> str:
    """`Type: first line` of the innermost exception behind `error` (orbax wraps
    tensorstore's message, e.g. OUT_OF_RANGE for a truncated file, in long specs)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        error = inner
        seen.add(id(error))
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _free_path(path: str) -> str:
    """`path`, or `path-1`, `path-2`, ... if it is taken."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


class _DropAbandonedReadTasks(pylogging.Filter):
    """Hide asyncio's reports on the read tasks of a failed orbax restore."""

    def filter(self, record):
        message = record.getMessage()
        abandoned = message.startswith(
            ("Task exception was never retrieved", "Task was destroyed but it is pending")
        )
        return not (abandoned and "orbax" in message)


def _is_abandoned_read(unraisable) -> bool:
    """A read finishing into orbax's closed event loop, or an orbax read coroutine closed
    unfinished (its GeneratorExit turned into orbax's read error)."""
    error, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
    closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
    return closed_loop or (code is not None and "orbax" in code.co_filename)


def _drop_abandoned_reads(previous_hook):
    def hook(unraisable):
        if not _is_abandoned_read(unraisable):
            previous_hook(unraisable)

    hook.drops_abandoned_reads = True
    return hook


def quiet_abandoned_reads() -> None:
    """Keep the abandoned reads of a failed restore from burying its error.

    orbax runs a restore's reads on an event loop that it closes when the first read
    fails; reads still in flight then finish into the closed loop, and each prints
    'RuntimeError: Event loop is closed' (through sys.unraisablehook), the unfinished read
    coroutines print orbax's read error with the whole TensorStore spec when they are
    closed, and asyncio logs 'Task exception was never retrieved': pages of output, often
    after the real error and from other threads at any time. Installed before the first
    restore (the failure races with it), this drops those reports only; everything else
    passes through. Idempotent."""
    if not getattr(sys.unraisablehook, "drops_abandoned_reads", False):
        sys.unraisablehook = _drop_abandoned_reads(sys.unraisablehook)
    asyncio_logger = pylogging.getLogger("asyncio")
    if not any(isinstance(f, _DropAbandonedReadTasks) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_DropAbandonedReadTasks())


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
