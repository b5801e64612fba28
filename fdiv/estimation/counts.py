"""Discrete samples: the f-divergence between the two observed frequency tables, jackknifed.

Where every value (a whole row) of P and Q repeats, as in category labels, counts or a few
levels per coordinate, D_f(P||Q) = sum_x q(x) f(p(x)/q(x)) can be read off the tables of
observed frequencies: no critic, no training, no neighbours. The plug-in sum is biased by
O(cells / N) (f is not linear); the two-sample delete-one jackknife removes that term and its
spread gives the standard error (each side's rows deleted one at a time, in closed form per
cell: O(cells)). The interval spans the plain and the corrected value, widened by 1.96
standard errors (:func:`_jackknife`). All values in nats.

Measured (``tests/estimation/test_counts.py`` checks the same cases; 200 seeds each, 2,000 and
10,000 a side, kl, reverse_kl, js, hellinger, pearson): 20 and 5 categories, Poisson(3) against
Poisson(5), geometric distributions, two binomials in d = 2 and a Zipf law over 200 values at
10,000 a side: mean errors within 0.017 nats, the intervals held the truth in 91-100% of runs.
Not resolved (more than ``RARE_SHARE`` of a side's rows on values that side holds fewer than
``RARE_COUNT + 1`` times: ten independent bits, 1,024 values, at 2,000 and 10,000 a side; the
Zipf law at 2,000): the tables leave too much unseen and hellinger's intervals held the truth
in 49-87% of runs, so the critics estimate it instead. tv is left to the critics too: |p - q|
has a kink where p = q, which the jackknife cannot correct (two binomials in d = 2: 84% at
both sizes, with the tables resolved).

Where P takes values that Q's sample lacks, kl gets a lower bound with the upper end open
(:func:`_kl_lower`): the critics' lower end, an extrapolation over values Q never showed, had
stood above the truth (Binomial(19, 0.3) against 20 uniform labels, KL(uniform || binomial) =
4.20, 10,000 a side: 4.68 [4.41, inf] and 4.45 [4.25, inf] on 2 of 10 seeds); the bound held
it on 100 of 100 seeds at 2,000 and at 10,000 a side (mean 2.38 and 2.75: the labels P's
sample never shows carry most of it). The other divergences that are infinite without such
values (pearson, neyman, ...) are left to the critics.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from fdiv.divergences.registry import FDivergence
from fdiv.estimation.result import Z95, Estimate, untrained

__all__ = [
    "NONSMOOTH",
    "RARE_COUNT",
    "RARE_SHARE",
    "UNSEEN",
    "counts_estimate",
    "counts_mi",
    "row_keys",
    "tables",
]

#: A value that a side holds at most this many times is rare on that side.
RARE_COUNT = 4
#: The tables resolve the distributions where rare values hold at most this share of each side.
RARE_SHARE = 0.05
#: Q mass (times N_q) that values Q's sample lacks may hold together, at 95%: none of N_q draws
#: hits a set of mass m with probability (1 - m)^N_q ~ e^(-N_q m), below 5% beyond m = 3 / N_q.
UNSEEN = 3.0
#: Divergence families whose f has a kink: left to the critics (see the module docstring).
NONSMOOTH: tuple[str, ...] = ("tv",)


def row_keys(x: np.ndarray) -> np.ndarray:
    """One opaque key per row of ``x`` (n, d), equal for equal rows (-0.0 counts as 0.0)."""
    rows = np.ascontiguousarray(x + 0.0, dtype=np.float64)
    return rows.view(np.dtype((np.void, 8 * rows.shape[1]))).ravel()


def tables(x_p: np.ndarray, x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts in P, counts in Q) per distinct row of P and Q together."""
    k_p, k_q = row_keys(x_p), row_keys(x_q)
    _, cell = np.unique(np.concatenate([k_p, k_q]), return_inverse=True)
    cell = cell.ravel()
    size = int(cell.max()) + 1
    return (
        np.bincount(cell[: len(k_p)], minlength=size),
        np.bincount(cell[len(k_p) :], minlength=size),
    )


