"""Pictures of a trained flow, written beside its metrics.

Every process computes the arrays a figure needs (samples, trajectories, density grids),
so that no process holds work the others wait for; only process 0 draws and writes the
files. Figures: samples.png, density.png (2-D), trajectories.png, curves.png,
path_length.png, interpolant.png (learned interpolants), and image grids for images
(samples.png, data.png, trajectories.png, samples_step<k>.png during training); the
picture of samples that the training loop shows in TensorBoard (`progress_picture`).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from interflow_jax import flows, interpolants, plotting
from interflow_jax.data import images
from interflow_jax.training import metrics_log, setup

EXTENT = (-4.5, 4.5, -4.5, 4.5)
NUM_TRAJECTORY_TIMES = 64
NUM_IMAGE_TRAJECTORIES = 8
NUM_PROGRESS_POINTS = 1_000


def is_image(problem) -> bool:
    return len(problem.event_shape) == 3


def _grid(size: int, extent=EXTENT):
    """A (size * size, 2) grid of points covering extent = (x0, x1, y0, y1)."""
    xs = np.linspace(extent[0], extent[1], size)
    ys = np.linspace(extent[2], extent[3], size)
    mesh = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return jnp.asarray(mesh, dtype=jnp.result_type(float))


def extent_of(points):
    """A square plotting window around the 0.5-99.5 percentiles of (n, 2) points."""
    points = np.asarray(points)
    low, high = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    pad = 0.5 + 0.1 * (high - low)
    lo, hi = min(low - pad), max(high + pad)
    return (float(lo), float(hi), float(lo), float(hi))


def plot_extent(config, data):
    return EXTENT if config.data.kind == "toy2d" else extent_of(np.asarray(data)[:, :2])


def trajectories(config, problem, field, params, num_paths: int, num_times: int):
    """Paths (num_times, num_paths, *event_shape) of dX/dt = v_t(X) from base samples."""
    x0 = setup.base_for(params, problem).sample(setup.held_out_key(config, 5), num_paths)
    times = jnp.linspace(0.0, 1.0, num_times, dtype=x0.dtype)
    return flows.make_trajectories(field, setup.build_ode_options(config.eval))(params, x0, times)


def density_grids(config, problem, flow, params, extent):
    """(model, truth or None) densities exp(log p) on a (G, G) grid over extent (2-D)."""
    size = config.eval.grid_size
    grid = _grid(size, extent)
    log_prob, _, _ = flows.log_prob_in_chunks(flow, params, grid, config.eval.chunk_size)
    model = np.exp(np.asarray(log_prob)).reshape(size, size)
    if problem.true_log_prob is None:
        return model, None
    return model, np.exp(np.asarray(problem.true_log_prob(grid))).reshape(size, size)


def figure_arrays(config, problem, flow, field, params, data) -> dict:
    """Everything the final figures need that takes computation: trajectories, and the
    density grids for 2-D data with a base density."""
    if is_image(problem):
        paths = trajectories(config, problem, field, params, NUM_IMAGE_TRAJECTORIES, 8)
        return {"trajectories": paths}
    paths = trajectories(
        config, problem, field, params, config.eval.num_trajectories, NUM_TRAJECTORY_TIMES
    )
    arrays = {"trajectories": paths[..., :2]}
    if flow.base.log_prob is not None and problem.event_shape == (2,):
        arrays["density"] = density_grids(config, problem, flow, params, plot_extent(config, data))
    return arrays


def write_figures(config, workdir, problem, params, samples, data, arrays, results) -> None:
    """Figures of the first two coordinates (all of them in 2-D), the density in 2-D, image
    grids for images, and the training curves."""
    if jax.process_index() != 0:
        return
    records = metrics_log.read(workdir)
    if is_image(problem):
        write_image_figures(workdir, problem, samples, data, arrays["trajectories"])
        plotting.plot_curves(records, os.path.join(workdir, "curves.png"), None)
        return
    extent = plot_extent(config, data)
    for kind, x in samples.items():
        name = "samples.png" if kind == "ode" else f"samples_{kind}.png"
        plotting.plot_samples(x[:, :2], data[:, :2], os.path.join(workdir, name), extent)
    path = os.path.join(workdir, "trajectories.png")
    plotting.plot_trajectories(arrays["trajectories"], path, extent)
    if "density" in arrays:
        model, truth = arrays["density"]
        plotting.plot_density(model, truth, extent, os.path.join(workdir, "density.png"))
    plotting.plot_curves(records, os.path.join(workdir, "curves.png"), results.get("true_nll"))
    references = {
        k: results[k] for k in ("w2_squared", "path_length_exact_trigonometric") if k in results
    }
    plotting.plot_path_length(records, os.path.join(workdir, "path_length.png"), references)
    if "interpolant" in params:
        write_interpolant_figure(config, workdir, params)


def image_grid_pixels(problem, z) -> np.ndarray:
    """uint8 pixels (n, H', W', C) of images z (n, H, W, C) in (-1, 1) at their levels,
    enlarged so that small images can be seen."""
    return enlarge(np.asarray(images.to_uint8_grid_values(z, problem.finite.num_levels)))


def write_image_grid(problem, z, path: str) -> None:
    """A square-ish grid of images z (n, H, W, C) in (-1, 1), written as a PNG."""
    pixels = image_grid_pixels(problem, z)
    images.save_image_grid(pixels, path, num_rows=max(1, int(math.sqrt(len(pixels)))))


def enlarge(pixels: np.ndarray, min_size: int = 64) -> np.ndarray:
    """Repeat the pixels of (n, H, W, C) images k = ceil(min_size / H) times per axis."""
    factor = max(1, -(-min_size // pixels.shape[1]))
    return pixels.repeat(factor, axis=1).repeat(factor, axis=2)


def progress_samples(config, flow, params):
    """eval.num_plot_samples ODE samples from a fixed key (the same at every step)."""
    return flow.sample(params, setup.held_out_key(config, 6), config.eval.num_plot_samples).x


def progress_picture(config, problem, flow, params) -> np.ndarray:
    """During training, a uint8 picture (H, W, C) of ODE samples of `params` from a fixed
    key: a grid of eval.num_plot_samples images (images), else a scatter of the first two
    coordinates of NUM_PROGRESS_POINTS samples (few, so that it stays cheap)."""
    if is_image(problem):
        pixels = image_grid_pixels(problem, progress_samples(config, flow, params))
        return images.image_grid(pixels, num_rows=max(1, int(math.sqrt(len(pixels)))))
    x = flow.sample(params, setup.held_out_key(config, 6), NUM_PROGRESS_POINTS).x
    points = np.asarray(x)[:, :2]
    extent = EXTENT if config.data.kind == "toy2d" else extent_of(points)
    return scatter_pixels(points, extent)


def scatter_pixels(points, extent, size: int = 256) -> np.ndarray:
    """uint8 (size, size, 1) picture of (n, 2) points over extent = (x0, x1, y0, y1), y up:
    0 where no point falls, 128 for one point, 255 for two or more."""
    counts, _, _ = np.histogram2d(
        points[:, 1], points[:, 0], bins=size, range=[extent[2:], extent[:2]]
    )
    return np.minimum(128 * counts[::-1], 255).astype(np.uint8)[..., None]


def write_picture(picture: np.ndarray, path: str) -> None:
    """Write a uint8 picture (H, W, 1 or 3) as a PNG (process 0 only)."""
    if jax.process_index() == 0:
        Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(path)


def write_image_figures(workdir, problem, samples, data, paths) -> None:
    """samples.png (ODE samples), data.png (test images), trajectories.png (rows: one
    sample each, columns: x_t at 8 times from t = 0 to 1)."""
    for kind, z in samples.items():
        name = "samples.png" if kind == "ode" else f"samples_{kind}.png"
        write_image_grid(problem, z[:64], os.path.join(workdir, name))
    write_image_grid(problem, data[: min(64, len(data))], os.path.join(workdir, "data.png"))
    strip = jnp.swapaxes(paths, 0, 1).reshape(-1, *problem.event_shape)  # row = one sample
    images.save_image_grid(
        image_grid_pixels(problem, strip),
        os.path.join(workdir, "trajectories.png"),
        num_rows=paths.shape[1],
    )


def write_interpolant_figure(config, workdir, params) -> None:
    """a(t), b(t) of the learned interpolant beside trig, linear and (Gaussian) optimal."""
    interpolant, _ = setup.build_interpolant(config)
    t = jnp.linspace(0.0, 1.0, 201)
    curves = {
        "learned": interpolant.coefficients(t, params["interpolant"]),
        "trigonometric": interpolants.TRIGONOMETRIC.coefficients(t),
        "linear": interpolants.LINEAR.coefficients(t),
    }
    if config.data.kind == "gaussian":
        s = config.data.scale
        curves["optimal (Gaussian)"] = (jnp.sqrt((1 - t) ** 2 + 2 * s * t * (1 - t)), t)
    plotting.plot_interpolant_coefficients(t, curves, os.path.join(workdir, "interpolant.png"))
