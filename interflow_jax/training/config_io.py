"""Configs to and from the JSON stored beside checkpoints."""

from __future__ import annotations

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
