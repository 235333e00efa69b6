"""Damaged checkpoints: one clear error naming the step and path; resume and evaluation
from the newest step that restores, naming the skipped ones.

A checkpoint is damaged as a full disk or an interrupted copy would damage it: the data
files under `<step>/state/` (orbax's OCDBT `d/` folders) are truncated to half their size.
Which of them a restore reads depends on how orbax merged the database, so all are cut.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import toy2d as toy2d_config
from interflow_jax.training import (
    best,
    checkpoint,
    evaluation,
    loop,
    metrics_log,
    setup,
    sharding,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = {"note": "tiny"}
# pytest swaps in its own sys.unraisablehook for each test, and so reports the unfinished
# reads of a failed restore that `checkpoint.quiet_abandoned_reads` drops in a program.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _tiny_state(value: float):
    """A small replicated pytree, large enough that orbax keeps its array in a data file."""
    weights = value + jnp.arange(64 * 64, dtype=jnp.float32).reshape(64, 64)
    replicated = sharding.replicated(sharding.make_mesh())
    return jax.device_put({"w": weights, "step": jnp.int32(value)}, replicated)


def _damage(step_path: str) -> None:
    """Truncate every data file under `<step_path>/state` to half its size."""
    for folder, _, names in os.walk(os.path.join(step_path, "state")):
        for name in names if os.path.basename(folder) == "d" else ():
            path = os.path.join(folder, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)


@pytest.fixture
def saved(tmp_path):
    """A Checkpointer with steps 10 and 20 of the tiny state, step 20 damaged."""
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    for step in (10, 20):
        ckpt.save(step, _tiny_state(float(step)), CONFIG)
    _damage(ckpt.step_path(20))
    yield ckpt
    ckpt.close()


def _assert_equal_trees(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_restoring_a_damaged_step_raises_one_error_naming_step_and_path(saved):
    abstract = checkpoint.abstract_like(_tiny_state(0.0))
    with pytest.raises(checkpoint.DamagedCheckpointError) as raised:
        saved.restore(abstract, step=20)
    error = raised.value
    assert error.step == 20 and error.path == saved.step_path(20)
    assert "step 20" in str(error) and saved.step_path(20) in str(error)
    assert "\n" not in str(error) and error.reason  # orbax's root cause, one line
    state, config = saved.restore(abstract, step=10)  # the undamaged step is intact
    _assert_equal_trees(state, _tiny_state(10.0))
    assert config == CONFIG


def test_newest_valid_skips_the_damaged_step_with_a_warning(saved, caplog):
    abstract = checkpoint.abstract_like(_tiny_state(0.0))
    with caplog.at_level(logging.WARNING):
        restored = saved.restore_newest_valid(abstract)
    assert restored.step == 10 and restored.skipped == (20,) and restored.config == CONFIG
    _assert_equal_trees(restored.state, _tiny_state(10.0))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step 20" in w and saved.step_path(20) in w for w in warnings), warnings


def test_newest_valid_raises_when_no_step_restores(saved):
    _damage(saved.step_path(10))
    with pytest.raises(checkpoint.DamagedCheckpointError, match="step 20") as raised:
        saved.restore_newest_valid(checkpoint.abstract_like(_tiny_state(0.0)))
    assert "step 10" in raised.value.reason and raised.value.path == saved.step_path(20)


def test_a_partial_step_is_reported_the_same_way(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(5, _tiny_state(5.0), CONFIG)
    shutil.rmtree(os.path.join(ckpt.step_path(5), "state"))  # a half-copied step
    with pytest.raises(checkpoint.DamagedCheckpointError, match="step 5 at "):
        ckpt.restore(checkpoint.abstract_like(_tiny_state(0.0)))
    ckpt.close()


def test_no_checkpoint_restores_nothing(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    abstract = checkpoint.abstract_like(_tiny_state(0.0))
    assert ckpt.restore_newest_valid(abstract) == (None, None, None, ())
    ckpt.close()


def test_set_aside_moves_the_step_so_it_can_be_saved_again(saved, tmp_path):
    saved.set_aside((20,))
    assert saved.latest_step() == 10
    assert os.path.isdir(tmp_path / "checkpoints_damaged" / "20")
    saved.save(20, _tiny_state(21.0), CONFIG)
    state, _ = saved.restore(checkpoint.abstract_like(_tiny_state(0.0)), step=20)
    _assert_equal_trees(state, _tiny_state(21.0))


def test_saving_a_step_again_replaces_it(saved):
    saved.save(10, _tiny_state(11.0), {"note": "again"})
    state, config = saved.restore(checkpoint.abstract_like(_tiny_state(0.0)), step=10)
    _assert_equal_trees(state, _tiny_state(11.0))
    assert config == {"note": "again"}


def test_root_cause_is_the_innermost_error_in_one_line():
    try:
        try:
            raise ValueError("OUT_OF_RANGE: byte range\nspec: {...}")
        except ValueError as inner:
            raise RuntimeError("Encountered error while reading array index") from inner
    except RuntimeError as outer:
        assert checkpoint.root_cause(outer) == "ValueError: OUT_OF_RANGE: byte range"


def test_abandoned_reads_are_quiet_and_nothing_else_is(monkeypatch):
    """Only 'Event loop is closed', orbax's unfinished read coroutines (unraisable) and
    asyncio's reports on orbax's tasks are dropped; other unraisable errors and asyncio
    records pass."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    asyncio_logger = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_logger, "filters", [])
    checkpoint.quiet_abandoned_reads()
    checkpoint.quiet_abandoned_reads()  # idempotent

    def unraisable(error, filename=None):
        code = None if filename is None else compile("pass", filename, "exec")
        return types.SimpleNamespace(exc_value=error, object=types.SimpleNamespace(cr_code=code))

    sys.unraisablehook(unraisable(RuntimeError("Event loop is closed")))
    sys.unraisablehook(unraisable(Exception("read"), "/site-packages/orbax/serialization.py"))
    others = [unraisable(RuntimeError("else")), unraisable(Exception("read"), "/mine.py")]
    for other in others:
        sys.unraisablehook(other)
    assert seen == others and len(asyncio_logger.filters) == 1

    def record(message):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    orbax_task = "Task exception was never retrieved\nfuture: <Task coro=<orbax/x.py>>"
    assert not asyncio_logger.filters[0].filter(record(orbax_task))
    assert asyncio_logger.filters[0].filter(record("Task exception was never retrieved\nfoo"))


