"""Training data for the GANs: the mode-coverage benchmarks, a spiral, 8x8 digits, user arrays.

Every dataset samples through an explicit ``torch.Generator`` (on the CPU), so a run's data
stream is reproducible and can be checkpointed. ``ring8`` and ``grid25`` follow the PacGAN
protocol (Lin et al., 2018) and know their modes and the per-mode standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fdiv.io import load_samples

__all__ = ["BUILTIN", "Dataset", "load_dataset", "standardisation"]

Sampler = Callable[[int, torch.Generator], Tensor]

HELDOUT_FRACTION = 0.2
_SPLIT_SEED = 0
_STATS_SAMPLES = 20_000


@dataclass(frozen=True)
class Dataset:
    """A distribution to learn: training draws, held-out draws, and its modes where it has them.

    ``sample(n, generator)`` gives (n, dim) float32 training samples; ``heldout`` gives samples
    the generator never trained on (fresh draws for synthetic data, a held-out split for arrays).
    ``modes`` is (K, dim) with ``mode_std`` the standard deviation around each mode; ``image``
    is the (channels, height, width) shape for image data; ``parts`` holds the (training,
    held-out) rows of array data; ``grid`` = (lowest, step, count) the discrete levels its
    values take, where they take such levels (8-bit-like images).
    """

    name: str
    dim: int
    sample: Sampler
    heldout: Sampler
    modes: Tensor | None = None
    mode_std: float | None = None
    image: tuple[int, int, int] | None = None
    parts: tuple[Tensor, Tensor] | None = None
    grid: tuple[float, float, int] | None = None


def _mixture(name: str, modes: Tensor, std: float) -> Dataset:
    """An equal-weight mixture of isotropic Gaussians N(mode, std^2 I)."""

    def sample(n: int, generator: torch.Generator) -> Tensor:
        k = torch.randint(len(modes), (n,), generator=generator)
        noise = torch.randn(n, modes.shape[1], generator=generator)
        return modes[k] + std * noise

    return Dataset(name, modes.shape[1], sample, sample, modes, std)


def ring8() -> Dataset:
    """8 Gaussians on the unit circle at angles 2 pi i / 8, standard deviation 0.01."""
    angles = 2.0 * math.pi * torch.arange(8, dtype=torch.float64) / 8.0
    modes = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1).float()
    return _mixture("ring8", modes, 0.01)


def grid25() -> Dataset:
    """25 Gaussians at {-4, -2, 0, 2, 4}^2, standard deviation 0.05."""
    axis = torch.arange(-4.0, 5.0, 2.0)
    modes = torch.cartesian_prod(axis, axis)
    return _mixture("grid25", modes, 0.05)


def spiral() -> Dataset:
    """A two-turn Archimedean spiral of radius up to 2 with Gaussian noise 0.05 (no modes)."""

    def sample(n: int, generator: torch.Generator) -> Tensor:
        t = torch.rand(n, generator=generator)
        angle = 4.0 * math.pi * t
        radius = 0.2 + 1.8 * t
        points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        return points + 0.05 * torch.randn(n, 2, generator=generator)

    return Dataset("spiral", 2, sample, sample)


def _array(
    name: str,
    array: np.ndarray,
    image: tuple[int, int, int] | None = None,
    grid: tuple[float, float, int] | None = None,
) -> Dataset:
    """Rows of a fixed array, split once into training and held-out parts."""
    data = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if len(data) < 10:
        raise ValueError(f"{name}: needs at least 10 samples to split off held-out data")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    n_heldout = max(1, round(HELDOUT_FRACTION * len(data)))
    held, train = data[perm[:n_heldout]], data[perm[n_heldout:]]

    def rows(part: Tensor) -> Sampler:
        return lambda n, generator: part[torch.randint(len(part), (n,), generator=generator)]

    return Dataset(
        name, data.shape[1], rows(train), rows(held), image=image, parts=(train, held), grid=grid
    )


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits: rows (1797, 64) in [-1, 1], and labels."""
    from sklearn.datasets import load_digits  # optional dependency: the ``gan`` extra

    raw = load_digits()
    return raw.data / 8.0 - 1.0, raw.target


def digits() -> Dataset:
    """The 8x8 digits of :func:`digit_images` as a dataset of 64-vectors (17 grey levels)."""
    return _array("digits", digit_images()[0], image=(1, 8, 8), grid=(-1.0, 0.125, 17))


def from_npy(path: str) -> Dataset:
    """The rows of a numeric (N, d) ``.npy`` array (loaded without pickle, see fdiv.io)."""
    return _array(str(path), load_samples(path))


def standardisation(dataset: Dataset) -> tuple[Tensor, float]:
    """(mean (dim,), one overall standard deviation) of the training data, from a fixed draw.

    The scale is the root mean of the per-coordinate variances, so standardising keeps the
    data's shape (modes stay round). Image data is already in [-1, 1]: (zeros, 1.0).
    """
    if dataset.image is not None:
        return torch.zeros(dataset.dim), 1.0
    x = dataset.sample(_STATS_SAMPLES, torch.Generator().manual_seed(_SPLIT_SEED)).double()
    scale = float(x.var(dim=0).mean().sqrt())
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{dataset.name}: the data has no spread to standardise by")
    return x.mean(dim=0).float(), scale


BUILTIN: dict[str, Callable[[], Dataset]] = {
    "ring8": ring8,
    "grid25": grid25,
    "spiral": spiral,
    "digits": digits,
}


def load_dataset(name: str) -> Dataset:
    """A built-in dataset by name, or the array in a ``.npy`` file given by its path."""
    if name in BUILTIN:
        return BUILTIN[name]()
    if name.lower().endswith(".npy"):
        return from_npy(name)
    raise ValueError(
        f"dataset {name!r} is unknown; known: {', '.join(BUILTIN)}, or a path to an .npy file"
    )
