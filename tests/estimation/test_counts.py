"""The jackknifed plug-in over frequency tables (method "counts"): against closed forms, a
brute-force jackknife and scipy, its coverage over seeds, and when it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import fdiv
from fdiv import Estimate, estimate
from fdiv.divergences.registry import get
from fdiv.estimation import counts
from fdiv.estimation.counts import counts_estimate, counts_mi, row_keys, tables

CAT5_P = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
CAT5_Q = CAT5_P[::-1].copy()


def _truth(p: np.ndarray, q: np.ndarray, name: str) -> float:
    """sum_x q f(p / q) from the registry's f, in float64 (reverse_kl: kl with P and Q swapped)."""
    if name == "reverse_kl":
        p, q, name = q, p, "kl"
    return float((torch.tensor(q) * get(name).f(torch.tensor(p / q))).sum())


def _draw(p: np.ndarray, q: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    draw = [rng.choice(len(w), n, p=w)[:, None].astype(np.float64) for w in (p, q)]
    return draw[0], draw[1]


def test_row_keys_equal_rows_share_a_key() -> None:
    x = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]])
    keys = row_keys(x)
    assert keys[0] == keys[1] and keys[0] != keys[2]


def test_plug_in_is_the_kl_of_the_frequency_tables() -> None:
    """Without the jackknife the value is scipy's KL of the two observed frequency tables; the
    correction it adds is of order cells / N (5 cells: 0.0028 nats at N = 3,000)."""
    x_p, x_q = _draw(CAT5_P, CAT5_Q, 3000, 0)
    c_p, c_q = tables(x_p, x_q)
    plug_in = float(counts._terms(c_p, c_q, 3000, 3000, get("kl")).sum())
    assert plug_in == pytest.approx(stats.entropy(c_p / 3000, c_q / 3000), rel=1e-12)
    est = counts_estimate(x_p, x_q, get("kl"))
    assert 1 / 3000 < abs(est.value - plug_in) < 10 / 3000


@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("name", ["kl", "js", "hellinger", "pearson", "alpha(-1)"])
def test_deleted_values_match_recomputing_without_the_row(side: int, name: str) -> None:
    """The closed-form delete-one values equal the plug-in recomputed from scratch without that
    row, cell by cell (P holds a value Q lacks for js and hellinger: their bounded f)."""
    div = get(name)
    c_p, c_q = np.array([5, 3, 2, 7]), np.array([4, 6, 2, 2])
    if name in ("js", "hellinger"):
        c_p, c_q = np.array([5, 3, 2, 7, 2]), np.array([4, 6, 1, 2, 0])
    deleted = counts._deleted(c_p, c_q, side, div)
    held = np.flatnonzero((c_p, c_q)[side] > 0)
    for i, cell in enumerate(held):
        fewer = [c_p.copy(), c_q.copy()]
        fewer[side][cell] -= 1
        x_p = np.repeat(np.arange(len(c_p)), fewer[0])[:, None].astype(float)
        x_q = np.repeat(np.arange(len(c_q)), fewer[1])[:, None].astype(float)
        p = np.bincount(x_p[:, 0].astype(int), minlength=len(c_p)) / len(x_p)
        q = np.bincount(x_q[:, 0].astype(int), minlength=len(c_q)) / len(x_q)
        both = q > 0
        expected = float((torch.tensor(q[both]) * div.f(torch.tensor(p[both] / q[both]))).sum())
        f_inf = float(div.f(torch.tensor(1e12, dtype=torch.float64)) / 1e12)
        expected += f_inf * p[~both].sum()
        assert deleted[i] == pytest.approx(expected, rel=1e-6, abs=1e-9)


CAT20_P = np.random.default_rng(3).dirichlet(np.ones(20))
CAT20_Q = np.random.default_rng(4).dirichlet(np.ones(20) * 3)
POISSON_3, POISSON_5 = (stats.poisson(m).pmf(np.arange(40)) for m in (3.0, 5.0))


@pytest.mark.parametrize(
    ("name", "p", "q", "n"),
    [
        ("kl", CAT5_P, CAT5_Q, 2000),
        ("hellinger", CAT5_P, CAT5_Q, 2000),
        ("pearson", CAT5_P, CAT5_Q, 2000),
        ("js", POISSON_3, POISSON_5, 2000),
        ("hellinger", CAT20_P, CAT20_Q, 500),
    ],
)
def test_intervals_hold_the_truth_over_seeds(
    name: str, p: np.ndarray, q: np.ndarray, n: int
) -> None:
    """100 seeds: the 95% intervals hold the closed form in 88-100 of them (95 +- 3 binomial
    standard deviations, capped) and the mean error is within 3 standard errors of the mean of
    0 (jackknifed: no O(cells / N) bias left; see the next test)."""
    p, q = p / p.sum(), q / q.sum()
    truth = _truth(p, q, name)
    errors, held = [], 0
    for seed in range(100):
        est = counts_estimate(*_draw(p, q, n, seed), get(name))
        errors.append(est.value - truth)
        held += est.ci95[0] <= truth <= est.ci95[1]
    assert 88 <= held <= 100
    assert abs(np.mean(errors)) < 3 * np.std(errors) / 10


