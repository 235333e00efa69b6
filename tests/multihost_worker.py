"""One process of a multi-process training run, launched by tests/test_multihost.py.

  python tests/multihost_worker.py CASE WORKDIR

The process joins the run described by $INTERFLOW_COORDINATOR, $INTERFLOW_NUM_PROCESSES
and $INTERFLOW_PROCESS_ID (none set: a single process), then trains a smoke config for
20 steps with `train_and_evaluate` in WORKDIR. CASE is

- 'toy2d': checkerboard data drawn inside the jitted step;
- 'mixture': a finite training set read on the host, one slice per process.

It prints one JSON line: its process index and count, the evaluation results, the final
parameters (flattened) and the files it opened for writing in the workdir outside the
orbax checkpoint directories.
"""

import json
import os
import sys

from interflow_jax.training import distributed

CASES = {  # case: (config module, config argument, event shape)
    "toy2d": ("toy2d", "checkerboard,smoke", (2,)),
    "mixture": ("mixture", "6,smoke,train=2000", (6,)),
}
CHECKPOINT_DIRS = ("checkpoints", "best")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def make_config(case: str):
    """A smoke config of 20 steps (two calls, two checkpoints) with a light evaluation."""
    from experiments.configs import mixture, toy2d

    module, arg, _ = CASES[case]
    config = {"toy2d": toy2d, "mixture": mixture}[module].get_config(arg)
    if module == "mixture":  # equal split sizes: one compiled sampler draws all three
        config.data.update(num_validation=2000, num_test=2000)
    config.training.update(num_steps=20, steps_per_call=10, checkpoint_every=10, eval_every=10)
    config.eval.update(
        num_test_points=64,
        num_validation_points=64,
        chunk_size=64,
        grid_size=8,
        num_plot_samples=64,
        num_trajectories=8,
        num_path_length_pairs=64,
        num_energy_points=64,
        solver="euler",
        num_steps=4,
    )
    return config


class WriteRecorder:
    """Records files under `root` opened for writing (an audit hook on 'open'/'os.rename')."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.written: set[str] = set()
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if event == "open" and _opens_for_writing(args[1], args[2]):
            self._record(args[0])
        elif event == "os.rename":
            self._record(args[1])

    def _record(self, path) -> None:
        if not isinstance(path, (str, os.PathLike)):
            return
        relative = os.path.relpath(os.path.abspath(os.fspath(path)), self.root)
        top = relative.split(os.sep)[0]
        if top != ".." and top not in CHECKPOINT_DIRS:
            self.written.add(relative)


def _opens_for_writing(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def final_params(config, event_shape, workdir: str) -> list[float]:
    """The latest checkpoint's parameters, flattened (every process restores together)."""
    import jax
    import numpy as np

    from interflow_jax.training import checkpoint, setup, sharding

    replicated = sharding.replicated(sharding.make_mesh())
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
        jax.eval_shape(setup.make_init_state(config, event_shape)),
    )
    ckpt = checkpoint.Checkpointer(workdir)
    state, _ = ckpt.restore(abstract)
    ckpt.close()
    leaves = jax.tree_util.tree_leaves(jax.device_get(state.params))
    return np.concatenate([np.ravel(leaf) for leaf in leaves]).astype(float).tolist()


def main(case: str, workdir: str) -> None:
    distributed.initialize()
    import jax

    from interflow_jax.training.loop import train_and_evaluate

    recorder = WriteRecorder(workdir)
    config = make_config(case)
    results = train_and_evaluate(config, workdir)
    report = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "results": results,
        "params": final_params(config, CASES[case][2], workdir),
        "written": sorted(recorder.written),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
