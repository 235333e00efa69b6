"""Finite data sets held on the host, read in deterministic epochs.

A *source* is anything with `__len__()` and `__getitem__(indices) -> (k, *event_shape)`:
a numpy array is one, an image data source is another. The batch of global step s is
a pure function of (s, seed), so a resumed run reads exactly the batches an
uninterrupted one would, and every process reads only its own slice of each global
batch (multi-host data parallelism).

Epoch e covers steps [e * S, (e + 1) * S) with S = N // B steps per epoch; its order is
`np.random.default_rng([seed, e]).permutation(N)`, and the N mod B examples left over at
the end of each permutation are skipped in that epoch (a different set each epoch).
"""

from __future__ import annotations

import numpy as np


def check_batch_layout(global_batch_size: int, num_examples: int, process_count: int) -> None:
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"The global batch size {global_batch_size} must be positive and divisible by "
            f"the number of processes ({process_count})."
        )
    if num_examples < global_batch_size:
        raise ValueError(
            f"The data set has {num_examples} examples, fewer than one global batch of "
            f"{global_batch_size}."
        )


def epoch_batch_indices(
    step: int,
    global_batch_size: int,
    num_examples: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """Indices (global_batch_size // process_count,) this process reads at global `step`."""
    check_batch_layout(global_batch_size, num_examples, process_count)
    steps_per_epoch = num_examples // global_batch_size
    epoch, position = divmod(int(step), steps_per_epoch)
    order = np.random.default_rng([int(seed), epoch]).permutation(num_examples)
    batch = order[position * global_batch_size : (position + 1) * global_batch_size]
    local = global_batch_size // process_count
    return batch[process_index * local : (process_index + 1) * local]


def stack_batches(
    source,
    first_step: int,
    num_steps: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """This process's batches for steps first_step .. first_step + num_steps - 1.

    Returns (num_steps, global_batch_size // process_count, *event_shape), read from the
    source once, in one sorted gather (fast for arrays and random-access files alike).
    """
    indices = np.stack(
        [
            epoch_batch_indices(
                first_step + k, global_batch_size, len(source), seed, process_index, process_count
            )
            for k in range(num_steps)
        ]
    )
    unique, inverse = np.unique(indices, return_inverse=True)
    rows = np.asarray(source[unique])
    return rows[inverse.reshape(indices.shape)]
