"""The mode-coverage protocol and the digit-class metrics on constructed samples."""

from __future__ import annotations

import math

import pytest
import torch

from fdiv.gan.data import load_dataset
from fdiv.gan.metrics import class_coverage, digits_classifier, mode_coverage

RING = load_dataset("ring8")


def test_samples_exactly_at_the_modes_cover_all_with_full_quality() -> None:
    samples = RING.modes.repeat(2500 // 8 + 1, 1)[:2500]
    result = mode_coverage(samples, RING.modes, RING.mode_std)
    assert result["modes_captured"] == 8 and result["high_quality"] == 100.0
    # 2500 = 8 * 312 + 4: four modes hold 313 samples, four hold 312.
    p = torch.tensor([313.0] * 4 + [312.0] * 4, dtype=torch.float64) / 2500
    assert result["reverse_kl"] == pytest.approx(float((p * torch.log(8 * p)).sum()), abs=1e-12)


def test_all_samples_at_one_mode_capture_one_with_reverse_kl_log8() -> None:
    samples = RING.modes[3].repeat(2500, 1)
    result = mode_coverage(samples, RING.modes, RING.mode_std)
    assert result["modes_captured"] == 1 and result["high_quality"] == 100.0
    assert result["reverse_kl"] == pytest.approx(math.log(8))


def test_only_high_quality_samples_count_towards_modes_and_the_histogram() -> None:
    near = RING.modes[:2] + torch.tensor([0.029, 0.0])  # inside 3 std = 0.03
    far = RING.modes[2:4] + torch.tensor([0.0, 0.031])  # just outside
    result = mode_coverage(torch.cat([near, far]), RING.modes, RING.mode_std)
    assert result["modes_captured"] == 2 and result["high_quality"] == 50.0
    assert result["reverse_kl"] == pytest.approx(math.log(4))  # uniform over 2 of 8 modes


def test_no_high_quality_sample_gives_infinite_reverse_kl() -> None:
    result = mode_coverage(torch.zeros(10, 2), RING.modes, RING.mode_std)
    assert result["modes_captured"] == 0 and result["high_quality"] == 0.0
    assert result["reverse_kl"] == math.inf


def test_digit_classifier_is_accurate_and_real_digits_cover_all_classes() -> None:
    _, accuracy = digits_classifier()
    assert accuracy >= 0.93
    digits = load_dataset("digits")
    result = class_coverage(digits.heldout(2500, torch.Generator().manual_seed(0)))
    assert result["classes_covered"] == 10 and result["class_kl"] < 0.02
    ones = class_coverage(digits.heldout(2500, torch.Generator().manual_seed(0))[:1].repeat(50, 1))
    assert ones["classes_covered"] == 1 and ones["class_kl"] == pytest.approx(math.log(10))
