"""The single result type of every divergence estimator (variational, kNN, telescoping)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["Z95", "Estimate", "in_range", "interval", "shown_low", "untrained"]

Z95 = 1.959963984540054


def interval(value: float, stderr: float) -> tuple[float, float]:
    """The normal 95% interval value +- 1.96 stderr (nats)."""
    return (value - Z95 * stderr, value + Z95 * stderr)


def shown_low(est: Estimate, lower_end: float) -> bool:
    """True where a lower bound's lower end from elsewhere (a marginal's, a coordinate pair's)
    lies above ``est``'s interval, or where that is open above, above its value by Z95 standard
    errors: ``est`` is then shown to be too low."""
    high = est.ci95[1]
    return lower_end > (high if math.isfinite(high) else est.value + Z95 * est.stderr)


@dataclass(frozen=True)
class Estimate:
    """A divergence estimate in nats with its standard error and 95% interval.

    Sample counts are (N_p, N_q) per split, summed over the cross-fitting folds (each row is in
    exactly one fold's test split). ``history`` holds (fold, step, mean train-minibatch objective
    since the previous evaluation, validation criterion); ``best_step`` is the latest step whose
    critic was kept (over folds); ``steps`` the most steps a fold trained. ``method`` names what
    ran ("variational", "knn", "telescoping"), ``reason`` why (for ``method="auto"``) and
    ``warnings`` what may make the value untrustworthy (empty when nothing was detected).
    ``ci95``'s upper end is inf when the samples bound the divergence only from below.
    """

    value: float
    stderr: float
    ci95: tuple[float, float]
    divergence: str
    bound: str
    n_train: tuple[int, int]
    n_validation: tuple[int, int]
    n_test: tuple[int, int]
    steps: int
    best_step: int
    seconds: float
    history: tuple[tuple[float, ...], ...]
    method: str = "variational"
    reason: str = ""
    warnings: tuple[str, ...] = ()
    folds: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types, ready for ``json.dump`` (non-finite floats become strings)."""
        out = asdict(self)
        out["history"] = [list(row) for row in self.history]
        for key in ("ci95", "n_train", "n_validation", "n_test", "warnings"):
            out[key] = list(out[key])
        for key in ("value", "stderr"):
            if not math.isfinite(out[key]):
                out[key] = str(out[key])
        out["ci95"] = [x if math.isfinite(x) else str(x) for x in out["ci95"]]
        return out

    def __str__(self) -> str:
        low, high = self.ci95
        return (
            f"{self.divergence} ({self.bound}): {self.value:.4f} +- {self.stderr:.4f} nats, "
            f"95% interval [{low:.4f}, {high:.4f}]"
        )


def in_range(est: Estimate, value_range: tuple[float, float]) -> Estimate:
    """``est`` with its value and interval ends moved into ``value_range`` (a divergence's:
    kl's is [0, inf)). The truth lies in the range, so this never moves either away from it:
    on two samples of one distribution a lower bound's value and lower end fall below 0 by
    the noise (-0.0002 [-0.0094, 0.0089] reads 0 [0, 0.0089]). ``stderr`` is left as it is."""
    low, high = value_range
    value = min(max(est.value, low), high)
    ci95 = tuple(min(max(end, low), high) for end in est.ci95)
    if value == est.value and ci95 == est.ci95:
        return est
    return replace(est, value=value, ci95=ci95)


def untrained(
    value: float,
    stderr: float,
    ci95: tuple[float, float],
    divergence: str,
    bound: str,
    n_test: tuple[int, int],
    seconds: float,
    method: str,
    warnings: tuple[str, ...] = (),
) -> Estimate:
    """An Estimate of a method that trains nothing (knn, counts): every row is a test row."""
    return Estimate(
        value=value,
        stderr=stderr,
        ci95=ci95,
        divergence=divergence,
        bound=bound,
        n_train=(0, 0),
        n_validation=(0, 0),
        n_test=n_test,
        steps=0,
        best_step=0,
        seconds=seconds,
        history=(),
        method=method,
        warnings=warnings,
    )