def _rare_share(counts: np.ndarray) -> float:
    """The share of a side's rows on values it holds at most RARE_COUNT times."""
    return float(counts[counts <= RARE_COUNT].sum() / counts.sum())


def _limits(div: FDivergence) -> tuple[float, float]:
    """(f(0), lim f(t)/t as t -> inf): what a value that only Q, or only P, takes adds."""
    t = torch.tensor([0.0, 1e6, 1e12], dtype=torch.float64)
    f = div.f(t)
    growth = f[1:] / t[1:]
    slope = math.inf if float(growth[1] - growth[0]) > 1.0 else float(growth[1])
    return float(f[0]), slope


def _terms(c_p: np.ndarray, c_q: np.ndarray, n_p: int, n_q: int, div: FDivergence) -> np.ndarray:
    """Each cell's q f(p / q) for frequencies c_p / n_p and c_q / n_q (inf where one side is
    empty and f is unbounded there)."""
    f0, slope = _limits(div)
    c_p, c_q = c_p.astype(np.float64), c_q.astype(np.float64)
    out = np.zeros(len(c_p))
    both = (c_p > 0) & (c_q > 0)
    ratio = torch.from_numpy((c_p[both] / n_p) / (c_q[both] / n_q))
    out[both] = c_q[both] / n_q * div.f(ratio).numpy()
    only_p, only_q = (c_p > 0) & (c_q == 0), (c_q > 0) & (c_p == 0)
    out[only_p] = c_p[only_p] / n_p * slope
    out[only_q] = c_q[only_q] / n_q * f0
    return out


def _deleted(c_p: np.ndarray, c_q: np.ndarray, side: int, div: FDivergence) -> np.ndarray:
    """The plug-in value with one row of ``side`` (0: P, 1: Q) deleted, per cell it held."""
    counts = [c_p, c_q]
    sizes = [int(c_p.sum()), int(c_q.sum())]
    sizes[side] -= 1
    held = counts[side] > 0
    base = _terms(*counts, *sizes, div)
    if not np.isfinite(base).all():
        return np.full(int(held.sum()), math.inf)
    fewer = list(counts)
    fewer[side] = counts[side] - 1
    changed = _terms(fewer[0][held], fewer[1][held], *sizes, div)
    return base.sum() - base[held] + changed


def _jackknife(
    plain: float, sides: list[tuple[np.ndarray, np.ndarray, int]]
) -> tuple[float, float, tuple[float, float]]:
    """(bias-corrected value, standard error, 95% interval) of a statistic from its value
    ``plain`` and, per sample, (its value with one row deleted from each cell, the rows in that
    cell, N). The interval spans the plain and the corrected value, widened by 1.96 standard
    errors: where P = Q (or X, Y independent) the statistic sits at its minimum, its first-order
    spread vanishes and the correction alone overshoots (one Poisson sample against a copy of
    itself, d = 2: -0.022 [-0.029, -0.016] for 0)."""
    value, variance = plain, 0.0
    for deleted, weights, n in sides:
        mean = float((weights * deleted).sum() / n)
        value -= (n - 1) * (mean - plain)
        variance += (n - 1) / n * float((weights * (deleted - mean) ** 2).sum())
    stderr = math.sqrt(variance)
    return value, stderr, (min(plain, value) - Z95 * stderr, max(plain, value) + Z95 * stderr)


def _lacks(div: FDivergence) -> str:
    return (
        "one side takes values the other's sample lacks (or holds once) where the divergence "
        f"is infinite without them ({div.name})"
    )


