"""Shared pieces of the benchmark scripts: the machine, the command, timing and reports.

Every script prints and writes the exact command, the date, the load average at start
and a description of the machine (CPU model, cores, library versions), then its tables
as markdown and a PNG figure in its output directory (default runs/benchmarks/<name>/).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "diffrax", "torch", "torchcfm", "POT", "numpy")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's word for it)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of `names` (those that are installed)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def load_average() -> str:
    """`uptime`'s line (the 1, 5 and 15 minute load averages), or os.getloadavg()."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def command_line() -> str:
    """The command that started this process, as it would be typed."""
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "?"
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def header(title: str) -> list[str]:
    """Markdown lines: title, command, date, load at start, machine and versions."""
    libs = ", ".join(f"{k} {v}" for k, v in versions().items())
    return [
        f"## {title}",
        "",
        f"- command: `{command_line()}`",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- load at start: `{load_average()}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- versions: {libs}",
        "",
    ]


def start(parse_args: Callable, argv, title: str):
    """(args, report lines): parse argv (sys.argv[1:] when None), select the headless
    matplotlib backend, and open the report with `header(title)`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_matplotlib()
    return args, header(title)


def finish_plot(fig, ax, title: str, outdir: str, filename: str) -> str:
    """Title and legend on ax, then save the figure as outdir/filename (PNG)."""
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, outdir, filename)


def base_parser(description: str, name: str) -> argparse.ArgumentParser:
    """An argparse parser with --smoke and --outdir (default runs/benchmarks/<name>)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="a run of seconds (for tests)")
    parser.add_argument("--outdir", default=os.path.join("runs", "benchmarks", name))
    return parser


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    """A markdown table; floats are written with 4 significant digits."""

    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def write_table_report(outdir: str, lines: Sequence[str], columns, rows) -> str:
    """`lines`, a blank line and the markdown table of rows, written as outdir/results.md."""
    return write_report(outdir, [*lines, "", *markdown_table(columns, rows)])


def write_report(outdir: str, lines: Sequence[str], filename: str = "results.md") -> str:
    """Write `lines` to outdir/filename, print them, and return the path."""
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, filename)
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {path}")
    return path


def save_figure(fig, outdir: str, filename: str) -> str:
    """Save a matplotlib figure as PNG in outdir and close it."""
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, filename)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def timed(fn: Callable[[], object]) -> float:
    """Seconds that fn() takes (fn must block until its work is done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def calibrated(call_and_steps, seconds: float):
    """(run(), steps per run) with run() repeating `call` (one warm-up call first) for
    about `seconds`; call_and_steps = (call, training steps per call)."""
    call, steps = call_and_steps
    call()
    calls = max(1, round(seconds / timed(call)))

    def run():
        for _ in range(calls):
            call()

    return run, calls * steps


def alternated_rates(runs: dict, reps: int) -> dict[str, list[float]]:
    """Steps/s of each {name: (run, steps)} of `calibrated`, every variant timed once per
    repetition in turn (so slow drifts of a shared machine fall on all of them alike)."""
    rates = {name: [] for name in runs}
    for _ in range(reps):
        for name, (run, steps) in runs.items():
            rates[name].append(steps / timed(run))
    return rates


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def set_omp_wait_policy(policy: str) -> str:
    """Set OMP_WAIT_POLICY for torch's OpenMP threads, before torch is first imported.

    On a machine shared with other jobs, OpenMP's default of spinning while waiting
    slows torch with 2 threads by orders of magnitude (measured); PASSIVE avoids it.
    `policy` 'keep' leaves the environment alone. Returns the policy in force.
    """
    if policy != "keep":
        if "torch" in sys.modules:
            print(f"torch already imported; OMP_WAIT_POLICY={policy} may not take effect")
        os.environ["OMP_WAIT_POLICY"] = policy
    return os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)")


def configure_matplotlib() -> None:
    """Headless backend for figures."""
    import matplotlib

    matplotlib.use("Agg")
