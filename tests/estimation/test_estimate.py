"""fdiv.estimate against Gaussian ground truth, its honesty (splits, determinism) and its errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from tqdm import tqdm

import fdiv
from fdiv.divergences.gaussian import Gaussian, ground_truth
from fdiv.divergences.registry import get
from fdiv.estimation.critics import MLPCritic
from fdiv.estimation.crossfit import (
    ATOM,
    MIN_SPLIT,
    WAIT_ROWS,
    Split,
    assign_folds,
    fit_fold,
    fold_tensors,
    wait,
)
from fdiv.estimation.result import in_range

# Small, fast settings: a few thousand samples, a small critic, a few hundred steps, two folds.
N = 3000
FAST = {"steps": 600, "batch_size": 256, "eval_every": 25, "patience": 200, "folds": 2}

# The reported value is the bound of a trained critic on the test split: its error is test-split
# noise (measured by stderr) plus the critic's gap below the optimum (a lower bound is low by the
# gap; it does not shrink with the test size). With these small settings the gap measured over
# the cases below stays under 2% of the truth (largest seen: ~0.01 nats); we allow 0.03 nats + 3%
# of the truth on top of 4 standard errors (a 4-sigma noise excursion has probability 6e-5).
BIAS_ABS, BIAS_REL, Z = 0.03, 0.03, 4.0


def pair(d: int) -> tuple[Gaussian, Gaussian]:
    """P = N(0, I_d), Q = N(0.4 * 1, 1.3^2 I_d): KL(P||Q) ~ 0.15 d."""
    eye = torch.eye(d, dtype=torch.float64)
    return Gaussian(torch.zeros(d), eye), Gaussian(torch.full((d,), 0.4), 1.69 * eye)


def draw(p: Gaussian, q: Gaussian, n: int = N, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return p.sample(n, g), q.sample(n, g)


def fit(x_p: object, x_q: object, divergence: str = "kl", bound: str = "auto", **options: object):
    """``fdiv.estimate`` with FAST settings and a small critic initialised from a fixed seed."""
    d = 1 if np.ndim(x_p) == 1 else x_p.shape[1]  # type: ignore[union-attr]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        critic = MLPCritic(d, hidden=(64, 64))
    return fdiv.estimate(x_p, x_q, divergence, bound, **{**FAST, "critic": critic, **options})


def assert_near_truth(est: fdiv.Estimate, truth: float) -> None:
    allowed = Z * est.stderr + BIAS_ABS + BIAS_REL * abs(truth)
    assert abs(est.value - truth) <= allowed, (est.value, truth, est.stderr)


@pytest.mark.parametrize(
    ("d", "divergence", "bound"),
    [(1, "kl", "dv"), (5, "kl", "dv"), (1, "kl", "fdual"), (1, "kl", "smile"),
     (1, "hellinger", "fdual"), (5, "hellinger", "fdual")],
)  # fmt: skip
def test_matches_closed_form(d: int, divergence: str, bound: str) -> None:
    p, q = pair(d)
    truth, _ = ground_truth(divergence, p, q)
    est = fit(*draw(p, q), divergence, bound)
    assert est.bound == bound
    assert est.divergence == divergence
    assert_near_truth(est, truth)


def test_js_matches_monte_carlo() -> None:
    p, q = pair(2)
    truth, mc_stderr = ground_truth("js", p, q, n=200_000, seed=5)
    est = fit(*draw(p, q), "js")
    assert est.bound == "fdual"
    assert abs(est.value - truth) <= Z * math.hypot(est.stderr, mc_stderr) + BIAS_ABS


def test_interval_covers_truth_in_most_seeds() -> None:
    # The cross-fitted interval adds the between-fold spread to the test noise. With coverage
    # 0.95 the chance of >= 7 of 10 is 0.999; even at 0.85 it is 0.95; a badly biased
    # estimator (coverage 0.5) passes with chance 0.17 only.
    p, q = pair(1)
    truth, _ = ground_truth("kl", p, q)
    covered = 0
    for seed in range(10):
        est = fit(*draw(p, q, n=2000, seed=100 + seed), steps=300, seed=seed)
        covered += est.ci95[0] <= truth <= est.ci95[1]
    assert covered >= 7


@pytest.mark.parametrize("bound", ["dv", "fdual"])
def test_identical_distributions_give_zero(bound: str) -> None:
    p, _ = pair(2)
    est = fit(*draw(p, p), "kl", bound)
    assert est.ci95[0] <= 0.0 <= est.ci95[1]
    assert abs(est.value) <= Z * est.stderr + 0.01


def test_same_seed_is_bitwise_identical_on_cpu() -> None:
    x_p, x_q = draw(*pair(2), n=600)
    first, second = (fit(x_p, x_q, steps=100, seed=7).to_dict() for _ in range(2))
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    other = fit(x_p, x_q, steps=100, seed=8)
    assert other.value != first["value"]


def test_each_row_is_tested_once_and_never_trained_on_by_its_critic() -> None:
    x_p, x_q = (np.random.default_rng(s).normal(size=(1001, 2)) for s in (1, 2))
    splits = assign_folds(x_p, x_q, 3, 0.25, torch.Generator().manual_seed(3))
    for side, n in ((0, 1001), (1, 1001)):
        tests = np.concatenate([pair[side].test for pair in splits])
        assert np.array_equal(np.sort(tests), np.arange(n))  # every row tested exactly once
        for pair in splits:
            split = pair[side]
            joined = np.concatenate([split.train, split.validation, split.test])
            assert np.array_equal(np.sort(joined), np.arange(n))  # disjoint, covering
            share = len(split.validation) / (len(split.train) + len(split.validation))
            assert abs(share - 0.25) < 0.05  # 4 sigma of a binomial share over ~670 rows
        assert all(abs(len(pair[side].test) - n / 3) < 80 for pair in splits)


def test_identical_rows_share_a_fold_across_p_and_q() -> None:
    x = np.random.default_rng(0).normal(size=(500, 2))
    x_q = np.concatenate([x[::-1], x[:50]])  # the same rows, reordered, some twice
    for split_p, split_q in assign_folds(x, x_q, 3, 0.2, torch.Generator().manual_seed(1)):
        rows = {part: {tuple(r) for r in x_q[getattr(split_q, part)]} for part in ("train", "test")}
        assert {tuple(r) for r in x[split_p.test]} == rows["test"]
        assert not {tuple(r) for r in x[split_p.train]} & rows["test"]


def test_same_samples_as_p_and_q_give_an_interval_with_zero() -> None:
    x = draw(*pair(3), n=2000)[0]
    est = fit(x, x.clone())
    assert est.ci95[0] <= 0.0 <= est.ci95[1], est


@pytest.mark.parametrize("divergence", ["kl", "tv"])
def test_value_and_interval_lie_in_the_divergences_range(divergence: str) -> None:
    # on P = Q the value and the interval's lower end fall below 0 by the noise (kl:
    # -0.0002 [-0.0094, 0.0089] before, tv's lower end -0.037); neither is ever negative: 0
    p, _ = pair(2)
    est = fit(*draw(p, p), divergence)
    assert est.ci95[0] == 0.0 <= est.value <= est.ci95[1] < 0.1, est  # tv: stderr 0.03 here
    # and nothing above the top of the range: tv is at most 1
    high = dataclasses.replace(est, value=1.02, ci95=(0.97, 1.07))
    assert in_range(high, get("tv").value_range).ci95 == (0.97, 1.0)
    assert in_range(high, get("tv").value_range).value == 1.0


def test_nothing_is_trained_or_selected_on_a_critics_test_fold() -> None:
    x_p, x_q = draw(*pair(1), n=800)
    test_p = assign_folds(x_p.numpy(), x_q.numpy(), 2, 0.2, torch.Generator().manual_seed(4))
    changed = x_p.clone()
    changed[test_p[0][0].test] += 3.0
    before, after = fit(x_p, x_q, steps=100, seed=4), fit(changed, x_q, steps=100, seed=4)
    fold0 = [[row for row in e.history if row[0] == 0] for e in (before, after)]
    assert fold0[0] == fold0[1] and fold0[0]
    assert before.value != after.value


def test_result_fields_and_json() -> None:
    x_p, x_q = draw(*pair(1), n=700)
    est = fit(x_p[:, 0].numpy(), x_q[:500].numpy(), steps=60, eval_every=20)
    assert est.n_test == (700, 500) and est.folds == 2  # every row is held out once
    assert [a + b for a, b in zip(est.n_train, est.n_validation, strict=True)] == [700, 500]
    assert est.steps == 60 and [row[:2] for row in est.history] == [
        (fold, step) for fold in (0, 1) for step in (20, 40, 60)
    ]
    assert est.ci95[0] < est.value < est.ci95[1]
    assert est.method == "variational" and est.reason == "a bound or critic was given"
    assert est.seconds > 0
    out = json.loads(json.dumps(est.to_dict()))
    assert out["n_test"] == [700, 500] and out["warnings"] == list(est.warnings)
    assert "nats" in str(est)


def test_custom_critic_is_used_and_left_untouched() -> None:
    critic = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))  # (B, 1) output
    before = [t.clone() for t in critic.parameters()]
    x_p, x_q = draw(*pair(1), n=600)
    est = fdiv.estimate(x_p, x_q, critic=critic, steps=50)
    assert math.isfinite(est.value)
    assert all(torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture) -> None:
    fit(*draw(*pair(1), n=300), steps=20, progress=True)
    assert capsys.readouterr().err == ""


class _Bar:
    """Records what a progress bar is told."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.n = total, 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


