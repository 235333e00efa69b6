"""Distribution augmentation: the transforms, their draw, the U-Net's condition on them,
the loss's binding and the config's checks (interflow_jax/data/augment.py)."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import images as images_config
from interflow_jax import densities, losses
from interflow_jax.data import augment
from interflow_jax.interpolants import LINEAR
from interflow_jax.models import UNet, as_conditional_field
from interflow_jax.training import setup


def _images(batch=1, height=4, width=4):
    """Images whose pixels are all different, so a transform is read off its output."""
    pixels = jnp.arange(batch * height * width * 2, dtype=jnp.float32)
    return pixels.reshape(batch, height, width, 2)


@pytest.mark.parametrize("kind", ["none", "hflip", "dihedral"])
def test_transforms_permute_pixels_and_index_0_is_the_identity(kind):
    count = augment.num_transforms(kind)
    image = _images()
    outputs = [augment.transform(kind, image, jnp.array([k])) for k in range(count)]
    np.testing.assert_array_equal(outputs[0], image)
    for out in outputs:  # the same pixel values (channels travel together), moved
        assert out.shape == image.shape
        np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(image.ravel()))
        np.testing.assert_array_equal(out[..., 1] - out[..., 0], 1.0)
    for a, b in itertools.combinations(outputs, 2):  # all different
        assert not np.array_equal(a, b)


def test_dihedral_transforms_are_the_square_symmetries_and_form_a_group():
    image = np.asarray(_images()[0, ..., 0])
    expected = [np.rot90(image, k) for k in range(4)] + [np.rot90(image, k).T for k in range(4)]
    copies = jnp.broadcast_to(_images(), (8, 4, 4, 2))
    images = augment.transform("dihedral", copies, jnp.arange(8))
    for k in range(8):
        np.testing.assert_array_equal(images[k, ..., 0], expected[k])
    # closed under composition: every T_b T_a is some T_c
    for b in range(8):
        composed = augment.transform("dihedral", images, jnp.full((8,), b))
        for c in composed:
            assert any(np.array_equal(c, e) for e in images)


def test_hflip_mirrors_left_right():
    image = _images(1, 2, 6)
    out = augment.transform("hflip", image, jnp.array([1]))
    np.testing.assert_array_equal(out[0], image[0, :, ::-1])


def test_augment_draws_the_identity_at_p_and_the_others_uniformly():
    n, p = 20_000, 0.5
    images = jnp.zeros((n, 2, 2, 1))
    _, indices = jax.jit(augment.augment, static_argnums=(2, 3))(
        jax.random.key(0), images, "dihedral", p
    )
    counts = np.bincount(np.asarray(indices), minlength=8)
    assert abs(counts[0] / n - p) < 5 * np.sqrt(p * (1 - p) / n)
    other = (1 - p) / 7
    assert np.all(np.abs(counts[1:] / n - other) < 5 * np.sqrt(other * (1 - other) / n))


def test_augment_applies_the_drawn_transform_to_each_example():
    images = _images(64)
    out, indices = augment.augment(jax.random.key(3), images, "dihedral", 0.25)
    np.testing.assert_array_equal(out, augment.transform("dihedral", images, indices))
    assert len(set(np.asarray(indices).tolist())) > 4


def test_bad_kinds_shapes_and_probabilities_raise():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment.num_transforms("rotate")
    with pytest.raises(ValueError, match="square images"):
        augment.transform("dihedral", _images(1, 4, 6), jnp.array([1]))
    with pytest.raises(ValueError, match=r"\(batch, H, W, C\)"):
        augment.transform("hflip", jnp.zeros((4, 4)), jnp.array([1]))
    for p in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="p_identity must lie in"):
            augment.check_p_identity(p)


SMALL = dict(channels=8, channel_multipliers=(1,), attention_resolutions=(), num_groups=4)


def test_unet_augmentation_table_starts_at_zero_and_none_is_the_identity():
    module = UNet(**SMALL, num_augmentations=8)
    t, x = jnp.full((2,), 0.3), jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    params = jax.jit(module.init)(jax.random.key(1, impl="rbg"), t, x)
    table = params["params"]["augmentation_embedding"]["embedding"]
    assert table.shape == (8, 32)
    np.testing.assert_array_equal(table, 0.0)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * rng.normal(size=p.shape), params)
    field = as_conditional_field(module)

    @jax.jit
    def outputs(weights):
        given = [{"velocity": weights, "augmentation": jnp.array([a, a])} for a in (0, 3)]
        return field(t, x, {"velocity": weights}), *(field(t, x, g) for g in given)

    none, identity, three = outputs(params)
    np.testing.assert_array_equal(none, identity)
    assert float(jnp.max(jnp.abs(three - identity))) > 1e-3
    with pytest.raises(ValueError, match="num_augmentations = 0"):
        UNet(**SMALL).init(jax.random.key(0), t, x, augmentation=jnp.array([1, 1]))


@pytest.mark.parametrize("estimator", ["plain", "all_pairs"])
def test_loss_binds_each_targets_transform_index(estimator):
    """Each network input carries the index of its x1's transform (none dropped)."""

    def field(t, x, params):  # at t = 1, x_t = x1; v = x_t - index vanishes when aligned
        del t
        return x - params["augmentation"][:, None].astype(x.dtype)

    loss_fn = losses.make_velocity_loss(
        field,
        LINEAR,
        lambda key, n: jnp.ones((n,)),
        base=densities.standard_gaussian((1,)),
        estimator=estimator,
        num_times=3,
        num_base_samples=4,
    )
    indices = jnp.array([4, 0, 2, 1, 3], dtype=jnp.int32)
    batch = {"x1": indices[:, None].astype(jnp.float32), "augmentation": indices}
    assert float(loss_fn({}, batch, jax.random.key(0))[1]["velocity_sq"]) == 0.0
    shuffled = dict(batch, augmentation=indices[::-1])
    assert float(loss_fn({}, shuffled, jax.random.key(0))[1]["velocity_sq"]) > 0.5


def test_config_builds_the_conditioned_unet_and_checks_its_settings():
    config = images_config.get_config("mnist,smoke")
    assert setup.build_module(config.model).num_augmentations == 0
    assert setup.augmentation(config.model) == ("none", 0.5)
    config = images_config.get_config("digits,smoke")  # the digits' default
    assert setup.build_module(config.model).num_augmentations == 8
    assert setup.augmentation(config.model) == ("dihedral", 0.5)
    config.model.augmentation = "hflip"
    assert setup.build_module(config.model).num_augmentations == 2
    config.model.augmentation = "rotate"
    with pytest.raises(ValueError, match="augmentation must be one of"):
        setup.build_module(config.model)
    mlp = ml_collections.ConfigDict({"kind": "mlp", "hidden_sizes": (8,), "augmentation": "hflip"})
    with pytest.raises(ValueError, match="needs model.kind='unet'"):
        setup.build_module(mlp)
