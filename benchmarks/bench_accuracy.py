"""Accuracy of the estimators against Gaussian ground truth: DV, SMILE, f-dual (NWJ) and kNN.

P = N(0, I_d) and Q = N(t u, (1 + t/2) I_d) with u a unit vector along the diagonal; t is solved
(brentq) so that KL(P||Q) hits 0.1, 1 or 5 nats. Q is shifted *and* broader than P, so the ratio
p/q is bounded and Var_Q(p/q) finite (the DV partition term has finite variance); a P broader than
Q would make the DV bound at KL = 5 harder still. 20k samples per side, default ``estimate``
settings (so the test split holds 4000 per side). Nothing is asserted: the figures go to
``benchmark.extra_info["figures"]`` (see ``fdiv.bench.results``) and into the report.

    .venv/bin/fdiv bench --suite accuracy            # 12 pairs x 4 methods, one seed (~8 min)
    FDIV_BENCH_SEEDS=3 .venv/bin/fdiv bench --suite accuracy     # the 3-seed grid (~30 min)
    .venv/bin/fdiv bench --suite accuracy --quick    # seed 0, d = 5, KL = 1, every method

FDIV_BENCH_SEEDS (default 1, so that ``make bench`` stays within 20 minutes) sets how many seeds
run; the grid runs seed by seed, so a partial run still covers whole seeds first.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from scipy.optimize import brentq

from fdiv.divergences.gaussian import Gaussian, kl
from fdiv.estimation.estimate import estimate
from fdiv.estimation.knn import knn_kl

N = 20_000
DIMS = (1, 5, 10, 20)
KLS = (0.1, 1.0, 5.0)
METHODS = ("dv", "smile", "fdual", "knn")
SEEDS = tuple(range(int(os.environ.get("FDIV_BENCH_SEEDS", "1"))))
QUICK = {"seed": 0, "d": 5, "target": 1.0}

CASES = [
    pytest.param(s, d, t, m, marks=() if (s, d, t) == tuple(QUICK.values()) else pytest.mark.full)
    for s in SEEDS
    for d in DIMS
    for t in KLS
    for m in METHODS
]


def gaussian_pair(d: int, target: float) -> tuple[Gaussian, Gaussian]:
    """P = N(0, I), Q = N(t u, (1 + t/2) I) with t chosen so that KL(P||Q) = target nats."""
    u = torch.full((d,), 1.0 / math.sqrt(d), dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)

    def pair(t: float) -> tuple[Gaussian, Gaussian]:
        return Gaussian(torch.zeros(d, dtype=torch.float64), eye), Gaussian(
            t * u, (1 + t / 2) * eye
        )

    t = brentq(lambda t: kl(*pair(t)) - target, 1e-9, 100.0, xtol=1e-14)
    return pair(t)


@pytest.mark.parametrize(("seed", "d", "target", "method"), CASES)
def test_accuracy(
    benchmark: Any, figures: Callable[..., None], seed: int, d: int, target: float, method: str
) -> None:
    p, q = gaussian_pair(d, target)
    truth = kl(p, q)
    generator = torch.Generator().manual_seed(1000 * seed + 10 * d + round(10 * target))
    x_p, x_q = p.sample(N, generator), q.sample(N, generator)
    start = time.perf_counter()
    if method == "knn":
        value = benchmark.pedantic(knn_kl, (x_p, x_q), rounds=1, iterations=1)
        row: dict[str, Any] = {"stderr": None, "ci95": None, "steps": None}
    else:
        est = benchmark.pedantic(
            estimate, (x_p, x_q, "kl", method), {"seed": seed}, rounds=1, iterations=1
        )
        value = est.value
        row = {"stderr": est.stderr, "ci95": list(est.ci95), "steps": est.steps}
    seconds = time.perf_counter() - start
    row |= {
        "seed": seed,
        "d": d,
        "truth": truth,
        "method": method,
        "estimate": value,
        "log_error": math.log(value / truth) if value > 0 else None,
        "relative_error": (value - truth) / truth,
        "seconds": seconds,
    }
    figures(**row)
