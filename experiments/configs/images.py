"""Image flows (PAPER sections 4 and 8): DDPM-style U-Net velocity fields, uniform
dequantisation, bits/dim with an adaptive solver, sample grids.

Usage: --config=experiments/configs/images.py:NAME[,smoke][,dir=PATH] with NAME one of
  digits      scikit-learn's 8 x 8 digits, 17 grey levels; no download, trains on a CPU
  mnist       TFDS mnist (28 x 28 x 1)
  cifar10     TFDS cifar10 (32 x 32 x 3), the DDPM CIFAR-10 U-Net
  imagenet32  TFDS imagenet_resized/32x32
  flowers128  TFDS oxford_flowers102, centre-cropped and resized to 128 x 128
  folder      your own PNG/JPEG files in dir=PATH, one sub-folder per class (or none),
              centre-cropped and resized to size=S (default 32); a seeded test split
              of data.test_fraction (interflow_jax/data/image_folder.py)
TFDS data sets are read with `tfds.data_source` (no TensorFlow) from dir=PATH, else
$TFDS_DATA_DIR, else ~/tensorflow_datasets, and must be prepared beforehand in the
ArrayRecord format (the error message says how). `smoke` is a seconds-long run.
`conditional` makes a class-conditional U-Net with classifier-free guidance on the
data's labels (digits 0-9, the TFDS 'label' feature, the sub-folders of a folder).

Settings. From the paper: a DDPM-style U-Net with a sinusoidal time embedding, no data
augmentation, likelihoods with Hutchinson traces and an adaptive solver, and no EMA
(eval.use_ema = False; the EMA is still tracked and selectable). From DDPM (Ho et al.
2020), which the paper follows for the architecture: the CIFAR-10 U-Net (128 channels,
multipliers 1, 2, 2, 2, two residual blocks, attention at 16 x 16, dropout 0.1), Adam
at 2e-4 with 5,000 warm-up steps, batch 128, gradient clipping at 1. Our choice (the
paper does not give them): the step counts, the ImageNet-32 and Flowers U-Nets (DDPM's
LSUN-like layouts scaled to the input), the digits and MNIST sizes, and the evaluation
sizes below. The digits depart from the paper's "no augmentation": they train with
distribution augmentation (`model.augmentation='dihedral'`, the transform given to the
U-Net, the density evaluated at the identity; interflow_jax/data/augment.py), which
leaves the density learned for untransformed digits a density of them.
"""

import os

import ml_collections

from interflow_jax.data import image_folder
from interflow_jax.training.config_io import make_conditional, parse_config_arg, sibling_config

# name: (data name, U-Net keyword arguments, batch size, steps, learning rate)
SETTINGS = {
    "digits": (
        "digits",
        dict(
            channels=24,  # 16 without augmentation, which then overfits (BUILD_NOTES, Images)
            channel_multipliers=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(4,),
            dropout=0.0,  # the augmentation regularises instead
            time_embedding_scale=50.0,
        ),
        32,  # ~48 steps/s against 13.4 at batch 128 for 16 channels (BUILD_NOTES, Images)
        21_000,
        1e-3,
    ),  # our choice: 1.747 bits/dim in 14m38s on 2 cores without AVX-512 (BUILD_NOTES)
    "mnist": (
        "mnist",
        dict(
            channels=64, channel_multipliers=(1, 2, 2), num_res_blocks=2, attention_resolutions=(7,)
        ),
        128,
        100_000,
        2e-4,
    ),  # our choice
    "cifar10": (
        "cifar10",
        dict(
            channels=128,
            channel_multipliers=(1, 2, 2, 2),
            num_res_blocks=2,
            attention_resolutions=(16,),
            dropout=0.1,
            num_groups=32,
        ),
        128,
        500_000,
        2e-4,
    ),  # DDPM's CIFAR-10 U-Net and optimiser; steps our choice
    "imagenet32": (
        "imagenet_resized/32x32",
        dict(
            channels=128,
            channel_multipliers=(1, 2, 2, 2),
            num_res_blocks=3,
            attention_resolutions=(16, 8),
            num_groups=32,
        ),
        256,
        500_000,
        2e-4,
    ),  # our choice, DDPM-like
    "flowers128": (
        "oxford_flowers102",
        dict(
            channels=128,
            channel_multipliers=(1, 1, 2, 3, 4),
            num_res_blocks=2,
            attention_resolutions=(16,),
            dropout=0.1,
            num_groups=32,
        ),
        64,
        200_000,
        2e-4,
    ),  # our choice, DDPM's 128-256 px layout
}

