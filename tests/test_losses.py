"""The quadratic loss at the exact Gaussian field (PAPER sections 3 and 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import densities, gaussian, losses
from interflow_jax.interpolants import LINEAR, TRIGONOMETRIC
from interflow_jax.time_sampling import make_time_sampler

MEAN = np.array([1.0, -0.5])
COV = np.array([[1.5, 0.6], [0.6, 0.8]])


def _params(shift=0.0):
    return {"mean": jnp.asarray(MEAN) + shift, "cov": jnp.asarray(COV)}


def _target(key, n):
    return jax.random.multivariate_normal(key, jnp.asarray(MEAN), jnp.asarray(COV), (n,))


def _loss(interpolant, estimator="plain", **kwargs):
    return losses.make_velocity_loss(
        gaussian.make_gaussian_velocity(interpolant),
        interpolant,
        make_time_sampler(),
        base=densities.standard_gaussian((2,)),
        estimator=estimator,
        **kwargs,
    )


def _repeat(fn, num=12):
    values = [fn(jax.random.key(i)) for i in range(num)]
    stacked = jax.tree_util.tree_map(lambda *v: np.stack(v), *values)
    mean = jax.tree_util.tree_map(lambda v: v.mean(0), stacked)
    stderr = jax.tree_util.tree_map(lambda v: v.std(0, ddof=1) / np.sqrt(num), stacked)
    return mean, stderr


@pytest.mark.parametrize(
    "interpolant,estimator,batch",
    [
        (TRIGONOMETRIC, "plain", 50_000),
        (LINEAR, "plain", 50_000),
        (TRIGONOMETRIC, "antithetic", 25_000),  # network batch 50,000: each x0 and -x0
    ],
    ids=["trigonometric", "linear", "trigonometric-antithetic"],
)
def test_loss_at_exact_field_is_minus_path_length(interpolant, estimator, batch, x64):
    loss_fn = _loss(interpolant, estimator)

    def run(key):
        loss, metrics = loss_fn(_params(), {"x1": _target(key, batch)}, jax.random.fold_in(key, 1))
        return {"loss": loss, "gap": metrics["convergence_gap"]}

    mean, stderr = _repeat(run)
    path_length = float(
        gaussian.gaussian_path_length(interpolant, _params()["mean"], _params()["cov"])
    )
    assert abs(mean["loss"] + path_length) < 4 * stderr["loss"] + 1e-6
    assert abs(mean["gap"]) < 4 * stderr["gap"] + 1e-6
    # ... and a wrong field has a clearly higher loss and a positive gap.
    wrong, _ = loss_fn(_params(0.5), {"x1": _target(jax.random.key(99), 50_000)}, jax.random.key(7))
    assert float(wrong) > -path_length + 0.1


def test_gradient_vanishes_at_exact_field_only(x64):
    loss_fn = _loss(TRIGONOMETRIC)

    def grad_at(shift):
        def run(key):
            batch = {"x1": _target(key, 50_000)}
            return jax.grad(lambda p: loss_fn(p, batch, jax.random.fold_in(key, 1))[0])(
                _params(shift)
            )

        return _repeat(run)

    mean, stderr = grad_at(0.0)
    for name in ("mean", "cov"):
        assert np.all(np.abs(mean[name]) < 4 * stderr[name] + 1e-9), (name, mean[name])
    mean, stderr = grad_at(0.3)
    assert np.any(np.abs(mean["mean"]) > 10 * stderr["mean"])


@pytest.mark.slow
def test_all_pairs_estimator_has_the_same_expectation(x64):
    loss_fn = _loss(TRIGONOMETRIC, "all_pairs", num_times=16, num_base_samples=64)

    def run(key):
        loss, _ = loss_fn(_params(), {"x1": _target(key, 64)}, jax.random.fold_in(key, 1))
        return loss

    mean, stderr = _repeat(run, num=200)
    path_length = float(
        gaussian.gaussian_path_length(TRIGONOMETRIC, _params()["mean"], _params()["cov"])
    )
    assert abs(mean + path_length) < 4 * stderr


def test_all_pairs_pairs_every_base_with_every_target():
    x0 = jnp.arange(3.0)[:, None] * jnp.ones((3, 2))
    x1 = 10 + jnp.arange(4.0)[:, None] * jnp.ones((4, 2))
    x_t, dx_t, times = losses._all_pairs(LINEAR, jnp.array([0.0, 1.0]), x0, x1, None)
    assert x_t.shape == (2 * 3 * 4, 2) and times.shape == (24,)
    np.testing.assert_allclose(x_t[:12, 0], np.repeat(np.arange(3.0), 4))
    np.testing.assert_allclose(x_t[12:, 0], np.tile(10 + np.arange(4.0), 3))
    np.testing.assert_allclose(
        dx_t[:, 0], np.tile(10 + np.arange(4.0), 6) - np.repeat(np.tile(np.arange(3.0), 2), 4)
    )


def test_path_length_estimate_matches_closed_form(x64):
    field = gaussian.make_gaussian_velocity(LINEAR)
    x0 = jax.random.normal(jax.random.key(0), (20_000, 2))
    x1 = _target(jax.random.key(1), 20_000)
    estimate, stderr = losses.estimate_path_length(field, _params(), LINEAR, x0, x1, num_times=200)
    exact = gaussian.gaussian_path_length(LINEAR, _params()["mean"], _params()["cov"])
    assert abs(float(estimate - exact)) < 4 * float(stderr) + 2e-3


def test_missing_base_and_bad_estimator_raise():
    loss_fn = losses.make_velocity_loss(
        gaussian.make_gaussian_velocity(LINEAR), LINEAR, make_time_sampler()
    )
    with pytest.raises(ValueError, match="no 'x0'"):
        loss_fn(_params(), {"x1": jnp.zeros((4, 2))}, jax.random.key(0))
    with pytest.raises(ValueError, match="'mse'"):
        _loss(LINEAR, estimator="mse")


def test_antithetic_estimator_mirrors_each_base_sample(x64):
    """Its expectation is checked with the plain estimator's (minus the path length)."""
    seen = {}

    def recording_field(t, x, params):
        seen.update(t=t, x=x)
        return jnp.zeros_like(x)

    x1 = _target(jax.random.key(3), 5)
    losses.make_velocity_loss(
        recording_field,
        LINEAR,
        make_time_sampler(),
        base=densities.standard_gaussian((2,)),
        estimator="antithetic",
    )({}, {"x1": x1}, jax.random.key(4))
    t, x_t = seen["t"], seen["x"]
    assert x_t.shape == (10, 2)
    np.testing.assert_array_equal(t[:5], t[5:])
    # linear interpolant: x_t = (1 - t) x0 + t x1, so the two halves' x0 are opposite
    x0 = (x_t - t[:, None] * jnp.concatenate([x1, x1])) / (1 - t[:, None])
    np.testing.assert_allclose(x0[:5], -x0[5:], rtol=1e-10, atol=1e-10)
    assert float(jnp.std(x0)) > 0.1


def test_antithetic_estimator_refuses_what_it_cannot_mirror():
    field = gaussian.make_gaussian_velocity(TRIGONOMETRIC)
    shifted = densities.from_sampler(lambda key, n: 1 + jax.random.normal(key, (n, 2)), (2,))
    with pytest.raises(ValueError, match="standard Gaussian base only; got base"):
        losses.make_velocity_loss(
            field, TRIGONOMETRIC, make_time_sampler(), base=shifted, estimator="antithetic"
        )
    loss_fn = _loss(TRIGONOMETRIC, "antithetic")
    batch = {"x1": _target(jax.random.key(0), 4), "x0": jnp.zeros((4, 2))}
    with pytest.raises(ValueError, match="carries 'x0'"):
        loss_fn(_params(), batch, jax.random.key(1))
    with pytest.raises(ValueError, match="estimator 'antithetic' pairs x1 with other base"):
        _loss(TRIGONOMETRIC, "antithetic", pair=lambda key, x0, x1, y: x0)
