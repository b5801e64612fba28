"""The variational bound at the optimal critic equals each divergence's ground truth."""

from __future__ import annotations

import pytest
import torch

from fdiv.divergences import gaussian, registry
from fdiv.divergences.registry import alpha

N = 1_000_000
# Unequal covariances chosen so that every term has finite variance: with S_p = I and
# S_q = diag(1.21, 1.1025), k S_q + (1 - k) S_p is positive definite for k in [-9, 6], which
# covers the moments E_P[e^{kr}] and E_Q[e^{kr}] that the bounds' variances need (alpha = 3 needs
# k = 6 on Q, alpha = -1 and neyman k = -3 on P, pearson k = 3 on P).
P = gaussian.Gaussian(torch.zeros(2), torch.eye(2))
Q = gaussian.Gaussian(torch.tensor([0.4, -0.2]), torch.diag(torch.tensor([1.21, 1.1025])))
# TV has a closed form only for equal covariances.
Q_EQUAL_COV = gaussian.Gaussian(torch.tensor([0.4, -0.2]), torch.eye(2))

CASES = [*registry.registered(), *(alpha(a) for a in (-1.0, 0.5, 2.0, 3.0))]


@pytest.mark.parametrize("div", CASES, ids=[d.name for d in CASES])
def test_bound_at_optimal_critic_equals_ground_truth(div: registry.FDivergence) -> None:
    q = Q_EQUAL_COV if div.name == "tv" else Q
    value, stderr = gaussian.optimal_bound(div, P, q, n=N, seed=1)
    truth, truth_stderr = gaussian.ground_truth(div.family, P, q, alpha=div.alpha, n=N, seed=2)
    combined = (stderr**2 + truth_stderr**2) ** 0.5
    assert stderr < 0.02 * max(abs(truth), 0.05), "the Monte Carlo check itself is too noisy"
    # 4 standard errors: a false alarm has probability 6e-5 per case.
    assert abs(value - truth) <= 4 * combined, (value, truth, combined)
    low, high = div.value_range
    assert low - 1e-12 <= truth <= high + 1e-12
