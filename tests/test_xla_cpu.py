"""The XLA:CPU kernel choice made on import (interflow_jax/xla_cpu.py)."""

import os

import pytest

from interflow_jax import xla_cpu


@pytest.fixture
def fresh_process(monkeypatch):
    """As in a process whose JAX backends have not started, on this jaxlib."""
    monkeypatch.setattr(xla_cpu, "_backends_running", lambda: False)
    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: (0, 10))
    monkeypatch.delenv(xla_cpu.KEEP_FLAGS_ENV, raising=False)
    return monkeypatch


def test_the_flag_is_added_beside_the_users_flags(fresh_process):
    fresh_process.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert xla_cpu.use_xla_cpu_kernels()
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        xla_cpu.FLAG,
    ]
    assert xla_cpu.use_xla_cpu_kernels()  # once only
    assert os.environ["XLA_FLAGS"].count(xla_cpu.OPTION) == 1


@pytest.mark.parametrize(
    "env, version, running",
    [
        ({"XLA_FLAGS": f"--{xla_cpu.OPTION}=LIBRARY_FUSION_TYPE_DOT"}, (0, 10), False),
        ({xla_cpu.KEEP_FLAGS_ENV: "1"}, (0, 10), False),
        ({}, (0, 9), False),
        ({}, (0, 10), True),
    ],
    ids=["user-setting", "opt-out", "older-jaxlib", "backends-running"],
)
def test_left_alone(monkeypatch, env, version, running):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(xla_cpu.KEEP_FLAGS_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: version)
    monkeypatch.setattr(xla_cpu, "_backends_running", lambda: running)
    before = os.environ.get("XLA_FLAGS")
    assert not xla_cpu.use_xla_cpu_kernels()
    assert os.environ.get("XLA_FLAGS") == before


def test_in_effect_in_this_process():
    """conftest keeps the flag that importing interflow_jax added, on this jaxlib."""
    if xla_cpu.opted_out():
        pytest.skip("opted out")
    if xla_cpu._jaxlib_version() < xla_cpu.MIN_JAXLIB:
        pytest.skip("jaxlib older than 0.10: the flag is not added")
    assert xla_cpu.FLAG in os.environ["XLA_FLAGS"].split()
