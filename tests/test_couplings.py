"""Minibatch couplings: the pairings against exact answers, the coupled Gaussian field
against its closed form, the loss and config plumbing, and bad settings."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from experiments.configs import toy2d as toy2d_config
from interflow_jax import couplings, densities, flows, losses, time_sampling
from interflow_jax.interpolants import LINEAR
from interflow_jax.training import setup, sharding

EXACT = couplings.Coupling("ot_exact")
SINKHORN = couplings.Coupling("ot_sinkhorn", epsilon=0.01)


def _clouds(n, d=2, seed=0):
    x0 = jax.random.normal(jax.random.key(seed), (n, d))
    x1 = 0.5 * jax.random.normal(jax.random.key(seed + 1), (n, d)) + jnp.arange(1.0, d + 1)
    return x0, x1


def _total_cost(x0, x1, sigma):
    return float(np.sum((np.asarray(x0)[np.asarray(sigma)] - np.asarray(x1)) ** 2))


# ------------------------------------------------------------------- exact assignment


def test_exact_assignment_is_the_best_of_all_permutations():
    x0, x1 = _clouds(7, d=3, seed=3)
    best = min(_total_cost(x0, x1, p) for p in itertools.permutations(range(7)))
    for solver in ("auto", "pot", "scipy"):  # optax's Hungarian: against scipy (slow tier)
        sigma = jax.jit(
            lambda a, b, s=solver: couplings.partners(
                couplings.Coupling("ot_exact", exact_solver=s), None, a, b
            )
        )(x0, x1)
        assert sorted(np.asarray(sigma).tolist()) == list(range(7))
        assert _total_cost(x0, x1, sigma) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("solver", ["pot", "scipy", pytest.param("jax", marks=pytest.mark.slow)])
def test_exact_plan_equals_scipy_on_the_same_costs(solver):
    x0, x1 = _clouds(128, d=4, seed=5)
    coupling = couplings.Coupling("ot_exact", exact_solver=solver)
    sigma = jax.jit(lambda a, b: couplings.partners(coupling, None, a, b))(x0, x1)
    _, columns = linear_sum_assignment(np.asarray(couplings.squared_distances(x1, x0), float))
    np.testing.assert_array_equal(np.asarray(sigma), columns)
    assert _total_cost(x0, x1, sigma) < _total_cost(x0, x1, np.arange(128))


def test_auto_solver_takes_scipy_for_small_plans_and_pot_for_large(monkeypatch):
    used = []
    for name in ("_pot_assignment", "_scipy_assignment"):
        original = getattr(couplings, name)
        monkeypatch.setattr(couplings, name, lambda c, n=name, f=original: used.append(n) or f(c))
    for n in (couplings.AUTO_SCIPY_MAX_SIZE, couplings.AUTO_SCIPY_MAX_SIZE + 2):
        used.clear()
        cost = couplings.squared_distances(*_clouds(n, seed=n))
        sigma = couplings.exact_assignment(cost, "auto")
        assert sorted(np.asarray(sigma).tolist()) == list(range(n))
        expected = "_scipy_assignment" if n <= couplings.AUTO_SCIPY_MAX_SIZE else "_pot_assignment"
        assert set(used) == {expected}, (n, used)


def test_pairs_stay_within_a_class():
    x0, x1 = _clouds(96, seed=7)
    labels = jax.random.randint(jax.random.key(9), (96,), 0, 3)
    for coupling in (EXACT, SINKHORN):
        sigma = np.asarray(couplings.partners(coupling, jax.random.key(1), x0, x1, labels))
        np.testing.assert_array_equal(np.asarray(labels)[sigma], np.asarray(labels))
    # the exact plan within a class is the assignment of that class alone
    sigma = np.asarray(couplings.partners(EXACT, None, x0, x1, labels))
    for k in range(3):
        members = np.flatnonzero(np.asarray(labels) == k)
        cost = np.asarray(couplings.squared_distances(x1[members], x0[members]), float)
        _, columns = linear_sum_assignment(cost)
        np.testing.assert_array_equal(sigma[members], members[columns])


# ------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_plan_has_uniform_marginals_and_approaches_the_exact_plan():
    x0, x1 = _clouds(64, seed=11)
    cost = couplings.squared_distances(x1, x0)
    sharp = couplings.Coupling("ot_sinkhorn", epsilon=0.002, max_iterations=5000)
    plan = np.asarray(couplings.sinkhorn_plan(cost, sharp))
    # Sinkhorn stops when the L1 error of a marginal is below its threshold
    assert np.abs(plan.sum(0) - 1 / 64).sum() <= sharp.threshold
    assert np.abs(plan.sum(1) - 1 / 64).sum() <= sharp.threshold
    # entropic bias: OT <= <P, C> <= OT + epsilon H(P) <= OT + epsilon 2 log n (cost / its
    # mean), up to the marginal error times the largest cost
    scaled = np.asarray(cost / jnp.mean(cost), float)
    exact = np.asarray(couplings.partners(EXACT, None, x0, x1))
    optimum = scaled[np.arange(64), exact].sum() / 64
    slack = sharp.threshold * scaled.max()
    assert optimum - slack <= (plan * scaled).sum() <= optimum + 0.002 * 2 * np.log(64) + slack
    # at large epsilon it tends to the independent coupling 1 / n^2
    flat = np.asarray(couplings.sinkhorn_plan(cost, couplings.Coupling("ot_sinkhorn", 1e3)))
    np.testing.assert_allclose(flat, 1 / 64**2, rtol=1e-2)


def test_sinkhorn_partners_are_drawn_from_the_plan_columns():
    x0, x1 = _clouds(8, seed=13)
    coupling = couplings.Coupling("ot_sinkhorn", epsilon=0.5)
    plan = np.asarray(couplings.sinkhorn_plan(couplings.squared_distances(x1, x0), coupling))
    keys = jax.random.split(jax.random.key(0), 20_000)
    sigma = np.asarray(jax.vmap(couplings.draw_from_plan, (0, None))(keys, plan))  # (draws, n)
    first = couplings.partners(coupling, keys[0], x0, x1)
    np.testing.assert_array_equal(first, sigma[0])  # partners draws from the plan that way
    frequencies = np.stack([np.bincount(sigma[:, j], minlength=8) for j in range(8)]) / 20_000
    expected = plan / plan.sum(1, keepdims=True)
    se = np.sqrt(expected * (1 - expected) / 20_000)
    assert np.all(np.abs(frequencies - expected) < 5 * se + 1e-9)


# ---------------------------------------------------- the coupled Gaussian field (exact)


def _ot_velocity(mean, scale):
    """Linear interpolant with the OT coupling x1 = m + s x0 of N(0, 1) and N(m, s^2):
    x_t = t m + (1 - t + t s) x0, so v_t(x) = m + (s - 1) (x - t m) / (1 - t + t s)."""

    def field(t, x, params):
        del params
        t = jnp.reshape(t, (-1,) + (1,) * (x.ndim - 1))
        return mean + (scale - 1.0) * (x - t * mean) / (1.0 - t + t * scale)

    return field


def _affine_minimiser(coupling, t, key, mean, scale, n):
    """At fixed t the minimiser of G over affine fields a + b x is the least-squares fit of
    dI/dt = x1 - x0 on x_t (linear interpolant): (slope b, intercept a)."""
    x0 = jax.random.normal(jax.random.fold_in(key, 0), (n, 1))
    x1 = mean + scale * jax.random.normal(jax.random.fold_in(key, 1), (n, 1))
    paired = couplings.couple(coupling, None, x0, x1)
    x_t = (1 - t) * paired + t * x1
    return np.polyfit(np.ravel(x_t), np.ravel(x1 - paired), 1)


def test_coupled_loss_minimiser_is_the_monotone_map_velocity(x64):
    """With the exact coupling of N(0, 1) and N(m, s^2) the minimiser is the OT velocity
    v_t(x) = m + (s - 1)(x - t m) / (1 - t + t s) as n grows; independent pairs give a
    different one. Averaged over 4 batches of 1024: the spread of one batch's slope is
    0.021-0.041 and of its intercept 0.028-0.070 (200 batches, t = 0.25-0.75, with the 1-D
    exact plan, sorting), so the tolerances below are over 4.5 standard errors."""
    mean, scale, n = 2.0, 0.5, 1024
    for t in (0.25, 0.5, 0.75):
        slope_ot = (scale - 1.0) / (1.0 - t + t * scale)
        fits = {
            coupling.kind: np.mean(
                [
                    _affine_minimiser(coupling, t, jax.random.key(k), mean, scale, n)
                    for k in range(4)
                ],
                axis=0,
            )
            for coupling in (EXACT, couplings.Coupling())
        }
        slope, intercept = fits["ot_exact"]
        assert slope == pytest.approx(slope_ot, abs=0.1)
        assert intercept == pytest.approx(mean * (1 - slope_ot * t), abs=0.16)
        assert abs(fits["independent"][0] - slope_ot) > 0.3


def test_flow_of_the_coupled_field_has_the_target_log_density(x64):
    """The coupled (OT) velocity carries N(0, I) to N(m, s^2 I): its flow's log-density at
    t = 1 is the target's, exactly as for an independent coupling's field."""
    mean, scale = jnp.array([2.0, -1.0]), 0.5
    flow = flows.make_flow(
        _ot_velocity(mean, scale),
        densities.standard_gaussian((2,)),
        flows.ODEOptions(rtol=1e-9, atol=1e-9),
    )
    x = jax.random.normal(jax.random.key(3), (100, 2)) + mean
    target = jnp.sum(
        -0.5 * ((x - mean) / scale) ** 2 - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi), -1
    )
    np.testing.assert_allclose(flow.log_prob(None, x).log_prob, target, atol=1e-6)


def test_coupled_loss_has_lower_path_length_than_independent_pairs():
    """E|x1 - x0|^2 (the path length of straight lines) = |m1 - m0|^2 + the part the
    coupling controls: |m|^2 + 2.5 for independent pairs of N(0, I_2) and N(m, I_2 / 4),
    |m|^2 + W2^2 = |m|^2 + 0.5 for the exact plan as n grows."""
    x0, x1 = _clouds(256, seed=17)
    lengths = {}
    for coupling in (couplings.Coupling(), EXACT, SINKHORN):
        paired = couplings.couple(coupling, jax.random.key(0), x0, x1)
        shift = float(jnp.sum((jnp.mean(x1, 0) - jnp.mean(paired, 0)) ** 2))
        lengths[coupling.kind] = float(jnp.mean(jnp.sum((x1 - paired) ** 2, -1))) - shift
    assert lengths["ot_exact"] <= lengths["ot_sinkhorn"] < 0.5 * lengths["independent"]
    assert lengths["independent"] == pytest.approx(2.5, rel=0.2)
    assert lengths["ot_exact"] == pytest.approx(0.5, rel=0.3)


# ----------------------------------------------------------------- loss and config


def test_loss_uses_the_pairing_and_all_pairs_refuses_it():
    field = lambda t, x, params: params * x  # noqa: E731
    sampler = time_sampling.make_time_sampler("uniform")
    x0, x1 = _clouds(32, seed=19)

    def pair(key, a, b, labels):
        return couplings.couple(EXACT, key, a, b, labels)

    coupled = losses.make_velocity_loss(field, LINEAR, sampler, pair=pair)
    independent = losses.make_velocity_loss(field, LINEAR, sampler)
    batch = {"x0": x0, "x1": x1}
    manual = {"x0": couplings.couple(EXACT, None, x0, x1), "x1": x1}
    key = jax.random.key(4)
    assert float(coupled(1.0, batch, key)[0]) == pytest.approx(
        float(independent(1.0, manual, key)[0]), rel=1e-6
    )
    with pytest.raises(ValueError, match="all_pairs"):
        losses.make_velocity_loss(field, LINEAR, sampler, estimator="all_pairs", pair=pair)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"coupling": "ot_greedy"}, "coupling must be one of"),
        ({"coupling": "ot_sinkhorn", "sinkhorn_epsilon": 0.0}, "positive number; got 0.0"),
        ({"coupling": "ot_sinkhorn", "sinkhorn_epsilon": -1.0}, "positive number; got -1.0"),
        ({"coupling": "ot_exact", "coupling_scope": "host"}, "coupling_scope must be one of"),
        ({"coupling": "ot_exact", "exact_solver": "lapjv"}, "exact_solver must be one of"),
    ],
)
def test_bad_coupling_settings_are_named(overrides, message):
    config = toy2d_config.get_config("checkerboard,smoke")
    config.loss.update(overrides)
    with pytest.raises(ValueError, match=message):
        setup.build_pairing(config, densities.standard_gaussian((2,)))


def test_batch_too_small_and_unsampleable_base_are_refused():
    config = toy2d_config.get_config("checkerboard,smoke")
    config.loss.coupling = "ot_exact"
    config.training.batch_size = 1
    with pytest.raises(ValueError, match="at least 2 per batch"):
        setup.build_pairing(config, densities.standard_gaussian((2,)))
    mesh = sharding.make_mesh()  # 8 devices: 2 pairs each is allowed, 1 is not
    config.training.batch_size = 16
    assert setup.build_pairing(config, densities.standard_gaussian((2,)), mesh) is not None
    config.training.batch_size = 8
    with pytest.raises(ValueError, match="got 1"):
        setup.build_pairing(config, densities.standard_gaussian((2,)), mesh)
    config.training.batch_size = 16
    density_only = densities.Density("energy", (2,), None, lambda x: -jnp.sum(x**2, -1))
    with pytest.raises(ValueError, match="cannot be sampled"):
        setup.build_pairing(config, density_only)


def test_per_device_pairing_couples_each_shard_alone():
    mesh = sharding.make_mesh()
    x0, x1 = _clouds(8 * 16, seed=23)
    apply = jax.jit(couplings.per_device(EXACT, mesh, sharding.DATA_AXIS))
    paired = np.asarray(apply(jax.random.key(0), x0, x1))
    for shard in range(8):
        rows = slice(16 * shard, 16 * (shard + 1))
        expected = couplings.couple(EXACT, None, x0[rows], x1[rows])
        np.testing.assert_array_equal(paired[rows], np.asarray(expected))


@pytest.mark.parametrize("with_labels", [False, True])
def test_per_device_sinkhorn_draws_partners_within_each_shard(with_labels):
    """ott-jax's Sinkhorn inside shard_map (and with labels): every shard's partners are
    that shard's own base points, and labelled pairs stay within their class."""
    mesh = sharding.make_mesh()
    x0, x1 = _clouds(8 * 16, seed=31)
    labels = jnp.tile(jnp.arange(2), 8 * 8) if with_labels else None
    apply = jax.jit(couplings.per_device(SINKHORN, mesh, sharding.DATA_AXIS))
    paired = np.asarray(apply(jax.random.key(2), x0, x1, labels))
    base = np.asarray(x0)
    for shard in range(8):
        rows = np.arange(16 * shard, 16 * (shard + 1))
        source = [np.flatnonzero((base == row).all(1)) for row in paired[rows]]
        assert all(len(s) == 1 and s[0] in rows for s in source)
        if with_labels:
            assert all(labels[s[0]] == labels[r] for s, r in zip(source, rows, strict=True))


def test_blocks_are_paired_alone():
    x0, x1 = _clouds(64, seed=29)
    blocked = couplings.Coupling("ot_exact", block_size=16)
    sigma = np.asarray(jax.jit(lambda a, b: couplings.partners(blocked, None, a, b))(x0, x1))
    for block in range(4):
        rows = slice(16 * block, 16 * (block + 1))
        expected = couplings.partners(EXACT, None, x0[rows], x1[rows])
        np.testing.assert_array_equal(sigma[rows], 16 * block + np.asarray(expected))
    with pytest.raises(ValueError, match="block_size=24 must divide"):
        couplings.partners(couplings.Coupling("ot_exact", block_size=24), None, x0, x1)
    with pytest.raises(ValueError, match="block_size must be 0"):
        couplings.Coupling("ot_sinkhorn", block_size=1)


def test_sde_sampler_refuses_a_coupled_model():
    config = toy2d_config.get_config("checkerboard,smoke")
    config.loss.coupling = "ot_sinkhorn"
    with pytest.raises(ValueError, match="Sample with the ODE for coupled models"):
        setup.build_sde_sampler(config, lambda t, x, params: x)
