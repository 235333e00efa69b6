"""Score and SDE sampler with the exact Gaussian field (PAPER sections 6 and 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interflow_jax import diffusion, flows, gaussian, learnable
from interflow_jax.interpolants import LINEAR, TRIGONOMETRIC, get_interpolant

MEAN = np.array([1.0, -0.5, 0.25])
COV = np.array([[1.5, 0.6, -0.3], [0.6, 0.8, 0.1], [-0.3, 0.1, 0.5]])  # non-diagonal SPD


def _params(dtype=None):
    return {"mean": jnp.asarray(MEAN, dtype), "cov": jnp.asarray(COV, dtype)}


def _analytic_score(interpolant, t, x):
    """rho_t = N(b m, C), C = a^2 I + b^2 S: score -C^{-1}(x - b m) (scalar t)."""
    mean_t, cov_t = gaussian.gaussian_marginal(interpolant, t, jnp.asarray(MEAN), jnp.asarray(COV))
    return -jnp.linalg.solve(cov_t, (x - mean_t).T).T


@pytest.mark.parametrize("interpolant", [TRIGONOMETRIC, LINEAR], ids=lambda i: i.name)
def test_score_equals_analytic_gaussian_score(interpolant, x64):
    score = diffusion.make_score(gaussian.make_gaussian_velocity(interpolant), interpolant)
    x = 1.5 * jax.random.normal(jax.random.key(0), (64, 3))
    for t in [0.0, 0.2, 0.5, 0.8, 0.99]:
        want = _analytic_score(interpolant, t, x)
        np.testing.assert_allclose(score(t, x, _params()), want, rtol=1e-10, atol=1e-10)
        per_sample = score(jnp.full((64,), t), x, _params())
        np.testing.assert_allclose(per_sample, want, rtol=1e-10, atol=1e-10)


def test_score_with_learnable_interpolant_params(x64):
    interp, _ = learnable.make_learnable_interpolant("trigonometric", num_terms=3)
    p = {"alpha": jnp.array([0.2, -0.1, 0.05]), "beta": jnp.array([-0.1, 0.1, 0.02])}
    bound = learnable.bind_params(interp, p)
    score = diffusion.make_score(gaussian.make_gaussian_velocity(bound), interp)
    x = jax.random.normal(jax.random.key(1), (32, 3))
    for t in [0.1, 0.6, 0.9]:
        want = _analytic_score(bound, t, x)
        got = score(t, x, _params(), interpolant_params=p)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_bad_score_inputs_raise():
    score = diffusion.make_score(gaussian.make_gaussian_velocity(TRIGONOMETRIC), TRIGONOMETRIC)
    x = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=r"t_max = 0.99.*0.995"):
        score(0.995, x, _params())
    # t = t_max itself is allowed, also after rounding to float32 (0.99 -> 0.99000001)
    assert score(0.99, x.astype(jnp.float32), _params()).shape == (4, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\].*1.5"):
        score(jnp.array([0.1, 0.2, 0.3, 1.5]), x, _params())
    with pytest.raises(ValueError, match=r"shape \(batch,\) = \(4,\); got \(3,\)"):
        score(jnp.zeros(3), x, _params())
    with pytest.raises(ValueError, match="t_max must lie in"):
        diffusion.make_score(gaussian.make_gaussian_velocity(LINEAR), LINEAR, t_max=1.0)
    # a learnable a(t) = 1 - t - 0.5 sin(pi t) vanishes at t = 0.5: singular there
    interp, _ = learnable.make_learnable_interpolant("linear", num_terms=1)
    p = {"alpha": jnp.array([-0.5]), "beta": jnp.array([0.0])}
    score = diffusion.make_score(
        gaussian.make_gaussian_velocity(learnable.bind_params(interp, p)), interp
    )
    with pytest.raises(ValueError, match=r"denominator.*0.5"):
        score(0.5, x, _params(), interpolant_params=p)


# ----------------------------------------------------------------------------- SDE sampler

# Discretisation allowance on each mean / covariance entry, on top of 4 Monte Carlo
# standard errors. For this linear SDE the scheme's moments follow an exact recursion;
# it puts the Euler-Maruyama (weak order 1) bias at 200 steps below 0.003 (mean) and
# 0.007 (covariance), halving as num_steps doubles. Heun and ShARK (second order here) at
# 100 steps stay below 2e-4.
ALLOWANCE = {"euler_maruyama": 0.01, "heun": 1e-3, "shark": 1e-3}
STEPS = {"euler_maruyama": 200, "heun": 100, "shark": 100}


@pytest.mark.parametrize(
    "solver, eps_name, interpolant, t_end",
    [
        pytest.param("euler_maruyama", "constant", "trigonometric", 0.9, marks=pytest.mark.slow),
        pytest.param("euler_maruyama", "vanishing", "linear", 0.95, marks=pytest.mark.slow),
        pytest.param("heun", "constant", "linear", 0.9, marks=pytest.mark.slow),
        ("heun", "vanishing", "trigonometric", 0.95),
        pytest.param("shark", "vanishing", "trigonometric", 0.9, marks=pytest.mark.slow),
    ],
)
def test_sde_samples_have_the_marginal_moments(solver, eps_name, interpolant, t_end):
    eps = {"constant": diffusion.constant_eps, "vanishing": diffusion.vanishing_eps}[eps_name]
    interpolant = get_interpolant(interpolant)
    field = gaussian.make_gaussian_velocity(interpolant)
    sample = diffusion.make_sde_sampler(
        field, interpolant, eps(1.0), solver=solver, num_steps=STEPS[solver], t_end=t_end
    )
    n = 20_000
    x0 = jax.random.normal(jax.random.key(0), (n, 3))
    x = np.asarray(sample(_params(jnp.float32), x0, jax.random.key(1)), dtype=np.float64)
    mean_t, cov_t = (
        np.asarray(v)
        for v in gaussian.gaussian_marginal(interpolant, t_end, jnp.asarray(MEAN), jnp.asarray(COV))
    )
    mean_err = np.sqrt(np.diag(cov_t) / n)
    cov_err = np.sqrt((cov_t**2 + np.outer(np.diag(cov_t), np.diag(cov_t))) / n)
    allowance = ALLOWANCE[solver]
    assert np.all(np.abs(x.mean(0) - mean_t) < 4 * mean_err + allowance), x.mean(0) - mean_t
    assert np.all(np.abs(np.cov(x.T) - cov_t) < 4 * cov_err + allowance), np.cov(x.T) - cov_t


@pytest.mark.slow
def test_zero_eps_reproduces_the_ode(x64):
    field = gaussian.make_gaussian_velocity(TRIGONOMETRIC)
    num_steps, t_end = 100, 0.9
    x0 = jax.random.normal(jax.random.key(2), (64, 3))
    exact = flows.make_transport(field, flows.ODEOptions(rtol=1e-10, atol=1e-10))
    x_exact = exact(_params(), x0, 0.0, t_end).x
    # solver -> (the same fixed-step ODE scheme, its global error O(dt) or O(dt^2))
    for solver, (ode_solver, tol) in {
        "euler_maruyama": ("euler", 3e-2),
        "heun": ("heun", 1e-4),
    }.items():
        sample = diffusion.make_sde_sampler(
            field, TRIGONOMETRIC, diffusion.constant_eps(0.0), solver, num_steps, t_end
        )
        x_sde = sample(_params(), x0, jax.random.key(3))
        same = flows.make_transport(field, flows.ODEOptions(solver=ode_solver, num_steps=num_steps))
        np.testing.assert_allclose(x_sde, same(_params(), x0, 0.0, t_end).x, atol=1e-12)
        np.testing.assert_allclose(x_sde, x_exact, atol=tol)


def test_sampler_compiles_once_and_uses_the_key():
    field = gaussian.make_gaussian_velocity(LINEAR)
    sample = diffusion.make_sde_sampler(field, LINEAR, diffusion.vanishing_eps(0.5), num_steps=10)
    x0 = jnp.zeros((8, 3))
    first = sample(_params(jnp.float32), x0, jax.random.key(0))
    second = sample(_params(jnp.float32), x0, jax.random.key(1))
    again = sample(_params(jnp.float32), x0, jax.random.key(0))
    assert first.shape == (8, 3) and not np.allclose(first, second)
    np.testing.assert_array_equal(first, again)
    assert sample._cache_size() == 1


def test_bad_sampler_inputs_raise():
    field = gaussian.make_gaussian_velocity(LINEAR)
    eps = diffusion.constant_eps(1.0)
    for t_end in [1.0, 1.2, 0.0]:
        with pytest.raises(ValueError, match=f"t_end must lie in \\(0, 1\\).*{t_end}"):
            diffusion.make_sde_sampler(field, LINEAR, eps, t_end=t_end)
    with pytest.raises(ValueError, match="Unknown SDE solver 'rk4'"):
        diffusion.make_sde_sampler(field, LINEAR, eps, solver="rk4")
    with pytest.raises(ValueError, match="num_steps must be a positive integer; got 0"):
        diffusion.make_sde_sampler(field, LINEAR, eps, num_steps=0)
    for make_eps in (diffusion.constant_eps, diffusion.vanishing_eps):
        with pytest.raises(ValueError, match=r"eps must be finite and >= 0; got -0.1"):
            make_eps(-0.1)
    with pytest.raises(ValueError, match=r"eps\(t\) must be finite and >= 0"):
        diffusion.make_sde_sampler(field, LINEAR, lambda t: 0.5 - t)
