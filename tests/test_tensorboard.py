"""TensorBoard event files: the writer, cutting the tail of a resumed run, the learning
rate, the progress pictures, and runs read back with the tensorboard package's readers."""

import glob
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.configs import images as images_config
from interflow_jax.training import checkpoint, figures, setup, tensorboard
from interflow_jax.training.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_TAGS = (
    "train/loss",
    "train/convergence_gap",
    "train/velocity_sq",
    "train/grad_norm",
    "train/learning_rate",
    "train/steps_per_second",
)


def _raw_events(workdir):
    """(file, tag, step, value or image) of every summary value in every event file."""
    found = []
    for path in tensorboard.event_files(workdir):
        for event in event_file_loader.LegacyEventFileLoader(path).Load():
            for value in event.summary.value:
                payload = value.image if value.HasField("image") else value.simple_value
                found.append((os.path.basename(path), value.tag, event.step, payload))
    return found


def _steps_by_tag(workdir):
    steps = {}
    for _, tag, step, _ in _raw_events(workdir):
        steps.setdefault(tag, []).append(step)
    return steps


def _accumulator(workdir):
    accumulator = EventAccumulator(workdir, size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def _write_steps(workdir, start_step, steps, offset=0.0):
    writer = tensorboard.Writer(workdir, start_step)
    for step in steps:
        writer.scalars(step, {"loss": step + offset}, "train")
    writer.close()


def test_writer_scalars_and_image_are_read_back(tmp_path):
    workdir = str(tmp_path)
    writer = tensorboard.Writer(workdir, 0)
    writer.scalars(10, {"loss": 1.5, "grad_norm": 2.0}, "train")
    writer.scalars(20, {"loss": 0.5, "grad_norm": 1.0}, "train")
    grey = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20, 1)
    writer.image("samples", 20, grey)
    writer.close()
    accumulator = _accumulator(workdir)
    assert sorted(accumulator.Tags()["scalars"]) == ["train/grad_norm", "train/loss"]
    assert [(e.step, e.value) for e in accumulator.Scalars("train/loss")] == [(10, 1.5), (20, 0.5)]
    (image,) = accumulator.Images("samples")
    assert (image.step, image.width, image.height) == (20, 20, 12)


def test_resume_cuts_the_events_after_the_restored_step(tmp_path):
    """Steps 10..50 written, the last record torn by a kill; resuming from step 30 keeps
    10..30 of the first file and shows 40, 50 once, from the resumed run."""
    workdir = str(tmp_path)
    _write_steps(workdir, 0, range(10, 60, 10))
    (first,) = tensorboard.event_files(workdir)
    with open(first, "ab") as f:
        f.write(b"\x30\x00\x00\x00\x00\x00\x00\x00\x01\x02")  # a record cut short
    _write_steps(workdir, 30, (40, 50), offset=0.5)
    events = _raw_events(workdir)
    assert [(s, v) for _, _, s, v in events] == [
        (10, 10),
        (20, 20),
        (30, 30),
        (40, 40.5),
        (50, 50.5),
    ]
    assert {name for name, _, step, _ in events if step > 30} != {os.path.basename(first)}
    accumulator = _accumulator(workdir)
    assert [e.step for e in accumulator.Scalars("train/loss")] == [10, 20, 30, 40, 50]


def test_fresh_start_removes_earlier_events(tmp_path):
    """A run restarted before its first checkpoint starts again from step 0."""
    workdir = str(tmp_path)
    _write_steps(workdir, 0, (10, 20))
    _write_steps(workdir, 0, (10,), offset=0.25)
    assert [(s, v) for _, _, s, v in _raw_events(workdir)] == [(10, 10.25)]
    assert len(tensorboard.event_files(workdir)) == 1


def test_only_process_zero_writes(tmp_path, monkeypatch):
    workdir = str(tmp_path)
    _write_steps(workdir, 0, (10, 20))
    before = {p: os.path.getsize(p) for p in tensorboard.event_files(workdir)}
    monkeypatch.setattr(tensorboard.jax, "process_index", lambda: 1)
    writer = tensorboard.Writer(workdir, 10)  # on process 0 this would cut step 20
    writer.scalars(20, {"loss": 0.0}, "train")
    writer.image("samples", 20, np.zeros((4, 4, 3), np.uint8))
    writer.close()
    assert {p: os.path.getsize(p) for p in tensorboard.event_files(workdir)} == before


def test_learning_rate_follows_warm_up_then_cosine():
    """peak 1e-3, 10 warm-up steps, 110 steps: the update to step s uses count s - 1;
    rate = peak c / 10 while warming up, then end + (peak - end)(1 + cos(pi (c - 10) / 100))/2
    with end = 0.01 peak."""
    config = ml_collections.ConfigDict(
        {
            "optimizer": {"learning_rate": 1e-3, "warmup_steps": 10},
            "training": {"num_steps": 110},
        }
    )
    rate = tensorboard.learning_rate_fn(config)
    peak, end = 1e-3, 1e-5
    for count in (0, 4, 10, 35, 60, 109):
        if count < 10:
            expected = peak * count / 10
        else:
            expected = end + (peak - end) * (1 + math.cos(math.pi * (count - 10) / 100)) / 2
        assert rate(count + 1) == pytest.approx(expected, rel=1e-5, abs=1e-12), count


