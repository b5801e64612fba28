"""The k-nearest-neighbour KL estimator of Wang, Kulkarni and Verdu (2009): the baseline.

For x_1..x_n ~ P and y_1..y_m ~ Q in d dimensions, with rho_k(i) the distance from x_i to its
k-th nearest neighbour among the other x and nu_k(i) to its k-th nearest y,

    KL(P||Q) ~ (d/n) sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1))          (fixed k)

The adaptive (bias-reduced) variant of the same paper takes eps_i = max(rho_k(i), nu_k(i)),
counts k_i other x and l_i y within eps_i (so both radii below are close to eps_i) and replaces
log k by the digamma function, from the kNN density estimates p(x_i) ~ e^psi(k_i) / ((n-1) V
rho^d) and q(x_i) ~ e^psi(l_i) / (m V nu^d):

    (d/n) sum_i log(nu_{l_i}(i) / rho_{k_i}(i)) + (1/n) sum_i (psi(k_i) - psi(l_i)) + log(m/(n-1))

(the paper names the x-count l_i and the y-count k_i, hence its psi(l_i) - psi(k_i)).

Rows confined to an affine subspace (a constant column, a column that is a linear combination of
others) are taken in its coordinates, so d is the dimension the densities live in. Rows on a
curved surface in two or three dimensions (unit vectors: a circle, a sphere) take the surface's
dimension m for d, estimated from the ratio of each row's second to first neighbour distance
(TwoNN, Facco et al. 2017), as the balls around a row then hold volume growing as r^m: with d,
the value is d / m times too high (uniform against von Mises-Fisher directions on the sphere in
3-D, 0.595 nats, 10,000 a side: 0.885; with m = 2: 0.590). A coordinate that takes a few values
on every row makes such a surface too (parallel lines, planes), and m is then right for it: a
bit beside a Gaussian coordinate (0.207 nats) gave 0.37 with d = 2 and 0.19-0.20 as lines.
Only where the estimate is below d - SURFACE_GAP on both P's rows and Q's, and only up to three
dimensions: from four on, densities piling up at a boundary or in a heavy tail read as a lower
dimension too (the suite's arcsine rows in 5-D: 4.2; squared Cauchy rows in 4-D: 2.4-3.1), so
there rows that read below LOW_DIM_RATIO d get a warning instead of a new d (a torus in 4-D,
two von Mises angles as (cos, sin) pairs, 1.143 nats: kNN 2.25).

Duplicates: neighbours at distance zero (repeated rows) are skipped, so the k-th neighbour is the
k-th at a positive distance and no log(0) appears. Result in nats.

The estimate is a mean of per-point terms; :func:`knn_estimate` reports their standard error
(which ignores the weak dependence between neighbouring points) and warns where kNN cannot be
trusted: a negative value (impossible for KL), many repeated rows or a coordinate that takes a
few values (kNN assumes continuous densities), P's rows outside Q's sample (then the interval's
upper end opens). Fewer samples than dimensions is refused: every distance is then about equal
and the d log(nu / rho) terms are noise times d.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

from fdiv.estimation import diagnostics
from fdiv.estimation.result import Estimate, interval, untrained
from fdiv.io import as_samples

__all__ = [
    "LOW_DIM_MAX_DIM",
    "LOW_DIM_RATIO",
    "OUTSIDE_RATIO",
    "OUTSIDE_SHARE",
    "REPEATED_SHARE",
    "SEPARATED_SHARE",
    "SURFACE_GAP",
    "SURFACE_MAX_DIM",
    "knn_estimate",
    "knn_kl",
]

#: Share of P's rows repeated in P or present in Q above which kNN gets a warning.
REPEATED_SHARE = 0.05
#: Share of P's rows whose k-th Q neighbour is farther than their k-th P neighbour above which
#: the sets count as separated (about 1/2 for equal distributions).
SEPARATED_SHARE = 0.99
#: A row of P lies outside Q's sample when its nearest Q row is over OUTSIDE_RATIO times farther
#: from it than from that row's own k-th Q neighbour; above OUTSIDE_SHARE of P's rows so, kNN's
#: value is a lower bound. kNN sees q fall off only as a distance to the nearest Q rows, where it
#: may fall exponentially: a Gaussian P against 16 narrow modes on a circle (d = 2, 9.75 nats)
#: gave 1.55 [1.46, 1.64] at 2,000 a side and 2.3 at 10,000 with 33-39% of P's rows outside; on
#: the suite's other 21 pairs up to d = 5 (2,000 and 10,000 a side, 2 seeds) at most 1.8%, and
#: 4-10% on a 5-nat shift in 1-D at 2,000 (kNN 3.65-3.89 for 5).
OUTSIDE_RATIO = 2.0
OUTSIDE_SHARE = 0.05
#: Up to SURFACE_MAX_DIM dimensions, rows whose TwoNN dimension is below d - SURFACE_GAP on both
#: sides are taken to lie on a surface of the nearest whole dimension. Circles in 2-D and
#: spheres in 3-D read 0.98-1.03 and 1.87-2.03 (500 to 20,000 rows); full-dimensional rows
#: with their mass at a boundary or in a heavy tail read lower than d but stay above the gap:
#: in 3-D Beta(0.3, 0.3) 2.42-2.64, squared Cauchy 2.30-2.58, lognormal (sigma 2) 2.32-2.87;
#: in 2-D 1.67 and above; the suite's 2-D and 3-D tasks 1.93-3.11.
SURFACE_MAX_DIM = 3
SURFACE_GAP = 0.85
#: From SURFACE_MAX_DIM + 1 to LOW_DIM_MAX_DIM dimensions, rows whose TwoNN dimension is below
#: LOW_DIM_RATIO d on both sides get a warning (2,000 and 10,000 rows, 2 seeds): surfaces read
#: at most 0.52 d (a torus in 4-D 0.48-0.52, a sphere in 5-D 0.40, 2-D and 4-D maps into 10-D
#: 0.19-0.41), and so does Beta(0.1, 0.1) in 4-D (0.50-0.57), whose densities, unbounded at the
#: faces, kNN misses too; full-dimensional rows read at least 0.67 d: squared Cauchy in 4-D
#: 0.67-0.75, lognormal (sigma 2) in 5-D 0.76, Gaussians in 20-D 0.82, the suite's tasks from
#: 4 to 20 dimensions 0.86. Beyond 20 dimensions TwoNN reads full-dimensional Gaussians low
#: itself (0.75 d at 30, 0.53 d at 100).
LOW_DIM_RATIO = 0.6
LOW_DIM_MAX_DIM = 20

_TWO_NN_ROWS = 2_000  # rows whose neighbour-distance ratios give the TwoNN dimension (2%)
_QUERY_BUDGET = 4_000_000  # neighbour distances held in memory at once
_RADIUS_SLACK = 1e-12  # relative: the ball of radius eps must contain the neighbour at eps


def knn_kl(
    p: Tensor | np.ndarray, q: Tensor | np.ndarray, k: int = 5, adaptive: bool = False
) -> float:
    """KL(P||Q) in nats from samples ``p`` (n, d) and ``q`` (m, d) by k-nearest neighbours.

    ``adaptive=True`` selects the bias-reduced variant with per-point k_i, l_i. A negative
    value (impossible for KL) also raises a RuntimeWarning; :func:`knn_estimate` says more.
    """
    terms = _terms(p, q, k, adaptive)[0]
    value = float(terms.mean())
    if value < 0:
        warnings.warn(_negative(value), RuntimeWarning, stacklevel=2)
    return value


def knn_estimate(
    p: Tensor | np.ndarray, q: Tensor | np.ndarray, k: int = 5, adaptive: bool = False
) -> Estimate:
    """:func:`knn_kl` as an :class:`Estimate`: the standard error of the mean of the per-point
    terms and warnings (negative value, repeated rows, separated sets; P's rows outside Q's
    sample or P's tail heavier than Q's: then the interval's upper end is inf). All of P and Q
    is "test" data."""
    start = time.perf_counter()
    x_p, x_q = as_samples(p, "p"), as_samples(q, "q")
    terms, repeated, farther, outside, surface, low = _terms(x_p, x_q, k, adaptive)
    value = float(terms.mean())
    stderr = float(terms.std(ddof=1) / math.sqrt(len(terms)))
    found = []
    if value < 0:
        found.append(_negative(value))
    if repeated > REPEATED_SHARE:
        found.append(
            f"{repeated:.1%} of P's rows are repeated in P or Q: kNN assumes continuous densities "
            "and skips zero distances, so its value is unreliable"
        )
    elif x_p.shape[1] > 1 and not surface and (coarse := diagnostics.coarse_coordinate(x_p, x_q)):
        found.append(coarse)
    if low is not None:
        found.append(
            f"P's and Q's rows read as about {low[0]:.1f}-dimensional in d = {low[1]} (TwoNN): "
            "on a curved surface of m dimensions kNN's d log(nu / rho) terms come out d / m "
            "times too high, and rows piled up at a boundary bias them too; the value is "
            "unreliable"
        )
    n, m = len(x_p), len(x_q)
    if farther >= SEPARATED_SHARE:
        found.append(
            f"P and Q barely overlap (for {farther:.1%} of P's rows the k-th P neighbour is "
            "nearer than the k-th Q neighbour): the divergence may exceed what "
            f"{min(n, m)} samples can certify (about log N = {math.log(min(n, m)):.1f} nats) "
            "and the estimate may be far too low"
        )
    low, high = interval(value, stderr)
    if outside > OUTSIDE_SHARE:
        found.append(
            f"{outside:.1%} of P's rows lie outside Q's sample (their nearest Q row is over "
            f"{OUTSIDE_RATIO:g} times farther from them than from its own {k}-th Q neighbour): "
            "the samples do not show how fast q falls there, so the value is too low; the "
            "interval's upper end is open (inf), as these samples bound the divergence only from "
            "below"
        )
        high = math.inf
    tail = diagnostics.heavier_tail(x_p, x_q)
    if tail:
        found.append(tail)
        high = math.inf
    on = f", on a {surface}-D surface" if surface else ""
    bound = f"knn{'-adaptive' if adaptive else ''}(k={k}{on})"
    seconds = time.perf_counter() - start
    return untrained(value, stderr, (low, high), "kl", bound, (n, m), seconds, "knn", tuple(found))


def _negative(value: float) -> str:
    return (
        f"kNN gave a negative KL ({value:.4g} nats), which is impossible: repeated rows or too "
        "few samples for the dimension bias it; do not trust the value"
    )


def _same_rows(tree_x: cKDTree, tree_y: cKDTree, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row x_i: the rows of x equal to it (itself included) and the rows of y equal to
    it. kNN skips them as neighbours."""
    same_x = tree_x.query_ball_point(x, r=0.0, return_length=True)
    return same_x, tree_y.query_ball_point(x, r=0.0, return_length=True)


def _repeated(same_x: np.ndarray, same_y: np.ndarray) -> float:
    return float(np.mean((same_x > 1) | (same_y > 0)))


def _terms(
    p: Tensor | np.ndarray, q: Tensor | np.ndarray, k: int, adaptive: bool
) -> tuple[np.ndarray, float, float, float, int | None, tuple[float, int] | None]:
    """Per-point terms of P's rows (their mean is the estimate), the share of P's rows that
    are repeated in P or occur in Q, the share whose k-th Q neighbour is farther than their
    k-th P neighbour (near 1/2 for similar sets, 1 when the sets do not overlap), the share
    outside Q's sample (:data:`OUTSIDE_RATIO`), the dimension of the curved surface the rows
    lie on, where the terms take it for d (else None), and (TwoNN dimension, d) where the rows
    read far below their d from four dimensions on (:data:`LOW_DIM_RATIO`, else None)."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    x, y = as_samples(p, "p"), as_samples(q, "q")
    (n, d), m = x.shape, len(y)
    if y.shape[1] != d:
        raise ValueError(f"p and q must have the same dimension, got p: {d} and q: {y.shape[1]}")
    if min(n, m) <= d:
        raise ValueError(
            f"kNN needs more samples than dimensions: p has {n} and q {m} rows in d = {d}; "
            "use the variational estimate"
        )
    # an isotropic power-of-two scale (exact; KL is invariant to it) keeps squared distances
    # of values near the float64 limit (1e200) from overflowing
    _, exponent = np.frexp(max(np.abs(x).max(), np.abs(y).max()))
    x, y = _support(np.ldexp(x, -exponent), np.ldexp(y, -exponent))
    tree_x, tree_y = cKDTree(x), cKDTree(y)
    measured = _rows_dimension(tree_x, tree_y, x, y)
    d = x.shape[1]
    surface = (
        max(1, round(measured)) if d <= SURFACE_MAX_DIM and measured < d - SURFACE_GAP else None
    )
    low = (measured, d) if d > SURFACE_MAX_DIM and measured < LOW_DIM_RATIO * d else None
    d = surface or d
    same_x, same_y = _same_rows(tree_x, tree_y, x)
    ks = np.full(n, k)
    rho = _kth_positive_distance(tree_x, x, ks, same_x, "p")
    nu = _kth_positive_distance(tree_y, x, ks, same_y, "q")
    repeated = _repeated(same_x, same_y)
    farther = float(np.mean(nu > rho))
    outside = _outside(tree_y, x, y, k)
    offset = math.log(m / (n - 1))
    if not adaptive:
        return d * np.log(nu / rho) + offset, repeated, farther, outside, surface, low
    radius = np.maximum(rho, nu) * (1.0 + _RADIUS_SLACK)
    k_i = np.maximum(tree_x.query_ball_point(x, r=radius, return_length=True) - same_x, k)
    l_i = np.maximum(tree_y.query_ball_point(x, r=radius, return_length=True) - same_y, k)
    rho = _kth_positive_distance(tree_x, x, k_i, same_x, "p")
    nu = _kth_positive_distance(tree_y, x, l_i, same_y, "q")
    terms = d * np.log(nu / rho) + digamma(k_i) - digamma(l_i) + offset
    return terms, repeated, farther, outside, surface, low


def _two_nn_dimension(tree: cKDTree, x: np.ndarray) -> float:
    """The TwoNN dimension of the rows ``x`` of ``tree``: the maximum-likelihood m for which
    the ratios mu = r2 / r1 of second to first neighbour distance follow P(mu > t) = t^-m
    (rows at a positive distance from their nearest neighbour; inf when no ratio exceeds 1),
    read on at most :data:`_TWO_NN_ROWS` of them (a fixed random subset; their neighbours are
    found among all rows): its relative standard error is 1 / sqrt(rows)."""
    if len(x) > _TWO_NN_ROWS:
        x = x[np.random.default_rng(0).choice(len(x), _TWO_NN_ROWS, replace=False)]
    dist = tree.query(x, k=3)[0]
    r1, r2 = dist[:, 1], dist[:, 2]
    kept = r1 > 0
    logs = np.log(r2[kept] / r1[kept]).sum()
    return float(kept.sum() / logs) if logs > 0 else math.inf


def _rows_dimension(tree_x: cKDTree, tree_y: cKDTree, x: np.ndarray, y: np.ndarray) -> float:
    """The larger of P's and Q's TwoNN dimensions from 2 to LOW_DIM_MAX_DIM dimensions, where
    the module docstring's rules read it (inf elsewhere, and with under 3 rows a side)."""
    d = x.shape[1]
    if not 1 < d <= LOW_DIM_MAX_DIM or min(len(x), len(y)) < 3:
        return math.inf
    return max(_two_nn_dimension(tree_x, x), _two_nn_dimension(tree_y, y))


def _outside(tree_y: cKDTree, x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The share of rows x whose nearest y is over OUTSIDE_RATIO times farther from them than
    from its own k-th other y (a y with k copies or more has spacing 0 and counts as inside)."""
    gap, nearest = tree_y.query(x, k=1)
    spacing = tree_y.query(y, k=min(k + 1, len(y)))[0][:, -1]
    own = spacing[nearest]
    return float(np.mean((own > 0) & (gap > OUTSIDE_RATIO * own)))


def _support(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` in orthonormal coordinates of the affine subspace their pooled rows span,
    where it is smaller than the whole space (a constant column, one column a linear combination
    of others). The densities live in that subspace, and kNN's d must be its dimension: with the
    whole space's, d log(nu / rho) overstates the value by d / rank (3-D rows with one constant
    column, a 0.5-nat shift: 0.76). Distances within the subspace are unchanged."""
    both = np.concatenate([x, y])
    centre = both.mean(axis=0)
    _, singular, vt = np.linalg.svd(both - centre, full_matrices=False)
    tolerance = singular[0] * max(both.shape) * np.finfo(both.dtype).eps
    rank = int((singular > tolerance).sum())
    if rank in (0, x.shape[1]):
        return x, y
    basis = vt[:rank].T
    return (x - centre) @ basis, (y - centre) @ basis


def _kth_positive_distance(
    tree: cKDTree, x: np.ndarray, ks: np.ndarray, zeros: np.ndarray, name: str
) -> np.ndarray:
    """Distance from each x_i to its ks[i]-th neighbour in ``tree`` at a positive distance.

    ``zeros[i]`` neighbours lie at distance 0 and are skipped. Queries are grouped by the number
    of neighbours needed, in chunks that keep at most ``_QUERY_BUDGET`` distances in memory.
    """
    need = ks + zeros
    if need.max() > tree.n:
        i = int(np.argmax(need > tree.n))
        raise ValueError(
            f"{name} has too few distinct samples: row {i} of p needs {int(need[i])} neighbours "
            f"in {name} ({int(ks[i])} at a positive distance), but {name} has {tree.n} samples"
        )
    out = np.empty(len(x))
    order = np.argsort(need, kind="stable")
    need_sorted = need[order]
    start = 0
    while start < len(order):
        # the longest run of rows (ascending need) whose (rows x largest need) fits the budget
        fits = need_sorted[start:] * np.arange(1, len(order) - start + 1) <= _QUERY_BUDGET
        stop = start + max(1, int(fits.sum()))
        rows, k_max = order[start:stop], int(need_sorted[stop - 1])
        dist, _ = tree.query(x[rows], k=k_max)
        out[rows] = dist.reshape(len(rows), k_max)[np.arange(len(rows)), need[rows] - 1]
        start = stop
    return out
