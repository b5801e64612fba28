"""Mutual-information accuracy over the MI task library (``fdiv.bench.mi_tasks``).

Methods, each on N = 10,000 pairs of every task (one seed):

- ``auto``: ``fdiv.mutual_information`` (separable critic trained with InfoNCE on batches of
  512, all-pairs InfoNCE on the 2,000 test pairs: capped at log 2000 = 7.6 nats);
- ``smile``: the same critic form trained with the logistic loss, all-pairs SMILE (clip 5);
- ``js``: the JS mutual information D_js(P_XY || P_X x P_Y), against its own Monte Carlo truth;
- ``ksg``: KSG estimator 1 (k = 3);
- ``shuffled``: ``fdiv.estimate(concat(x, y), concat(x, y[perm]))``, the hand-made baseline.

``test_infonce_10_nats`` is the all-pairs target: a 10-nat Gaussian (d = 5, 2 nats a
coordinate) with a 2^14-pair test split, beside the optimal critic's InfoNCE at B = 2^14.
Nothing is asserted: figures go to ``extra_info["figures"]`` (keys in ``fdiv.bench.results``).

    fdiv bench --suite mi --quick      # the reduced grid (6 tasks x 3 methods, 600 steps)
    fdiv bench --suite mi              # every task x every method (3,000 steps at most)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from fdiv.bench import mi_tasks
from fdiv.divergences.registry import get
from fdiv.estimation.estimate import estimate
from fdiv.estimation.ksg import ksg_mi
from fdiv.estimation.mutual_information import mutual_information
from fdiv.kernels.all_pairs import all_pairs_bound

N = 10_000
METHODS = ("auto", "smile", "js", "ksg", "shuffled")
QUICK_TASKS = (
    "gauss-dense-d1-mi1",
    "gauss-dense-d5-mi5",
    "gauss-sparse-d25-mi1",
    "gauss-d5-mi5-cube",
    "student-t3-d5-rho0.8",
    "student-t1-d5-rho0.8",
)
QUICK_METHODS = ("auto", "ksg", "shuffled")
CASES = [
    pytest.param(
        name, m, marks=() if name in QUICK_TASKS and m in QUICK_METHODS else pytest.mark.full
    )
    for name in mi_tasks.MI_TASKS
    for m in METHODS
]


def f_mutual_information(
    task: mi_tasks.MITask, name: str, n: int = 400_000, seed: int = 7
) -> float:
    """D_f(P_XY || P_X x P_Y) = E_{P_X x P_Y}[f(exp pmi)] by Monte Carlo over shuffled pairs."""
    x, y = task.sample(n, np.random.default_rng(seed))
    y = y[np.random.default_rng(seed + 1).permutation(n)]
    ratio = torch.from_numpy(np.exp(np.minimum(task.pmi(x, y), 700.0)))
    return float(get(name).f(ratio).mean())


def shuffled_estimate(x: np.ndarray, y: np.ndarray, steps: int, seed: int) -> Any:
    """The hand-made baseline: KL between the pairs and the pairs with y permuted."""
    y_perm = y[np.random.default_rng(seed).permutation(len(y))]
    return estimate(np.hstack([x, y]), np.hstack([x, y_perm]), "kl", steps=steps, seed=seed)


def optimal_gaussian_infonce(
    task: mi_tasks.MITask, batch: int, batches: int
) -> tuple[float, float]:
    """InfoNCE of the optimal critic pmi at batch size ``batch`` for a dense Gaussian task
    (mean, stderr over ``batches`` batches), via the separable form of its pmi: per coordinate
    pmi_c = m_c - rho^2 (x^2 + y^2) / (2 (1 - rho^2)) + rho x y / (1 - rho^2), all pairs in
    O(B) memory (``all_pairs_bound`` in fp64; ``optimal_infonce`` would build the B^2 matrix)."""
    law = task.joint
    rho, m = law.rho, law.coord_mi
    a = rho**2 / (2 * np.exp(-2 * m))
    values = []
    for seed in range(batches):
        x, y = (torch.from_numpy(t) for t in task.sample(batch, np.random.default_rng(100 + seed)))
        one = torch.ones_like(x)
        r, a_t, m_t = (torch.from_numpy(v) for v in (rho / np.exp(-2 * m), a, m))
        f = torch.cat([r * x, m_t - a_t * x**2, one], 1)
        g = torch.cat([y, one, -a_t * y**2], 1)
        values.append(float(all_pairs_bound(f, g, "infonce")))
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(batches))


@pytest.mark.parametrize(("task_name", "method"), CASES)
def test_mi_accuracy(
    benchmark: Any, figures: Callable[..., None], quick: bool, task_name: str, method: str
) -> None:
    task = mi_tasks.get_mi_task(task_name)
    x, y = task.sample(N, np.random.default_rng(0))
    steps = 600 if quick else 3000
    truth = f_mutual_information(task, "js") if method == "js" else task.mi()[0]
    start = time.perf_counter()
    row: dict[str, Any] = {"stderr": None, "ci95": None, "steps": None, "warnings": []}
    if method == "ksg":
        value = benchmark.pedantic(ksg_mi, (x, y), rounds=1, iterations=1)
    elif method == "shuffled":
        est = benchmark.pedantic(shuffled_estimate, (x, y, steps, 0), rounds=1, iterations=1)
        value = est.value
    else:
        bound = "auto" if method == "auto" else method
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            est = benchmark.pedantic(
                mutual_information, (x, y, bound), {"steps": steps}, rounds=1, iterations=1
            )
        value = est.value
        row["warnings"] = [str(w.message) for w in caught]
    if method != "ksg":
        row |= {"stderr": est.stderr, "ci95": list(est.ci95), "steps": est.steps}
    row |= {
        "task": task_name,
        "family": task.family,
        "d": task.dx,
        "truth": truth,
        "method": method,
        "estimate": value,
        "log_error": math.log(value / truth) if value > 0 and truth > 0 else None,
        "relative_error": (value - truth) / truth if truth else None,
        "seconds": time.perf_counter() - start,
    }
    figures(**row)


def test_infonce_10_nats(benchmark: Any, figures: Callable[..., None], quick: bool) -> None:
    """All-pairs InfoNCE over a 2^14-pair test split on gauss-dense-d5-mi10."""
    task = mi_tasks.get_mi_task("gauss-dense-d5-mi10")
    n_test = 2**14
    x, y = task.sample(5 * n_test, np.random.default_rng(0))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        est = benchmark.pedantic(
            mutual_information,
            (x, y, "infonce"),
            {"steps": 1000 if quick else 4000, "holdout": (0.2, 0.2)},
            rounds=1,
            iterations=1,
        )
    optimal, optimal_se = optimal_gaussian_infonce(task, n_test, batches=3)
    figures(
        task=task.name,
        family=task.family,
        d=task.dx,
        truth=task.mi()[0],
        method="infonce all-pairs B=2^14",
        estimate=est.value,
        stderr=est.stderr,
        ci95=list(est.ci95),
        steps=est.steps,
        n_test=est.n_test[0],
        optimal_infonce=optimal,
        optimal_infonce_stderr=optimal_se,
        cap=math.log(est.n_test[0]),
        warnings=[str(w.message) for w in caught],
        seconds=time.perf_counter() - start,
    )
