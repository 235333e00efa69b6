"""Each benchmark script's --smoke mode runs end to end and writes its table and figure.

The torch comparisons need torch, torchcfm and POT (the `bench` extra) and are skipped
without them; the JAX-only benchmarks run everywhere.
"""

import importlib
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JAX_ONLY = {
    "hutchinson_modes": "seconds.png",
    "machine_peak": "fraction_of_peak.png",
    "likelihood_vs_dimension": "points_per_second.png",
    "quadratic_vs_max_likelihood": "nll_vs_time.png",
    "density_vs_spline_flow": "quality_vs_wallclock.png",  # flowjax: in the dev extra
    "mixture_ablation": "gaps.png",
    "quality_vs_nfe": "quality_vs_nfe.png",
    "coupling_scope_cost": "ratio_vs_devices.png",
    "step_rate": "rates.png",
    "xla_cpu_kernels": "ratios.png",
}
WITH_TORCH = {
    "train_step_vs_torchcfm": "steps_per_second.png",
    "time_to_quality_vs_torchcfm": "w2_vs_time.png",
    "coupling_step_cost": "steps_per_second.png",
}


def _run_smoke(name: str, figure: str, outdir) -> None:
    """Import benchmarks/<name>.py and run its main with --smoke (in this process)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        module = importlib.import_module(name)
        module.main(["--smoke", f"--outdir={outdir}"])
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))
    with open(os.path.join(outdir, "results.md")) as f:
        report = f.read()
    assert "- command: `python" in report and "load at start" in report and "|---" in report
    assert os.path.getsize(os.path.join(outdir, figure)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(JAX_ONLY))
def test_jax_only_benchmark_smoke(name, tmp_path):
    _run_smoke(name, JAX_ONLY[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WITH_TORCH))
def test_torch_benchmark_smoke(name, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torchcfm")
    pytest.importorskip("ot")
    _run_smoke(name, WITH_TORCH[name], tmp_path)


@pytest.mark.slow
def test_spline_comparison_takes_ours_from_a_finished_run(tmp_path):
    """--ours_workdir reads a finished run's metrics as ours' row instead of training."""
    first, second = tmp_path / "first", tmp_path / "second"
    _run_smoke("density_vs_spline_flow", "quality_vs_wallclock.png", first)
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        module = importlib.import_module("density_vs_spline_flow")
        reuse = [f"--ours_workdir={first / 'ours_6'}", "--ours_seconds=3.5"]
        module.main(["--smoke", f"--outdir={second}", *reuse])
        with pytest.raises(SystemExit):  # one case's run only
            module.main(["--cases=6,21", *reuse])
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))
    rows = [json.loads((d / "results.json").read_text())["6"][0] for d in (first, second)]
    assert rows[1]["seconds"] == 3.5 and rows[1]["quality"] == rows[0]["quality"]
    assert rows[1]["steps"] == rows[0]["steps"] and rows[1]["nfe"] == rows[0]["nfe"]
    assert len(rows[1]["curve"]) == len(rows[0]["curve"]) > 0