def test_scatter_pixels_put_y_up_and_count_points():
    extent = (-1.0, 1.0, -2.0, 2.0)
    points = np.array([[-0.99, -1.99], [0.99, 1.99], [0.99, 1.99], [0.0, -1.99]])
    pixels = figures.scatter_pixels(points, extent, size=8)
    assert pixels.shape == (8, 8, 1) and pixels.dtype == np.uint8
    assert pixels[7, 0, 0] == 128  # bottom left: one point
    assert pixels[0, 7, 0] == 255  # top right: two points
    assert pixels[7, 4, 0] == 128
    assert np.count_nonzero(pixels) == 3


def test_progress_picture_of_images_is_a_grid():
    """Nine 4 x 4 grey images at 17 levels -> a 3 x 3 grid of images enlarged 16 times."""
    config = ml_collections.ConfigDict({"seed": 0, "eval": {"num_plot_samples": 9}})
    problem = types.SimpleNamespace(
        event_shape=(4, 4, 1), finite=types.SimpleNamespace(num_levels=17)
    )
    z = np.linspace(-1.0, 1.0, 9 * 16, dtype=np.float32).reshape(9, 4, 4, 1)
    flow = types.SimpleNamespace(sample=lambda params, key, n: types.SimpleNamespace(x=z[:n]))
    picture = figures.progress_picture(config, problem, flow, params={})
    cell, padding = 64, 2
    assert picture.shape == (3 * cell + 4 * padding,) * 2 + (1,)
    assert picture[padding, padding, 0] == 0 and picture[-padding - 1, -padding - 1, 0] == 255


# ---------------------------------------------------------------------------------------
# Runs (slow): a toy run killed and resumed, and an image run
# ---------------------------------------------------------------------------------------


def _train_command(workdir, *overrides):
    config = os.path.join(ROOT, "experiments", "configs", "toy2d.py")
    train = os.path.join(ROOT, "experiments", "train.py")
    arguments = [f"--config={config}:checkerboard,smoke", f"--workdir={workdir}", *overrides]
    return [sys.executable, train, *arguments]


def _kill_after_checkpoint(command, workdir, step):
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = os.path.join(workdir, "checkpoints", str(step))
    deadline = time.time() + 300
    while not os.path.isdir(target) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.mark.slow
def test_killed_and_resumed_run_shows_every_step_once(tmp_path):
    """SIGKILL after checkpoint 40, drop the checkpoints after 20 (so that the events of
    the killed run after 20 are a tail to cut), resume to 120: every tag holds each of
    its steps once, the first file steps <= 20 only."""
    workdir = str(tmp_path / "run")
    command = _train_command(
        workdir, "--config.training.num_steps=120", "--config.training.eval_every=40"
    )
    _kill_after_checkpoint(command, workdir, 40)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "*")):
        if os.path.basename(path).isdigit() and int(os.path.basename(path)) > 20:
            shutil.rmtree(path)
    assert checkpoint.Checkpointer(workdir).latest_step() == 20
    assert max(_steps_by_tag(workdir)["train/loss"]) >= 40  # flushed before checkpoint 40
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    steps = _steps_by_tag(workdir)
    for tag in TRAIN_TAGS:
        assert steps[tag] == list(range(10, 130, 10)), tag
    for tag in ("validation/nll", "validation/nll_stderr", "samples"):
        assert steps[tag] == [40, 80, 120], tag
    files = tensorboard.event_files(workdir)
    assert len(files) == 2
    first = [s for name, _, s, _ in _raw_events(workdir) if name == os.path.basename(files[0])]
    assert first and max(first) == 20
    accumulator = _accumulator(workdir)
    assert set(TRAIN_TAGS) <= set(accumulator.Tags()["scalars"])
    assert [e.step for e in accumulator.Scalars("train/loss")] == list(range(10, 130, 10))
    assert [e.step for e in accumulator.Images("samples")] == [40, 80, 120]


@pytest.mark.slow
def test_image_run_writes_grids_and_validation_bits_per_dim(tmp_path, monkeypatch):
    """The digits smoke run, given a validation split (the image configs have none: the
    paper selects no checkpoint for images) to show validation bits/dim too."""
    build_problem = setup.build_problem

    def with_validation(config):
        problem = build_problem(config)
        return problem._replace(finite=problem.finite._replace(validation=problem.finite.test))

    monkeypatch.setattr(setup, "build_problem", with_validation)
    config = images_config.get_config("digits,smoke")
    config.unlock()
    config.eval.num_validation_points = 16
    workdir = str(tmp_path)
    train_and_evaluate(config, workdir)
    steps = _steps_by_tag(workdir)
    for tag in TRAIN_TAGS:
        assert steps[tag] == [5, 10, 15, 20], tag
    for tag in ("validation/nll", "validation/bits_per_dim", "samples"):
        assert steps[tag] == [10, 20], tag
    accumulator = _accumulator(workdir)
    bits = [e.value for e in accumulator.Scalars("validation/bits_per_dim")]
    assert all(np.isfinite(bits)) and min(bits) > 0
    image = accumulator.Images("samples")[-1]
    assert (image.width, image.height) == (4 * 64 + 5 * 2,) * 2  # 16 digits, 4 x 4
