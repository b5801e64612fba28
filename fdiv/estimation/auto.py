"""``method="auto"``: which estimator runs, and why (the reason is recorded in the Estimate).

The rule, from measured numbers (the issue's table and benchmarks/results, 10k-20k a side):

1. Not kl: only the variational f-dual bounds estimate other divergences.
2. kl in d <= KNN_MAX_DIM: kNN. The issue's table has it beating the old DV default in 1-D
   (KL 5: kNN 5.04, dv 6.76) at a fraction of the cost; from d = 5 on it is biased (measured at
   10k a side: Student-t d = 5 0.70 for 1.27, banana d = 10 0.15 for 0.375, correlated d = 10
   3.69 for 4.15; the mixture d = 5 0.366 for 0.354 is its one good case). Caveat, measured
   here: on shift-kl5-d1 (10k, 3 seeds) kNN gave 4.23, 4.49, 4.38 (k = 5), 10-15% low with
   intervals that miss; the cross-fitted variational estimate there is not yet measured, so
   this rule rests on the issue's numbers.
3. Otherwise the cross-fitted variational DV estimate; when it exceeds LARGE_KL nats the
   telescoping estimator replaces it (one density ratio fails past a few nats: dv at d = 20,
   KL 10 gave 11.0, 8.8, 13.6 over three seeds while correlated d = 10, KL 4.15, was within 5%).
"""

from __future__ import annotations

from fdiv.divergences.registry import FDivergence

__all__ = ["KNN_MAX_DIM", "LARGE_KL", "choose_method"]

KNN_MAX_DIM = 1
LARGE_KL = 5.0


def choose_method(method: str, div: FDivergence, dim: int, explicit: bool) -> tuple[str, str]:
    """(method, reason) for ``method`` ("auto" or a named method) on ``dim``-dimensional data.

    ``explicit``: the caller named a bound or passed a critic, which asks for the variational
    estimate. The large-KL switch to telescoping happens after the variational estimate.
    """
    if method != "auto":
        return method, f"method={method!r} was requested"
    if div.family != "kl":
        return "variational", f"only the variational bounds estimate {div.name}"
    if explicit:
        return "variational", "a bound or critic was given"
    if dim <= KNN_MAX_DIM:
        return "knn", (
            f"kl in d = {dim} <= {KNN_MAX_DIM}: kNN is more accurate than the variational "
            "bounds in low dimension"
        )
    return "variational", (
        f"kl in d = {dim} > {KNN_MAX_DIM}: cross-fitted variational DV (telescoping would "
        f"replace it above {LARGE_KL:g} nats)"
    )
