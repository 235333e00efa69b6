"""Multi-process (multi-host) runs: join the processes of one run before JAX starts.

Every process of a run executes the same program; `initialize` connects them through
`jax.distributed.initialize`, after which `jax.devices()` lists the devices of all
processes and the training loop's mesh spans them (data parallel over hosts).

Where the settings come from, first match wins:

- the arguments (the binaries' --coordinator_address, --num_processes, --process_id);
- the environment: INTERFLOW_COORDINATOR (host:port of process 0's coordinator, or
  'auto'), INTERFLOW_NUM_PROCESSES, INTERFLOW_PROCESS_ID;
- nothing: a single process, and `initialize` does nothing.

The coordinator 'auto' lets JAX detect the cluster (Cloud TPU, SLURM, Open MPI) and
fill in what is not given. On CPU the processes exchange gradients through gloo
collectives (enabled here where the installed JAX leaves them off).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
from absl import flags

ENV_COORDINATOR = "INTERFLOW_COORDINATOR"
ENV_NUM_PROCESSES = "INTERFLOW_NUM_PROCESSES"
ENV_PROCESS_ID = "INTERFLOW_PROCESS_ID"
AUTO = "auto"
CPU_COLLECTIVES_OPTION = "jax_cpu_collectives_implementation"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Join a multi-process run; call once per process, before anything touches devices.

    Arguments left None are read from $INTERFLOW_COORDINATOR, $INTERFLOW_NUM_PROCESSES
    and $INTERFLOW_PROCESS_ID. Returns True when JAX's distributed system is running
    (started now or before), False for a single process (nothing is done). Raises
    ValueError naming a bad or missing value.
    """
    settings = resolve(coordinator_address, num_processes, process_id)
    if jax.distributed.is_initialized():
        return True
    if settings is None:
        return False
    enable_cpu_collectives()
    jax.distributed.initialize(*settings)
    return True


def define_flags() -> Callable[[], bool]:
    """Define the binaries' --coordinator_address, --num_processes and --process_id flags.

    Returns a function that calls `initialize` with the flags' values (call it in main,
    after flags are parsed). Call define_flags once per program.
    """
    coordinator = flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process runs: host:port of process 0's coordinator, or 'auto' to detect the "
        f"cluster (Cloud TPU, SLURM, Open MPI). Default ${ENV_COORDINATOR}; unset: one process.",
    )
    num_processes = flags.DEFINE_integer(
        "num_processes", None, f"Processes in the run (default ${ENV_NUM_PROCESSES})."
    )
    process_id = flags.DEFINE_integer(
        "process_id", None, f"This process's index, 0 .. num_processes - 1 (${ENV_PROCESS_ID})."
    )

    def initialize_from_flags() -> bool:
        return initialize(coordinator.value, num_processes.value, process_id.value)

    return initialize_from_flags


def resolve(coordinator_address=None, num_processes=None, process_id=None):
    """(coordinator_address, num_processes, process_id) to pass to jax.distributed, with
    None where JAX detects the value ('auto'); None for a single process."""
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    num_processes = _int_or_env(num_processes, ENV_NUM_PROCESSES)
    process_id = _int_or_env(process_id, ENV_PROCESS_ID)
    if coordinator_address is None:
        if num_processes is not None or process_id is not None:
            raise ValueError(
                f"num_processes={num_processes} and process_id={process_id} need a "
                f"coordinator address (host:port or '{AUTO}'; flag --coordinator_address "
                f"or ${ENV_COORDINATOR})."
            )
        return None
    if coordinator_address == AUTO:
        check_process_id(num_processes, process_id, required=False)
        return None, num_processes, process_id
    check_address(coordinator_address)
    check_process_id(num_processes, process_id, required=True)
    if num_processes == 1:
        return None
    return coordinator_address, num_processes, process_id


def check_address(coordinator_address: str) -> None:
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"coordinator_address={coordinator_address!r} must be host:port (port in "
            f"1..65535) or '{AUTO}'."
        )


def check_process_id(num_processes, process_id, required: bool) -> None:
    """Raise ValueError unless 0 <= process_id < num_processes; either may be None (left
    to JAX's cluster detection) unless `required`."""
    if required and (num_processes is None or process_id is None):
        raise ValueError(
            f"A coordinator address needs num_processes and process_id; got "
            f"num_processes={num_processes}, process_id={process_id} (flags --num_processes, "
            f"--process_id or ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID})."
        )
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes={num_processes} must be a positive integer.")
    if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
        raise ValueError(f"process_id={process_id} must be in [0, num_processes={num_processes}).")


def _int_or_env(value, env_name: str) -> int | None:
    if value is not None:
        return int(value)
    text = os.environ.get(env_name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${env_name}={text!r} must be an integer.") from None


def cpu_collectives_available() -> bool:
    """Whether the installed JAX can run collectives across CPU processes."""
    return CPU_COLLECTIVES_OPTION in jax.config.values


def enable_cpu_collectives() -> None:
    """Use gloo for cross-process collectives on CPU unless an implementation is set.

    The option only affects the CPU backend, so it is harmless on GPU and TPU runs.
    """
    if cpu_collectives_available() and jax.config.values[CPU_COLLECTIVES_OPTION] is None:
        jax.config.update(CPU_COLLECTIVES_OPTION, "gloo")


def is_main_process() -> bool:
    """True on process 0, the one that writes files (metrics, figures, config)."""
    return jax.process_index() == 0