def _lower(t: np.ndarray, seen: np.ndarray, unseen: np.ndarray, n_p: int, n_q: int) -> np.ndarray:
    """:func:`_kl_lower`'s value from its sums: ``t`` = sum over the values both samples take
    of c_p (log c_p - log c_q), ``seen`` and ``unseen`` the P counts on the values Q's sample
    takes and lacks (arrays broadcast: one entry per deleted row's cell)."""
    u = np.maximum(unseen, 1.0)
    lacking = np.where(unseen > 0, unseen * np.log(u * n_q / (UNSEEN * n_p)), 0.0)
    return (t + seen * math.log(n_q / n_p) + lacking) / n_p


def _kl_lower(c_p: np.ndarray, c_q: np.ndarray, start: float) -> Estimate:
    """KL(P||Q) from below where P takes values that Q's sample lacks (or holds once, so that
    deleting a row of Q leaves it lacking): none of Q's N_q draws hit them, so (95%) Q gives
    them at most UNSEEN / N_q together, and their share P_u of P's rows adds at least P_u
    log(P_u N_q / UNSEEN) (the least over Q masses with that sum); the other values add their
    plug-in terms. Jackknifed like the plug-in (a row of Q deleted from a value it holds once
    moves that value to the lacking ones), whose upward bias on values Q holds a few times
    would otherwise lift the bound above the truth (a Zipf law over 200 values against a
    lighter one, 10,000 a side: 6 of 200 lower ends held it before, 200 of 200 after). The
    upper end is open where P_u > 0 (Q may not take those values at all: KL infinite)."""
    c_p, c_q = c_p.astype(np.float64), c_q.astype(np.float64)
    n_p, n_q = int(c_p.sum()), int(c_q.sum())
    seen, lacking = (c_p > 0) & (c_q > 0), (c_p > 0) & (c_q == 0)
    terms = np.where(seen, c_p * (np.log(np.maximum(c_p, 1.0)) - np.log(np.maximum(c_q, 1.0))), 0)
    t, c_seen, c_lacking = terms.sum(), c_p[seen].sum(), c_p[lacking].sum()
    value = float(_lower(t, c_seen, c_lacking, n_p, n_q))
    # delete one of P's rows from each value P takes
    held = c_p > 0
    fewer = c_p[held] - 1.0
    q_held = np.maximum(c_q[held], 1.0)
    t_p = (
        t
        - terms[held]
        + np.where(fewer > 0, fewer * (np.log(np.maximum(fewer, 1.0)) - np.log(q_held)), 0.0)
    )
    t_p = np.where(seen[held], t_p, t)
    on_p = _lower(t_p, c_seen - seen[held], c_lacking - lacking[held], n_p - 1, n_q)
    # delete one of Q's rows from each value Q takes; where it held it once, the value lacks
    held_q = c_q > 0
    cp, cq = c_p[held_q], c_q[held_q]
    once = (cq == 1) & (cp > 0)
    t_q = t + np.where(
        (cp > 0) & (cq > 1), cp * (np.log(cq) - np.log(np.maximum(cq - 1.0, 1.0))), 0.0
    )
    t_q = np.where(once, t - terms[held_q], t_q)
    on_q = _lower(
        t_q, c_seen - np.where(once, cp, 0.0), c_lacking + np.where(once, cp, 0.0), n_p, n_q - 1
    )
    value, stderr, ci95 = _jackknife(value, [(on_p, c_p[held], n_p), (on_q, c_q[held_q], n_q)])
    share = c_lacking / n_p
    warnings: tuple[str, ...] = ()
    if share > 0:
        ci95 = (ci95[0], math.inf)
        warnings = (
            f"{share:.1%} of P's rows take {int(lacking.sum())} value(s) that Q's sample lacks: "
            f"KL is infinite if Q cannot take them; the value is a lower bound (their Q mass at "
            f"most {UNSEEN:g} / {n_q} together, 95%) and the upper end is open (inf)",
        )
    seconds = time.perf_counter() - start
    return untrained(
        value,
        stderr,
        ci95,
        "kl",
        "plug-in (lower)" if share else "plug-in (jackknife)",
        (n_p, n_q),
        seconds,
        "counts",
        warnings,
    )


