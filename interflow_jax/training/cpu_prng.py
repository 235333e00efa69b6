"""Threefry's unrolled lowering on CPU: the same random bits, fewer runtime steps.

jax lowers the threefry2x32 PRNG on CPU as rolled loops (5 iterations per call); under
XLA's CPU thunk runtime each iteration of each of the ~10 PRNG calls of a train step is a
separate runtime step. The unrolled lowering (jax's rule for GPUs) computes the same bits
as straight-line code: +22% steps/s for the 2-D width-64 step, nothing measurable at
width 256 and above, +0.3-0.5 s of compile time (benchmarks/RESULTS.md, "Proposed library
change"). It uses jax internals; where they have moved, nothing is changed and a warning
says so (`tests/test_cpu_prng.py` fails loudly on such a jax).
"""

from __future__ import annotations

import jax
from absl import logging

_applied = False


def use_unrolled_threefry() -> bool:
    """Register the unrolled threefry lowering for CPU (once per process); True when it is
    in effect. A no-op off CPU, where jax already unrolls."""
    global _applied
    if _applied or jax.default_backend() != "cpu":
        return _applied
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32

        rule = threefry2x32._threefry2x32_lowering_rule
        mlir.register_lowering(threefry2x32.threefry2x32_p, rule, platform="cpu")
    except (ImportError, AttributeError) as error:
        logging.warning("Unrolled threefry lowering not available in this jax (%s).", error)
        return False
    _applied = True
    return True
