"""``make demo``: every divergence between two built-in Gaussians, ground truth beside the bound.

Run as ``python -m fdiv.demo``. Values are in nats (chi2, Hellinger, TV and alpha are unitless).
"""

from __future__ import annotations

import time

import torch

from fdiv.divergences import gaussian, registry

N_SAMPLES = 1_000_000
P = gaussian.Gaussian(torch.zeros(2), torch.eye(2))
Q = gaussian.Gaussian(torch.tensor([0.4, -0.2]), torch.diag(torch.tensor([1.21, 1.1025])))
Q_EQUAL_COV = gaussian.Gaussian(torch.tensor([0.4, -0.2]), torch.eye(2))


def optimal_critic_table() -> list[tuple[str, float, float, float]]:
    """(name, ground truth, bound at the optimal critic, its stderr) for every divergence."""
    rows = []
    for div in [*registry.registered(), *(registry.alpha(a) for a in (-1.0, 0.5, 2.0, 3.0))]:
        q = Q_EQUAL_COV if div.name == "tv" else Q
        truth, _ = gaussian.ground_truth(div.family, P, q, alpha=div.alpha, n=N_SAMPLES, seed=2)
        value, stderr = gaussian.optimal_bound(div, P, q, n=N_SAMPLES, seed=1)
        rows.append((div.name, truth, value, stderr))
    return rows


def main() -> None:
    start = time.perf_counter()
    print("P = N(0, I_2), Q = N((0.4, -0.2), diag(1.21, 1.1025)); for tv, Q has covariance I_2")
    print(f"variational bound at the optimal critic v*(log p/q) on {N_SAMPLES:,} samples each\n")
    print(f"{'divergence':<12}{'ground truth':>14}{'bound at v*':>14}{'stderr':>11}{'z':>7}")
    for name, truth, value, stderr in optimal_critic_table():
        z = (value - truth) / stderr
        print(f"{name:<12}{truth:>14.6f}{value:>14.6f}{stderr:>11.2e}{z:>7.2f}")
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
