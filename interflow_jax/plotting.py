"""Figures written beside the metrics: samples, densities, trajectories, curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scatter(ax, points, title, extent):
    points = np.asarray(points)
    ax.hist2d(points[:, 0], points[:, 1], bins=200, range=[extent[:2], extent[2:]], cmap="magma")
    ax.set_title(title)
    ax.set_aspect("equal")


def plot_samples(samples, data, path: str, extent=(-4.5, 4.5, -4.5, 4.5)) -> None:
    """Histograms of model samples beside data samples, both (n, 2)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    _scatter(axes[0], data, "data", extent)
    _scatter(axes[1], samples, "flow samples (ODE, t: 0 -> 1)", extent)
    _save(fig, path)


def plot_labelled_samples(samples, labels, path: str, extent, title: str = "samples") -> None:
    """Points (n, 2) coloured by their class labels (n,), one colour per class."""
    samples, labels = np.asarray(samples), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(5, 5))
    colours = plt.get_cmap("tab10" if labels.max(initial=0) < 10 else "tab20")
    for k in np.unique(labels):
        chosen = samples[labels == k]
        ax.scatter(chosen[:, 0], chosen[:, 1], s=2, alpha=0.5, color=colours(int(k) % 20), label=k)
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(markerscale=4, fontsize="small", loc="upper right", title="label")
    _save(fig, path)


def plot_density(model_density, true_density, extent, path: str) -> None:
    """Model density exp(log_prob) on a grid (G, G) beside the true one when known."""
    panels = [("model density", model_density)]
    if true_density is not None:
        panels.insert(0, ("true density", true_density))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    vmax = float(np.max(model_density))
    for ax, (title, density) in zip(axes[0], panels, strict=True):
        ax.imshow(np.asarray(density), origin="lower", extent=extent, cmap="magma", vmax=vmax)
        ax.set_title(title)
    _save(fig, path)


def plot_trajectories(paths, path: str, extent=(-4.5, 4.5, -4.5, 4.5)) -> None:
    """Paths (T, n, 2) of the flow from t=0 (grey) to t=1 (red)."""
    paths = np.asarray(paths)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(paths[:, :, 0], paths[:, :, 1], color="steelblue", alpha=0.3, lw=0.7)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], s=3, color="grey", label="t = 0")
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=3, color="crimson", label="t = 1")
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_title("trajectories of dX/dt = v_t(X)")
    _save(fig, path)


def plot_curves(records: list[dict], path: str, true_nll: float | None = None) -> None:
    """Training curves against step, from the metrics records: the loss G, the convergence
    diagnostic |G + E|v|^2| on its own log axis (it falls towards 0 as v^ -> v, PAPER
    section 3, while G itself settles at minus the path length), and the validation NLL."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "validation_nll" in r]
    if train:
        steps = [r["step"] for r in train]
        axes[0].plot(steps, [r["loss"] for r in train], label="G (loss)")
        gap = np.abs([r["convergence_gap"] for r in train])
        axes[1].semilogy(steps, np.maximum(gap, np.finfo(np.float32).tiny), color="C1")
    axes[0].set_title("training loss G")
    axes[1].set_title("convergence diagnostic |G + E|v|^2|")
    if evals:
        axes[2].plot([r["step"] for r in evals], [r["validation_nll"] for r in evals], "o-")
    if true_nll is not None:
        axes[2].axhline(true_nll, color="k", ls="--", label=f"true {true_nll:.3f}")
        axes[2].legend()
    axes[2].set_title("validation NLL (nats)")
    for ax in axes:
        ax.set_xlabel("step")
    _save(fig, path)


def plot_interpolant_coefficients(t, curves: dict, path: str) -> None:
    """a(t) and b(t) of several interpolants: curves {name: (a (T,), b (T,))}."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, (a, b) in curves.items():
        axes[0].plot(t, a, label=name)
        axes[1].plot(t, b, label=name)
    for ax, title in zip(axes, ("a(t)", "b(t)"), strict=True):
        ax.set_xlabel("t")
        ax.set_title(title)
        ax.legend()
    _save(fig, path)


def plot_path_length(records: list[dict], path: str, reference: dict | None = None) -> None:
    """The path-length estimate E|v|^2 (t ~ U[0, 1]) over training, with reference lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    train = [r for r in records if "velocity_sq" in r]
    ax.plot([r["step"] for r in train], [r["velocity_sq"] for r in train], label="E|v|^2")
    for (name, value), style in zip((reference or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, ls=style, color="k", label=f"{name} {value:.3f}")
    ax.set_xlabel("step")
    ax.set_title("path length estimate")
    ax.legend()
    _save(fig, path)
