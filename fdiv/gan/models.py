"""Generator and critic networks: MLPs for vectors, a small convolutional pair for 8x8 images.

All networks take and return flat tensors: a generator maps latent codes (B, latent_dim) to
samples (B, dim); a critic maps samples (B, dim) to raw outputs v (B,). The image networks reshape
internally, so the trainer, the data and the metrics only ever see vectors. No batch norm and no
dropout: the critic's gradient penalty needs per-sample independence, and all randomness of a run
stays in its explicit, checkpointed generators.

The MLPs work in standardised coordinates u = (x - shift) / scale (``shift`` the data mean,
``scale`` one overall standard deviation, see :func:`fdiv.gan.data.standardisation`): the critic
maps its data-space input to u first and the generator maps its output u back to data space, with
``shift`` and ``scale`` stored as buffers. So hyperparameters do not depend on the data's scale,
while the networks still take and return data-space samples (checkpoints, sampling and the
metrics need no extra step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fdiv.estimation.critics import MLPCritic, Standardised, check_sizes, mlp

__all__ = ["ConvCritic", "ConvGenerator", "MLPGenerator", "build_models", "generate"]


class MLPGenerator(Standardised):
    """``latent_dim -> hidden... -> dim``, ReLU between layers; returns shift + scale * output."""

    def __init__(
        self,
        latent_dim: int,
        dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        shift: Tensor | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(dim, shift, scale)
        check_sizes("generator hidden sizes", hidden)
        self.latent_dim = latent_dim
        self.net = mlp(latent_dim, hidden, dim, "relu")

    def forward(self, z: Tensor) -> Tensor:
        return torch.addcmul(self.shift, self.net(z), self.scale)


class ConvGenerator(nn.Module):
    """Latent code -> (2c, 2, 2) -> (c, 4, 4) -> (1, 8, 8) by transposed convolutions; tanh output.

    ``channels`` is c; the result is flattened to (B, 64).
    """

    def __init__(self, latent_dim: int, channels: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * channels * 4),
            nn.ReLU(),
            nn.Unflatten(1, (2 * channels, 2, 2)),
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1),
            nn.Tanh(),
            nn.Flatten(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ConvCritic(nn.Module):
    """(B, 64) -> (1, 8, 8) -> (c, 4, 4) -> (2c, 2, 2) -> v (B,), LeakyReLU(0.2) between layers."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * channels * 4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def build_models(
    dim: int,
    latent_dim: int,
    generator_hidden: Sequence[int],
    critic_hidden: Sequence[int],
    image: tuple[int, int, int] | None,
    channels: int,
    shift: Tensor | None = None,
    scale: float = 1.0,
) -> tuple[nn.Module, nn.Module]:
    """(generator, critic): the convolutional pair for (1, 8, 8) images, the MLPs otherwise.

    ``shift`` and ``scale`` standardise the MLPs' coordinates (images are already in [-1, 1]).
    """
    if image == (1, 8, 8):
        return ConvGenerator(latent_dim, channels), ConvCritic(channels)
    return (
        MLPGenerator(latent_dim, dim, generator_hidden, shift, scale),
        MLPCritic(dim, critic_hidden, "leaky_relu", shift, scale),
    )


@torch.no_grad()
def generate(generator: nn.Module, n: int, seed: int, batch: int = 8192) -> Tensor:
    """``n`` samples (n, dim) of ``generator`` from standard normal codes drawn with ``seed``."""
    codes = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(chunk.to(device)) for chunk in codes.split(batch)])
    generator.train(was_training)
    return out
