"""Class-conditional digits: do guided samples show the requested digit? (PAPER section 9)

1. Train `images.py:digits,conditional` (a conditional U-Net, label dropout 0.1) with
   `experiments/train.py`, timing it; its evaluation (with eval.consistency_check) gives the
   held-out bits/dim of log p(x | y) and of log p(x | null), and the paired difference
   log (1/10 sum_y p(x | y)) - log p(x | null) on the 297 test digits.
2. Fit a classifier (scikit-learn logistic regression) on the 1,500 training digits and
   report its accuracy on the 297 test digits.
3. For each guidance scale w, `experiments/sample.py --label=all --guidance=w` draws
   `--per_class` guided ODE samples of every digit (in data units, levels 0..16); the
   classifier labels them, and the fraction labelled as the requested digit is reported
   (w = 0 is the unconditional field: about 1/10 expected).

  python benchmarks/conditional_digits.py --num_steps=6000 --per_class=100
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import bench_common
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from interflow_jax.data import images  # noqa: E402

NAME = "conditional_digits"
CONFIG = os.path.join(ROOT, "experiments", "configs", "images.py")


def parse_args(argv):
    parser = bench_common.base_parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--num_steps", type=int, default=6_000)
    parser.add_argument("--per_class", type=int, default=100)
    parser.add_argument("--guidance", default="0,1,2,4", help="comma-separated scales w")
    parser.add_argument("--seed", type=int, default=0, help="the config's seed (data split)")
    args = parser.parse_args(argv)
    args.guidance = [float(w) for w in args.guidance.split(",")]
    if args.smoke:
        args.num_steps, args.per_class = 20, 2
    return args


def _run(command: list[str]) -> float:
    """Run a command from the repository root; its wall-clock seconds."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def train(args, workdir: str) -> float:
    """Train and evaluate the conditional digits model; the seconds it took."""
    arg = "digits,conditional" + (",smoke" if args.smoke else "")
    overrides = [
        f"--config.training.num_steps={args.num_steps}",
        f"--config.seed={args.seed}",
        "--config.eval.consistency_check=True",
    ]
    script = os.path.join(ROOT, "experiments", "train.py")
    return _run(
        [sys.executable, script, f"--config={CONFIG}:{arg}", f"--workdir={workdir}", *overrides]
    )


def training_loop_seconds(workdir: str) -> float:
    """Seconds spent in training steps: the sum over metrics.jsonl's training records of
    (steps since the previous record) / steps_per_second. The loop's rate excludes the
    periodic validation and figures, and includes the first call's compilation."""
    records = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "steps_per_second" in record:
                records.append((record["step"], record["steps_per_second"]))
    seconds, previous = 0.0, 0
    for step, rate in sorted(records):
        seconds += (step - previous) / rate
        previous = step
    return seconds


def classifier(seed: int):
    """Logistic regression on the training digits (pixels 0..16); its test accuracy."""
    from sklearn.linear_model import LogisticRegression

    train, train_labels, test, test_labels = images.digits_labelled_splits(seed)
    model = LogisticRegression(max_iter=5_000)
    model.fit(train.reshape(len(train), -1), train_labels)
    return model, float(model.score(test.reshape(len(test), -1), test_labels))


def guided_accuracy(args, workdir: str, model, w: float) -> tuple[float, float]:
    """(fraction of guided samples classified as their label, seconds to sample)."""
    output = os.path.join(workdir, f"guided_w{w:g}.npz")
    script = os.path.join(ROOT, "experiments", "sample.py")
    flags = [f"--workdir={workdir}", "--label=all", f"--guidance={w}"]
    flags += [f"--num_samples={args.per_class}", f"--output={output}"]
    seconds = _run([sys.executable, script, *flags])
    saved = np.load(output)
    predicted = model.predict(saved["samples"].reshape(len(saved["samples"]), -1))
    return float(np.mean(predicted == saved["labels"])), seconds


def plot(args, accuracies) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(args.guidance, accuracies, "o-", label="guided ODE samples")
    ax.axhline(0.1, color="k", ls=":", label="chance")
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("classified as the requested digit")
    bench_common.finish_plot(fig, ax, "conditional digits", args.outdir, "accuracy_vs_guidance.png")


def main(argv=None) -> None:
    args, lines = bench_common.start(parse_args, argv, "Class-conditional digits with guidance")
    workdir = os.path.join(args.outdir, "run")
    train_seconds = train(args, workdir)
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    model, test_accuracy = classifier(args.seed)
    rows, accuracies = [], []
    for w in args.guidance:
        accuracy, seconds = guided_accuracy(args, workdir, model, w)
        accuracies.append(accuracy)
        rows.append([f"{w:g}", accuracy, seconds])
    loop_seconds = training_loop_seconds(workdir)
    lines += [
        f"- train.py (training, validation, final evaluation with the consistency check): "
        f"{train_seconds:.0f} s; of which training steps {loop_seconds:.0f} s "
        f"({args.num_steps} steps)"
    ]
    lines += [f"- classifier accuracy on the 297 real test digits: {test_accuracy:.4f}", ""]
    lines += bench_common.markdown_table(["w", "accuracy", "sampling seconds"], rows)
    lines += ["", *_likelihood_lines(metrics)]
    plot(args, accuracies)
    bench_common.write_report(args.outdir, lines)


def _likelihood_lines(metrics: dict) -> list[str]:
    def value(name):
        return f"{metrics[name]:.4f} +- {metrics[name + '_stderr']:.4f}"

    lines = [
        f"- held-out bits/dim of log p(x | y): {value('conditional_test_bits_per_dim')}",
        f"- held-out bits/dim of log p(x | null): {value('test_bits_per_dim')}",
    ]
    if "consistency_log_mixture_minus_null" in metrics:
        lines.append(
            "- log (1/10 sum_y p(x | y)) - log p(x | null), mean paired difference (nats): "
            + value("consistency_log_mixture_minus_null")
        )
    return lines


if __name__ == "__main__":
    main()
