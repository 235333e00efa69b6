"""TensorBoard event files in the workdir, beside metrics.jsonl (written with tensorboardX).

`tensorboard --logdir runs/` then shows every run under runs/ side by side. Tags:

- every training.log_every steps: train/loss (G), train/convergence_gap (G + E|v|^2, -> 0),
  train/velocity_sq (E|v^|^2 over t: the path-length estimate of PAPER section 5),
  train/grad_norm and any other entry of the step's metrics, train/learning_rate (the
  velocity optimiser's warm-up/cosine rate at the step's last update),
  train/steps_per_second;
- every training.eval_every steps: validation/nll and validation/nll_stderr (nats; with
  a validation split), validation/bits_per_dim for images, and the image `samples`: a
  grid of ODE samples (images) or a scatter of the first two coordinates of a few
  samples (vectors), all from the evaluated (EMA or raw) parameters.

Only process 0 writes; on the others the writer does nothing. A resumed run first cuts
every event after the restored step out of the existing event files (as
`metrics_log.truncate_after` does for the JSONL), so TensorBoard never shows the
interrupted tail twice; the loop flushes the writer before every checkpoint save, so
that the events up to a checkpoint are on disk before it.
"""

from __future__ import annotations

import glob
import os
import struct
import time
from collections.abc import Mapping

import jax
import numpy as np

from interflow_jax.training import optimizer

EVENT_FILE_PATTERN = "events.out.tfevents.*"
FLUSH_SECONDS = 10


class Writer:
    """Scalars and images for TensorBoard in `workdir`, from step `start_step` on.

    On process 0 it first drops the events after `start_step` from the event files
    already there (a resumed run), then opens a new event file; elsewhere every method
    is a no-op. The new file starts with tensorboardX's purge event at start_step + 1,
    which tells a TensorBoard that had already read the cut tail to forget it (readers
    purge steps >= the purge step). Its name ends in the creation time in ns, so that
    files sort in the order they were written even within one second.
    """

    def __init__(self, workdir: str, start_step: int):
        self._writer = None
        if jax.process_index() == 0:
            import tensorboardX  # here: it imports torch when torch is installed (seconds)

            truncate_after(workdir, start_step)
            self._writer = tensorboardX.SummaryWriter(
                workdir,
                purge_step=start_step + 1,
                flush_secs=FLUSH_SECONDS,
                filename_suffix=f".{time.time_ns()}",
            )

    def scalars(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        """One scalar `prefix/name` per entry of `values` at `step`."""
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def image(self, tag: str, step: int, pixels: np.ndarray) -> None:
        """A uint8 picture (H, W, 1 or 3) at `step`; grey pictures are shown as RGB."""
        if self._writer is not None:
            pixels = np.asarray(pixels)
            if pixels.shape[-1] == 1:
                pixels = np.repeat(pixels, 3, axis=-1)
            self._writer.add_image(tag, pixels, step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def learning_rate_fn(config):
    """step -> the velocity optimiser's learning rate at the update that produced `step`
    (optax counts updates from 0: the update to step s uses count s - 1)."""
    opt = config.optimizer
    schedule = optimizer.make_learning_rate(
        opt.learning_rate, opt.warmup_steps, config.training.num_steps
    )
    return lambda step: float(schedule(max(step - 1, 0)))


_HEADER = struct.Struct("<Q")  # TFRecord: length, crc(length), data, crc(data)


def _records(data: bytes):
    """The whole TFRecords of an event file's bytes: (raw record, event bytes) pairs.

    Reading stops at a record cut short (a process killed while writing) or whose length
    fails its checksum.
    """
    from tensorboardX.record_writer import masked_crc32c

    pos = 0
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        (length,) = _HEADER.unpack(header)
        end = pos + 12 + length + 4
        if struct.unpack("<I", data[pos + 8 : pos + 12])[0] != masked_crc32c(header):
            return
        if end > len(data):
            return
        yield data[pos:end], data[pos + 12 : pos + 12 + length]
        pos = end


def truncate_file_after(path: str, step: int) -> None:
    """Rewrite the event file `path` without its events after `step` (atomically); a file
    left with no summary removed."""
    from tensorboardX.proto import event_pb2

    with open(path, "rb") as f:
        records = list(_records(f.read()))
    kept, summaries = [], 0
    for raw, data in records:
        event = event_pb2.Event.FromString(data)
        if event.step <= step:
            kept.append(raw)
            summaries += event.HasField("summary")
    if not summaries:
        os.remove(path)
        return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"".join(kept))
    os.replace(tmp, path)


def event_files(workdir: str) -> list[str]:
    """The TensorBoard event files directly in `workdir`, in name (= time) order."""
    return sorted(glob.glob(os.path.join(workdir, EVENT_FILE_PATTERN)))


def truncate_after(workdir: str, step: int) -> None:
    """Drop the events after `step` from every event file in `workdir` (step 0: all)."""
    for path in event_files(workdir):
        if not path.endswith(".tmp"):
            truncate_file_after(path, step)