def test_the_progress_bar_counts_steps_and_fills_when_training_stops_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    bars: list[_Bar] = []

    def bar(*args: object, **kwargs: object) -> _Bar:
        bars.append(_Bar(*args, **kwargs))  # type: ignore[arg-type]
        return bars[-1]

    monkeypatch.setattr(importlib.import_module("fdiv.estimation.estimate"), "progress_bar", bar)
    est = fit(*draw(*pair(1), n=600), steps=5000, patience=50, progress=True)
    assert est.steps < 5000  # early stopping ended every fold
    assert len(bars) == 1 and bars[0].total == bars[0].n == 2 * 5000


def test_a_fit_with_many_validation_rows_stops_twice_its_early_best_step_after_it() -> None:
    waits = [wait(b, 400, WAIT_ROWS) for b in (0, 50, 100, 150, 250, 4000)]
    assert waits == [200, 200, 200, 300, 400, 400]
    assert wait(50, 400, WAIT_ROWS - 1) == 400  # few rows: an early peak may be noise
    # a 1-D shift is an easy (linear) log ratio: the validation objective peaks early and the
    # fold stops wait(best) steps later, not ``patience`` steps later
    n = 4000 + WAIT_ROWS + 500
    x_p, x_q = (t.numpy().astype(np.float64) for t in draw(*pair(1), n=n))
    rows = np.arange(n)
    split = Split(rows[:4000], rows[4000 : 4000 + WAIT_ROWS], rows[4000 + WAIT_ROWS :])
    data = fold_tensors(x_p, x_q, split, split, torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    result = fit_fold(
        MLPCritic(1, (32, 32)), data, 0, get("kl"), "dv", 5.0,
        torch.Generator().manual_seed(0), steps=6000, batch_size=256, lr=1e-3, eval_every=25,
        patience=400, bar=tqdm(disable=True),
    )  # fmt: skip
    assert result.best_step < 200
    assert result.steps == result.best_step + wait(result.best_step, 400, WAIT_ROWS) < 400 + 200


def _bad(x: np.ndarray, row: int, column: int, value: float) -> np.ndarray:
    x = x.copy()
    x[row, column] = value
    return x


GOOD = np.random.default_rng(0).normal(size=(300, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"p": _bad(_bad(_bad(GOOD, 17, 2, np.nan), 40, 0, np.inf), 41, 1, -np.inf)},
            ValueError,
            r"p has 3 non-finite values \(first at row 17, column 2\)",
        ),
        ({"q": _bad(GOOD, 5, 0, np.nan)}, ValueError, r"q has 1 non-finite value \(first at row 5"),
        ({"q": GOOD[:, :2]}, ValueError, "same dimension, got p: 3 and q: 2"),
        ({"p": GOOD[:60]}, ValueError, f"fold 1 of 3 into train/validation/test = .*{MIN_SPLIT}"),
        ({"p": GOOD[:90], "folds": 5}, ValueError, "at least 20"),
        ({"folds": 1}, ValueError, "folds must be at least 2"),
        ({"method": "knn", "divergence": "js"}, ValueError, "'knn' estimates kl only"),
        ({"method": "magic"}, ValueError, "method 'magic' is unknown"),
        ({"p": GOOD.astype(object)}, TypeError, "real numbers"),
        ({"p": {"rows": GOOD}}, TypeError, "torch.Tensor, a numpy.ndarray or a .*list"),
        ({"p": [[0.0, 1.0, 2.0], [1.0]]}, ValueError, "rows must all have the same length"),
        ({"p": [["a", "b", "c"]] * 100}, TypeError, "real numbers"),
        ({"p": GOOD[None]}, ValueError, r"shape \(N, d\)"),
        ({"divergence": "jsdd"}, ValueError, "unknown; did you mean"),
        ({"divergence": "js", "bound": "dv"}, ValueError, "'dv' applies only to kl"),
        ({"divergence": "hellinger", "bound": "smile"}, ValueError, "applies only to kl"),
        ({"bound": "mine"}, ValueError, "bound 'mine' is unknown"),
        ({"steps": 0}, ValueError, "steps must be positive"),
        ({"steps": -3}, ValueError, "steps must be positive"),
        ({"steps": 1.5}, TypeError, "steps must be an integer"),
        ({"validation": 1.5}, ValueError, "validation must be a fraction"),
        ({"lr": 0.0}, ValueError, "lr must be"),
        ({"critic": nn.Linear(3, 2)}, ValueError, r"critic must map \(B, d\)"),
        ({"critic": lambda x: x.sum(1)}, TypeError, "critic must be a torch.nn.Module"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs: dict, error: type, message: str) -> None:
    args = {"p": GOOD, "q": GOOD + 0.1, "steps": 5, **kwargs}
    with pytest.raises(error, match=message):
        fdiv.estimate(**args)


def test_nested_lists_are_samples_like_arrays() -> None:
    x_p, x_q = (np.random.default_rng(s).normal(size=(300, 2)) for s in (1, 2))
    as_lists = fdiv.estimate(x_p.tolist(), x_q.tolist(), method="knn")
    assert as_lists.value == fdiv.estimate(x_p, x_q, method="knn").value
    one_column = fdiv.estimate(list(x_p[:, 0]), tuple(x_q[:, 0]), method="knn")
    assert one_column.value == fdiv.estimate(x_p[:, :1], x_q[:, :1], method="knn").value


def test_one_critic_class_serves_estimation_and_the_gan() -> None:
    from fdiv.estimation.critics import MLPCritic as EstimationCritic
    from fdiv.gan.models import build_models

    _, gan_critic = build_models(2, 4, (8,), (8, 8), None, 16, torch.ones(2), 2.0)
    assert type(gan_critic) is EstimationCritic
    assert isinstance(gan_critic.net[1], torch.nn.LeakyReLU)
    x = torch.randn(5, 2)
    expected = gan_critic.net((x - 1.0) / 2.0).squeeze(-1)  # standardised coordinates
    torch.testing.assert_close(gan_critic(x), expected, rtol=0, atol=0)
    assert isinstance(EstimationCritic(3).net[1], torch.nn.SiLU)
    with pytest.raises(ValueError, match="activation 'gelu' is unknown"):
        EstimationCritic(3, activation="gelu")


def test_atoms_of_discrete_data_are_spread_over_the_folds() -> None:
    # Poisson counts: ~100 distinct rows a side, each an atom with tens of copies. Kept in one
    # fold, a critic's test atoms were rows it had never seen (at 10,000 a side the default
    # estimate failed with "the critic overfits" on 1 seed of 3); spread, every test atom is
    # among its critic's training rows, while a row with fewer than ATOM copies stays whole
    rng = np.random.default_rng(0)
    x_p, x_q = rng.poisson(3.0, (3000, 2)).astype(float), rng.poisson(5.0, (3000, 2)).astype(float)
    x_p[:3] = x_q[:3] = [[100.0, 100.0]]  # a rare row, 6 copies over P and Q
    rows, counts = np.unique(np.concatenate([x_p, x_q]), axis=0, return_counts=True)
    copies = {tuple(r): c for r, c in zip(rows, counts, strict=True)}
    assert copies[(100.0, 100.0)] == 6 < ATOM
    for split_p, split_q in assign_folds(x_p, x_q, 3, 0.2, torch.Generator().manual_seed(0)):
        train = {tuple(r) for r in np.concatenate([x_p[split_p.train], x_q[split_q.train]])}
        test = {tuple(r) for r in np.concatenate([x_p[split_p.test], x_q[split_q.test]])}
        atoms = {r for r in test if copies[r] >= ATOM}
        assert len(atoms) > 20 and atoms <= train
        assert not {r for r in test if copies[r] < ATOM} & train


def test_discrete_counts_are_estimated_without_leaking() -> None:
    # Poisson(3) vs Poisson(5) in 2 coordinates: KL = 2 (3 log(3/5) + 2) = 0.935 nats. With the
    # atoms kept whole, seeds 0 and 2 gave 0.821 and 0.871; spread, 0.893 and 0.914. The same
    # counts given as P and Q hold 0 in the interval
    truth = 2 * (3 * math.log(3 / 5) + 2)
    fast = {"steps": 600, "batch_size": 512, "eval_every": 25, "patience": 200}
    for seed in (0, 2):
        rng = np.random.default_rng(seed)
        x_p = rng.poisson(3.0, (3000, 2)).astype(float)
        x_q = rng.poisson(5.0, (3000, 2)).astype(float)
        est = fdiv.estimate(x_p, x_q, seed=seed, **fast)
        assert abs(math.log(est.value / truth)) < math.log(1.08), est
        same = fdiv.estimate(x_p, x_p.copy(), seed=seed, **fast)
        assert same.ci95[0] <= 0.0 <= same.ci95[1], same


def test_boolean_samples_count_as_zero_and_one() -> None:
    # binary features (flags, one-hot columns) as numpy or torch booleans: the same estimate as
    # their 0/1 floats, bit for bit
    rng = np.random.default_rng(0)
    x_p, x_q = rng.random((400, 3)) < 0.3, rng.random((400, 3)) < 0.5
    fast = {"steps": 20, "eval_every": 10}
    as_floats = fdiv.estimate(x_p.astype(float), x_q.astype(float), **fast)
    for p, q in ((x_p, x_q), (torch.from_numpy(x_p), torch.from_numpy(x_q))):
        est = fdiv.estimate(p, q, **fast)
        assert (est.value, est.ci95) == (as_floats.value, as_floats.ci95)
