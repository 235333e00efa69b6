import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import toy2d as toy2d_config
from interflow_jax import divergence
from interflow_jax.models import VelocityMLP, as_conditional_field, as_field, init_params
from interflow_jax.models import mlp as mlp_module
from interflow_jax.training import setup


def _linear_field(matrix):
    return lambda x: x.reshape(x.shape[0], -1) @ matrix.T


def test_exact_divergence_of_linear_and_nonlinear_fields(x64):
    matrix = jax.random.normal(jax.random.key(0), (5, 5))
    x = jax.random.normal(jax.random.key(1), (7, 5))
    _, div = divergence.exact_divergence(_linear_field(matrix), x)
    np.testing.assert_allclose(div, jnp.trace(matrix) * jnp.ones(7), rtol=1e-12)
    field = lambda y: jnp.tanh(y @ matrix) * y  # noqa: E731
    _, div = divergence.exact_divergence(field, x)
    brute = jnp.array([jnp.trace(jax.jacfwd(lambda v: field(v[None])[0])(xi)) for xi in x])
    np.testing.assert_allclose(div, brute, rtol=1e-10)


def test_exact_divergence_on_image_shaped_inputs(x64):
    x = jax.random.normal(jax.random.key(2), (3, 2, 2, 2))
    _, div = divergence.exact_divergence(lambda y: jnp.sin(y) * 2.0, x)
    np.testing.assert_allclose(div, jnp.sum(2 * jnp.cos(x), axis=(1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_on_linear_fields(kind, x64):
    matrix = jax.random.normal(jax.random.key(3), (6, 6))
    x = jax.random.normal(jax.random.key(4), (4, 6))
    probes = divergence.sample_probes(jax.random.key(5), 20_000, x.shape, x.dtype, kind)
    _, per_probe = divergence.hutchinson_divergence(_linear_field(matrix), x, probes)
    mean, stderr = divergence.mean_and_standard_error(per_probe)
    assert per_probe.shape == (20_000, 4)
    z = (np.asarray(mean) - float(jnp.trace(matrix))) / np.asarray(stderr)
    assert np.all(np.abs(z) < 4.0), z
    # The estimator is not trivially exact: single probes scatter.
    assert float(jnp.std(per_probe)) > 0.5


def test_rademacher_probes_are_exact_for_diagonal_fields(x64):
    x = jax.random.normal(jax.random.key(6), (3, 4))
    probes = divergence.sample_probes(jax.random.key(7), 3, x.shape, x.dtype, "rademacher")
    _, per_probe = divergence.hutchinson_divergence(lambda y: y**3, x, probes)
    np.testing.assert_allclose(per_probe, jnp.broadcast_to(jnp.sum(3 * x**2, 1), (3, 3)))


def test_bad_probe_kind():
    with pytest.raises(ValueError, match="'uniform'"):
        divergence.sample_probes(jax.random.key(0), 1, (1, 2), jnp.float32, "uniform")


def test_hutchinson_forward_and_reverse_modes_agree(x64):
    matrix = jax.random.normal(jax.random.key(8), (5, 5))
    field = lambda y: jnp.tanh(y @ matrix) * y  # noqa: E731
    x = jax.random.normal(jax.random.key(9), (6, 5))
    probes = divergence.sample_probes(jax.random.key(10), 3, x.shape, x.dtype, "gaussian")
    value_f, forward = divergence.hutchinson_divergence(field, x, probes, "forward")
    value_r, reverse = divergence.hutchinson_divergence(field, x, probes, "reverse")
    np.testing.assert_allclose(value_f, value_r, rtol=1e-14)
    np.testing.assert_allclose(forward, reverse, rtol=1e-12)
    # eps^T J eps against the Jacobian itself, per sample and probe
    jacobians = jnp.stack([jax.jacfwd(lambda v: field(v[None])[0])(xi) for xi in x])
    expected = jnp.einsum("kbi,bij,kbj->kb", probes, jacobians, probes)
    np.testing.assert_allclose(forward, expected, rtol=1e-10)


def test_bad_hutchinson_mode():
    x = jnp.ones((1, 2))
    with pytest.raises(ValueError, match="'sideways'"):
        divergence.hutchinson_divergence(lambda y: y, x, x[None], "sideways")


def _mlp_and_params(hidden_sizes, activation, dims, jittered, num_classes=0, conditioning="concat"):
    """conditioning: 'concat', 'film', or either with ',gated' (a gated first layer) or
    ',gated2' (both hidden layers gated), and ',skipM' (a linear skip of M terms)."""
    conditioning, *options = conditioning.split(",")
    gated = [o for o in options if o.startswith("gated")]
    gated_layers = int(gated[0].removeprefix("gated") or 1) if gated else 0
    skips = [int(o.removeprefix("skip")) for o in options if o.startswith("skip")]
    module = VelocityMLP(
        hidden_sizes=hidden_sizes,
        activation=activation,
        time_embedding_dim=8,
        param_dtype=jnp.float64,
        num_classes=num_classes,
        label_embedding_dim=4,
        time_conditioning=conditioning,
        gated_layers=gated_layers,
        linear_skip_terms=skips[0] if skips else 0,
    )
    return module, jittered(init_params(module, jax.random.key(6), dims), 0.3, seed=7)


@pytest.mark.parametrize(
    "hidden_sizes,activation,dims,conditioning",
    [
        ((16,), "silu", (5,), "concat"),
        ((12, 9), "silu", (6,), "concat"),
        ((8, 10), "tanh", (2, 3), "concat"),
        ((7, 11), "relu", (4,), "concat"),
        ((6,), "silu", (3,), "film"),
        ((12, 9), "gelu", (5,), "film"),
        ((7,), "silu", (4,), "concat,gated"),
        ((9, 8), "silu", (2, 3), "film,gated"),
        ((8, 6), "tanh", (5,), "concat,gated"),
        ((9, 8), "gelu", (2, 3), "film,gated2"),
        ((8, 6), "silu", (5,), "concat,gated2"),
        ((10,), "tanh", (3,), "film,gated"),
        ((9, 8), "gelu", (2, 3), "film,gated,skip3"),
        ((7,), "silu", (4,), "concat,skip1"),
    ],
)
def test_closed_form_mlp_divergence_equals_the_generic_exact_divergence(
    hidden_sizes, activation, dims, conditioning, jittered, x64
):
    module, params = _mlp_and_params(
        hidden_sizes, activation, dims, jittered, conditioning=conditioning
    )
    field = as_field(module)
    t = jax.random.uniform(jax.random.key(8), (5,), jnp.float64)
    x = jax.random.normal(jax.random.key(9), (5, *dims), jnp.float64)
    value, div = field.value_and_divergence(t, x, params)
    generic_value, generic_div = divergence.exact_divergence(lambda y: field(t, y, params), x)
    np.testing.assert_allclose(value, generic_value, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(div, generic_div, rtol=1e-11, atol=1e-11)
    assert np.std(np.asarray(div)) > 1e-3  # the divergences differ between samples


@pytest.mark.parametrize("conditioning", ["concat", "film,gated", "film,gated2", "film,skip2"])
def test_closed_form_divergence_with_labels_and_its_limits(conditioning, jittered, x64):
    module, params = _mlp_and_params(
        (9, 7), "gelu", (4,), jittered, num_classes=3, conditioning=conditioning
    )
    field = as_conditional_field(module)
    t = jnp.linspace(0.1, 0.9, 4)
    x = jax.random.normal(jax.random.key(10), (4, 4), jnp.float64)
    labelled = {"velocity": params, "labels": jnp.array([0, 2, 1, 3])}
    _, div = field.value_and_divergence(t, x, labelled)
    _, generic = divergence.exact_divergence(lambda y: field(t, y, labelled), x)
    np.testing.assert_allclose(div, generic, rtol=1e-11, atol=1e-11)
    deep = VelocityMLP(hidden_sizes=(4, 4, 4))
    assert not hasattr(as_field(deep), "value_and_divergence")
    with pytest.raises(ValueError, match=r"1 or 2 hidden layers; got hidden_sizes=\(4, 4, 4\)"):
        deep_params = init_params(deep, jax.random.key(0), (4,))
        deep.apply(deep_params, t, x.astype(jnp.float32), method="velocity_and_divergence")


@pytest.mark.parametrize(
    "options,added",
    [
        (dict(time_conditioning="film"), {"film_0", "film_1"}),
        (dict(gated_layers=1), {"gate_0"}),
        (dict(gated_layers=2), {"gate_0", "gate_1"}),
    ],
)
def test_film_and_gating_start_as_the_plain_twin(options, added, jittered):
    """FiLM gains and the layers' gates are zero-initialised: the network starts as
    the plain MLP with the shared weights, and moves once those weights move."""
    extended = VelocityMLP(hidden_sizes=(8, 8), **options)
    params = init_params(extended, jax.random.key(0), (3,))["params"]
    assert set(params) == {"Dense_0", "Dense_1", "Dense_2"} | added
    shared = jittered({k: v for k, v in params.items() if k not in added}, 0.3)
    t = jnp.linspace(0.0, 1.0, 4)
    x = jax.random.normal(jax.random.key(1), (4, 3))
    at_start = extended.apply({"params": {**params, **shared}}, t, x)
    np.testing.assert_array_equal(
        at_start, VelocityMLP(hidden_sizes=(8, 8)).apply({"params": shared}, t, x)
    )
    assert float(jnp.std(at_start)) > 1e-3
    moved = jittered({k: v for k, v in params.items() if k in added}, 0.3, seed=1)
    assert not np.allclose(extended.apply({"params": {**shared, **moved}}, t, x), at_start)


def test_time_conditioning_checks_its_name():
    with pytest.raises(ValueError, match=r"time_conditioning must be one of .* got 'gated'"):
        init_params(VelocityMLP(time_conditioning="gated"), jax.random.key(0), (3,))


def test_gated_layers_checks_its_range():
    with pytest.raises(ValueError, match=r"between 0 and the 2 hidden layers; got 3"):
        init_params(VelocityMLP(hidden_sizes=(4, 4), gated_layers=3), jax.random.key(0), (3,))


def test_time_embedding_scale_rescales_time_and_reaches_the_module_from_the_config(jittered):
    """The embedding reads only scale * t, so with the same weights the field at scale s
    and time t is the field at scale 1e3 and time t s / 1e3."""
    config = toy2d_config.get_config("checkerboard,smoke")
    config.model.update(hidden_sizes=(8, 8), time_conditioning="film", time_embedding_scale=50.0)
    slow = setup.build_module(config.model)
    assert slow.time_embedding_scale == 50.0
    params = jittered(init_params(slow, jax.random.key(0), (3,)), 0.3)
    t = jnp.linspace(0.0, 1.0, 5)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    fast = VelocityMLP(hidden_sizes=(8, 8), time_conditioning="film")
    np.testing.assert_allclose(
        slow.apply(params, t, x), fast.apply(params, t * 50.0 / 1e3, x), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(slow.apply(params, t, x), fast.apply(params, t, x))


def test_logit_time_features_keep_the_closed_form_trace_exact_and_finite_at_the_ends(jittered, x64):
    module = VelocityMLP(
        hidden_sizes=(9, 7),
        time_embedding_dim=8,
        param_dtype=jnp.float64,
        time_conditioning="film",
        logit_time_dim=6,
    )
    params = jittered(init_params(module, jax.random.key(6), (5,)), 0.3, seed=7)
    assert params["params"]["Dense_0"]["kernel"].shape == (5 + 8 + 6, 9)
    field = as_field(module)
    t = jnp.array([0.0, 1e-9, 0.3, 0.97, 1.0])
    x = jax.random.normal(jax.random.key(9), (5, 5), jnp.float64)
    value, div = field.value_and_divergence(t, x, params)
    _, generic = divergence.exact_divergence(lambda y: field(t, y, params), x)
    np.testing.assert_allclose(div, generic, rtol=1e-11, atol=1e-11)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(div))
    features = mlp_module.logit_time_embedding(t, 6)
    np.testing.assert_allclose(features[0], features[1])  # clipped below 1e-6
    u = np.log(0.3 / 0.7)  # the slowest sinusoid at t = 0.3: sin(3 u / 100^(2/3))
    np.testing.assert_allclose(features[2, 2], np.sin(3 * u * 100 ** (-2 / 3)), rtol=1e-12)
    with pytest.raises(ValueError, match="logit_time_dim must be an even number >= 0; got -2"):
        init_params(VelocityMLP(logit_time_dim=-2), jax.random.key(0), (3,))


def test_linear_skip_starts_as_the_plain_network_and_its_basis_sums_to_one():
    t = jnp.linspace(0.0, 1.0, 7)
    for m in (1, 2, 5):
        basis = mlp_module.bernstein_basis(t, m, 7)
        np.testing.assert_allclose(basis.sum(axis=1), 1.0, rtol=1e-6)
        assert basis.shape == (7, m) and float(basis.min()) >= 0.0
    np.testing.assert_allclose(mlp_module.bernstein_basis(t, 2, 7), jnp.stack([1 - t, t], axis=1))
    x = jax.random.normal(jax.random.key(3), (7, 4))
    plain, skipped = (VelocityMLP((8,), linear_skip_terms=m) for m in (0, 3))
    params = init_params(skipped, jax.random.key(0), (4,))
    assert params["params"]["linear_skip"].shape == (3, 4, 4)
    without = {"params": {k: v for k, v in params["params"].items() if k != "linear_skip"}}
    np.testing.assert_array_equal(skipped.apply(params, t, x), plain.apply(without, t, x))
    with pytest.raises(ValueError, match="linear_skip_terms must be >= 0; got -1"):
        init_params(VelocityMLP((8,), linear_skip_terms=-1), jax.random.key(0), (4,))
