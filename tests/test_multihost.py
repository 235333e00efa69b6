"""Multi-process training: two processes of two CPU devices each equal one of four.

Each run is `train_and_evaluate` on smoke configs (tests/multihost_worker.py) in fresh
subprocesses: two processes joined over loopback through `distributed.initialize`, and a
single reference process. Both input paths of the loop are covered: data drawn inside
the jitted step (toy2d) and a finite training set read on the host, one slice per
process (mixture).
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from interflow_jax.training import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multihost_worker.py")
TIMEOUT_S = 600  # a hang guard: a run takes ~40 s on 2 idle cores, over 200 s on 2 busy ones
# Gradients are summed across devices by XLA in one process and by gloo across two, in
# a different order: float32 round-off (~1e-7 relative) that a few Adam steps carry into
# the parameters. Everything else (data, keys, layout) must be identical.
RTOL, PARAM_ATOL = 1e-5, 1e-6
PROCESS_ZERO_FILES = {
    "config.json",
    "metrics.jsonl",
    "metrics.json",
    "samples.png",
    "trajectories.png",
    "curves.png",
    "path_length.png",
}

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")

needs_cpu_collectives = pytest.mark.skipif(
    not distributed.cpu_collectives_available(),
    reason="this JAX has no cross-process collectives on CPU "
    "(no option jax_cpu_collectives_implementation)",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in (
        distributed.ENV_COORDINATOR,
        distributed.ENV_NUM_PROCESSES,
        distributed.ENV_PROCESS_ID,
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_is_a_no_op(clean_env):
    assert distributed.initialize() is False
    assert distributed.initialize("localhost:1234", 1, 0) is False
    assert not jax.distributed.is_initialized()
    assert distributed.is_main_process()


def test_settings_come_from_arguments_then_environment(clean_env):
    clean_env.setenv(distributed.ENV_COORDINATOR, "10.0.0.1:8476")
    clean_env.setenv(distributed.ENV_NUM_PROCESSES, "4")
    clean_env.setenv(distributed.ENV_PROCESS_ID, "3")
    assert distributed.resolve() == ("10.0.0.1:8476", 4, 3)
    assert distributed.resolve(process_id=1) == ("10.0.0.1:8476", 4, 1)
    assert distributed.resolve("auto") == (None, 4, 3)


@pytest.mark.parametrize(
    "args, match",
    [
        (("localhost:1234", 2, 2), "process_id=2 must be in \\[0, num_processes=2\\)"),
        (("localhost:1234", 2, -1), "process_id=-1"),
        (("localhost:1234", 0, 0), "num_processes=0"),
        (("localhost:1234", None, 0), "needs num_processes and process_id"),
        (("localhost", 2, 0), "'localhost' must be host:port"),
        (("localhost:99999", 2, 0), "port in 1..65535"),
        ((None, 2, 0), "need a coordinator address"),
        (("auto", 2, 5), "process_id=5"),
    ],
)
def test_bad_settings_raise(clean_env, args, match):
    with pytest.raises(ValueError, match=match):
        distributed.initialize(*args)


def test_bad_environment_value_raises(clean_env):
    clean_env.setenv(distributed.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="INTERFLOW_NUM_PROCESSES='two'"):
        distributed.initialize()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(num_devices: int, **distributed_env) -> dict:
    """The worker's environment: its fake CPU devices, no inherited run settings, and no
    proxies (gRPC would route the loopback coordinator through them)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INTERFLOW_") and k.lower() not in PROXY_VARIABLES
    }
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update(distributed_env)
    return env


def _launch(case, workdir, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, WORKER, case, str(workdir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _collect(procs) -> list[dict]:
    """Wait for all processes (all are killed after TIMEOUT_S); their JSON reports."""
    deadline, outputs = time.monotonic() + TIMEOUT_S, []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(deadline - time.monotonic(), 1)))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    if len(outputs) < len(procs):
        errors = [proc.communicate()[1][-2000:] for proc in procs]
        pytest.fail(f"a worker ran over {TIMEOUT_S} s; all were killed:\n" + "\n".join(errors))
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"worker failed (exit {proc.returncode}):\n{err[-4000:]}"
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def _read_metrics(path) -> list[dict]:
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for record in records:
        record.pop("steps_per_second", None)  # wall-clock rate
    return records


@pytest.fixture(scope="module", params=["toy2d", "mixture"])
def runs(request, tmp_path_factory):
    """Workdirs (two processes, one) and reports (process 0, process 1, reference)."""
    case, root = request.param, tmp_path_factory.mktemp(request.param)
    address = f"127.0.0.1:{_free_port()}"
    procs = [
        _launch(
            case,
            root / "two",
            _env(
                2,
                INTERFLOW_COORDINATOR=address,
                INTERFLOW_NUM_PROCESSES="2",
                INTERFLOW_PROCESS_ID=str(i),
            ),
        )
        for i in range(2)
    ]
    procs.append(_launch(case, root / "one", _env(4)))
    return (root / "two", root / "one"), _collect(procs)


@pytest.mark.slow
@needs_cpu_collectives
class TestTwoProcessesTrainLikeOne:
    """Two processes of two CPU devices each against one process of four."""

    def test_processes_join_into_one_run(self, runs):
        _, (zero, one, reference) = runs
        assert [r["process_index"] for r in (zero, one)] == [0, 1]
        assert [(r["process_count"], r["device_count"]) for r in (zero, one)] == [(2, 4)] * 2
        assert (reference["process_count"], reference["device_count"]) == (1, 4)

    def test_parameters_and_losses_match(self, runs):
        (two_dir, one_dir), (zero, one, reference) = runs
        for report in (zero, one):
            np.testing.assert_allclose(
                report["params"], reference["params"], rtol=RTOL, atol=PARAM_ATOL
            )
        np.testing.assert_array_equal(zero["params"], one["params"])
        metrics = _read_metrics(two_dir / "metrics.jsonl")
        expected = _read_metrics(one_dir / "metrics.jsonl")
        assert [sorted(r) for r in metrics] == [sorted(r) for r in expected]  # no duplicates
        for got, want in zip(metrics, expected, strict=True):
            for key, value in want.items():
                np.testing.assert_allclose(got[key], value, rtol=RTOL, err_msg=key)

    def test_evaluation_matches(self, runs):
        _, (zero, one, reference) = runs
        want = reference["results"]
        for got in (zero["results"], one["results"]):
            assert got["step"] == want["step"] == 20
            assert got["selected_checkpoint"] == want["selected_checkpoint"]
            for key in ("test_nll", "true_nll", "path_length", "energy_distance_ode"):
                np.testing.assert_allclose(got[key], want[key], rtol=RTOL, err_msg=key)

    def test_only_process_zero_writes_files(self, runs):
        _, (zero, one, _) = runs
        assert PROCESS_ZERO_FILES.issubset(zero["written"])
        assert one["written"] == []
