"""The PyTorch side of the comparisons with torchcfm: data and networks.

`checkerboard` draws the FFJORD checkerboard by the same recipe as
`interflow_jax.data.toy2d.checkerboard_sample` (same law, torch's generator), and
`SinusoidalMLP` is the same network as `interflow_jax.models.VelocityMLP`: input
concat(x, [sin(1000 t w_k), cos(1000 t w_k)]) with w_k = 1e4^(-k/16), k < 16, then
hidden Linear + activation layers and a zero-initialised Linear output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

ACTIVATIONS = {"silu": torch.nn.SiLU, "relu": torch.nn.ReLU, "selu": torch.nn.SELU}


def checkerboard(n: int) -> torch.Tensor:
    """(n, 2) checkerboard samples: x1 ~ U[-2, 2), x2 = U[0, 1) - 2 B + (floor(x1) mod 2)."""
    x1 = torch.rand(n) * 4.0 - 2.0
    shift = 2.0 * torch.randint(0, 2, (n,)).to(x1.dtype)
    x2 = torch.rand(n) - shift + torch.remainder(torch.floor(x1), 2.0)
    return 2.0 * torch.stack([x1, x2], dim=1)


class SinusoidalMLP(torch.nn.Module):
    """v(t, x) with the sinusoidal time embedding of interflow_jax's VelocityMLP."""

    def __init__(
        self,
        dim: int,
        hidden_sizes: Sequence[int],
        activation: str = "silu",
        time_embedding_dim: int = 32,
    ):
        super().__init__()
        half = time_embedding_dim // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs)
        layers, width_in = [], dim + time_embedding_dim
        for width in hidden_sizes:
            layers += [torch.nn.Linear(width_in, width), ACTIVATIONS[activation]()]
            width_in = width
        out = torch.nn.Linear(width_in, dim)
        torch.nn.init.zeros_(out.weight)
        torch.nn.init.zeros_(out.bias)
        self.net = torch.nn.Sequential(*layers, out)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        angles = 1e3 * t[:, None] * self.freqs[None, :]
        return self.net(torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1))
