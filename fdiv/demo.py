"""``make demo``: every divergence between two built-in Gaussians, ground truth beside the bound;
then KL and JS estimated from samples alone (``fdiv.estimate``) beside their ground truth; then a
short f-GAN run on ring8 with its mode coverage, held-out JS estimate and plots; last, the mutual
information of a correlated Gaussian pair (``fdiv.mutual_information``, KSG) beside its truth.

Run as ``python -m fdiv.demo``. Values are in nats (chi2, Hellinger, TV and alpha are unitless).
"""

from __future__ import annotations

import math
import time

import torch

from fdiv.divergences import gaussian, registry
from fdiv.estimation.estimate import estimate
from fdiv.estimation.ksg import ksg_mi
from fdiv.estimation.mutual_information import mutual_information
from fdiv.gan.demo import ring8_demo

N_SAMPLES = 1_000_000
P = gaussian.Gaussian(torch.zeros(2), torch.eye(2))
Q = gaussian.Gaussian(torch.tensor([0.4, -0.2]), torch.diag(torch.tensor([1.21, 1.1025])))
Q_EQUAL_COV = gaussian.Gaussian(torch.tensor([0.4, -0.2]), torch.eye(2))
ESTIMATE_SAMPLES = 20_000
P5 = gaussian.Gaussian(torch.zeros(5), torch.eye(5))
Q5 = gaussian.Gaussian(torch.full((5,), 0.5), 1.5 * torch.eye(5))


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
    print(f"\n({time.perf_counter() - start:.1f} s)\n")
    estimation_table()
    print()
    ring8_demo()
    print()
    mutual_information_table()
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s")


def estimation_table() -> None:
    """KL and JS between 5-D Gaussians estimated from samples, beside the ground truth."""
    generator = torch.Generator().manual_seed(0)
    x_p, x_q = P5.sample(ESTIMATE_SAMPLES, generator), Q5.sample(ESTIMATE_SAMPLES, generator)
    print("P = N(0, I_5), Q = N(0.5 * 1, 1.5 I_5); estimated from samples only")
    print(
        f"{ESTIMATE_SAMPLES:,} samples each; 3 cross-fitted critics, each reported only on the "
        "fold it neither trained nor was selected on\n"
    )
    print(
        f"{'divergence':<12}{'bound':>7}{'estimate':>10}{'stderr':>9}"
        f"{'95% interval':>20}{'ground truth':>14}{'seconds':>9}"
    )
    for name in ("kl", "js"):
        est = estimate(x_p, x_q, name, seed=0)
        truth, _ = gaussian.ground_truth(name, P5, Q5, n=N_SAMPLES, seed=3)
        low, high = est.ci95
        print(
            f"{name:<12}{est.bound:>7}{est.value:>10.4f}{est.stderr:>9.4f}"
            f"{f'[{low:.4f}, {high:.4f}]':>20}{truth:>14.4f}{est.seconds:>9.1f}"
        )


MI_PAIRS = 5000
MI_RHO = 0.8  # per coordinate, d = 2: I(X; Y) = -log(1 - rho^2) = 1.0217 nats


def mutual_information_table() -> None:
    """I(X; Y) of a 2-D Gaussian pair estimated from samples, beside the closed form."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(MI_PAIRS, 2, generator=generator)
    y = MI_RHO * x + (1 - MI_RHO**2) ** 0.5 * torch.randn(MI_PAIRS, 2, generator=generator)
    truth = -math.log(1 - MI_RHO**2)
    print(f"X ~ N(0, I_2), Y = {MI_RHO} X + noise; {MI_PAIRS:,} pairs, split 60/20/20 by rows")
    start = time.perf_counter()
    est = mutual_information(x, y, steps=600, batch_size=256, hidden=(64, 64))
    low, high = est.ci95
    print(
        f"mutual information ({est.bound}, all pairs of the test split): {est.value:.4f} "
        f"+- {est.stderr:.4f} nats, 95% interval [{low:.4f}, {high:.4f}] "
        f"({time.perf_counter() - start:.1f} s)"
    )
    print(f"KSG (k = 3): {ksg_mi(x, y):.4f} nats; closed form: {truth:.4f} nats")


if __name__ == "__main__":
    main()
