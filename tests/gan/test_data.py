"""The datasets: PacGAN mode layouts, reproducible sampling, digits, user arrays, bad names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fdiv.gan.data import load_dataset, standardisation


def test_ring8_has_eight_distinct_modes_on_the_unit_circle() -> None:
    data = load_dataset("ring8")
    angles = torch.atan2(data.modes[:, 1], data.modes[:, 0]).double() % (2 * math.pi)
    expected = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    torch.testing.assert_close(angles.sort().values, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(data.modes.norm(dim=1), torch.ones(8))
    assert data.mode_std == 0.01


def test_grid25_modes_and_sample_spread() -> None:
    data = load_dataset("grid25")
    assert sorted(set(data.modes.flatten().tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(m) for m in data.modes.tolist()}) == 25
    x = data.sample(20_000, torch.Generator().manual_seed(0))
    offset = x - data.modes[torch.cdist(x, data.modes).argmin(1)]
    assert abs(float(offset.std()) - 0.05) < 0.002


@pytest.mark.parametrize(
    ("name", "variance"),
    [("ring8", 0.5 + 0.01**2), ("grid25", (16 + 4 + 0 + 4 + 16) / 5 + 0.05**2)],
)
def test_standardisation_is_the_mean_and_rms_coordinate_std(name: str, variance: float) -> None:
    shift, scale = standardisation(load_dataset(name))  # closed form: mean 0, per-axis variance
    torch.testing.assert_close(shift, torch.zeros(2), atol=0.05 * math.sqrt(variance), rtol=0)
    assert abs(scale / math.sqrt(variance) - 1) < 0.01


def test_sampling_is_reproducible_from_the_generator() -> None:
    data = load_dataset("spiral")
    a = data.sample(100, torch.Generator().manual_seed(3))
    b = data.sample(100, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and data.modes is None


def test_digits_are_8x8_images_in_unit_range_with_a_heldout_split() -> None:
    data = load_dataset("digits")
    x = data.sample(500, torch.Generator().manual_seed(0))
    assert data.image == (1, 8, 8) and x.shape == (500, 64)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    held = data.heldout(2000, torch.Generator().manual_seed(0))
    train_rows = {tuple(r) for r in data.sample(20_000, torch.Generator().manual_seed(1)).tolist()}
    held_rows = {tuple(r) for r in held.tolist()}
    assert len(held_rows) > 300 and not (held_rows & train_rows - {tuple([-1.0] * 64)})


def test_npy_arrays_load_without_pickle(tmp_path: Path) -> None:
    good = tmp_path / "points.npy"
    np.save(good, np.arange(40.0).reshape(20, 2))
    assert load_dataset(str(good)).dim == 2
    bad = tmp_path / "objects.npy"
    np.save(bad, np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a numeric"):
        load_dataset(str(bad))
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "missing.npy"))


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="dataset 'ring9' is unknown; known: ring8, grid25"):
        load_dataset("ring9")
