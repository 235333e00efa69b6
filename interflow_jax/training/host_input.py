"""Training examples read on the host, one call ahead, laid out over all devices.

Each jitted call runs `steps_per_call` steps; its examples are one stack
(steps_per_call, global_batch, *raw_shape) with the batch axis split over the 'data'
mesh axis. Every process reads only its own slice of each global batch
(`host_batches.stack_batches`) and `jax.make_array_from_process_local_data` joins the
slices into one global array, so one code path serves 1..N devices and 1..P processes.
The next call's stack is read in a background thread while the current call runs.
With `labels` (anything indexable like the source, e.g. `source.labels`), each call's
examples come with their labels: the pair (examples, labels (steps_per_call, batch)).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jax

from interflow_jax.data import host_batches
from interflow_jax.training import sharding


class HostBatches:
    """`get(first_step)` -> the global stack of training examples for one call, or the
    pair (examples, labels) when `labels` is given."""

    def __init__(
        self, source, steps_per_call: int, global_batch_size: int, seed: int, mesh, labels=None
    ):
        host_batches.check_batch_layout(global_batch_size, len(source), jax.process_count())
        if labels is not None and len(labels) != len(source):
            raise ValueError(f"{len(labels)} labels for {len(source)} training examples.")
        self.source, self.labels = source, labels
        self.steps_per_call = steps_per_call
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.sharding = sharding.step_batches_sharded(mesh)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending = None  # (first_step, future)

    def _read(self, first_step: int):
        examples = self._read_source(self.source, first_step)
        if self.labels is None:
            return examples
        return examples, self._read_source(self.labels, first_step)

    def _read_source(self, source, first_step: int) -> jax.Array:
        """The global stack of `source`'s rows for one call (the same rows for the
        examples and their labels: the indices depend on the step and seed only)."""
        local = host_batches.stack_batches(
            source,
            first_step,
            self.steps_per_call,
            self.global_batch_size,
            self.seed,
            jax.process_index(),
            jax.process_count(),
        )
        shape = (self.steps_per_call, self.global_batch_size, *local.shape[2:])
        return jax.make_array_from_process_local_data(self.sharding, local, shape)

    def get(self, first_step: int):
        if self._pending is not None and self._pending[0] == first_step:
            stack = self._pending[1].result()
        else:
            stack = self._read(first_step)
        following = first_step + self.steps_per_call
        self._pending = (following, self._pool.submit(self._read, following))
        return stack

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
