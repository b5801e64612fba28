"""The multivariate Student t log density in closed form (numpy, float64, nats)."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

__all__ = ["log_density"]


def log_density(mahalanobis_sq: np.ndarray, nu: float, dim: int, log_det: float) -> np.ndarray:
    """log t_nu(x) from the squared Mahalanobis distances (x - m)' S^-1 (x - m) of rows x to
    the location m, the degrees of freedom ``nu`` > 0, the dimension and log det S of the scale
    matrix S (the covariance is nu / (nu - 2) S for nu > 2; nu -> inf gives the Gaussian)."""
    const = (
        gammaln((nu + dim) / 2)
        - gammaln(nu / 2)
        - 0.5 * dim * math.log(nu * math.pi)
        - 0.5 * log_det
    )
    return const - 0.5 * (nu + dim) * np.log1p(mahalanobis_sq / nu)