# One resolution level (no down/up-sampling) and 8 channels: smoke runs check the
# plumbing, and the U-Net's compile time dominates them on a CPU.
_SMOKE_UNET = dict(
    channels=8, channel_multipliers=(1,), num_res_blocks=1, attention_resolutions=(), num_groups=4
)

FOLDER = "folder"  # a user's folder of images
FOLDER_DEFAULT_SIZE = 32


def _parse(arg: str):
    """(name, smoke, data_dir); unknown words and options are named."""
    words, options = parse_config_arg(
        arg, words=(*SETTINGS, FOLDER, "smoke", "conditional"), options=("dir", "size")
    )
    names = [w for w in words if w in SETTINGS or w == FOLDER]
    if len(names) != 1:
        raise ValueError(
            f"images config needs one of {sorted(SETTINGS) + [FOLDER]} in its argument; "
            f"got {arg!r}."
        )
    return names[0], "smoke" in words, options.get("dir", "")


def _folder_size(arg: str, smoke: bool) -> int:
    _, options = parse_config_arg(arg)
    size = options.get("size", str(8 if smoke else FOLDER_DEFAULT_SIZE))
    if not size.isdigit() or int(size) < 2 or int(size) % 2:
        raise ValueError(f"images config: size= must be an even number of pixels; got {size!r}.")
    return int(size)


def _folder_settings(size: int):
    """Our choice for a user's folder at S x S: the digits U-Net and optimiser up to 16
    pixels (with the digits' time law and evaluation, `_digits`, at batch 128); beyond,
    a 3-level 64-channel U-Net (S divisible by 4) at DDPM's rate."""
    if size <= 16:
        unet = dict(
            channels=16,
            channel_multipliers=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(size // 2,),
        )
        return (FOLDER, unet, 128, 6_000, 1e-3)
    if size % 4:
        raise ValueError(f"images config: size= above 16 must be divisible by 4; got {size}.")
    unet = dict(
        channels=64, channel_multipliers=(1, 2, 2), num_res_blocks=2, attention_resolutions=(8,)
    )
    return (FOLDER, unet, 128, 50_000, 2e-4)


def get_config(arg: str = "digits") -> ml_collections.ConfigDict:
    name, smoke, data_dir = _parse(arg)
    size = _folder_size(arg, smoke) if name == FOLDER else 0
    settings = _folder_settings(size) if name == FOLDER else SETTINGS[name]
    data_name, unet, batch_size, num_steps, learning_rate = settings
    config = sibling_config(__file__, "toy2d", "checkerboard" + (",smoke" if smoke else ""))
    config.data = {"kind": "images", "name": data_name, "dir": data_dir, "image_size": 0}
    config.data.num_test = 10_000  # the first 10,000 test images (all of them when smaller)
    # time_embedding_scale: the time sinusoids' highest angular frequency per unit t
    unet = {"dropout": 0.0, "time_embedding_scale": 1e3, **(unet if not smoke else _SMOKE_UNET)}
    # augmentation: 'none', 'hflip' or 'dihedral' (interflow_jax/data/augment.py): train
    # v(t, x | a) on transformed images T_a x, a = 0 (the identity) w.p. p_identity, and
    # evaluate at a = 0
    config.model = {
        "kind": "unet",
        "unet": unet,
        "augmentation": "none",
        "augmentation_p_identity": 0.5,
    }
    config.optimizer.update(
        learning_rate=learning_rate, warmup_steps=5_000, grad_clip_norm=1.0, flatten=True
    )
    config.training.update(
        num_steps=num_steps,
        batch_size=batch_size,
        ema_decay=0.9999,
        steps_per_call=1,  # convolutions inside a scanned loop are slow on XLA:CPU
        log_every=500,
        checkpoint_every=5_000,
        eval_every=10_000,
    )
    config.eval.update(
        use_ema=False,  # as the paper
        divergence="hutchinson",
        num_probes=1,
        num_test_points=0,
        num_validation_points=0,
        chunk_size=250,
        num_plot_samples=64,
        num_path_length_pairs=1_000,
        num_energy_points=64,
        fid_weights="",  # an Inception .npz (interflow_jax.fid); FID is skipped without one
        num_fid_samples=10_000,
        show_progress=True,  # image likelihood solves take minutes on a CPU
    )
    if name == "digits" or 0 < size <= 16:
        _digits(config)
    if name == "digits":  # 1.747 bits/dim with 24 channels, 21,000 steps (BUILD_NOTES, Images)
        config.model.update(augmentation="dihedral", augmentation_p_identity=0.5)
    if smoke:
        _smoke(config, name)
    if name == FOLDER:
        _folder(config, data_dir, size)
    if "conditional" in arg.split(","):
        make_conditional(config, _num_classes(name, config), samples_per_class=8)
    return config


# classes of the labelled data sets (scikit-learn digits, TFDS 'label' features)
NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10, "imagenet32": 1000, "flowers128": 102}


