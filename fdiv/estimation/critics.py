"""Critic networks: maps from samples (B, d) to raw critic outputs v (B,).

One MLP serves the estimators and the GAN trainer. It optionally works in standardised
coordinates u = (x - shift) / scale (buffers, saved with the weights), so that its
hyperparameters do not depend on the data's scale while it still takes data-space samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MLPCritic", "OffsetCritic", "Standardised", "check_sizes", "mlp"]

#: Activation names accepted by :func:`mlp` and :class:`MLPCritic`.
ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self) -> None:
        super().__init__(0.2)


ACTIVATIONS["leaky_relu"] = _LeakyReLU


def check_sizes(name: str, sizes: Sequence[int]) -> None:
    """ValueError unless ``sizes`` is a non-empty sequence of positive integers."""
    if (
        isinstance(sizes, str)
        or not sizes
        or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in sizes)
    ):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {sizes!r}")


def mlp(inputs: int, hidden: Sequence[int], outputs: int, activation: str) -> nn.Sequential:
    """``inputs -> hidden[0] -> ... -> outputs``, fully connected, ``activation`` between layers."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is unknown; known: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = inputs
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class Standardised(nn.Module):
    """Holds the buffers ``shift`` (dim,) and ``scale`` () of the map u = (x - shift) / scale."""

    def __init__(self, dim: int, shift: Tensor | None = None, scale: float = 1.0) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.register_buffer("shift", torch.zeros(dim) if shift is None else shift.float().clone())
        self.register_buffer("scale", torch.tensor(float(scale)))


class MLPCritic(Standardised):
    """``dim -> hidden... -> 1`` on u = (x - shift) / scale; returns v of shape (B,).

    The default SiLU keeps the critic smooth, which suits the smooth log density ratios of
    continuous data (a Gaussian pair has a quadratic one) better than piecewise-linear fits; the
    GAN trainer uses ``leaky_relu`` (slope 0.2).
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "silu",
        shift: Tensor | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(dim, shift, scale)
        check_sizes("hidden", hidden)
        self.net = mlp(dim, hidden, 1, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.shift) / self.scale).squeeze(-1)


class OffsetCritic(nn.Module):
    """v = ``net``(x[:, :-1]) + x[:, -1]: the inputs' last column is an offset (a fitted
    log-ratio, :mod:`fdiv.estimation.parametric`) that the network corrects."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x[:, :-1]).reshape(-1) + x[:, -1]