def test_a_damaged_best_checkpoint_is_set_aside_and_replaced(tmp_path, caplog):
    keeper = best.BestCheckpoint(str(tmp_path))
    keeper.offer(10, 1.5, _tiny_state(10.0), CONFIG)
    keeper.close()
    extra = os.path.join(keeper.ckpt.step_path(10), "extra", "metadata")
    with open(extra, "r+b") as f:
        f.truncate(os.path.getsize(extra) // 2)
    with caplog.at_level(logging.WARNING):
        again = best.BestCheckpoint(str(tmp_path))
    assert again.validation_nll == float("inf")
    assert any("step 10" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert os.path.isdir(tmp_path / "best_damaged" / "10")
    assert again.offer(10, 2.0, _tiny_state(10.0), CONFIG) and again.ckpt.latest_step() == 10
    again.close()


def _toy_run(workdir):
    """The smoke config's initial state saved at steps 20 and 40 (no training), with
    metrics records up to step 40; then step 40 damaged."""
    config = toy2d_config.get_config("checkerboard,smoke")
    problem, mesh = setup.build_problem(config), sharding.make_mesh()
    ckpt = checkpoint.Checkpointer(workdir)
    state = loop.start_state(config, workdir, problem, mesh, ckpt)  # fresh: nothing saved
    for step in (20, 40):
        ckpt.save(step, state.replace(step=jnp.int32(step)), json.loads(config.to_json()))
        metrics_log.append(workdir, {"step": step, "loss": 0.0})
    _damage(ckpt.step_path(40))
    return config, problem, mesh, ckpt


def test_training_resumes_from_the_newest_step_that_restores(tmp_path, caplog):
    workdir = str(tmp_path)
    config, problem, mesh, ckpt = _toy_run(workdir)
    with caplog.at_level(logging.WARNING):
        state = loop.start_state(config, workdir, problem, mesh, ckpt)
    assert int(state.step) == 20
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "step 40" in warnings and ckpt.step_path(40) in warnings
    assert os.path.isdir(tmp_path / "checkpoints_damaged" / "40")
    assert [r["step"] for r in metrics_log.read(workdir)] == [20]
    ckpt.save(40, state.replace(step=jnp.int32(40)), json.loads(config.to_json()))  # again
    assert ckpt.latest_step() == 40
    ckpt.close()


def test_evaluation_reports_the_checkpoint_it_used(tmp_path, caplog):
    workdir = str(tmp_path)
    config, problem, _, ckpt = _toy_run(workdir)
    ckpt.close()
    with caplog.at_level(logging.INFO):
        params, step, selection = evaluation.restore_params(
            config, workdir, use_ema=True, event_shape=problem.event_shape
        )
    path = os.path.join(workdir, "checkpoints", "20")
    damaged = os.path.join(workdir, "checkpoints", "40")
    assert step == 20 and params is not None
    assert selection == {
        "selected_checkpoint": "latest",
        "checkpoint_path": path,
        "skipped_checkpoints": [damaged],
    }
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"step 20 at {path}" in logged and damaged in logged


@pytest.mark.slow
def test_evaluate_binary_on_damaged_checkpoints(tmp_path):
    """End to end: train the smoke run, damage its last checkpoint: evaluate.py uses the
    previous one and says so in metrics.json; with every checkpoint damaged it fails with
    our one error and no asyncio noise."""
    workdir = str(tmp_path / "run")
    config = os.path.join(ROOT, "experiments", "configs", "toy2d.py")
    train = [sys.executable, "experiments/train.py", f"--config={config}:checkerboard,smoke"]
    subprocess.run([*train, f"--workdir={workdir}"], cwd=ROOT, check=True, capture_output=True)
    evaluate = [sys.executable, "experiments/evaluate.py", f"--workdir={workdir}", "--nofigures"]
    _damage(os.path.join(workdir, "checkpoints", "40"))
    result = subprocess.run(evaluate, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 20
    assert metrics["checkpoint_path"] == os.path.join(workdir, "checkpoints", "20")
    assert metrics["skipped_checkpoints"] == [os.path.join(workdir, "checkpoints", "40")]
    _damage(os.path.join(workdir, "checkpoints", "20"))
    result = subprocess.run(evaluate, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "DamagedCheckpointError: Checkpoint step 40 at " in last, result.stderr[-3000:]
    assert "Event loop is closed" not in result.stderr
