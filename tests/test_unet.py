"""Tests for the DDPM-style U-Net velocity field (tiny sizes: 8x8x1 images, 16 channels)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import images as images_config
from interflow_jax.models import DDPM_CIFAR10, UNet, as_field, count_params
from interflow_jax.training import setup

SHAPE = (8, 8, 1)
BATCH = 3
SMALL = dict(channels=16, channel_multipliers=(1, 2), attention_resolutions=(4,), num_groups=4)


def _inputs(key=0):
    kt, kx = jax.random.split(jax.random.key(key))
    return jax.random.uniform(kt, (BATCH,)), jax.random.normal(kx, (BATCH, *SHAPE))


def _perturbed(params, scale=0.1):
    """Every parameter (zero-initialised ones included) plus scaled Gaussian noise."""
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(lambda p: p + scale * rng.normal(size=p.shape), params)


@pytest.fixture(scope="module")
def unet():
    """One model, one initialisation and one compiled apply shared by the file.

    The 'rbg' PRNG only makes the initialiser compile faster.
    """
    model = UNet(**SMALL)
    t, x = _inputs()
    params = jax.jit(model.init)(jax.random.key(1, impl="rbg"), t, x)
    return model, params, jax.jit(model.apply)


def test_output_has_input_shape_and_is_zero_at_init(unet):
    _, params, apply = unet
    t, x = _inputs()
    out = apply(params, t, x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, 0.0)


def test_samples_do_not_interact(unet):
    _, params, apply = unet
    params = _perturbed(params)
    t, x = _inputs()
    t2, x2 = t.at[1].set(0.9), x.at[1].set(jax.random.normal(jax.random.key(5), SHAPE))
    out, out2 = apply(params, t, x), apply(params, t2, x2)
    assert not np.allclose(out[1], out2[1])
    np.testing.assert_allclose(out[0], out2[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[2], out2[2], rtol=1e-6, atol=1e-6)


def test_dropout_only_when_training(unet):
    _, params, apply_without_dropout = unet
    params = _perturbed(params)
    t, x = _inputs()
    apply = jax.jit(UNet(dropout=0.5, **SMALL).apply, static_argnames="train")
    rngs = {"dropout": jax.random.key(3)}
    evaluation = apply(params, t, x, train=False, rngs=rngs)
    np.testing.assert_allclose(evaluation, apply_without_dropout(params, t, x), rtol=1e-6)
    train_a = apply(params, t, x, train=True, rngs=rngs)
    train_b = apply(params, t, x, train=True, rngs={"dropout": jax.random.key(4)})
    assert not np.allclose(train_a, evaluation)
    assert not np.allclose(train_a, train_b)


@pytest.mark.parametrize(
    "x_shape, t_shape, match",
    [
        ((BATCH, 8, 8), (BATCH,), "batch, H, W, C"),
        ((BATCH, 7, 8, 1), (BATCH,), "divisible by 2"),
        ((BATCH, 8, 8, 1), (BATCH, 1), "t must have shape"),
    ],
)
def test_bad_input_shapes_raise(x_shape, t_shape, match):
    model = UNet(**SMALL)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(t_shape), jnp.zeros(x_shape))


def test_three_levels_need_divisibility_by_four():
    model = UNet(**{**SMALL, "channel_multipliers": (1, 2, 2)})
    with pytest.raises(ValueError, match="divisible by 4; got H, W = 6, 6"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(2), jnp.zeros((2, 6, 6, 1)))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(num_groups=3), r"num_groups=3 .* widths are \[16, 16, 32\]"),
        (dict(num_groups=0), "num_groups=0"),
        (
            dict(attention_resolutions=(16,)),
            r"attention_resolutions \[16\] .* heights are \[8, 4\]",
        ),
        (dict(num_heads=3), "num_heads=3"),
    ],
)
def test_bad_config_raises(overrides, match):
    model = UNet(**{**SMALL, **overrides})
    t, x = _inputs()
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), t, x)


def test_count_params(unet):
    _, params, _ = unet
    expected = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params))
    assert count_params(params) == expected > 0


def test_ddpm_cifar10_preset_has_the_papers_parameter_count():
    """DDPM (Ho et al. 2020) reports 35.7M parameters for its CIFAR-10 model."""
    model = UNet(**DDPM_CIFAR10)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(1), jnp.zeros((1, 32, 32, 3)))
    assert count_params(shapes) == 35_746_307


def test_as_field_and_its_jvp_are_finite(unet):
    model, params, apply = unet
    params = _perturbed(params)
    field = as_field(model)
    t, x = _inputs()
    tangent = jax.random.normal(jax.random.key(6), x.shape)
    out, jvp = jax.jit(lambda y, v: jax.jvp(lambda z: field(t, z, params), (y,), (v,)))(x, tangent)
    np.testing.assert_allclose(out, apply(params, t, x), rtol=1e-5, atol=1e-5)
    assert jvp.shape == x.shape
    assert np.all(np.isfinite(jvp)) and np.any(jvp != 0)


@pytest.mark.slow
def test_bfloat16_compute_returns_input_dtype(unet):
    _, params, apply = unet
    params = _perturbed(params)
    t, x = _inputs()
    out16 = jax.jit(UNet(dtype=jnp.bfloat16, **SMALL).apply)(params, t, x)
    out32 = apply(params, t, x)
    assert out16.dtype == x.dtype == jnp.float32
    scale = np.max(np.abs(out32))
    np.testing.assert_allclose(out16, out32, atol=0.1 * scale)


def test_time_embedding_scale_rescales_time_and_reaches_the_module_from_the_config(unet):
    """The embedding reads only scale * t: with the same weights, the U-Net at scale s
    and time t is the default one (1e3) at time t s / 1e3."""
    config = images_config.get_config("digits")
    config.model.unet.time_embedding_scale = 20.0  # not the digits default (50)
    assert setup.build_module(config.model).time_embedding_scale == 20.0
    _, params, apply = unet
    params = _perturbed(params)
    t, x = _inputs()
    smooth = UNet(**SMALL, time_embedding_scale=50.0)
    np.testing.assert_allclose(
        smooth.apply(params, t, x), apply(params, t * 50.0 / 1e3, x), rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(smooth.apply(params, t, x), apply(params, t, x), atol=1e-3)
