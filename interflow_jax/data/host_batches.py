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

import functools

import numpy as np


def check_batch_layout(
    global_batch_size: int,
    num_examples: int,
    process_count: int,
    process_index: int = 0,
    step: int = 0,
) -> None:
    """ValueError unless P divides B, B <= N, 0 <= p < P and s >= 0."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"Need 0 <= process_index < process_count; got {process_index}, {process_count}."
        )
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"The global batch size {global_batch_size} must be positive and divisible by "
            f"the number of processes {process_count}."
        )
    if num_examples < global_batch_size:
        raise ValueError(
            f"{num_examples} examples are fewer than one global batch of {global_batch_size}."
        )
    if step < 0:
        raise ValueError(f"step must be >= 0; got {step}.")


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The (read-only) order `default_rng([seed, epoch]).permutation(num_examples)`."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.flags.writeable = False
    return order


def epoch_batch_indices(
    step: int,
    global_batch_size: int,
    num_examples: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """Indices (B / P,) that process `process_index` of P reads at global step `step`.

    With B = global_batch_size, N = num_examples and S = N // B steps per epoch, step s
    reads global batch b = s mod S of epoch e = s // S, i.e. positions [b B, (b + 1) B)
    of `np.random.default_rng([seed, e]).permutation(N)`; process p takes positions
    [p B / P, (p + 1) B / P) of that batch. Raises ValueError unless P divides B, B <= N,
    0 <= p < P and s >= 0.
    """
    check_batch_layout(global_batch_size, num_examples, process_count, process_index, step)
    epoch, batch = divmod(int(step), num_examples // global_batch_size)
    local = global_batch_size // process_count
    start = batch * global_batch_size + process_index * local
    return _epoch_order(int(seed), epoch, int(num_examples))[start : start + local].copy()


def stack_batches(
    source,
    first_step: int,
    num_steps: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """This process's batches of steps first_step, ..., first_step + num_steps - 1.

    Returns (num_steps, B / P, *event_shape): row [k, j] is
    `source[epoch_batch_indices(first_step + k, ...)][j]`. The source is read once, at
    the sorted distinct indices, and the rows are put back in permutation order.
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
    if rows.shape[0] != unique.size:
        raise ValueError(f"The source returned {rows.shape[0]} rows for {unique.size} indices.")
    return rows[inverse.reshape(indices.shape)]
