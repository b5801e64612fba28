"""The mode-coverage protocol and the digit-class metrics on constructed samples."""

from __future__ import annotations

import math

import pytest
import torch

from fdiv.gan import metrics
from fdiv.gan.data import digit_images, load_dataset
from fdiv.gan.metrics import (
    class_coverage,
    digits_classifier,
    digits_features,
    frechet_distance,
    frechet_floor,
    mode_coverage,
)

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


def test_frechet_distance_matches_the_closed_form_of_two_gaussians() -> None:
    """Exact sample moments: the rows +-1 around a mean give covariance diag(var) exactly, so the
    closed form |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2 of commuting covariances holds
    to rounding; a non-commuting pair is checked against scipy's general matrix square root."""
    scipy_linalg = pytest.importorskip("scipy.linalg")

    def rows(mean: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
        d = len(mean)
        signs = torch.cat([torch.eye(d), -torch.eye(d)]).double() * math.sqrt((2 * d - 1) / 2)
        return mean + signs @ root.T  # sample covariance root @ root.T, sample mean `mean`

    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]).double(), torch.tensor([1.0, 1.0, 0.0]).double()
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25]).double(), torch.tensor([9.0, 1.0, 1.0]).double()
    exact = float((mean_a - mean_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum())
    got = frechet_distance(rows(mean_a, var_a.sqrt().diag()), rows(mean_b, var_b.sqrt().diag()))
    assert got == pytest.approx(exact, rel=1e-12)

    root_a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.1, -0.3, 0.5]]).double()
    root_b = torch.tensor([[2.0, 0.0, 0.0], [-0.5, 1.0, 0.0], [0.3, 0.2, 0.7]]).double()
    cov_a, cov_b = root_a @ root_a.T, root_b @ root_b.T
    cross = scipy_linalg.sqrtm((cov_a @ cov_b).numpy()).real.trace()
    exact = float((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)
    got = frechet_distance(rows(mean_a, root_a), rows(mean_b, root_b))
    assert got == pytest.approx(exact, rel=1e-10)
    assert frechet_distance(rows(mean_a, root_a), rows(mean_a, root_a)) == pytest.approx(
        0.0, abs=1e-12
    )
    with pytest.raises(ValueError, match=r"two \(N, d\) arrays"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 2))


def test_digits_frechet_floor_is_small_beside_noise_and_a_single_class() -> None:
    """The training digits sit close to the held-out ones; uniform noise and a single digit class
    sit far (measured: floor 1.80, one class 59-159, noise 233)."""
    digits = load_dataset("digits")
    held = digits_features(digits.parts[1])
    floor = frechet_floor()
    assert 0.5 < floor < 4.0
    noise = torch.rand(2000, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert frechet_distance(digits_features(noise), held) > 20 * floor
    _, labels = digit_images()
    zeros = torch.from_numpy(digit_images()[0][labels == 0]).float()
    assert frechet_distance(digits_features(zeros), held) > 10 * floor


def test_digits_evaluation_uses_each_heldout_image_once_and_survives_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The held-out estimate sees the 359 held-out digits once each (no copies across its splits)
    against as many generated images, both dequantised; a refusal is NaN plus a warning."""
    digits = load_dataset("digits")
    generator = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh())
    generator.latent_dim = 4
    seen: dict[str, object] = {}

    def fake_estimate(p: torch.Tensor, q: torch.Tensor, divergence: str, **kw: object) -> object:
        seen.update(p=p, q=q, **kw)
        raise ValueError("training failed in fold 1")

    monkeypatch.setattr(metrics, "estimate", fake_estimate)
    with pytest.warns(UserWarning, match="held-out js estimate refused: training failed"):
        result = metrics.evaluate(generator, digits, n=2500)
    # both sides dequantised on the 17 grey levels: each value within half a step of its level
    held, grid = digits.parts[1].double(), digits.grid
    assert grid == (-1.0, 0.125, 17) and torch.equal(metrics.quantise(held, grid), held)
    assert torch.equal(metrics.quantise(seen["p"], grid), held)
    assert 0 < (seen["p"] - held).abs().max() < 0.0625 and len(seen["q"]) == len(held)
    fake = metrics.quantise(seen["q"], grid)
    assert ((fake + 1) * 8 - ((fake + 1) * 8).round()).abs().max() < 1e-9
    assert 0 < (seen["q"] - fake).abs().max() < 0.0625
    assert math.isnan(result["heldout_js"]) and math.isnan(result["heldout_js_stderr"])
    assert result["classes_covered"] >= 1 and result["frechet"] > result["frechet_floor"]
    assert "held-out js estimate: refused" in metrics.describe(result)


def test_dequantised_levels_give_the_divergence_between_the_level_distributions() -> None:
    """Two distributions over 3 levels of (-1, 1, 3), dequantised: KL between the dequantised
    samples is KL between the level probabilities (0.5, 0.3, 0.2) and (0.2, 0.3, 0.5) = 0.275
    nats, while the rounding sends continuous values to the nearest level."""
    from fdiv.estimation.knn import knn_kl

    grid = (-1.0, 1.0, 3)
    x = torch.tensor([[-1.7], [-0.4], [0.49], [0.51], [1.6], [7.0]])
    assert metrics.quantise(x, grid).flatten().tolist() == [-1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    gen = torch.Generator().manual_seed(0)
    levels = torch.tensor([-1.0, 0.0, 1.0])
    p = levels[torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 20000, True, generator=gen)]
    q = levels[torch.multinomial(torch.tensor([0.2, 0.3, 0.5]), 20000, True, generator=gen)]
    d_p, d_q = (metrics.dequantise(x[:, None], grid, gen) for x in (p, q))
    assert torch.equal(metrics.quantise(d_p, grid), p[:, None].double())
    truth = 0.3 * math.log(0.5 / 0.2)  # 0.5 log(5/2) + 0.2 log(2/5): the middle level cancels
    # kNN on 20,000 uniform-in-cell points: the sampling error of the level frequencies is
    # about 0.01 nats, the kNN bias at the cell edges a few hundredths
    assert abs(knn_kl(d_p, d_q) - truth) < 0.05
