"""The critic's inputs: marginal Gaussianisation (fdiv.estimation.features) against scipy's
ranks and normal quantiles, the robust squashed standardisation and the clamped test outputs
(fdiv.estimation.crossfit), and what they buy the default estimate on a density that blows up
at the faces and on Cauchy samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ndtri
from scipy.stats import rankdata

import fdiv
from fdiv.divergences.registry import get
from fdiv.estimation.critics import MLPCritic
from fdiv.estimation.crossfit import (
    IQR_SD,
    SQUASH,
    Split,
    critic_outputs,
    fit_fold,
    fold_tensors,
    moments,
    reported_bound,
    robust_moments,
)
from fdiv.estimation.features import MarginalGaussian


def reference(rows: np.ndarray) -> np.ndarray:
    """Phi^-1((average rank - 1/2) / n) per column: scipy's ranks, ties averaged."""
    return ndtri((rankdata(rows, axis=0) - 0.5) / len(rows))


def test_fitted_rows_map_to_mid_rank_normal_quantiles() -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack(
        [rng.lognormal(size=500), rng.beta(0.5, 0.5, size=500), rng.standard_t(2, size=500)]
    )
    assert np.abs(MarginalGaussian(rows)(rows) - reference(rows)).max() < 1e-12


def test_tied_values_share_their_average_rank() -> None:
    rows = np.array([[0.0], [1.0], [1.0], [1.0], [2.0], [5.0]])
    z = MarginalGaussian(rows)(rows)
    assert np.abs(z - reference(rows)).max() < 1e-12
    assert z[1, 0] == z[2, 0] == z[3, 0]


def test_an_increasing_map_of_the_data_changes_nothing_at_the_fitted_rows() -> None:
    rows = np.random.default_rng(1).normal(size=(300, 2))
    z = MarginalGaussian(rows)(rows)
    assert np.abs(MarginalGaussian(np.exp(3 * rows))(np.exp(3 * rows)) - z).max() < 1e-12


def test_new_rows_are_interpolated_and_extrapolated_in_order() -> None:
    rows = np.random.default_rng(2).normal(size=(400, 1))
    to_z = MarginalGaussian(rows)
    lo, hi = rows.min(), rows.max()
    x = np.linspace(lo - 5.0, hi + 5.0, 2001)[:, None]
    z = to_z(x)[:, 0]
    assert np.all(np.diff(z) > 0)  # strictly increasing, also past the fitted range
    knots = to_z(np.array([[lo], [hi]]))[:, 0]
    # continuous at the ends: a step of 1e-9 past them moves z by ~1e-9 times the slope
    edge = to_z(np.array([[lo - 1e-9], [hi + 1e-9]]))[:, 0]
    assert np.abs(edge - knots).max() < 1e-7
    # within the range, halfway between two neighbouring knots is halfway in z
    a, b = np.sort(rows[:, 0])[10:12]
    za, zb, zm = to_z(np.array([[a], [b], [(a + b) / 2]]))[:, 0]
    assert zm == pytest.approx((za + zb) / 2, abs=1e-12)


