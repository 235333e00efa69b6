"""Flows of the exact Gaussian field (PAPER section 7) against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import densities, flows, gaussian
from interflow_jax.interpolants import LINEAR, TRIGONOMETRIC

MEAN = np.array([1.0, -0.5, 0.25])
COV = np.array([[1.5, 0.6, -0.3], [0.6, 0.8, 0.1], [-0.3, 0.1, 0.5]])  # non-diagonal SPD
TIGHT = flows.ODEOptions(rtol=1e-9, atol=1e-9)


def _setup(interpolant=TRIGONOMETRIC, options=TIGHT, **kwargs):
    params = {"mean": jnp.asarray(MEAN), "cov": jnp.asarray(COV)}
    field = gaussian.make_gaussian_velocity(interpolant)
    flow = flows.make_flow(field, densities.standard_gaussian((3,)), options, **kwargs)
    return flow, params


@pytest.mark.parametrize("interpolant", [TRIGONOMETRIC, LINEAR], ids=lambda i: i.name)
def test_sample_maps_standard_normal_to_target(interpolant, x64):
    flow, params = _setup(interpolant, flows.ODEOptions(rtol=1e-6, atol=1e-6))
    n = 40_000
    x = np.asarray(flow.sample(params, jax.random.key(0), n).x)
    # Monte Carlo error of the mean: sqrt(diag(S) / n); of a covariance entry:
    # sqrt((S_ij^2 + S_ii S_jj) / n).
    mean_err = np.sqrt(np.diag(COV) / n)
    assert np.all(np.abs(x.mean(0) - MEAN) < 4 * mean_err)
    cov_err = np.sqrt((COV**2 + np.outer(np.diag(COV), np.diag(COV))) / n)
    assert np.all(np.abs(np.cov(x.T) - COV) < 4 * cov_err)


def test_invert_then_sample_is_identity(x64):
    flow, params = _setup()
    x1 = jax.random.normal(jax.random.key(1), (50, 3))
    back = flow.invert(params, x1).x
    np.testing.assert_allclose(flow.transport(params, back, 0.0, 1.0).x, x1, atol=1e-7)
    # inversion of the exact field maps N(m, S) samples to whitened points
    z = flow.invert(params, jnp.asarray(MEAN) + x1 @ jnp.linalg.cholesky(COV).T).x
    assert abs(float(jnp.std(z)) - 1.0) < 0.2


@pytest.mark.parametrize("t", [1.0, 0.5, 0.2])
def test_exact_log_prob_matches_gaussian(t, x64):
    flow, params = _setup()
    x = jax.random.normal(jax.random.key(2), (200, 3)) * 1.5 + 0.3
    mean_t, cov_t = gaussian.gaussian_marginal(TRIGONOMETRIC, t, params["mean"], params["cov"])
    out = flow.log_prob(params, x, t=t)
    np.testing.assert_allclose(
        out.log_prob, gaussian.gaussian_log_prob(x, mean_t, cov_t), atol=1e-4
    )
    assert float(jnp.max(out.standard_error)) == 0.0
    assert int(out.nfe) > 0


@pytest.mark.parametrize(
    ("t", "probe_kind"),
    [
        (1.0, "rademacher"),  # the other three cases in the slow tier
        pytest.param(0.6, "rademacher", marks=pytest.mark.slow),
        pytest.param(1.0, "gaussian", marks=pytest.mark.slow),
        pytest.param(0.6, "gaussian", marks=pytest.mark.slow),
    ],
)
def test_hutchinson_log_prob_within_standard_errors(t, probe_kind, x64):
    flow, params = _setup(
        options=flows.ODEOptions(rtol=1e-7, atol=1e-7),
        divergence_kind="hutchinson",
        num_probes=16,
        probe_kind=probe_kind,
    )
    x = jax.random.normal(jax.random.key(3), (300, 3)) + 0.5
    mean_t, cov_t = gaussian.gaussian_marginal(TRIGONOMETRIC, t, params["mean"], params["cov"])
    exact = np.asarray(gaussian.gaussian_log_prob(x, mean_t, cov_t))
    out = flow.log_prob(params, x, t=t, key=jax.random.key(4))
    error, stderr = np.asarray(out.log_prob) - exact, np.asarray(out.standard_error)
    assert np.all(stderr > 0)
    assert np.mean(np.abs(error) < 3 * stderr) > 0.95
    pooled = error.mean() / (np.sqrt(np.sum(stderr**2)) / error.size)
    assert abs(pooled) < 3.0, pooled


def test_sample_with_log_prob_agrees_with_log_prob(x64):
    flow, params = _setup()
    x1, out = flow.sample_with_log_prob(params, jax.random.key(5), 100)
    np.testing.assert_allclose(
        out.log_prob, gaussian.gaussian_log_prob(x1, params["mean"], params["cov"]), atol=1e-5
    )


def test_chunked_evaluation_equals_one_solve_per_chunk(x64):
    flow, params = _setup(options=flows.ODEOptions(rtol=1e-10, atol=1e-10))
    x = jax.random.normal(jax.random.key(6), (23, 3))
    log_prob, errors, nfes = flows.log_prob_in_chunks(flow, params, x, chunk_size=10)
    assert log_prob.shape == (23,) and len(nfes) == 3
    exact = gaussian.gaussian_log_prob(x, params["mean"], params["cov"])
    np.testing.assert_allclose(log_prob, exact, atol=1e-6)
    assert flow.log_prob_fn._cache_size() == 1


def test_entry_points_compile_once():
    flow, params = _setup(options=flows.ODEOptions(rtol=1e-4, atol=1e-4))
    for i, t in enumerate([1.0, 0.7, 0.3]):
        x = jax.random.normal(jax.random.key(i), (16, 3))
        flow.log_prob(params, x, t=t)
        flow.transport(params, x, 0.0, t)
        flow.invert(params, x)
    assert flow.log_prob_fn._cache_size() == 1
    assert flow.transport_fn._cache_size() == 1


@pytest.mark.parametrize("solver, stages", [("dopri5", 6), ("tsit5", 6), ("heun", 2), ("euler", 1)])
def test_reported_nfe_counts_field_calls(solver, stages):
    calls = []

    def counting_field(t, x, params):
        jax.debug.callback(lambda: calls.append(1))
        return gaussian.make_gaussian_velocity(TRIGONOMETRIC)(t, x, params)

    options = flows.ODEOptions(solver=solver, rtol=1e-4, atol=1e-4, num_steps=17)
    transport = flows.make_transport(counting_field, options)
    params = {"mean": jnp.asarray(MEAN, jnp.float32), "cov": jnp.asarray(COV, jnp.float32)}
    out = transport(params, jnp.ones((4, 3)), jnp.float32(0.0), jnp.float32(1.0))
    jax.effects_barrier()
    assert int(out.nfe) == len(calls)
    if solver in ("heun", "euler"):
        assert len(calls) == 17 * stages


def test_likelihood_needs_a_base_density():
    field = gaussian.make_gaussian_velocity(TRIGONOMETRIC)
    base = densities.from_sampler(lambda key, n: jax.random.uniform(key, (n, 3)), (3,))
    flow = flows.make_flow(field, base)
    params = {"mean": jnp.asarray(MEAN), "cov": jnp.asarray(COV)}
    assert flow.sample(params, jax.random.key(0), 8).x.shape == (8, 3)
    with pytest.raises(ValueError, match="no likelihood"):
        flow.log_prob(params, jnp.zeros((2, 3)))


def test_bad_inputs_raise_clear_errors():
    flow, params = _setup(options=flows.ODEOptions(rtol=1e-3, atol=1e-3))
    with pytest.raises(ValueError, match=r"\(batch, 3\).*\(4, 2\)"):
        flow.log_prob(params, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        flow.log_prob(params, jnp.zeros((4, 3)), t=1.2)
    with pytest.raises(ValueError, match="t0 and t1 must differ"):
        flow.log_prob(params, jnp.zeros((4, 3)), t=0.0)
    with pytest.raises(ValueError, match="num_samples"):
        flow.sample(params, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="'rk4'"):
        flows.make_transport(
            gaussian.make_gaussian_velocity(TRIGONOMETRIC), flows.ODEOptions("rk4")
        )
    with pytest.raises(ValueError, match="'sinkhorn'"):
        _setup(divergence_kind="sinkhorn")


@pytest.mark.slow
def test_progress_bar_leaves_the_solution_unchanged(x64, capsys):
    x = jax.random.normal(jax.random.key(5), (8, 3))
    quiet, params = _setup(options=flows.ODEOptions(rtol=1e-6, atol=1e-6))
    shown, _ = _setup(options=flows.ODEOptions(rtol=1e-6, atol=1e-6, progress=True))
    expected, got = quiet.log_prob(params, x), shown.log_prob(params, x)
    np.testing.assert_array_equal(got.log_prob, expected.log_prob)
    assert int(got.nfe) == int(expected.nfe)
    jax.effects_barrier()  # the meter's host callbacks have all run
    assert "100.00%" in capsys.readouterr().err  # diffrax's tqdm meter reached the end


def test_mlp_likelihoods_use_the_closed_form_divergence_and_agree_with_the_generic_one(
    jittered, x64
):
    from interflow_jax.models import VelocityMLP, as_field, init_params

    module = VelocityMLP(hidden_sizes=(16, 16), time_embedding_dim=8, param_dtype=jnp.float64)
    params = jittered(init_params(module, jax.random.key(0), (3,)), 0.2, seed=1)
    closed_form = as_field(module)
    calls, original = [], closed_form.value_and_divergence

    def counting(t, x, p):
        calls.append(1)
        return original(t, x, p)

    closed_form.value_and_divergence = counting
    generic = lambda t, x, p: module.apply(p, t, x)  # noqa: E731 (no closed form attached)
    base = densities.standard_gaussian((3,))
    x = jax.random.normal(jax.random.key(2), (6, 3), jnp.float64)
    options = flows.ODEOptions(rtol=1e-10, atol=1e-10)
    ours = flows.make_flow(closed_form, base, options).log_prob(params, x)
    reference = flows.make_flow(generic, base, options).log_prob(params, x)
    assert calls  # traced through the closed form
    np.testing.assert_allclose(ours.log_prob, reference.log_prob, rtol=1e-9, atol=1e-9)
    assert int(ours.nfe) == int(reference.nfe)