def test_without_the_jackknife_the_bias_shows() -> None:
    """The test above can fail: the plain plug-in of hellinger on 20 categories at 500 a side
    is biased by more than 3 standard errors of the mean over the same 100 seeds (0.027 nats,
    measured, against 0.012; jackknifed -0.003)."""
    truth, div = _truth(CAT20_P, CAT20_Q, "hellinger"), get("hellinger")
    plain = []
    for seed in range(100):
        c_p, c_q = tables(*_draw(CAT20_P, CAT20_Q, 500, seed))
        plain.append(float(counts._terms(c_p, c_q, 500, 500, div).sum()) - truth)
    assert np.mean(plain) > 3 * np.std(plain) / 10


def test_refusals_say_why() -> None:
    rng = np.random.default_rng(0)
    x_p, x_q = _draw(CAT5_P, CAT5_Q, 2000, 1)
    assert "kink" in counts_estimate(x_p, x_q, get("tv"))
    continuous = rng.normal(size=(500, 2))
    assert "do not resolve" in counts_estimate(continuous, continuous + 1, get("kl"))
    # P takes a value (5) that Q never does: pearson is infinite without it, js is not (kl:
    # a lower bound, next test)
    x_p[:40] = 5.0
    assert "lacks" in counts_estimate(x_p, x_q, get("pearson"))
    assert isinstance(counts_estimate(x_p, x_q, get("js")), Estimate)
    # a value Q holds once: deleting that row of Q leaves a P value unmatched; pearson refuses,
    # kl's jackknife moves it to the lacking values and stays two-sided
    x_q = x_q.copy()
    x_q[0] = 5.0
    assert "lacks" in counts_estimate(x_p, x_q, get("pearson"))
    est = counts_estimate(x_p, x_q, get("kl"))
    assert est.bound == "plug-in (jackknife)" and math.isfinite(est.ci95[1]) and not est.warnings


def test_estimate_picks_counts_for_resolved_discrete_samples() -> None:
    x_p, x_q = _draw(CAT5_P, CAT5_Q, 2000, 2)
    est = estimate(x_p, x_q, "kl")
    assert est.method == "counts" and "frequency tables" in est.reason
    truth = _truth(CAT5_P, CAT5_Q, "kl")
    assert est.ci95[0] <= truth <= est.ci95[1]
    swapped = estimate(x_q, x_p, "reverse_kl")
    assert swapped.method == "counts"
    assert swapped.value == pytest.approx(est.value, rel=1e-12)
    assert estimate(x_p, x_q, "kl", method="counts").reason == "method='counts' was requested"


def test_estimate_counts_refuses_with_the_reason() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"method 'counts' does not apply: .* do not resolve"):
        estimate(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)), method="counts")
    x_p, x_q = _draw(CAT5_P, CAT5_Q, 500, 3)
    with pytest.raises(ValueError, match="kink"):
        estimate(x_p, x_q, "tv", method="counts")


def test_tv_on_discrete_samples_goes_to_the_critics() -> None:
    x_p, x_q = _draw(CAT5_P, CAT5_Q, 600, 4)
    est = estimate(x_p, x_q, "tv", steps=100)
    assert est.method == "variational"
    assert math.isfinite(est.value)


def test_kl_with_values_q_lacks_is_a_lower_bound() -> None:
    """P puts 5% on a label where Q has 1e-4 (2,000 draws of Q miss it on 85 of 100 seeds):
    KL = 0.262 nats (that label adds 0.311). Where Q's sample lacks it the lower end stays below
    the truth (measured: 85 of 85), the upper end is open and a warning names the share; the
    critics' lower end had stood above the truth (binomial-vs-uniform20-d1, reverse_kl, 10,000
    a side: 4.41 and 4.25 for 4.20)."""
    p = np.append(CAT5_P * 0.95, 0.05)
    q = np.append(CAT5_P * (1 - 1e-4), 1e-4)
    truth = _truth(p, q, "kl")
    below, values = 0, []
    for seed in range(100):
        est = counts_estimate(*_draw(p, q, 2000, seed), get("kl"))
        if not isinstance(est, Estimate) or est.ci95[1] < math.inf:
            continue  # Q's sample holds the label (once: left to the critics)
        assert "Q's sample lacks" in est.warnings[0]
        below += est.ci95[0] <= truth
        values.append(est.value)
    assert len(values) >= 70 and below >= 0.95 * len(values)
    assert 0 < np.mean(values) < truth


def _mi(pxy: np.ndarray) -> float:
    """I(X; Y) of a joint table by scipy: KL(P_XY || P_X x P_Y)."""
    return float(stats.entropy(pxy.ravel(), np.outer(pxy.sum(1), pxy.sum(0)).ravel()))


