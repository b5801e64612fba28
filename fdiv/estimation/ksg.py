"""The Kraskov-Stoegbauer-Grassberger (2004) estimator of mutual information (their estimator 1):
the non-variational baseline of ``mutual_information``.

For N pairs z_i = (x_i, y_i), with eps_i the max-norm distance from z_i to its k-th nearest
neighbour in the joint space and n_x(i), n_y(i) the numbers of other points whose x (resp. y) lies
strictly closer than eps_i to x_i (resp. y_i), in the max-norm,

    I(X; Y) ~ psi(k) + psi(N) - mean_i [psi(n_x(i) + 1) + psi(n_y(i) + 1)]     (nats)

Every coordinate is first scaled to unit variance (the max-norm mixes the scales of x and y).
The estimator assumes continuous data: repeated pairs (eps_i = 0) are an error.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

from fdiv.io import as_samples

__all__ = ["ksg_mi", "ksg_terms"]


def ksg_mi(x: Tensor | np.ndarray, y: Tensor | np.ndarray, k: int = 3) -> float:
    """I(X; Y) in nats from paired rows ``x`` (N, d_x) and ``y`` (N, d_y) by KSG estimator 1."""
    return float(ksg_terms(x, y, k).mean())


def ksg_terms(x: Tensor | np.ndarray, y: Tensor | np.ndarray, k: int = 3) -> np.ndarray:
    """KSG estimator 1's per-pair terms psi(k) + psi(N) - psi(n_x(i) + 1) - psi(n_y(i) + 1),
    nats, whose mean is :func:`ksg_mi`. ValueError for repeated pairs."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    a, b = as_samples(x, "x"), as_samples(y, "y")
    n = len(a)
    if len(b) != n:
        raise ValueError(f"x and y must have the same number of rows (pairs), got {n} and {len(b)}")
    if n <= k:
        raise ValueError(f"KSG with k={k} needs more than {k} pairs, got {n}")
    a, b = _unit_scale(a), _unit_scale(b)
    dist, _ = cKDTree(np.hstack([a, b])).query(np.hstack([a, b]), k=k + 1, p=np.inf)
    eps = dist[:, k]
    if not np.all(eps > 0):
        i = int(np.argmin(eps > 0))
        raise ValueError(
            f"pair {i} has {k} or more identical copies: KSG needs continuous data without "
            "repeated pairs"
        )
    radius = np.nextafter(eps, 0.0)  # strictly closer than eps_i
    n_x = cKDTree(a).query_ball_point(a, radius, p=np.inf, return_length=True) - 1
    n_y = cKDTree(b).query_ball_point(b, radius, p=np.inf, return_length=True) - 1
    return digamma(k) + digamma(n) - (digamma(n_x + 1) + digamma(n_y + 1))


def _unit_scale(a: np.ndarray) -> np.ndarray:
    std = a.std(axis=0)
    return a / np.where(std > 0, std, 1.0)
