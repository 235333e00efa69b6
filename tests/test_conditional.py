"""Class-conditional fields, label dropout and classifier-free guidance (PAPER section 9)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from interflow_jax import conditional, densities, diffusion, flows, gaussian, losses
from interflow_jax.interpolants import LINEAR, TRIGONOMETRIC
from interflow_jax.models import UNet, VelocityMLP, as_conditional_field, as_field, init_params
from interflow_jax.time_sampling import make_time_sampler

NUM_CLASSES = 3
MEANS = np.array([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0], [0.3, 0.2]])  # row 3: the null label
COVS = np.array(
    [
        [[0.5, 0.2], [0.2, 0.3]],
        [[0.2, -0.1], [-0.1, 0.6]],
        [[0.4, 0.0], [0.0, 0.1]],
        [[2.0, 0.3], [0.3, 1.5]],
    ]
)
TIGHT = flows.ODEOptions(rtol=1e-9, atol=1e-9)


def _gaussian_params(labels=None):
    params = {"means": jnp.asarray(MEANS), "covs": jnp.asarray(COVS)}
    return params if labels is None else conditional.with_labels(params, labels)


@pytest.fixture(scope="module")
def tight_flow():
    """The exact class-conditional flow in float64, compiled once for the file."""
    with jax.enable_x64(True):
        yield _gaussian_flow()[1]


def _gaussian_flow(options=TIGHT, **kwargs):
    field = gaussian.make_class_gaussian_velocity(TRIGONOMETRIC)
    return field, flows.make_flow(field, densities.standard_gaussian((2,)), options, **kwargs)


def _perturbed(params, scale=0.3):
    """Every parameter (zero-initialised output layers included) plus Gaussian noise."""
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(lambda p: p + scale * rng.normal(size=p.shape), params)


def _conditional_mlp(num_classes=NUM_CLASSES):
    module = VelocityMLP(hidden_sizes=(16, 16), num_classes=num_classes)
    weights = _perturbed(init_params(module, jax.random.key(0), (2,)))
    return as_conditional_field(module), {"velocity": weights}


def _inputs(n=6, key=1):
    kt, kx = jax.random.split(jax.random.key(key))
    return jax.random.uniform(kt, (n,)), jax.random.normal(kx, (n, 2))


def _true_log_prob(x, labels):
    x, labels = np.asarray(x), np.asarray(labels)
    return np.array(
        [
            gaussian.gaussian_log_prob(x[i : i + 1], MEANS[y], COVS[y])[0]
            for i, y in enumerate(labels)
        ]
    )


# ----------------------------------------------------------------------------- guidance


def test_guided_field_at_w0_and_w1_is_the_unconditional_and_conditional_field(x64):
    field, params = _conditional_mlp()
    t, x = _inputs()
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    cond = field(t, x, conditional.with_labels(params, labels))
    null = field(t, x, params)
    np.testing.assert_array_equal(null, field(t, x, conditional.with_labels(params, 3)))
    np.testing.assert_array_equal(
        field(t, x, conditional.with_labels(params, 1)),
        field(t, x, conditional.with_labels(params, jnp.ones(6, jnp.int32))),
    )
    assert float(jnp.max(jnp.abs(cond - null))) > 1e-2  # the label matters
    from_params = conditional.make_guided_field(field)  # w read from params['guidance']
    for w, expected in ((1.0, cond), (0.0, null), (2.5, null + 2.5 * (cond - null))):
        guided = conditional.make_guided_field(field, w)
        got = guided(t, x, conditional.with_labels(params, labels))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        bound = conditional.with_guidance(conditional.with_labels(params, labels), w)
        np.testing.assert_allclose(from_params(t, x, bound), expected, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_guided_ode_at_w1_samples_the_class_gaussian(x64):
    field, _ = _gaussian_flow()
    guided = flows.make_flow(
        conditional.make_guided_field(field, 1.0),
        densities.standard_gaussian((2,)),
        flows.ODEOptions(rtol=1e-6, atol=1e-6),
    )
    n, y = 4000, 1
    x = np.asarray(guided.sample(_gaussian_params(y), jax.random.key(3), n).x)
    mean_err = np.sqrt(np.diag(COVS[y]) / n)
    assert np.all(np.abs(x.mean(0) - MEANS[y]) < 4 * mean_err)
    np.testing.assert_allclose(np.cov(x.T), COVS[y], atol=0.05)


@pytest.mark.slow
def test_guided_sde_follows_the_class_marginal(x64):
    field, _ = _gaussian_flow()
    sampler = diffusion.make_sde_sampler(
        conditional.make_guided_field(field, 1.0),
        TRIGONOMETRIC,
        diffusion.constant_eps(0.5),
        num_steps=50,
        t_end=0.9,
    )
    n, y = 4000, 2
    x0 = jax.random.normal(jax.random.key(4), (n, 2))
    x = np.asarray(sampler(_gaussian_params(jnp.full((n,), y)), x0, jax.random.key(5)))
    mean_t, cov_t = gaussian.gaussian_marginal(TRIGONOMETRIC, 0.9, MEANS[y], COVS[y])
    mean_err = np.sqrt(np.diag(np.asarray(cov_t)) / n)
    assert np.all(np.abs(x.mean(0) - np.asarray(mean_t)) < 5 * mean_err + 0.01)


# ----------------------------------------------------------------------------- likelihoods


def test_conditional_log_prob_is_the_class_gaussian_density(tight_flow, x64):
    flow = tight_flow
    x = jax.random.normal(jax.random.key(6), (11, 2)) * 1.5
    labels = jnp.array([0, 1, 2, 2, 1, 0, 0, 1, 2, 0, 1])
    log_prob, stderr, nfes = conditional.log_prob_in_chunks(
        flow, _gaussian_params(), x, labels, chunk_size=4
    )
    np.testing.assert_allclose(log_prob, _true_log_prob(x, labels), atol=1e-6)
    assert float(jnp.max(stderr)) == 0.0 and len(nfes) == 3
    null, _, _ = conditional.log_prob_in_chunks(flow, _gaussian_params(), x, None, chunk_size=4)
    np.testing.assert_allclose(null, _true_log_prob(x, [3] * 11), atol=1e-6)


@pytest.mark.slow
def test_hutchinson_conditional_log_prob_within_standard_errors(x64):
    _, flow = _gaussian_flow(
        flows.ODEOptions(rtol=1e-7, atol=1e-7),
        divergence_kind="hutchinson",
        num_probes=16,
        probe_kind="gaussian",
    )
    x = jax.random.normal(jax.random.key(7), (40, 2))
    labels = jnp.arange(40) % NUM_CLASSES
    log_prob, stderr, _ = conditional.log_prob_in_chunks(
        flow, _gaussian_params(), x, labels, chunk_size=40, key=jax.random.key(8)
    )
    z = (np.asarray(log_prob) - _true_log_prob(x, labels)) / np.asarray(stderr)
    assert np.all(np.asarray(stderr) > 0)
    assert np.mean(np.abs(z) < 4) > 0.95


def test_mixture_log_prob_sums_the_class_densities(tight_flow, x64):
    flow = tight_flow
    x = jax.random.normal(jax.random.key(9), (5, 2))
    class_log_probs = np.log([0.5, 0.3, 0.2])
    mixture, per_class = conditional.log_prob_mixture(
        flow, _gaussian_params(), x, NUM_CLASSES, chunk_size=4, class_log_probs=class_log_probs
    )
    truth = np.stack([_true_log_prob(x, [y] * 5) for y in range(NUM_CLASSES)])
    np.testing.assert_allclose(per_class, truth, atol=1e-6)
    expected = np.log(np.sum(np.exp(truth) * np.exp(class_log_probs)[:, None], axis=0))
    np.testing.assert_allclose(mixture, expected, atol=1e-6)
    with pytest.raises(ValueError, match="class_log_probs"):
        conditional.log_prob_mixture(flow, _gaussian_params(), x, 2, 4, class_log_probs)


# ----------------------------------------------------------------------------- label dropout


def test_drop_labels_rate_and_untouched_labels():
    n, p = 200_000, 0.1
    labels = jnp.arange(n, dtype=jnp.int32) % NUM_CLASSES
    dropped = np.asarray(conditional.drop_labels(jax.random.key(0), labels, p, NUM_CLASSES))
    is_null = dropped == NUM_CLASSES
    assert abs(is_null.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_equal(dropped[~is_null], np.asarray(labels)[~is_null])
    other = np.asarray(conditional.drop_labels(jax.random.key(1), labels, p, NUM_CLASSES))
    assert np.any((other == NUM_CLASSES) != is_null)
    for p_edge, expected in ((0.0, np.asarray(labels)), (1.0, np.full(n, NUM_CLASSES))):
        got = conditional.drop_labels(jax.random.key(2), labels, p_edge, NUM_CLASSES)
        np.testing.assert_array_equal(got, expected)


def _null_indicator_field(t, x, params):
    """v = 1 in every coordinate where the label is null, 0 elsewhere."""
    del t
    null = params["labels"] == NUM_CLASSES
    return jnp.broadcast_to(null[:, None].astype(x.dtype), x.shape)


@pytest.mark.parametrize("estimator", ["plain", "all_pairs"])
def test_loss_drops_labels_at_the_requested_rate(estimator):
    p, n = 0.25, 4096
    loss_fn = losses.make_velocity_loss(
        _null_indicator_field,
        LINEAR,
        make_time_sampler(),
        base=densities.standard_gaussian((2,)),
        estimator=estimator,
        num_times=2,
        num_base_samples=3,
        num_classes=NUM_CLASSES,
        p_uncond=p,
    )
    batch = {"x1": jnp.zeros((n, 2)), "y": jnp.arange(n, dtype=jnp.int32) % NUM_CLASSES}
    _, metrics = jax.jit(loss_fn)({}, batch, jax.random.key(0))
    fraction = float(metrics["velocity_sq"]) / 2  # E|v|^2 = 2 x (fraction of null labels)
    assert abs(fraction - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_all_pairs_labels_follow_their_targets():
    """Each network input of the all-pairs estimator carries the label of its x1."""

    def field(t, x, params):  # at t = 1, x_t = x1; v = x_t - label vanishes when aligned
        del t
        return x - params["labels"][:, None].astype(x.dtype)

    loss_fn = losses.make_velocity_loss(
        field,
        LINEAR,
        lambda key, n: jnp.ones((n,)),
        base=densities.standard_gaussian((1,)),
        estimator="all_pairs",
        num_times=3,
        num_base_samples=4,
        num_classes=5,
        p_uncond=0.0,
    )
    labels = jnp.array([4, 0, 2, 1, 3], dtype=jnp.int32)
    batch = {"x1": labels[:, None].astype(jnp.float32), "y": labels}
    _, metrics = loss_fn({}, batch, jax.random.key(0))
    assert float(metrics["velocity_sq"]) == 0.0
    shuffled = dict(batch, y=labels[::-1])
    assert float(loss_fn({}, shuffled, jax.random.key(0))[1]["velocity_sq"]) > 0.5


@pytest.mark.slow
def test_loss_minimiser_recovers_the_class_means():
    """Minimising G over the class means of the exact Gaussian field finds the true ones."""
    field = gaussian.make_class_gaussian_velocity(TRIGONOMETRIC)
    covs = jnp.asarray(COVS, jnp.float32)
    means = jnp.asarray(MEANS, jnp.float32)
    loss_fn = losses.make_velocity_loss(
        lambda t, x, p: field(t, x, dict(p, covs=covs)),
        TRIGONOMETRIC,
        make_time_sampler(),
        base=densities.standard_gaussian((2,)),
        num_classes=NUM_CLASSES,
        p_uncond=0.2,
    )
    optimizer = optax.adam(0.05)

    def step(carry, key):
        params, opt_state = carry
        k_y, k_z, k_loss = jax.random.split(key, 3)
        y = jax.random.randint(k_y, (2048,), 0, NUM_CLASSES)
        chol = jnp.linalg.cholesky(covs[y])
        x1 = means[y] + jnp.einsum("nij,nj->ni", chol, jax.random.normal(k_z, (2048, 2)))
        grads = jax.grad(lambda p: loss_fn(p, {"x1": x1, "y": y}, k_loss)[0])(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    params = {"means": jnp.zeros_like(means)}
    keys = jax.random.split(jax.random.key(0), 400)
    (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, keys))(
        (params, optimizer.init(params))
    )
    learned = np.asarray(params["means"][:NUM_CLASSES])
    np.testing.assert_allclose(learned, MEANS[:NUM_CLASSES], atol=0.1)


# ----------------------------------------------------------------------------- models


def _shapes(tree):
    return jax.tree_util.tree_map(jnp.shape, tree)


def test_mlp_parameters_unchanged_without_classes_and_table_with_them():
    plain = init_params(VelocityMLP(hidden_sizes=(16, 16)), jax.random.key(0), (2,))
    cond = init_params(
        VelocityMLP(hidden_sizes=(16, 16), num_classes=4, label_embedding_dim=8),
        jax.random.key(0),
        (2,),
    )
    plain_shapes, cond_shapes = _shapes(plain["params"]), _shapes(cond["params"])
    assert set(plain_shapes) == {"Dense_0", "Dense_1", "Dense_2"}
    assert cond_shapes.pop("labels") == {"Embed_0": {"embedding": (5, 8)}}
    first = cond_shapes["Dense_0"]["kernel"]
    assert first == (plain_shapes["Dense_0"]["kernel"][0] + 8, 16)
    cond_shapes["Dense_0"]["kernel"] = plain_shapes["Dense_0"]["kernel"]
    assert cond_shapes == plain_shapes


def test_unet_parameters_unchanged_without_classes_and_label_table_with_them():
    small = dict(channels=8, channel_multipliers=(1,), attention_resolutions=(), num_groups=4)
    t, x = jnp.zeros((1,)), jnp.zeros((1, 4, 4, 1))
    plain = jax.eval_shape(UNet(**small).init, jax.random.key(0), t, x)["params"]
    cond = jax.eval_shape(UNet(**small, num_classes=10).init, jax.random.key(0), t, x)["params"]
    cond = dict(cond)
    table = cond.pop("label_embedding")
    assert table["Embed_0"]["embedding"].shape == (11, 32)  # K + 1 rows, 4 x channels wide
    assert _shapes(cond) == _shapes(plain)


@pytest.mark.slow
def test_unet_label_changes_the_output_and_none_is_null():
    module = UNet(
        channels=8, channel_multipliers=(1,), attention_resolutions=(), num_groups=4, num_classes=3
    )
    t, x = jnp.full((2,), 0.3), jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    weights = _perturbed(jax.jit(module.init)(jax.random.key(1, impl="rbg"), t, x), 0.1)
    field = as_conditional_field(module)

    @jax.jit  # one compilation for the three fields
    def outputs(params):
        labelled = [conditional.with_labels(params, jnp.array(y)) for y in ([3, 3], [1, 1])]
        return field(t, x, params), *(field(t, x, p) for p in labelled)

    null, null_label, one = outputs({"velocity": weights})
    np.testing.assert_allclose(null, null_label, atol=1e-6)
    assert float(jnp.max(jnp.abs(one - null))) > 1e-3


def test_bad_labels_and_settings_raise_clear_errors():
    field, params = _conditional_mlp()
    t, x = _inputs(n=2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        field(t, x, conditional.with_labels(params, jnp.array([0, 4])))
    with pytest.raises(ValueError, match="shape"):
        field(t, x, conditional.with_labels(params, jnp.array([0, 1, 2])))
    with pytest.raises(ValueError, match="integers"):
        conditional.with_labels(params, jnp.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="must be a dict"):
        conditional.with_labels(jnp.zeros(3), 1)
    plain = VelocityMLP(hidden_sizes=(8,))
    weights = init_params(plain, jax.random.key(0), (2,))
    with pytest.raises(ValueError, match="num_classes = 0"):
        plain.apply(weights, t, x, y=jnp.array([0, 1]))
    with pytest.raises(ValueError, match="num_classes must be an integer"):
        init_params(VelocityMLP(hidden_sizes=(8,), num_classes=-1), jax.random.key(0), (2,))
    with pytest.raises(ValueError, match="p_uncond"):
        losses.make_velocity_loss(as_field(plain), LINEAR, make_time_sampler(), p_uncond=1.5)
    loss_fn = losses.make_velocity_loss(
        as_field(plain), LINEAR, make_time_sampler(), base=densities.standard_gaussian((2,))
    )
    with pytest.raises(ValueError, match="num_classes = 0"):
        loss_fn(weights, {"x1": x, "y": jnp.array([0, 1])}, jax.random.key(0))
