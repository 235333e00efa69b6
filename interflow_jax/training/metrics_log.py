"""Metrics appended to `<workdir>/metrics.jsonl`, one JSON object per line."""

from __future__ import annotations

import json
import os


def metrics_path(workdir: str) -> str:
    return os.path.join(workdir, "metrics.jsonl")


def append(workdir: str, record: dict) -> None:
    with open(metrics_path(workdir), "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read(workdir: str) -> list[dict]:
    path = metrics_path(workdir)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_after(workdir: str, step: int) -> None:
    """Drop records past `step` (written after the checkpoint a resumed run starts from)."""
    kept = [r for r in read(workdir) if r.get("step", 0) <= step]
    tmp = metrics_path(workdir) + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in kept)
    os.replace(tmp, metrics_path(workdir))
