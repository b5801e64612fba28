"""Marginal Gaussianisation: the per-coordinate map z = Phi^-1(F(x)), F the empirical CDF of
the rows it was fitted on (P's and Q's pooled, so it sees no labels).

f-divergences are invariant under one bijection applied to both P and Q (the density ratio
moves with the samples), so a critic may see any invertible function of the data. This one
makes every marginal of the pooled sample standard normal: skewed, heavy-tailed and bounded
coordinates (a lognormal, a density that blows up at the faces of a cube) become ones whose
log-ratio an MLP fits with a smooth function instead of a singular or steep one. The default
critic sees z beside the standardised x (:func:`fdiv.estimation.crossfit.fold_tensors`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri

__all__ = ["MarginalGaussian"]


class MarginalGaussian:
    """z_j = Phi^-1(F_j(x_j)) per coordinate j, fitted on ``rows`` (n, d).

    F_j is the mid-rank empirical CDF (tied values share a rank) interpolated linearly between
    the distinct fitted values. Beyond the fitted range z continues linearly with the slope of
    the chord over the outermost ceil(sqrt(m)) of the m distinct values, so a new row past the
    extremes stays ordered instead of being clipped. A coordinate with one distinct value
    maps to 0.
    """

    def __init__(self, rows: np.ndarray) -> None:
        if rows.ndim != 2 or len(rows) == 0:
            raise ValueError(f"rows must be a non-empty (n, d) array, got shape {rows.shape}")
        self.knots: list[tuple[np.ndarray, np.ndarray]] = []
        for column in rows.T:
            values, counts = np.unique(column, return_counts=True)
            mid_rank = (np.cumsum(counts) - counts / 2.0) / len(column)
            self.knots.append((values, ndtri(mid_rank)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """z for the rows of ``x`` (n, d), float64."""
        if x.ndim != 2 or x.shape[1] != len(self.knots):
            raise ValueError(f"x must have shape (n, {len(self.knots)}), got {x.shape}")
        return np.stack([_map(col, *k) for col, k in zip(x.T, self.knots, strict=True)], axis=1)


def _map(x: np.ndarray, values: np.ndarray, z: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.zeros(len(x))
    out = np.interp(x, values, z)
    m = max(1, math.ceil(math.sqrt(len(values))) - 1)
    low_slope = (z[m] - z[0]) / (values[m] - values[0])
    high_slope = (z[-1] - z[-1 - m]) / (values[-1] - values[-1 - m])
    below, above = x < values[0], x > values[-1]
    out[below] = z[0] + low_slope * (x[below] - values[0])
    out[above] = z[-1] + high_slope * (x[above] - values[-1])
    return out
