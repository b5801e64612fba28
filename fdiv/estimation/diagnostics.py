"""Warnings for estimates that cannot be trusted, each from a check a reader can repeat.

Every function returns the warning's text, or None when its check passes. Thresholds are
named constants with the reason next to them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from fdiv.divergences.registry import FDivergence
from fdiv.estimation.counts import row_keys
from fdiv.estimation.crossfit import moments

__all__ = [
    "COARSE_SHARE",
    "coarse_coordinate",
    "discrete_against_continuous",
    "extrapolated",
    "fits_noise",
    "heavier_tail",
    "heavy_kurtosis",
    "heavy_tail",
    "kurtosis_ratio",
    "leptokurtic",
    "partition_ess",
    "ratio_powers",
    "separation",
    "smile_clip_active",
    "test_disagrees",
    "unbounded_alpha",
    "unmatched_values",
]

#: Critics whose held-out value is below NOISE_SHARE of their in-sample value (their bound on
#: their own training rows), that value at least NOISE_IN_SAMPLE nats, fit noise sooner than the
#: density ratio, and the midpoint of the two (:func:`fdiv.estimation.crossfit.combine`) is
#: mostly low: a 1-nat shift in one of d = 100 coordinates, 600 rows a side (KL 0.5): held-out
#: 0.04-0.09, in-sample 0.22-0.39 (shares 0.13-0.34), the value 0.15-0.24 with upper ends
#: 0.25-0.44 (5 runs); the curved pair banana-d10 at 2,000 a side (0.375): share 0.05, the value
#: 0.21. It can be high too: the same shift in d = 200, 5,000 a side: held-out -0.03 and -0.10,
#: in-sample 1.58 and 1.56, the value 0.77 and 0.73 (2 seeds; lower ends -0.32, -0.23). Where
#: the midpoint held (the suite's pairs at 2,000 a side, one seed each: mixtures, lognormal,
#: t's, rings, narrower Q, a far component, the strong banana, Cauchy, beta, arcsine; banana at
#: 10,000) the shares were 0.52 to 0.94; Laplace against a Gaussian scored 0.42 (0.22 for 0.36,
#: its upper end already open for its heavy tail); two samples of one Gaussian (500-2,000 rows,
#: d = 2 to 100) scored in-sample 0.004-0.07, a correlation of 0.08 in d = 10 (0.104) 0.147.
#: Over 10 seeds at 2,000 a side it also fires where the midpoint happened to hold (an interval
#: made one-sided, no miss): on 5 of 10 runs of that correlation (0.10-0.14; held-out -0.00 to
#: 0.07) and 1 of 10 of the 4-mode mixture (0.349 for 0.354, share 0.39).
NOISE_SHARE = 0.4
NOISE_IN_SAMPLE = 0.15
#: Held-out balanced accuracy above which P and Q count as separated: with the classifier right
#: on 99% of rows the critic's log-ratio is pinned only where the classes still overlap, and a
#: bound from N samples cannot exceed about log N nats.
SEPARATED_ACCURACY = 0.99
#: Effective sample size of exp(v) over Q below which the partition term log E_Q[exp v] rests
#: on too few samples for its delta-method variance to mean much, or below this share of the
#: rows where there are fewer than 100 / share (a fold of 2,000 rows a side holds 667, so the
#: share changes nothing from there up): two samples of one Gaussian, 400 rows a side (133 a
#: fold), gave effective sizes of 60 and 93: weights spread evenly, which the fixed 100 called
#: dominated.
MIN_PARTITION_ESS = 100.0
MIN_PARTITION_ESS_SHARE = 0.15
#: Standardised gap |validation - test| beyond which a fold's two held-out values disagree (a
#: 4-sigma gap has probability 6e-5 under noise alone; selection bias adds a little).
DISAGREE_Z = 4.0
#: Hill tail index of the log-ratio on P's held-out rows below which its upper tail counts as
#: heavy: at 2 and below E_P[log p/q] has infinite variance (no normal interval), and on the
#: suite's pairs an index under 3 (on the top sqrt(N) rows) marked every Student-t and far-
#: component pair, whose estimates fell 20-95% low, while light-tailed pairs scored 3.8 to 13.
HEAVY_TAIL_INDEX = 3.0
#: Share of the Hill index's k top rows of P that Q's held-out rows must match in number above
#: the (k+1)-th largest log-ratio on P, for P's tail to count as covered by Q (no warning).
#: On one Gaussian sample given as P and Q, or two of one Gaussian (d = 3, 300 to 1,000 rows a
#: side, 4 seeds), the index fell below 3 on 17 of 24 runs, the tail of noise around 0, while
#: Q reached the threshold 0.83 to 2.8 times k; on the suite's heavy-tailed pairs at 2,000 a
#: side (the critics' outputs, 2 seeds: Student t with 3, 5, 10 dof, Laplace, the bananas, a
#: weakly correlated Gaussian) 0 to 0.49 times (t with 10 dof): their top rows lie where Q
#: has few or none. The exact log-ratios give 0 to 0.31 at 2,000 and 10,000. A tail thinner
#: than k rows (1% of P at distance 8: about 20 of 2,000 rows) leaves Q reaching the k-th row
#: (0.67 and 0.76 times k), so the warning also stands where TAIL_BEYOND_ROWS or more of P's
#: rows lie above all of Q's: where the two sides' held-out log-ratios are exchangeable (P = Q)
#: j or more do with probability about 2^-j (3% for 5); on the exact log-ratios of the heavy-
#: tailed pairs at 2,000 a side 11 to 1,854 did, on the far component 17 to 25.
TAIL_REACH_SHARE = 0.7
TAIL_BEYOND_ROWS = 5
#: Tail index of P's standardised norms below which P counts as heavy-tailed, and the share of
#: Q's index below which P's tail counts as heavier than Q's (``heavier_tail``). On the suite's
#: pairs (10,000 a side) P scored 2.2 to 4.3 (ratio 0.15 to 0.43) on the Student-t and far-
#: component pairs, where kNN fell 55-90% low without a word; the light-tailed pairs scored 6.3
#: and up (a correlated or bent Gaussian against a round one: ratio down to 0.35, index above 6)
#: and a lognormal against a lognormal 2.1 against 2.3 (ratio 0.9: both tails heavy).
NORM_TAIL_INDEX = 5.0
NORM_TAIL_RATIO = 0.5
#: Mardia's multivariate kurtosis over a Gaussian's, d(d + 2), above which a sample counts as
#: heavy-tailed for the telescoping estimator's quadratic links (exact for Gaussian pairs), and
#: the standard errors of that ratio under a Gaussian (sqrt(8 / (d (d + 2) N))) it must also
#: exceed (asymptotically normal: 6 of them is beyond chance; at few rows its right skew needs
#: the margin). Measured, 10,000 a side, 4 seeds: Gaussians 0.97-1.04 (d = 1 to 50), a bent
#: Gaussian 1.12-1.16, the Laplace product 1.40-1.43, multivariate t (5 dof, d = 20) 2.3-3.4;
#: on that t shifted by 13.7 nats telescoping fell 25% low with intervals that missed.
KURTOSIS_RATIO = 1.25
KURTOSIS_Z = 6.0
#: Shares of a side's values in one coordinate that repeat within that side: above the first the
#: coordinate counts as discrete (levels, as in 8-bit images), below the second as continuous.
DISCRETE_SHARE = 0.5
CONTINUOUS_SHARE = 0.05
#: Share of P's critic outputs above SMILE's clip beyond which SMILE's value is not a bound.
SMILE_CLIP_SHARE = 0.01
#: Share of the kl value that the default critic's network adds to the t fits' log-ratio on P's
#: held-out rows above every held-out output on Q's, where no row of Q pins the network down,
#: beyond which the value counts as the network's extrapolation. Measured at 5,000 a side (2
#: seeds each): Gaussian pairs, whose log-ratio the fits extrapolate exactly, -0.013 to 0.041
#: (shifts of 2 to 4.5 nats in d = 1 to 10, a correlated pair of 4.15 nats, a narrower Q); the
#: 4-mode mixture 0.002-0.004, the t with 5 dof -0.001-0.002 (its fits are exact); a bent
#: Gaussian against a Gaussian, d = 4 (b = 1), reverse kl 2.90: 0.43 and 0.48, where the value
#: came out 1.68 and 1.85 with two-sided intervals that missed (the network grows too slowly
#: where the true log-ratio grows like x^4), kl 1.10: 0.076-0.088; the suite's banana-d10
#: (0.375): 0.11 and 0.12, values 0.30.
EXTRAPOLATED_SHARE = 0.1
#: Chance, were P and Q equally likely to take every value, that ``unmatched_values`` names any
#: value: a value drawn t times in all lands in P alone with probability (N_p / (N_p + N_q))^t,
#: so it needs t at least the m that makes this, times the number of values drawn m times or
#: more, fall below UNMATCHED_ALPHA (10,000 a side: 8 draws with one value drawn that often, 12
#: with a hundred).
UNMATCHED_ALPHA = 0.01
#: Share of P's rows those values must hold together: Poisson(3) against Poisson(4) in d = 3
#: (0.41 nats, 5,000 a side) had one row value drawn 20 times by P and never by Q (0.4% of the
#: rows, p/q about 10 there), and the estimate held the truth with a two-sided interval.
UNMATCHED_SHARE = 0.01


def separation(v_p: Tensor, v_q: Tensor, n: int) -> str | None:
    """Balanced accuracy of the rule v > 0 (the logistic critic's log p/q) on held-out rows."""
    accuracy = 0.5 * (float((v_p > 0).double().mean()) + float((v_q <= 0).double().mean()))
    if accuracy < SEPARATED_ACCURACY:
        return None
    return (
        f"the critic separates P and Q almost perfectly on held-out data (balanced accuracy "
        f"{accuracy:.2%}): the divergence may exceed what {n} samples can certify (about "
        f"log N = {math.log(n):.1f} nats) and the estimate may be far too low"
    )


#: The divergences that are an alpha-divergence up to a factor, by their a: pearson (chi2, twice
#: alpha(2)) and neyman (twice alpha(-1)); :func:`ratio_powers` names their means of (p/q)^k.
POWER_FAMILIES = {"pearson": 2.0, "neyman": -1.0}


def unbounded_alpha(div: FDivergence) -> float | None:
    """The a of an unbounded alpha-type divergence (a > 1 or a < 0: pearson, neyman, alpha(a)),
    else None."""
    a = POWER_FAMILIES.get(div.family, div.alpha)
    return a if a is not None and div.value_range[1] == math.inf else None


def ratio_powers(div: FDivergence, bound: str) -> tuple[tuple[str, float], ...]:
    """The means of (p/q)^k in ``div``'s value under ``bound`` that a few rows can carry, as
    (side "v_p" or "v_q", k): DV's partition term E_Q[p/q]; an unbounded alpha-divergence's
    (:func:`unbounded_alpha`) E_P[(p/q)^(a - 1)] and E_Q[(p/q)^a]."""
    a = unbounded_alpha(div)
    if a is not None:
        return (("v_p", a - 1.0), ("v_q", a))
    return (("v_q", 1.0),) if bound == "dv" else ()


def partition_ess(v_q: Tensor, power: float = 1.0) -> str | None:
    """Effective sample size (sum w)^2 / sum w^2 of w = exp(power * v) on held-out rows (v the
    log-ratio), against MIN_PARTITION_ESS (or MIN_PARTITION_ESS_SHARE of the rows where they
    are few).

    ``power`` 1: the DV partition term E_Q[p/q]; 2: the chi2 term E_Q[(p/q)^2] of pearson; any
    other: a mean of (p/q)^power (the alpha family).
    """
    scaled = power * v_q.double()
    w = torch.exp(scaled - scaled.max())
    ess = float(w.sum() ** 2 / (w * w).sum())
    if ess >= min(MIN_PARTITION_ESS, MIN_PARTITION_ESS_SHARE * len(v_q)):
        return None
    term = {
        1.0: "the partition term (a mean of exp(log-ratio))",
        2.0: "the chi2 term (a mean of the squared density ratio)",
    }.get(power, f"the mean of (p/q)^{power:g}")
    return (
        f"{term} is dominated by a few samples "
        f"(effective sample size {ess:.1f} of {len(v_q)}): its value and interval are unreliable"
    )


def heavy_tail(v_p: Tensor, v_q: Tensor | None = None) -> str | None:
    """The Hill estimate (:func:`_hill`) of the upper tail index of the log-ratio on P's
    held-out rows; given Q's (``v_q``), not where Q covers P's tail (noise around a ratio of 1):
    TAIL_REACH_SHARE k of Q's rows lie above its threshold and fewer than TAIL_BEYOND_ROWS of P's
    rows lie above all of Q's."""
    values = v_p.double().cpu().numpy()
    index = _hill(values)
    k = math.ceil(math.sqrt(len(values)))
    if index >= HEAVY_TAIL_INDEX:
        return None
    if v_q is not None:
        threshold = np.sort(values)[-k - 1]  # the index is finite: there are k + 1 rows
        # strictly above, as P's k top rows are: a collapsed critic's constant is no reach
        reached = int((v_q > threshold).sum()) >= TAIL_REACH_SHARE * k
        if reached and int((v_p > v_q.max()).sum()) < TAIL_BEYOND_ROWS:
            return None
    return (
        f"the estimated log-ratio on P has a heavy upper tail (Hill index {index:.2f} on its top "
        f"{k} rows, below {HEAVY_TAIL_INDEX:g}): the value rests on a few far rows of P where Q "
        "has no samples, so the critic extrapolates there; expect the estimate to be too low "
        "(heavy tails, far components): the interval's upper end is open (inf), as these "
        "samples bound the divergence only from below"
    )


def extrapolated(v_p: Tensor, v_q: Tensor, fitted_p: Tensor, value: float) -> str | None:
    """The share of ``value`` (kl, nats) that the critic's network adds to the t fits' log-ratio
    ``fitted_p`` on P's held-out rows whose outputs ``v_p`` lie above all of Q's ``v_q``,
    against EXTRAPOLATED_SHARE."""
    beyond = v_p.double() > v_q.double().max()
    added = float(((v_p.double() - fitted_p.double()) * beyond).mean())
    if not (value > 0 and added >= EXTRAPOLATED_SHARE * value):
        return None
    return (
        f"{added / value:.0%} of the value is the critic's extrapolation: what its network adds "
        f"to the t fits' log-ratio on the {float(beyond.double().mean()):.1%} of P's held-out "
        "rows that score above every row of Q, where no row of Q pins it down; a log-ratio "
        "that is not close to the fits' there (curved, multimodal) grows faster than the "
        "network extrapolates, so the value may be far too low: the interval's upper end is "
        "open (inf)"
    )


def heavier_tail(x_p: np.ndarray, x_q: np.ndarray) -> str | None:
    """P's tail is heavy and heavier than Q's: the Hill index (:func:`_hill`) of the norms of
    the rows standardised with the pooled moments is below NORM_TAIL_INDEX on P and below
    NORM_TAIL_RATIO times Q's. For kNN, which sees no log-ratio, and beside the variational
    estimate's log-ratio check (:func:`heavy_tail`), which a critic on squashed inputs can
    pass on P's heavy tail."""
    mean, std = moments(np.concatenate([x_p, x_q]))
    index_p, index_q = (_hill(np.linalg.norm((x - mean) / std, axis=1)) for x in (x_p, x_q))
    if not (index_p < NORM_TAIL_INDEX and index_p < NORM_TAIL_RATIO * index_q):
        return None
    return (
        f"P's tail is heavier than Q's (Hill index of the standardised norms: P {index_p:.2f}, "
        f"Q {index_q:.2f}): KL(P||Q) rests on P's far rows, where Q has no samples and the "
        "estimate does not see the density ratio; expect it to be too low: the interval's "
        "upper end is open (inf), as these samples bound the divergence only from below"
    )


def kurtosis_ratio(x: np.ndarray) -> float:
    """Mardia's multivariate kurtosis mean(|S^-1/2 (x - mean)|^4) over its Gaussian value
    d(d + 2), d the covariance's rank (directions with variance below 1e-12 of the largest are
    dropped): 1 for a Gaussian, above 1 for heavier tails, below for bounded support. Every
    rank counts, so with d >= N the ratio says little (and stays below 1)."""
    mean, std = moments(x)
    y = (x - mean) / std
    y -= y.mean(axis=0)
    # whitened rows from the thin SVD y = U S V^T: z = sqrt(N - 1) U on the kept directions
    # (the covariance's eigenvalues are S^2 / (N - 1)); O(N d min(N, d)), so d >> N is cheap
    u, singular, _ = np.linalg.svd(y, full_matrices=False)
    keep = singular > 1e-6 * singular.max()
    if not keep.any():
        return 1.0
    norms = (len(x) - 1) * (u[:, keep] ** 2).sum(axis=1)
    rank = int(keep.sum())
    return float((norms**2).mean() / (rank * (rank + 2)))


def heavy_kurtosis(x: np.ndarray) -> float | None:
    """Mardia's kurtosis ratio of ``x`` (:func:`kurtosis_ratio`) where it exceeds both
    KURTOSIS_RATIO and 1 + KURTOSIS_Z Gaussian standard errors (heavier tails than a
    Gaussian's), else None."""
    ratio = kurtosis_ratio(x)
    dim = min(x.shape[1], len(x) - 1)
    noise = math.sqrt(8.0 / (dim * (dim + 2) * len(x)))
    return ratio if ratio > max(KURTOSIS_RATIO, 1.0 + KURTOSIS_Z * noise) else None


def leptokurtic(x_p: np.ndarray, x_q: np.ndarray) -> str | None:
    """P or Q has heavier tails than a Gaussian: Mardia's kurtosis ratio
    (:func:`kurtosis_ratio`) above KURTOSIS_RATIO and KURTOSIS_Z of its Gaussian standard
    errors above 1. For the telescoping estimator, whose quadratic links are exact for Gaussian
    pairs: with heavy tails log p/q is far from quadratic on the far rows of P that carry a
    large KL."""
    found = [
        f"{name} {ratio:.2f}"
        for name, ratio in (("P", heavy_kurtosis(x_p)), ("Q", heavy_kurtosis(x_q)))
        if ratio is not None
    ]
    if not found:
        return None
    return (
        f"heavier tails than a Gaussian's (Mardia's kurtosis over a Gaussian's: "
        f"{', '.join(found)}, above {KURTOSIS_RATIO:g}): telescoping's quadratic links "
        "misrepresent log p/q on the far rows (a t with 5 dof shifted by 13.7 nats: 10.3)"
    )


def _hill(values: np.ndarray) -> float:
    """The Hill estimate of the upper tail index on the top k = ceil(sqrt(N)) of ``values``:
    1 / mean(log(v_(i) / v_(k+1))), i <= k; inf where it is undefined (v_(k+1) <= 0, or the
    top k + 1 tie)."""
    top = np.sort(values)[::-1]
    k = math.ceil(math.sqrt(len(top)))
    if k + 1 > len(top) or top[k] <= 0:
        return math.inf
    mean_log = float(np.log(top[:k] / top[k]).mean())
    return 1.0 / mean_log if mean_log > 0 else math.inf


def fits_noise(in_sample: float, held_out: float, rows: int, dim: int) -> str | None:
    """Critics that fit their training rows far better than held-out ones (see NOISE_SHARE):
    the value may be far off, mostly low, and the interval's upper end is opened."""
    if in_sample < NOISE_IN_SAMPLE or held_out >= NOISE_SHARE * in_sample:
        return None
    return (
        f"the critics score {held_out:.3f} on held-out rows against {in_sample:.3f} on their "
        f"own training rows: with {rows} training rows a side in d = {dim} they fit noise "
        "sooner than the density ratio, so the value (midway between the two) may be far off, "
        "mostly too low, and the interval's upper end is open (more samples may help)"
    )


def test_disagrees(
    fold: int, validation: float, validation_var: float, test: float, test_var: float
) -> str | None:
    """A fold whose selected validation value and test value differ by more than DISAGREE_Z
    combined standard errors."""
    se = math.sqrt(validation_var + test_var)
    if not (abs(validation - test) > DISAGREE_Z * se):
        return None
    return (
        f"fold {fold + 1}: validation ({validation:.4g} nats) and test ({test:.4g} nats) disagree "
        f"by more than {DISAGREE_Z:g} standard errors ({se:.2g}): the critic is unstable"
    )


def smile_clip_active(v_p: Tensor, clip: float) -> str | None:
    """SMILE clips only the partition term: with many P outputs above the clip E_P[v] keeps
    growing with the critic while the partition term stays put, so the value is no bound."""
    share = float((v_p > clip).double().mean())
    if share <= SMILE_CLIP_SHARE:
        return None
    return (
        f"SMILE's clip ({clip:g}) is exceeded by {share:.1%} of P's critic outputs: the value is "
        "not a lower bound and grows without limit with the critic; use 'dv' or a larger clip"
    )


#: A coordinate where more than this share of P's rows take values that over sqrt(N) of the N
#: pooled rows hold (a discrete or coarsely rounded one) makes nearest-neighbour estimates
#: unreliable.
COARSE_SHARE = 0.05


def coarse_coordinate(x_p: np.ndarray, x_q: np.ndarray) -> str | None:
    """A coordinate where over COARSE_SHARE of P's rows take a value that more than sqrt(N) of
    the N pooled rows (P's and Q's; Q may have no rows) hold: a discrete or coarsely rounded
    coordinate, on which kNN's d log(nu / rho) is off even where every row is distinct (a
    coordinate at 0 on 30% of P's rows and 50% of Q's, Gaussian elsewhere, beside a Gaussian,
    d = 2, KL 0.295: kNN 0.13-0.14 at 3,000 and 10,000 a side). Rounding to 3 decimals leaves
    each value a few rows and passes. (Where such a coordinate is discrete on every row, kNN
    measures the rows on the lines or planes they form: ``fdiv.estimation.knn``.)"""
    pooled = np.concatenate([x_p, x_q])
    threshold = math.sqrt(len(pooled))
    for j, column in enumerate(pooled.T):
        _, inverse, counts = np.unique(column, return_inverse=True, return_counts=True)
        share = float(np.mean(counts[inverse.ravel()[: len(x_p)]] > threshold))
        if share > COARSE_SHARE:
            return (
                f"coordinate {j + 1} of {share:.1%} of P's rows takes a value held by over "
                "sqrt(N) rows (a discrete or coarsely rounded coordinate): nearest-neighbour "
                "estimates assume continuous densities in every coordinate, so kNN's value is "
                "unreliable"
            )
    return None


def discrete_against_continuous(x_p: np.ndarray, x_q: np.ndarray) -> str | None:
    """A coordinate whose values repeat on one side (discrete levels) and almost never on the
    other (continuous): the two distributions are then mutually singular, and a critic that
    resolves the levels reports the divergence's maximum (JS log 2, KL infinite)."""
    shares = {"P": _repeated_shares(x_p), "Q": _repeated_shares(x_q)}
    for name, other in (("P", "Q"), ("Q", "P")):
        hits = np.flatnonzero((shares[name] > DISCRETE_SHARE) & (shares[other] < CONTINUOUS_SHARE))
        if len(hits):
            j = int(hits[0])
            return (
                f"coordinate {j} of {name} takes repeated discrete values "
                f"({shares[name][j]:.0%} of its rows) where {other}'s are continuous "
                f"({shares[other][j]:.1%}): the two are mutually singular, so the divergence is "
                "at its maximum whatever their shapes; to compare shapes (real vs generated "
                "images), dequantise the discrete side (add uniform noise across each level's "
                "width)"
            )
    return None


def unmatched_values(x_p: np.ndarray, x_q: np.ndarray) -> str | None:
    """Values (whole rows, else one coordinate's) that P takes too often to be chance and Q never
    takes in its sample (:data:`UNMATCHED_ALPHA`), together on at least UNMATCHED_SHARE of P's
    rows: there p/q is large, infinite where Q cannot take
    them (P's support not in Q's), and the samples bound KL(P||Q) only from below. Discrete data
    only: continuous values do not repeat, and P's far rows are :func:`heavy_tail`'s."""
    x_p, x_q = x_p + 0.0, x_q + 0.0  # -0.0 counts as 0.0
    repeated = np.flatnonzero(_repeated_shares(x_p) > 0)
    # a row repeats only where each of its coordinates does
    where = [("rows", row_keys(x_p), row_keys(x_q))] if len(repeated) == x_p.shape[1] else []
    where += [(f"coordinate {j}", x_p[:, j], x_q[:, j]) for j in repeated]
    for name, a, b in where:
        share, values = _unmatched(a, b)
        if share >= UNMATCHED_SHARE:
            return (
                f"{share:.1%} of P's rows take {values} value(s) ({name}) that P repeats and Q "
                "never takes in its sample: there p/q is large (infinite where Q cannot take "
                "them), so the samples bound the divergence only from below and the estimate "
                "may be far too low: the interval's upper end is open (inf)"
            )
    return None


def _unmatched(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(share of a's entries, number of distinct values) that :func:`unmatched_values` names;
    ``a`` and ``b`` hold one value (or row key) per row."""
    values, counts = np.unique(a, return_counts=True)
    missing = ~np.isin(values, b)
    if counts.max() < 2 or not missing.any():
        return 0.0, 0
    rho = len(a) / (len(a) + len(b))
    ordered = np.sort(counts)[::-1]
    m = 2
    while (
        m <= ordered[0] and np.searchsorted(-ordered, -m, side="right") * rho**m > UNMATCHED_ALPHA
    ):
        m += 1
    named = missing & (counts >= m)
    return float(counts[named].sum() / len(a)), int(named.sum())


def _repeated_shares(x: np.ndarray) -> np.ndarray:
    """Per column of ``x`` (n, d), the share of its values that occur more than once in it."""
    ordered = np.sort(x, axis=0)
    same = ordered[1:] == ordered[:-1]
    repeated = np.zeros(ordered.shape, dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    return repeated.mean(axis=0)
