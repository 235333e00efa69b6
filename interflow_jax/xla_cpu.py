"""XLA:CPU's kernel choice for this library's models: XLA's own kernels, not YNNPACK.

jaxlib 0.10 hands most dots, convolutions, reductions and elementwise fusions on CPU to
YNNPACK (`xla_cpu_experimental_ynn_fusion_type`). For the small models trained here on
a CPU that is slower: the digits U-Net's training step spends 66 ms per step in its ops
with the YNNPACK fusions and 33 ms without, and without them the steps/s of the digits
U-Net, the d = 43 mixture MLP and the 2-D default's MLP are 1.41x, 1.11x and 1.15x
(AMD EPYC Zen 3, 2 cores; benchmarks/xla_cpu_kernels.py, RESULTS.md section 10). Importing
`interflow_jax` therefore adds `--xla_cpu_experimental_ynn_fusion_type=` (no YNNPACK
fusions) to $XLA_FLAGS, unless

- $XLA_FLAGS already sets that option (yours wins),
- $INTERFLOW_KEEP_XLA_FLAGS is set to anything but '' or '0',
- jaxlib is older than 0.10 (where the option may not exist: XLA aborts on unknown
  flags), or
- JAX's backends are already running (the flags are read once, when they start: import
  interflow_jax before your first JAX computation for the setting to apply).

Only XLA:CPU reads the option; GPU and TPU runs are unchanged.
"""

from __future__ import annotations

import os
from importlib import metadata

OPTION = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{OPTION}="
KEEP_FLAGS_ENV = "INTERFLOW_KEEP_XLA_FLAGS"
MIN_JAXLIB = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    try:
        text = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def _backends_running() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:
        return False
    check = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(check and check())


def opted_out() -> bool:
    """True when $INTERFLOW_KEEP_XLA_FLAGS asks to leave $XLA_FLAGS as it is."""
    return os.environ.get(KEEP_FLAGS_ENV, "") not in ("", "0")


def use_xla_cpu_kernels() -> bool:
    """Add FLAG to $XLA_FLAGS when the module docstring's conditions allow; True when the
    process's XLA_FLAGS now carry it (added here or before)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if OPTION in flags:
        return FLAG in flags.split()
    if opted_out() or _jaxlib_version() < MIN_JAXLIB or _backends_running():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
