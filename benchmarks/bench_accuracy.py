"""Accuracy and interval coverage of the estimators over the task library (fdiv.bench.tasks).

Every (P, Q) pair has exact log densities and a known truth (closed form, or Monte Carlo over
10^6 draws per side with its standard error). For each task, sample size N (per side) and seed,
the KL methods run on the same samples: ``auto`` (the default ``fdiv.estimate`` call), the
variational bounds ``dv``, ``smile``, ``fdual`` (NWJ), ``knn`` (Wang-Kulkarni-Verdu) and
``telescoping`` (:func:`fdiv.estimation.telescoping.telescoping_kl`); js, hellinger, tv,
reverse_kl and pearson run with the default call on :data:`F_TASKS`. Two extra non-Gaussian
large-divergence pairs (:data:`EXTRA`) join the library's. Per run the figures hold task,
divergence, method, n, seed, d, truth (+ truth_stderr), estimate, stderr, ci95, abs_log_error,
covered (the interval contains the truth, widened by 2 Monte Carlo standard errors of the truth),
seconds, warnings and sample_value (:meth:`Task.sample_value`: the exact log-ratio averaged over
the same rows, whose distance from the truth no estimator that averages over the rows avoids).
Nothing is asserted; ``fdiv bench`` renders a table per task into REPORT.md.

Configuration (environment; the full grid is hours of CPU, so pick what you can afford):

    FDIV_BENCH_SEEDS=10            seeds per case (default 10: coverage needs >= 10)
    FDIV_BENCH_SIZES=2000,10000    samples per side (default 2000,10000; 50000 runs on LARGE_N)
    FDIV_BENCH_TASKS=a,b           task names (default: all)
    FDIV_BENCH_METHODS=auto,knn    methods (default: all of METHODS)
    FDIV_BENCH_LARGE=1             add N = 50,000 on LARGE_N_TASKS
    FDIV_BENCH_F_SEEDS=3           seeds for js ... pearson on F_TASKS (default: all seeds)
    FDIV_BENCH_DIVERGENCES=kl,js   divergences (default: kl and all of F_DIVERGENCES)

``--quick``: seed 0, N = 2000, a heavy-tail and a large-divergence task, auto / knn /
telescoping (about 2 minutes on 2 cores). The grid runs seed by seed, so a partial run covers
whole seeds first.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fdiv.bench.tasks import TASKS, Gaussian, Mixture, StudentT, Task
from fdiv.estimation.estimate import estimate
from fdiv.estimation.knn import knn_estimate
from fdiv.estimation.telescoping import telescoping_kl


def _env_list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def _mixture_shift(dim: int = 20, kl: float = 10.0) -> Task:
    shift = math.sqrt(2.0 * (kl + math.log(2.0)) / dim)  # KL ~ |m|^2/2 - log 2 when well apart
    mean = np.full(dim, shift)
    p = Mixture(np.ones(2), (Gaussian(mean, np.eye(dim)), Gaussian(-mean, np.eye(dim))))
    return Task(
        f"mixture2-shift-d{dim}",
        "large",
        f"two unit Gaussians at +-{shift:.3g} (1, ..., 1) vs N(0, I): bimodal, KL ~ {kl:g}",
        p,
        Gaussian.standard(dim),
        pearson_finite=True,
    )


def _student_shift(dim: int = 20, nu: float = 5.0, shift: float = 1.0) -> Task:
    scale = Gaussian(np.full(dim, shift), np.eye(dim))
    return Task(
        f"student-t{nu:g}-shift-d{dim}",
        "large",
        f"multivariate t (nu = {nu:g}) at {shift:g} (1, ..., 1) vs N(0, I): heavy tails and a "
        "large divergence (E_P[(log p/q)^2] finite for nu > 4)",
        StudentT(scale, nu),
        Gaussian.standard(dim),
        pearson_finite=False,
    )


EXTRA: dict[str, Task] = {t.name: t for t in (_mixture_shift(), _student_shift())}
ALL_TASKS: dict[str, Task] = TASKS | EXTRA
METHODS = ("auto", "dv", "smile", "fdual", "knn", "telescoping")
F_DIVERGENCES = ("js", "hellinger", "tv", "reverse_kl", "pearson")
F_TASKS = (
    "student-t5-vs-gauss-d5",
    "mixture4-vs-gauss-d5",
    "banana-d10",
    "beta-vs-beta-d5",
    "gauss-corr0.68-d10",
    "lognormal-d5",
    "shift-kl10-d20",
    "binomial-vs-uniform20-d1",
)
LARGE_N = 50_000
LARGE_N_TASKS = ("student-t3-vs-gauss-d5", "mixture4-vs-gauss-d5", "banana-d10", "shift-kl10-d20")
QUICK_TASKS = ("student-t5-vs-gauss-d5", "shift-kl10-d20")
QUICK_METHODS = ("auto", "knn", "telescoping")
QUICK_N = 2000

SEEDS = range(int(os.environ.get("FDIV_BENCH_SEEDS", "10")))
SIZES = [int(n) for n in _env_list("FDIV_BENCH_SIZES", "2000,10000")]
SELECTED = _env_list("FDIV_BENCH_TASKS", ",".join(ALL_TASKS))
CHOSEN = _env_list("FDIV_BENCH_METHODS", ",".join(METHODS))
LARGE = os.environ.get("FDIV_BENCH_LARGE", "") not in ("", "0")
F_SEEDS = int(os.environ.get("FDIV_BENCH_F_SEEDS", str(len(SEEDS))))
DIVERGENCES = _env_list("FDIV_BENCH_DIVERGENCES", ",".join(("kl", *F_DIVERGENCES)))


def _cases() -> list[Any]:
    unknown = sorted(
        (set(SELECTED) - set(ALL_TASKS))
        | (set(CHOSEN) - set(METHODS))
        | (set(DIVERGENCES) - {"kl", *F_DIVERGENCES})
    )
    if unknown:
        raise ValueError(
            f"FDIV_BENCH_TASKS / FDIV_BENCH_METHODS / FDIV_BENCH_DIVERGENCES: unknown "
            f"{', '.join(unknown)}"
        )
    cases = []
    for seed in SEEDS:
        for name in SELECTED:
            sizes = SIZES + ([LARGE_N] if LARGE and name in LARGE_N_TASKS else [])
            for n in sizes:
                runs = [("kl", m) for m in CHOSEN] if "kl" in DIVERGENCES else []
                if name in F_TASKS and "auto" in CHOSEN and seed < F_SEEDS:
                    runs += [
                        (div, "auto")
                        for div in F_DIVERGENCES
                        if div in DIVERGENCES and _has_truth(name, div)
                    ]
                for div, method in runs:
                    quick = (seed, n, method) == (0, QUICK_N, method) and (
                        name in QUICK_TASKS and method in QUICK_METHODS and div == "kl"
                    )
                    marks = () if quick else pytest.mark.full
                    cases.append(pytest.param(name, div, method, n, seed, marks=marks))
    return cases


def _has_truth(name: str, divergence: str) -> bool:
    task = ALL_TASKS[name]
    return divergence != "pearson" or bool(task.pearson_finite)


def run_method(method: str, divergence: str, x_p: np.ndarray, x_q: np.ndarray, seed: int) -> Any:
    """The Estimate of one method (kNN with its per-point interval)."""
    if method == "knn":
        return knn_estimate(x_p, x_q)
    if method == "telescoping":
        return telescoping_kl(x_p, x_q, seed=seed)
    return estimate(x_p, x_q, divergence, method, seed=seed)


@pytest.mark.parametrize(("task", "divergence", "method", "n", "seed"), _cases())
def test_accuracy(
    benchmark: Any,
    figures: Callable[..., None],
    task: str,
    divergence: str,
    method: str,
    n: int,
    seed: int,
) -> None:
    pair = ALL_TASKS[task]
    truth, truth_se = pair.truth(divergence)
    rng = np.random.default_rng([seed, n, zlib.crc32(task.encode())])  # stable as tasks join
    x_p, x_q = pair.sample_p(n, rng), pair.sample_q(n, rng)
    start = time.perf_counter()
    result = benchmark.pedantic(
        run_method, (method, divergence, x_p, x_q, seed), rounds=1, iterations=1
    )
    seconds = time.perf_counter() - start
    value, (low, high) = result.value, result.ci95
    slack = 2.0 * truth_se
    row = {
        "stderr": result.stderr,
        "ci95": [low, high],
        "covered": bool(low - slack <= truth <= high + slack),
        "steps": result.steps,
        "warnings": list(result.warnings),
        "ran": result.method,
    }
    figures(
        task=task,
        family=pair.family,
        divergence=divergence,
        method=method,
        n=n,
        seed=seed,
        d=pair.dim,
        truth=truth,
        truth_stderr=truth_se,
        estimate=value,
        abs_log_error=abs(math.log(value / truth)) if value > 0 and truth > 0 else None,
        sample_value=pair.sample_value(divergence, x_p, x_q),
        seconds=seconds,
        **row,
    )