def _pairs(pxy: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    cell = np.random.default_rng(seed).choice(pxy.size, n, p=pxy.ravel())
    x, y = np.divmod(cell, pxy.shape[1])
    return x[:, None].astype(np.float64), y[:, None].astype(np.float64)


NOISY_LABELS = np.eye(10) * 5 + 0.2
NOISY_LABELS /= NOISY_LABELS.sum()


def test_counts_mi_plug_in_and_its_jackknife() -> None:
    """The plug-in is H(X) + H(Y) - H(X, Y) of the observed tables (scipy's KL of the joint
    table against its marginals' product); the delete-one values equal recomputing without
    the pair (checked through the jackknife's value and variance on 90 pairs by brute force)."""
    table = np.array([[0.3, 0.1, 0.1], [0.05, 0.15, 0.3]])
    x, y = _pairs(table, 90, 0)
    est = counts_mi(x, y)

    def observed(keep: np.ndarray) -> float:
        t = np.zeros(table.shape)
        np.add.at(t, (x[keep, 0].astype(int), y[keep, 0].astype(int)), 1.0)
        return _mi(t / t.sum())

    leave_one = np.array([observed(np.arange(90) != i) for i in range(90)])
    plug_in = observed(np.arange(90))
    assert est.value == pytest.approx(90 * plug_in - 89 * leave_one.mean(), rel=1e-9)
    spread = 89 / 90 * ((leave_one - leave_one.mean()) ** 2).sum()
    assert est.stderr**2 == pytest.approx(spread, rel=1e-9)


@pytest.mark.parametrize(
    ("pxy", "n"),
    [
        (NOISY_LABELS, 5000),
        (np.outer([0.4, 0.3, 0.2, 0.1], [0.25] * 4), 1000),  # independent: I = 0
    ],
)
def test_counts_mi_intervals_hold_the_truth(pxy: np.ndarray, n: int) -> None:
    """100 seeds: 88-100 intervals hold the table's I (measured 98 and 100 of 100), the mean
    error within 3 standard errors of the mean of 0 (the plain plug-in is biased up by about
    (K_x - 1)(K_y - 1) / 2N)."""
    truth = _mi(pxy)
    errors, held = [], 0
    for seed in range(100):
        est = counts_mi(*_pairs(pxy, n, seed))
        errors.append(est.value - truth)
        held += est.ci95[0] <= truth <= est.ci95[1]
    assert 88 <= held <= 100
    assert abs(np.mean(errors)) < 3 * np.std(errors) / 10


def test_mutual_information_counts_discrete_pairs_only_by_default() -> None:
    x, y = _pairs(NOISY_LABELS, 3000, 1)
    est = fdiv.mutual_information(x, y)
    assert est.method == "counts" and "frequency tables" in est.reason
    assert fdiv.mutual_information(x, y, " AUTO ").value == est.value
    assert est.ci95[0] < _mi(NOISY_LABELS) < est.ci95[1]
    # an explicit bound asks for the critic; continuous pairs never count
    assert fdiv.mutual_information(x, y, "nwj", steps=50).method != "counts"
    rng = np.random.default_rng(0)
    assert "do not resolve" in counts_mi(rng.normal(size=(500, 1)), rng.normal(size=(500, 1)))


def _lower_direct(c_p: np.ndarray, c_q: np.ndarray) -> float:
    """The kl lower bound from scratch: plug-in terms where Q's sample takes the value, the
    share P_u lacking in Q at Q mass 3 / N_q together."""
    p, q = c_p / c_p.sum(), c_q / c_q.sum()
    seen, lacking = (c_p > 0) & (c_q > 0), (c_p > 0) & (c_q == 0)
    share = p[lacking].sum()
    tail = share * math.log(share * c_q.sum() / 3.0) if share > 0 else 0.0
    return float((p[seen] * np.log(p[seen] / q[seen])).sum() + tail)


def test_kl_lower_bound_jackknife_matches_deleting_each_row() -> None:
    """Values Q lacks (3, 5) and holds once (4): the closed-form delete-one values, through the
    jackknifed value and standard error, equal recomputing the bound without each row."""
    c_p = np.array([30, 20, 10, 6, 5, 3, 0])
    c_q = np.array([10, 25, 30, 0, 1, 0, 8])
    est = counts._kl_lower(c_p, c_q, 0.0)
    value = _lower_direct(c_p.astype(float), c_q.astype(float))
    total = 0.0
    variance = 0.0
    for counts_, other, side in ((c_p, c_q, 0), (c_q, c_p, 1)):
        n = counts_.sum()
        deleted, weights = [], []
        for k in np.flatnonzero(counts_ > 0):
            fewer = counts_.astype(float).copy()
            fewer[k] -= 1
            pair = (fewer, other.astype(float)) if side == 0 else (other.astype(float), fewer)
            deleted.append(_lower_direct(*pair))
            weights.append(counts_[k])
        deleted, weights = np.array(deleted), np.array(weights)
        mean = (weights * deleted).sum() / n
        total += (n - 1) * (mean - value)
        variance += (n - 1) / n * (weights * (deleted - mean) ** 2).sum()
    assert est.value == pytest.approx(value - total, rel=1e-10)
    assert est.stderr == pytest.approx(math.sqrt(variance), rel=1e-10)
    assert est.ci95[1] == math.inf and "12.2% of P's rows take 2 value(s)" in est.warnings[0]
