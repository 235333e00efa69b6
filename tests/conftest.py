"""Test configuration: fake CPU devices (set before jax's backend starts), a shared
compilation cache, fixtures.

Eight fake devices for the fast tier (its sharding tests split batches eight ways); two
for the slow tier run alone (`-m slow`): its end-to-end runs still shard every batch, but
eight shards on a two-core machine cost time for no further coverage. The count is set
again in `pytest_configure`, which runs before any test touches a device; subprocesses
started by tests inherit it.
"""

import os

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _set_fake_devices(count: int) -> None:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={count}"])


_set_fake_devices(8)
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


def pytest_configure(config):
    """The slow tier alone: two fake devices, and every compiled program cached (its runs
    repeat whole programs: a resumed run, evaluate.py after train.py). The fast tier
    caches only compilations over 0.5 s: its many small programs are compiled once each,
    and with every one cached its tests all ran slower (BUILD_NOTES, Test suite)."""
    if (config.getoption("markexpr", "") or "").strip() == "slow":
        _set_fake_devices(2)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


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


def _jitter(params, scale: float, seed: int = 0):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(tree, noisy)


@pytest.fixture
def jittered():
    """A function (params, scale, seed=0) -> every leaf plus scale * N(0, 1) noise (gives a
    zero-initialised output layer weights, so a network's field is not trivially 0)."""
    return _jitter
