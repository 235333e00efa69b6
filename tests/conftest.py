"""Test configuration: eight fake CPU devices (set before jax is imported anywhere)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Many tests compile the same programs (a resumed run recompiles its step; smoke configs
# share a U-Net): a persistent compilation cache for the pytest run compiles each once.
# Subprocesses started by tests inherit it through the environment.
_CACHE_DIR = tempfile.mkdtemp(prefix="interflow_jax_xla_cache_")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE_DIR)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


@pytest.fixture
def x64():
    """Run the test body with float64 enabled."""
    with jax.enable_x64(True):
        yield


def _getitems_unbound(*args, generator, serialized=False):
    """Stand-in for the TFDS mock's `_getitems`, which TFDS sets unbound (no `self`)."""
    del serialized
    return [generator[int(k)] for k in args[-1]]


@pytest.fixture
def mock_tfds_with(monkeypatch):
    """A function n -> context in which TFDS serves n random examples per split
    (`tfds.testing.mock_data`, no files, no TensorFlow); `__getitems__` made callable."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    monkeypatch.setattr(mocking, "_getitems", _getitems_unbound)

    def mock(num_examples: int):
        policy = tfds.testing.MockPolicy.USE_CODE
        return tfds.testing.mock_data(num_examples=num_examples, policy=policy)

    return mock


@pytest.fixture
def mock_tfds(mock_tfds_with):
    """TFDS mocked with 6 random examples per split."""
    with mock_tfds_with(6):
        yield
