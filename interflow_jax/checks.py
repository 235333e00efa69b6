"""Input checks that run on concrete values and are skipped under tracing.

Inside `jax.jit` values are abstract and cannot raise; the public entry points call
these checks before they enter compiled code, so user errors are reported with the
offending value.
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when `x` holds a value (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_times(t, name: str = "t") -> None:
    """Raise ValueError if a concrete `t` has entries outside [0, 1] or non-finite ones."""
    if not is_concrete(t):
        return
    values = np.asarray(t, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
    if np.any(bad):
        raise ValueError(
            f"{name} must lie in [0, 1]; got {values[bad].ravel()[:5].tolist()} "
            f"({int(bad.sum())} value(s) out of range)."
        )


def check_time_interval(t0: float, t1: float) -> None:
    """Raise ValueError unless 0 <= t0, t1 <= 1 and t0 != t1."""
    check_times(np.array([t0, t1], dtype=np.float64), name="(t0, t1)")
    if float(t0) == float(t1):
        raise ValueError(f"t0 and t1 must differ; got t0 = t1 = {float(t0)}.")


def check_batch(x, event_shape: tuple[int, ...] | None, name: str = "x") -> None:
    """Raise ValueError unless `x` is (batch, *event_shape) with batch >= 1."""
    shape = tuple(np.shape(x))
    if len(shape) < 2 or shape[0] < 1:
        raise ValueError(f"{name} must have shape (batch, *dims) with batch >= 1; got {shape}.")
    if event_shape is not None and shape[1:] != tuple(event_shape):
        raise ValueError(
            f"{name} must have shape (batch, {', '.join(map(str, event_shape))}); got {shape}."
        )


def check_positive_int(value, name: str) -> int:
    """Return `value` as int, or raise ValueError naming it unless it is a positive integer."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)
