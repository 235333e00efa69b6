"""Data parallelism over all devices with one code path for 1..N devices.

A 1-D `Mesh` over every device with axis 'data': the global batch is split along its
first axis, the training state is replicated. With one device the shardings are
trivial and nothing else changes.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def step_batches_sharded(mesh: Mesh) -> NamedSharding:
    """(steps, batch, ...) stacks of host-read batches: split the batch axis."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def check_divisible(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
    if batch_size % mesh.size:
        raise ValueError(
            f"{name}={batch_size} must be divisible by the number of devices ({mesh.size})."
        )


def constrain_batch(tree, mesh: Mesh):
    """Inside jit: lay every leaf of a batch out along the 'data' axis."""
    sharding = batch_sharded(mesh)
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)
