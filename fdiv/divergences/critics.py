"""Default critic networks: maps from samples (B, d) to raw critic outputs v (B,)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["MLPCritic"]


class MLPCritic(nn.Module):
    """A fully connected critic: ``d -> hidden[0] -> ... -> 1`` with SiLU between layers.

    SiLU keeps the critic smooth, which suits the smooth log density ratios of continuous data
    (a Gaussian pair has a quadratic one) better than ReLU's piecewise-linear fits.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not hidden or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden
        ):
            raise ValueError(
                f"hidden must be a non-empty sequence of positive integers, got {hidden!r}"
            )
        layers: list[nn.Module] = []
        width = dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)