def _num_classes(name: str, config) -> int:
    """K of a labelled data set; for a folder, its number of class sub-folders."""
    if name != FOLDER:
        return NUM_CLASSES[name]
    classes = image_folder.list_image_files(config.data.dir)[2]
    if not classes:
        raise ValueError(
            f"images config: 'conditional' needs one sub-folder per class in {config.data.dir}."
        )
    return len(classes)


def _folder(config, data_dir: str, size: int) -> None:
    """A user's image folder (data.kind 'image_folder'); EMA parameters evaluated."""
    if not data_dir:
        raise ValueError("images config: folder needs dir=PATH, the folder of images.")
    config.data = {
        "kind": "image_folder",
        "name": FOLDER,
        "dir": os.path.abspath(os.path.expanduser(data_dir)),
        "image_size": size,
        "test_fraction": 0.1,
        "split_seed": 0,
    }
    config.eval.use_ema = True


def _digits(config) -> None:
    """Digits, our choice: a short run evaluated with 4 Hutchinson probes per test image
    (the exact divergence would take 64 Jacobian-vector products per solver stage), and
    training times t ~ Beta(1, 0.5), density (1 - t)^(-1/2) / 2: more weight near the
    data end, where the field resolves the dequantisation cells (1.833 bits/dim against
    1.861 with uniform times; BUILD_NOTES, Images)."""
    config.optimizer.warmup_steps = 500
    config.time_sampler.update(kind="beta", alpha=1.0, beta=0.5)
    config.training.update(ema_decay=0.999, log_every=250, checkpoint_every=2_500, eval_every=5_000)
    config.eval.update(use_ema=True, num_probes=4, chunk_size=300, num_fid_samples=0)


def _smoke(config, name: str) -> None:
    config.data.update(num_test=16, image_size=8)  # TFDS images resized to 8 x 8
    config.optimizer.warmup_steps = 2
    config.training.update(
        num_steps=20,
        batch_size=16,
        steps_per_call=1,
        log_every=5,
        checkpoint_every=10,
        eval_every=10,
    )
    config.eval.update(
        chunk_size=16,
        num_plot_samples=16,
        num_path_length_pairs=16,
        num_energy_points=16,
        num_fid_samples=16,  # FID is skipped (no weights file) and says why
        solver="euler",  # two fixed steps: compiles fast; the smoke run checks plumbing
        num_steps=2,
    )
    if name == "digits":  # exact divergence and the Hutchinson check on a few images
        config.eval.update(num_test_points=16, divergence="exact", hutchinson_check_probes=2)
