"""Configs to and from the JSON stored beside checkpoints."""

from __future__ import annotations

import importlib.util
import pathlib

import ml_collections


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_from_dict(payload: dict) -> ml_collections.ConfigDict:
    """A locked ConfigDict from a saved config (JSON lists become tuples again)."""
    config = ml_collections.ConfigDict(_tuples(payload))
    config.lock()
    return config


def make_conditional(config, num_classes: int, samples_per_class: int) -> None:
    """Turn `config` into its class-conditional variant (PAPER section 9), in place.

    model.num_classes = K (a label embedding; the null label K trains the unconditional
    field), loss.p_uncond = 0.1 (label dropout), and for evaluation: guided samples at
    the guidance scales eval.guidance (v_w = v(null) + w (v(y) - v(null))),
    eval.samples_per_class of each class, and with eval.consistency_check the paired
    difference log (1/K sum_y p(x | y)) - log p(x | null) on the test points.
    """
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"a conditional config needs num_classes >= 1; got {num_classes!r}.")
    config.model.num_classes = int(num_classes)
    config.loss.p_uncond = 0.1
    config.eval.guidance = (0.0, 1.0, 2.0, 4.0)
    config.eval.samples_per_class = int(samples_per_class)
    config.eval.consistency_check = False


def sibling_config(config_file: str, name: str, arg: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of the config file `name`.py beside `config_file`.

    Config files are loaded by path (config_flags), not as a package, so one config
    builds on another this way: sibling_config(__file__, "toy2d", "checkerboard").
    """
    path = pathlib.Path(config_file).with_name(f"{name}.py")
    if not path.is_file():
        raise FileNotFoundError(f"No config file {path}.")
    spec = importlib.util.spec_from_file_location(f"_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def parse_config_arg(arg: str | None, words=None, options=None) -> tuple[list[str], dict[str, str]]:
    """Split a config argument 'WORD,...,NAME=VALUE,...' into (words, {NAME: VALUE}).

    `words` / `options`, when given, are the accepted words and option names; anything
    else raises ValueError naming it and what is accepted. A value may hold '=' but not
    ',' (set such a value with a --config.* flag instead).
    """
    found_words, found_options = [], {}
    for part in (p.strip() for p in (arg or "").split(",")):
        if not part:
            continue
        if "=" in part:
            name, value = part.split("=", 1)
            found_options[name] = value
        else:
            found_words.append(part)
    unknown = [w for w in found_words if words is not None and w not in words]
    unknown += [f"{n}=" for n in found_options if options is not None and n not in options]
    if unknown:
        accepted = sorted(words or ()) + [f"{n}=" for n in sorted(options or ())]
        raise ValueError(f"unknown config argument(s) {unknown} in {arg!r}; accepted: {accepted}.")
    return found_words, found_options
