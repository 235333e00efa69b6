"""Threefry's unrolled lowering on CPU gives the same random bits as jax's rolled one."""

import subprocess
import sys

import numpy as np

SNIPPET = """
import sys
import jax
import numpy as np
from interflow_jax.training import cpu_prng
if sys.argv[1] == "unrolled":
    assert cpu_prng.use_unrolled_threefry()
key = jax.random.key(7)
draws = jax.jit(lambda k: jax.random.normal(jax.random.fold_in(k, 3), (1000,)))(key)
bits = jax.jit(lambda k: jax.random.bits(k, (257,)))(key)
np.save(sys.argv[2], np.concatenate([np.asarray(draws).view(np.uint32), np.asarray(bits)]))
text = jax.jit(lambda k: jax.random.bits(k, (257,))).lower(key).as_text()
print("while loops:", text.count("stablehlo.while"))
"""


def _draw(kind, path):
    result = subprocess.run(
        [sys.executable, "-c", SNIPPET, kind, str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loops = int(result.stdout.split("while loops:")[1])
    return np.load(path), loops


def test_unrolled_lowering_exists_and_gives_the_same_bits(tmp_path):
    """Fails on a jax whose internals moved (then the training loop falls back to jax's
    own lowering with a warning): the registration must be revisited there."""
    rolled, rolled_loops = _draw("rolled", tmp_path / "rolled.npy")
    unrolled, unrolled_loops = _draw("unrolled", tmp_path / "unrolled.npy")
    assert rolled_loops > 0 and unrolled_loops == 0, (rolled_loops, unrolled_loops)
    np.testing.assert_array_equal(rolled, unrolled)
