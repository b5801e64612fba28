"""Telescoping density-ratio estimation of KL(P||Q) (Rhodes, Xu & Gutmann 2020).

One classifier between P and Q fails when they barely overlap (the "density chasm"): it
separates them perfectly long before it has learnt log p/q. Telescoping bridges the chasm with
waymark distributions p_0 = P, p_1, ..., p_K = Q built from the samples,

    x_k = b_k x_p + a_k x_q,   b_k = sqrt(1 - a_k^2),   a_0 = 0 < a_1 < ... < a_K = 1,

with x_p, x_q paired at random (two independent pairings: one gives link k's positives, the
other its negatives), and learns one log-ratio per link, log r_k = log p_k / p_{k+1}, with the
logistic loss (its optimum is the log-ratio). Then log p/q = sum_k log r_k, and
KL(P||Q) = E_P[sum_k log r_k(x)] on held-out P rows.

Waymark spacing. By default a_k = sqrt(1 - (1 - k/K)^2), i.e. b_k falls linearly from 1 to 0:
for a mean shift N(mu, I) vs N(0, I) (after standardising) p_k = N(b_k mu, I), so every link
carries the same divergence KL / K^2 and none of them is a chasm.

Critic per link: a quadratic form in the standardised coordinates (the paper's quadratic heads),
fitted by full-batch L-BFGS (the loss is convex in it: no learning rate, no early stopping, the
same optimum from every start). Links near Q are evaluated on P's rows, where their own
waymarks have little mass: the quadratic extrapolates exactly when the waymarks are Gaussian.
A flexible network does not: measured on KL 20 at d = 20, a quadratic-plus-MLP critic gave fold
estimates from 14 to 57 nats. The price is bias where log p_k / p_{k+1} is far from quadratic
(heavy tails, several modes): see REPORT.md for the suite's numbers. Heavy tails are flagged
(``diagnostics.leptokurtic``: Mardia's kurtosis), and a heavy upper tail of the held-out
log-ratio opens the interval's upper end, as for the variational estimate.

Shrinkage. A logistic fit's coefficients come out too large by a fraction that grows with the
parameters per pair (P = d(d + 1)/2 + d + 1 per link against M pairs), and the telescoped sum
inherits it: with a fixed ridge of 1e-4, 10,000 a side, KL 10 and 20 at d = 20 came out 5% high
(10 and 8 seeds) and KL 20 at d = 50 15% high. The default ridge is RIDGE_SCALE * sqrt(P / M)
(times the squared weights, added to the summed mean logistic losses), the rate that cancels the
excess at the sizes tried (KL 20, d = 20: ridge 1e-3, mean of 4 seeds 19.84; d = 50: 1e-3
gave 22.6, 6e-3 gave 18.5; KL 8, d = 4, 2,000 a side: 3.3e-4 gave 8.03 over 12 seeds, 1e-3
7.88; KL 5, d = 1: 1e-4 gave 5.03, 1e-3 4.87). With it, 10 seeds each through the default
call: KL 10 and 20 at d = 20 gave 10.19 and 19.77, at d = 50 11.18 and 21.11.

Honesty: K-fold cross-fitting. The P and Q rows are dealt into ``folds`` folds (rows with the
same index share a fold when N_p == N_q, so identical inputs never test on training rows); the
critics of fold f are fitted on the other folds and evaluated on fold f's P rows only. The
estimate is the mean over all N_p held-out values. Its error has two parts: the test rows' noise
(the per-row spread / sqrt(N_p)) and the fit's, which dominates at large divergences: a
quadratic head's curvature is pinned down only to about sqrt(d^2 / N), and P's rows lie
|mu| standard deviations from Q, so that error is multiplied by about |mu|^2 = 2 KL. The K
critics share most of their training rows, so their fit errors are correlated and the spread of
the fold means (sd / sqrt(K), the old standard error) shows only a (K - 1)-th of it: the
standard error is the jackknife's, (K - 1) / K times the sum of squared deviations of the fold
means from their mean, less the part the test rows' noise explains, plus the test rows' noise.
Measured on N(mu, I) vs N(0, I), d = 20, 10,000 a side: KL 20 gave a seed-to-seed sd of 0.93
nats against a mean fold-spread error of 0.42 (the interval held the truth in 3 of 10 seeds)
and a jackknife error of 1.6 (the jackknife errs on the wide side for a nonlinear fit). The 95%
interval uses Student's t with K - 1 degrees of freedom, those of the jackknife's variance: with
few rows the held-out log-ratio of an overfit link is biased low by about as much as the folds
agree (P = Q, 1,500 rows, d = 3, 3 folds: -0.022 with an error of 0.0085), and the normal
quantile would then exclude the truth. Values in nats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import Tensor, nn

from fdiv.device import resolve_device
from fdiv.estimation import diagnostics
from fdiv.estimation.estimate import Estimate
from fdiv.io import as_sample_pair
from fdiv.progress import progress as progress_bar

__all__ = [
    "DEFAULT_LINKS",
    "LOOSE_FIT",
    "MAX_PAIRS",
    "RIDGE_SCALE",
    "VERY_LOOSE_FIT",
    "TelescopingCritic",
    "looseness",
    "telescoping_kl",
    "waymark_coefficients",
]

DEFAULT_LINKS = 8
#: The default ridge is RIDGE_SCALE * sqrt(parameters per link / pairs) (module docstring).
RIDGE_SCALE = 0.006
_SEPARATION = 0.99  # training accuracy of a link above which it is flagged as a chasm
#: Parameters per link over pairs above which the fit counts as loose. Measured (10 seeds each,
#: KL 10 / 20): d = 20 at 10,000 a side (0.029) +2% / -1%; d = 50 at 10,000 (0.17) +12% / +6%;
#: d = 20 at 2,000 (0.14) +5% / +32%; d = 50 at 2,000 (0.83) +83% / +60%.
LOOSE_FIT = 0.1
#: Parameters per pair above which the fit is nearly interpolating: an accepted estimate's lower
#: end then falls to log N (``fdiv.estimate``; measured at 0.83 above, the pilot's lower end
#: held the truth on 8 of 10 seeds).
VERY_LOOSE_FIT = 0.5
#: Waymark pairs per link a fold fits on at most (the default of ``max_pairs``).
MAX_PAIRS = 8192


def waymark_coefficients(waymarks: int | Sequence[float] | None) -> Tensor:
    """The mixing coefficients a_0 = 0 < ... < a_K = 1 (float64, K + 1 of them).

    ``None``: :data:`DEFAULT_LINKS` links; an integer K: K links spaced evenly in
    b = sqrt(1 - a^2); a sequence: those coefficients, checked.
    """
    if waymarks is None:
        waymarks = DEFAULT_LINKS
    if isinstance(waymarks, bool):
        raise TypeError("waymarks must be an integer or a sequence of floats, got bool")
    if isinstance(waymarks, int | np.integer):
        if waymarks < 1:
            raise ValueError(f"waymarks must be at least 1 link, got {waymarks}")
        b = 1.0 - torch.arange(waymarks + 1, dtype=torch.float64) / int(waymarks)
        return (1.0 - b * b).clamp_min(0.0).sqrt()
    try:
        a = torch.as_tensor([float(v) for v in waymarks], dtype=torch.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"waymarks must be an integer or a sequence of floats, got {waymarks!r}"
        ) from None
    if a.numel() < 2 or a[0] != 0.0 or a[-1] != 1.0 or not bool((a.diff() > 0).all()):
        raise ValueError(
            "waymarks must increase strictly from 0 to 1 (a_0 = 0 is P, a_K = 1 is Q), "
            f"got {a.tolist()}"
        )
    return a


class TelescopingCritic(nn.Module):
    """K quadratic link critics v_k(x) = x'A_k x + c_k'x + e_k in one module; ``forward`` maps
    waymark samples (K, B, d) to (K, B), the estimated log p_k / p_{k+1} in nats."""

    def __init__(self, links: int, dim: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.quad = nn.Parameter(torch.zeros(links, dim, dim, dtype=dtype))
        self.lin = nn.Parameter(torch.zeros(links, dim, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(links, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        sym = 0.5 * (self.quad + self.quad.transpose(1, 2))
        v = (torch.bmm(x, sym) * x).sum(-1) + torch.einsum("kbd,kd->kb", x, self.lin)
        return v + self.bias[:, None]

    def log_ratio(self, x: Tensor) -> Tensor:
        """sum_k v_k(x), the estimated log p/q (nats) at the rows of x (B, d)."""
        links = self.bias.numel()
        return self(x.unsqueeze(0).expand(links, -1, -1)).sum(0)


def telescoping_kl(
    p: Tensor | np.ndarray,
    q: Tensor | np.ndarray,
    *,
    waymarks: int | Sequence[float] | None = None,
    seed: int = 0,
    steps: int = 100,
    folds: int = 5,
    ridge: float | None = None,
    max_pairs: int = MAX_PAIRS,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Estimate:
    """KL(P||Q) in nats from samples ``p`` (N_p, d) and ``q`` (N_q, d) by telescoping.

    ``waymarks``: the number of links K (default :data:`DEFAULT_LINKS`) or the coefficients
    a_0 = 0 < ... < a_K = 1 (module docstring). Each of the ``folds`` cross-fitting folds fits
    its link critics by full-batch L-BFGS (at most ``steps`` iterations) on the mean logistic
    loss over at most ``max_pairs`` waymark pairs per link (a quadratic head has few
    parameters; more pairs cost time more than they gain) plus ``ridge`` times the squared
    weights (which keeps a separable link finite; ``None``: RIDGE_SCALE * sqrt(P / M), module
    docstring). The same ``seed`` gives bitwise the same result on the CPU. ``history`` holds,
    per fold, (fold, final training loss summed over links, mean held-out log p/q).
    """
    start = time.perf_counter()
    _check_options(seed, steps, folds, ridge, max_pairs)
    a = waymark_coefficients(waymarks)
    x_p, x_q = as_sample_pair(p, q)
    for name, x in (("p", x_p), ("q", x_q)):
        if len(x) < 10 * folds:
            raise ValueError(
                f"{name} has {len(x)} samples; {folds} folds need at least {10 * folds}"
            )
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    fold_p = _fold_ids(len(x_p), folds, generator)
    fold_q = fold_p if len(x_q) == len(x_p) else _fold_ids(len(x_q), folds, generator)
    held_out = np.empty(len(x_p))
    warnings: list[str] = []
    history: list[tuple[int, float, float]] = []
    iterations = []
    bar = progress_bar(folds, "telescoping kl (folds)", enabled=progress)
    for f in range(folds):
        test = fold_p == f
        fit = _fit_fold(
            x_p[~test], x_q[fold_q != f], x_p[test], a, generator, dev, steps, ridge, max_pairs
        )
        held_out[test] = fit["held_out"]
        iterations.append(fit["steps"])
        history.append((f, fit["loss"], float(fit["held_out"].mean())))
        warnings += [w for w in fit["warnings"] if w not in warnings]
        bar.update(1)
    bar.close()
    value, stderr, ci95 = _combine(held_out, fold_p, folds)
    tails = diagnostics.leptokurtic(x_p, x_q)
    if tails is not None:
        warnings.append(f"{tails}; the value may be far off and its interval does not show it")
    tail = diagnostics.heavy_tail(torch.from_numpy(held_out))
    if tail is not None:
        warnings.append(tail)
        ci95 = (ci95[0], math.inf)
    if value < 0:
        warnings.append(
            f"the estimate {value:.3g} nats is negative: the link critics did not learn the ratio"
        )
    return Estimate(
        value=value,
        stderr=stderr,
        ci95=ci95,
        divergence="kl",
        bound="telescoping",
        n_train=(len(x_p) - len(x_p) // folds, len(x_q) - len(x_q) // folds),
        n_validation=(0, 0),
        n_test=(len(x_p), 0),
        steps=max(iterations),
        best_step=max(iterations),
        seconds=time.perf_counter() - start,
        history=tuple(history),
        warnings=tuple(warnings),
        method="telescoping",
        reason=f"telescoping over {len(a) - 1} waymark links, {folds}-fold cross-fitting",
    )


def _check_options(seed: int, steps: int, folds: int, ridge: float | None, max_pairs: int) -> None:
    for name, value, low in (
        ("seed", seed, 0),
        ("steps", steps, 1),
        ("folds", folds, 2),
        ("max_pairs", max_pairs, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if ridge is not None and not (
        isinstance(ridge, int | float) and math.isfinite(ridge) and ridge >= 0
    ):
        raise ValueError(f"ridge must be a non-negative finite number, got {ridge!r}")


def _fold_ids(n: int, folds: int, generator: torch.Generator) -> np.ndarray:
    """Fold number of each of n rows: a seeded permutation dealt round-robin."""
    ids = np.empty(n, dtype=np.int64)
    ids[torch.randperm(n, generator=generator).numpy()] = np.arange(n) % folds
    return ids


def looseness(dim: int, pairs: int) -> float:
    """Parameters of one link's quadratic critic in ``dim`` dimensions per training pair."""
    return (dim * (dim + 1) // 2 + dim + 1) / pairs


def _waymarks(x_p: Tensor, x_q: Tensor, a: Tensor) -> Tensor:
    """b_k x_p + a_k x_q for each coefficient: (len(a), B, d) from pairs (B, d), (B, d)."""
    b = (1.0 - a * a).clamp_min(0.0).sqrt()
    return b[:, None, None] * x_p + a[:, None, None] * x_q


def _fit_fold(
    fit_p: np.ndarray,
    fit_q: np.ndarray,
    test_p: np.ndarray,
    a: Tensor,
    generator: torch.Generator,
    dev: torch.device,
    steps: int,
    ridge: float | None,
    max_pairs: int,
) -> dict[str, Any]:
    """Fit one fold's link critics; their log p/q on ``test_p``, the final loss, the L-BFGS
    iterations and warnings."""
    pooled = np.concatenate([fit_p, fit_q])
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def prepare(x: np.ndarray) -> Tensor:
        return torch.from_numpy((x - mean) / std).to(dev, torch.float64)

    train_p, train_q = prepare(fit_p), prepare(fit_q)
    m = min(len(train_p), len(train_q), max_pairs)
    i_p, j_p, i_q, j_q = (
        torch.randperm(len(x), generator=generator)[:m].to(dev)
        for x in (train_p, train_p, train_q, train_q)
    )
    a_dev = a.to(dev)
    pos = _waymarks(train_p[i_p], train_q[i_q], a_dev)[:-1]
    neg = _waymarks(train_p[j_p], train_q[j_q], a_dev)[1:]
    links, dim = len(a) - 1, fit_p.shape[1]
    loose = looseness(dim, m)
    if ridge is None:
        ridge = RIDGE_SCALE * math.sqrt(loose)
    net = TelescopingCritic(links, dim).to(dev)
    optimiser = torch.optim.LBFGS(
        net.parameters(), max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimiser.zero_grad(set_to_none=True)
        penalty = ridge * (net.quad.square().sum() + net.lin.square().sum())
        loss = _link_losses(net(pos), net(neg)).sum() + penalty
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        v_pos, v_neg = net(pos), net(neg)
        loss = float(_link_losses(v_pos, v_neg).sum())
        accuracy = 0.5 * ((v_pos > 0).double().mean(1) + (v_neg < 0).double().mean(1))
        held_out = torch.cat([net.log_ratio(x) for x in prepare(test_p).split(8192)])
    warnings = []
    if loose > LOOSE_FIT:
        warnings.append(
            f"each waymark link's quadratic critic has {round(loose * m)} parameters for {m} "
            f"training pairs (ratio {loose:.2f}, above {LOOSE_FIT:g}): the fit is loose and the "
            "estimate may be far too high (+60-80% measured at d = 50 with 2,000 a side); give "
            "more samples"
        )
    if bool((accuracy > _SEPARATION).any()):
        k = int(accuracy.argmax())
        warnings.append(
            f"waymark link {k} of {links} separates its two distributions almost perfectly "
            f"(accuracy {float(accuracy[k]):.3f}): the divergence may exceed what these links "
            "can certify; use more waymarks"
        )
    return {
        "held_out": held_out.cpu().numpy(),
        "loss": loss,
        "steps": int(optimiser.state[net.quad]["n_iter"]),
        "warnings": warnings,
    }


def _link_losses(v_pos: Tensor, v_neg: Tensor) -> Tensor:
    """Logistic loss per link (K,): positives are waymark k, negatives waymark k + 1."""
    return nn.functional.softplus(-v_pos).mean(1) + nn.functional.softplus(v_neg).mean(1)


def _combine(
    values: np.ndarray, fold: np.ndarray, folds: int
) -> tuple[float, float, tuple[float, float]]:
    """Mean of the held-out values, its jackknife standard error (fit and test noise; module
    docstring) and the 95% interval with Student's t on folds - 1 degrees of freedom."""
    value = float(values.mean())
    parts = [values[fold == f] for f in range(folds)]
    means = np.array([part.mean() for part in parts])
    variances = np.array([part.var(ddof=1) for part in parts])
    sizes = np.array([len(part) for part in parts])
    # the fold means' spread that the test rows' own noise explains, (K - 1) var / n_f on average
    spread = float(np.square(means - means.mean()).sum()) - (folds - 1) * float(
        (variances / sizes).mean()
    )
    fit = (folds - 1) / folds * max(spread, 0.0)
    test = float(variances.mean()) / len(values)
    stderr = math.sqrt(fit + test)
    half = float(student_t.ppf(0.975, folds - 1)) * stderr
    return value, stderr, (value - half, value + half)