def counts_estimate(x_p: np.ndarray, x_q: np.ndarray, div: FDivergence) -> Estimate | str:
    """The jackknifed plug-in estimate (method "counts") of D_f(P||Q) in nats, or why it does
    not apply: values that do not repeat enough (see the module docstring), a kinked f, or a
    value one side takes where the divergence is infinite without it (kl: a value of P that Q's
    sample lacks, also after deleting one of Q's rows)."""
    start = time.perf_counter()
    if div.family in NONSMOOTH:
        return f"{div.name}'s f has a kink where p = q, which the jackknife cannot correct"
    c_p, c_q = tables(x_p, x_q)
    rare = max(_rare_share(c_p), _rare_share(c_q))
    if rare > RARE_SHARE:
        return (
            f"{rare:.1%} of a side's rows take values it holds at most {RARE_COUNT} times "
            f"(more than {RARE_SHARE:.0%}): the frequency tables do not resolve the distributions"
        )
    n_p, n_q = int(c_p.sum()), int(c_q.sum())
    plug_in = float(_terms(c_p, c_q, n_p, n_q, div).sum())
    sides = [
        (_deleted(c_p, c_q, side, div), c[c > 0], n)
        for side, (c, n) in enumerate(((c_p, n_p), (c_q, n_q)))
    ]
    if not (math.isfinite(plug_in) and all(np.isfinite(d).all() for d, _, _ in sides)):
        return _kl_lower(c_p, c_q, start) if div.family == "kl" else _lacks(div)
    value, stderr, ci95 = _jackknife(plug_in, sides)
    seconds = time.perf_counter() - start
    return untrained(
        value, stderr, ci95, div.name, "plug-in (jackknife)", (n_p, n_q), seconds, "counts"
    )


def _entropy_terms(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(plug-in entropy of ``counts`` in nats, the entropy with one row deleted from each
    cell), by sum c log c with one cell's term changed."""
    n = float(counts.sum())
    c = counts.astype(np.float64)
    c_log_c = np.where(c > 0, c * np.log(np.where(c > 0, c, 1.0)), 0.0)
    fewer = c - 1.0
    fewer_log = np.where(fewer > 0, fewer * np.log(np.where(fewer > 0, fewer, 1.0)), 0.0)
    total = c_log_c.sum()
    entropy = math.log(n) - total / n
    deleted = math.log(n - 1.0) - (total - c_log_c + fewer_log) / (n - 1.0)
    return entropy, deleted


def counts_mi(x: np.ndarray, y: np.ndarray) -> Estimate | str:
    """I(X; Y) in nats from the frequency tables of paired discrete samples (x_i, y_i): H(X) +
    H(Y) - H(X, Y) of the observed tables, jackknifed over the pairs (each deletion changes one
    cell of each table), or why it does not apply: the joint table does not resolve P_XY (more
    than RARE_SHARE of the pairs on (x, y) values held at most RARE_COUNT times)."""
    start = time.perf_counter()
    keys = [row_keys(a) for a in (x, y, np.concatenate([x, y], axis=1))]
    cells = [np.unique(k, return_inverse=True)[1].ravel() for k in keys]
    joint = np.bincount(cells[2])
    rare = _rare_share(joint)
    if rare > RARE_SHARE:
        return (
            f"{rare:.1%} of the pairs take (x, y) values held at most {RARE_COUNT} times (more "
            f"than {RARE_SHARE:.0%}): the frequency tables do not resolve P_XY"
        )
    n = len(x)
    (h_x, del_x), (h_y, del_y), (h_xy, del_xy) = (_entropy_terms(np.bincount(c)) for c in cells)
    deleted = del_x[cells[0]] + del_y[cells[1]] - del_xy[cells[2]]  # per pair
    value, stderr, ci95 = _jackknife(h_x + h_y - h_xy, [(deleted, np.ones(n), n)])
    seconds = time.perf_counter() - start
    return untrained(value, stderr, ci95, "mi", "plug-in (jackknife)", (n, n), seconds, "counts")