def test_a_constant_coordinate_maps_to_zero_and_bad_shapes_are_refused() -> None:
    rows = np.column_stack([np.full(50, 3.0), np.arange(50.0)])
    to_z = MarginalGaussian(rows)
    assert np.all(to_z(np.array([[3.0, 1.0], [7.0, 2.0]]))[:, 0] == 0.0)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        to_z(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        MarginalGaussian(np.zeros((0, 2)))


def test_fold_tensors_fit_the_map_on_the_pooled_train_rows_only() -> None:
    rng = np.random.default_rng(3)
    x_p, x_q = rng.normal(size=(60, 2)), rng.exponential(size=(60, 2))
    rows = np.arange(60)
    split = Split(rows[:30], rows[30:45], rows[45:])
    (train_p, train_q), _, (test_p, _) = fold_tensors(
        x_p, x_q, split, split, torch.device("cpu"), torch.float64, gaussianise=True
    )
    assert train_p.shape == (30, 4)
    train = np.concatenate([x_p[:30], x_q[:30]])
    z = reference(train)
    assert np.abs(torch.cat([train_p, train_q])[:, 2:].numpy() - z).max() < 1e-12
    expected = MarginalGaussian(train)(x_p[45:])  # the test rows did not shape the map
    assert np.abs(test_p[:, 2:].numpy() - expected).max() < 1e-12


def test_a_density_that_blows_up_at_the_faces_is_no_longer_missed() -> None:
    # arcsine (Beta(1/2, 1/2)) vs uniform on the square: KL = 2 log(4 / pi) = 0.4831 nats, its
    # log-ratio -log(x (1 - x)) / 2 per coordinate singular at the faces, smooth in the
    # Gaussianised coordinates. Measured with these settings, seeds 0-3: the default estimate
    # 0.53, 0.43, 0.54, 0.54 (within 12%, every interval holds the truth); the same critic on
    # the raw coordinates only 0.36, 0.28, 0.32, 0.32.
    truth = 2 * math.log(4 / math.pi)
    rng = np.random.default_rng(0)
    x_p, x_q = rng.beta(0.5, 0.5, size=(3000, 2)), rng.uniform(size=(3000, 2))
    fast = {"steps": 600, "batch_size": 512, "eval_every": 25, "patience": 200}
    est = fdiv.estimate(x_p, x_q, **fast)
    assert abs(math.log(est.value / truth)) < math.log(1.25), est
    assert est.ci95[0] <= truth <= est.ci95[1], est
    with torch.random.fork_rng():
        torch.manual_seed(0)
        raw = fdiv.estimate(x_p, x_q, critic=MLPCritic(2, (128, 128)), **fast)
    # the control: without the map the critic is far low (still improving at 600 steps, so
    # its interval's upper end is open)
    assert raw.value < truth / 1.25 and raw.ci95[0] < raw.value, raw


def test_robust_moments_are_the_median_and_the_scaled_interquartile_range() -> None:
    # column 0: 0..100, quartiles 25 and 75 (numpy's linear interpolation); column 1: constant
    # but for one row, interquartile range 0, so the standard deviation stands in
    x = np.column_stack([np.arange(101.0), np.r_[np.zeros(100), 101.0]])
    center, scale = robust_moments(x)
    assert center.tolist() == [50.0, 0.0]
    assert scale[0] == pytest.approx(50.0 / IQR_SD, rel=1e-15)
    assert scale[1] == pytest.approx(np.std(x[:, 1]), rel=1e-12)
    assert pytest.approx(2 * ndtri(0.75), rel=1e-15) == IQR_SD


def test_inputs_are_robustly_standardised_and_squashed_far_out() -> None:
    rng = np.random.default_rng(0)
    rows = np.arange(2000)
    split = Split(rows[:1000], rows[1000:1500], rows[1500:])
    cauchy = rng.standard_cauchy(size=(2000, 1))
    (train_p, _), _, _ = fold_tensors(
        cauchy, cauchy, split, split, torch.device("cpu"), torch.float64
    )
    center, scale = robust_moments(np.concatenate([cauchy[:1000], cauchy[:1000]]))
    u = (cauchy[:1000] - center) / scale
    assert np.abs(train_p.numpy() - SQUASH * np.arcsinh(u / SQUASH)).max() < 1e-12
    # the bulk keeps its spread (the middle half spans 1.34 here, 2 x 0.674 for a Gaussian)
    # while the largest row, 636 robust standard deviations out, is squashed to 23; with the
    # mean and standard deviation the middle half spanned 0.055
    middle = np.abs(u) < np.quantile(np.abs(u), 0.5)
    assert 1.2 < np.ptp(train_p.numpy()[middle]) < 1.5
    assert np.abs(u).max() > 600 and 20 < train_p.abs().max() < 25
    mean, std = moments(np.concatenate([cauchy[:1000], cauchy[:1000]]))
    assert np.ptp(((cauchy[:1000] - mean) / std)[middle]) < 0.06
    # inside a Gaussian's range the map is the identity to within 1% at 1 and 5% at 2.5
    assert SQUASH * math.asinh(1 / SQUASH) == pytest.approx(1, rel=0.011)
    assert SQUASH * math.asinh(2.5 / SQUASH) == pytest.approx(2.5, rel=0.06)


def test_test_outputs_are_clamped_to_the_training_outputs_range() -> None:
    # a Q test row a million scales out: its squashed input (~58) lies far beyond every training
    # row's, where the critic extrapolates; its reported output is clamped to the training range
    rng = np.random.default_rng(1)
    x_p, x_q = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    x_q[:, 0] += 1.0
    x_q[299] = [1e6, -1e6]
    rows = np.arange(300)
    split = Split(rows[:150], rows[150:225], rows[225:])
    data = fold_tensors(x_p, x_q, split, split, torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    net = MLPCritic(2, (32, 32))
    bar = fdiv.estimation.crossfit.tqdm(disable=True)
    result = fit_fold(
        net, data, 0, get("kl"), "dv", 5.0, torch.Generator().manual_seed(0),
        steps=200, batch_size=150, lr=1e-2, eval_every=25, patience=100, bar=bar,
    )  # fmt: skip
    (train_p, train_q), _, (_, test_q) = data
    trained = torch.cat([critic_outputs(net, train_p), critic_outputs(net, train_q)])
    raw = critic_outputs(net, test_q)
    assert not trained.min() <= raw[-1] <= trained.max()  # the far row extrapolates ...
    assert torch.equal(result.v_q, raw)  # (kept raw for the diagnostics)
    assert result.limits == (float(trained.min()), float(trained.max()))
    clamped = result.clamped(result.v_q)
    assert clamped[-1] in result.limits  # ... and the bounds see it clamped
    inside = (raw >= trained.min()) & (raw <= trained.max())
    assert torch.equal(clamped[inside], raw[inside])  # the others are untouched
    v_p = critic_outputs(net, data[2][0])
    assert result.value == reported_bound(v_p.clamp(*result.limits), clamped, "dv", get("kl"), 5)[0]


def test_cauchy_shifts_are_not_thrown_by_their_far_rows() -> None:
    # five independent Cauchy coordinates shifted by 1: KL = 5 log(1 + 1/4) = 1.116 nats. With
    # mean and standard deviation as the critic's standardisation and unclamped test outputs,
    # seeds 0 and 2 gave -17.8 [-109, 73] and -25.4 [-154, 103] (one far Q test row decided the
    # partition term); robust and clamped 0.70 and 0.82; with the t fits' offset
    # (parametric.py; a product of Cauchys is not a multivariate t) 0.56 [-1.17, 2.43], warned
    # (its partition term's effective sample size is 2), and 0.68 [0.40, 1.11]
    truth = 5 * math.log1p(0.25)
    fast = {"steps": 600, "batch_size": 512, "eval_every": 25, "patience": 200}
    for seed in (0, 2):
        rng = np.random.default_rng(seed)
        x_p, x_q = rng.standard_cauchy((3000, 5)), rng.standard_cauchy((3000, 5)) + 1.0
        est = fdiv.estimate(x_p, x_q, seed=seed, **fast)
        assert 0.5 < est.value / truth < 1.25, est
