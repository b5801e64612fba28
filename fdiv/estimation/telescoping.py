"""Telescoping density-ratio estimation of KL(P||Q) (Rhodes, Xu & Gutmann 2020).

One classifier between P and Q fails when they barely overlap (the "density chasm"): it
separates them perfectly long before it has learnt log p/q. Telescoping bridges the chasm with
waymark distributions p_0 = P, p_1, ..., p_K = Q built from the samples,

    x_k = b_k x_p + a_k x_q,   b_k = sqrt(1 - a_k^2),   a_0 = 0 < a_1 < ... < a_K = 1,

with x_p, x_q drawn independently (fresh pairs every step), and learns one log-ratio per link,
log r_k = log p_k / p_{k+1}, with the logistic loss (bounded per sample; its optimum is the
log-ratio). Then log p/q = sum_k log r_k, and KL(P||Q) = E_P[sum_k log r_k(x)] on held-out P rows.

Waymark spacing. By default a_k = sqrt(1 - (1 - k/K)^2), i.e. b_k falls linearly from 1 to 0:
for a mean shift N(mu, I) vs N(0, I) (after standardising) p_k = N(b_k mu, I), so every link
carries the same divergence KL / K^2 and none of them is a chasm.

Critic per link: a quadratic form plus a small MLP, all K links in one batched network. The
quadratic part extrapolates the ratio of Gaussian-like waymarks correctly to P's region (links
near Q are evaluated where their own waymarks have little mass); the MLP adds what is not
quadratic.

Honesty: K-fold cross-fitting. The P and Q rows are dealt into ``folds`` folds (rows with the
same index share a fold when N_p == N_q, so identical inputs never test on training rows); the
critics of fold f train on the other folds (10% of them held back to select the best snapshot by
the validation logistic loss) and are evaluated on fold f's P rows only. The estimate is the mean
over all N_p held-out values; its standard error is the spread of the fold means
(sd / sqrt(folds), which carries the variability of training as well as of the test rows),
floored by the pooled per-row standard error; the 95% interval uses Student's t with folds - 1
degrees of freedom. Values in nats.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import Tensor, nn

from fdiv.device import resolve_device
from fdiv.estimation.estimate import Estimate
from fdiv.io import as_samples
from fdiv.progress import progress as progress_bar

__all__ = ["DEFAULT_LINKS", "TelescopingCritic", "telescoping_kl", "waymark_coefficients"]

DEFAULT_LINKS = 8
_VALIDATION = 0.1  # share of a fold's training rows held back for snapshot selection
_EVAL_EVERY = 50
_SEPARATION = 0.99  # validation accuracy of a link above which it is flagged as a chasm


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
    """K link critics in one module: v_k(x) = x'A_k x + c_k'x + e_k + MLP_k(x); ``forward``
    maps waymark samples (K, B, d) to raw outputs (K, B), the estimated log p_k / p_{k+1}."""

    def __init__(self, links: int, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.quad = nn.Parameter(torch.zeros(links, dim, dim))
        self.lin = nn.Parameter(torch.zeros(links, dim))
        self.bias = nn.Parameter(torch.zeros(links))
        self.w1 = nn.Parameter(torch.randn(links, dim, hidden) / math.sqrt(dim))
        self.b1 = nn.Parameter(torch.zeros(links, 1, hidden))
        self.w2 = nn.Parameter(torch.randn(links, hidden, hidden) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(links, 1, hidden))
        self.w3 = nn.Parameter(torch.zeros(links, hidden))

    def forward(self, x: Tensor) -> Tensor:
        sym = 0.5 * (self.quad + self.quad.transpose(1, 2))
        v = (torch.bmm(x, sym) * x).sum(-1) + torch.einsum("kbd,kd->kb", x, self.lin)
        h = nn.functional.silu(torch.baddbmm(self.b1, x, self.w1))
        h = nn.functional.silu(torch.baddbmm(self.b2, h, self.w2))
        return v + self.bias[:, None] + torch.einsum("kbh,kh->kb", h, self.w3)

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
    steps: int = 800,
    folds: int = 5,
    batch_size: int = 256,
    hidden: int = 32,
    lr: float = 3e-3,
    patience: int = 300,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Estimate:
    """KL(P||Q) in nats from samples ``p`` (N_p, d) and ``q`` (N_q, d) by telescoping.

    ``waymarks``: the number of links K (default :data:`DEFAULT_LINKS`) or the coefficients
    a_0 = 0 < ... < a_K = 1 (module docstring). Each of the ``folds`` cross-fitting folds trains
    its critics for at most ``steps`` Adam steps (``batch_size`` waymark pairs per link and step,
    learning rate ``lr``), stopping after ``patience`` steps without a better validation loss.
    The same ``seed`` gives bitwise the same result on the CPU.
    """
    start = time.perf_counter()
    _check_options(seed, steps, folds, batch_size, hidden, lr, patience)
    a = waymark_coefficients(waymarks)
    x_p, x_q = as_samples(p, "p"), as_samples(q, "q")
    if x_p.shape[1] != x_q.shape[1]:
        raise ValueError(
            f"p and q must have the same dimension, got p: {x_p.shape[1]} and q: {x_q.shape[1]}"
        )
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
    trained = []
    bar = progress_bar(folds * steps, "telescoping kl", enabled=progress)
    with torch.random.fork_rng(devices=[] if dev.type != "cuda" else [dev.index or 0]):
        torch.manual_seed(seed)
        for f in range(folds):
            test = fold_p == f
            fit = _fit_fold(
                x_p[~test], x_q[fold_q != f], x_p[test], a, generator, dev, bar,
                steps=steps, batch_size=batch_size, hidden=hidden, lr=lr, patience=patience,
            )  # fmt: skip
            held_out[test] = fit["held_out"]
            trained.append(fit["steps"])
            history += [(f * steps + s, loss, val) for s, loss, val in fit["history"]]
            warnings += [w for w in fit["warnings"] if w not in warnings]
    bar.close()
    value, stderr, ci95 = _combine(held_out, fold_p, folds)
    if value < 0:
        warnings.append(
            f"the estimate {value:.3g} nats is negative: the link critics did not learn the ratio"
        )
    n_fit_p, n_fit_q = len(x_p) * (folds - 1) // folds, len(x_q) * (folds - 1) // folds
    n_val_p, n_val_q = round(n_fit_p * _VALIDATION), round(n_fit_q * _VALIDATION)
    return make_estimate(
        value=value,
        stderr=stderr,
        ci95=ci95,
        divergence="kl",
        bound="telescoping",
        n_train=(n_fit_p - n_val_p, n_fit_q - n_val_q),
        n_validation=(n_val_p, n_val_q),
        n_test=(len(x_p), 0),
        steps=max(trained),
        best_step=0,
        seconds=time.perf_counter() - start,
        history=tuple(history),
        warnings=tuple(warnings),
        method="telescoping",
        reason=f"telescoping over {len(a) - 1} waymark links, {folds}-fold cross-fitting",
    )


def make_estimate(**fields: Any) -> Estimate:
    """An :class:`Estimate` from ``fields``, dropping those this version of the type lacks."""
    known = {f.name for f in dataclasses.fields(Estimate)}
    return Estimate(**{k: v for k, v in fields.items() if k in known})


def _check_options(
    seed: int, steps: int, folds: int, batch_size: int, hidden: int, lr: float, patience: int
) -> None:
    for name, value in (
        ("seed", seed),
        ("steps", steps),
        ("folds", folds),
        ("batch_size", batch_size),
        ("hidden", hidden),
        ("patience", patience),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be {'>= 0' if name == 'seed' else 'positive'}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2 (cross-fitting), got {folds}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")


def _fold_ids(n: int, folds: int, generator: torch.Generator) -> np.ndarray:
    """Fold number of each of n rows: a seeded permutation dealt round-robin."""
    ids = np.empty(n, dtype=np.int64)
    ids[torch.randperm(n, generator=generator).numpy()] = np.arange(n) % folds
    return ids


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
    bar: Any,
    *,
    steps: int,
    batch_size: int,
    hidden: int,
    lr: float,
    patience: int,
) -> dict[str, Any]:
    """Train one fold's link critics; their log p/q on ``test_p``, history and warnings."""
    pooled = np.concatenate([fit_p, fit_q])
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def prepare(x: np.ndarray) -> Tensor:
        return torch.from_numpy((x - mean) / std).to(dev, torch.float32)

    (train_p, val_p), (train_q, val_q) = (
        _split_off(prepare(x), _VALIDATION, generator) for x in (fit_p, fit_q)
    )
    a_dev = a.to(dev, torch.float32)
    links = len(a) - 1
    net = TelescopingCritic(links, fit_p.shape[1], hidden).to(dev)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    # fixed validation waymarks: positives of link k from one pairing, negatives from another
    m = min(len(val_p), len(val_q))
    val_pos = _waymarks(val_p[:m], val_q[:m], a_dev)[:-1]
    val_neg = _waymarks(val_p[:m].roll(1, 0), val_q[:m].roll(m // 2, 0), a_dev)[1:]
    best = (math.inf, 0, _snapshot(net), None)
    history, running, count, step = [], 0.0, 0, 0
    for step in range(1, steps + 1):
        idx = [torch.randint(len(x), (batch_size,), generator=generator).to(dev)
               for x in (train_p, train_q, train_p, train_q)]  # fmt: skip
        pos = _waymarks(train_p[idx[0]], train_q[idx[1]], a_dev)[:-1]
        neg = _waymarks(train_p[idx[2]], train_q[idx[3]], a_dev)[1:]
        loss = _link_losses(net(pos), net(neg)).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running, count = running + float(loss.detach()), count + 1
        if step % _EVAL_EVERY and step != steps:
            continue
        with torch.no_grad():
            v_pos, v_neg = net(val_pos), net(val_neg)
            val_loss = float(_link_losses(v_pos, v_neg).sum())
            val_kl = float(net.log_ratio(val_p).mean())
        history.append((step, running / count, val_kl))
        running, count = 0.0, 0
        bar.update(_EVAL_EVERY if step % _EVAL_EVERY == 0 else step % _EVAL_EVERY)
        if val_loss < best[0]:
            accuracy = 0.5 * ((v_pos > 0).double().mean(1) + (v_neg < 0).double().mean(1))
            best = (val_loss, step, _snapshot(net), accuracy)
        if step - best[1] >= patience:
            break
    bar.update(steps - step)
    net.load_state_dict(best[2])
    with torch.no_grad():
        held_out = torch.cat([net.log_ratio(x) for x in prepare(test_p).split(8192)])
    warnings = []
    accuracy = best[3]
    if accuracy is not None and bool((accuracy > _SEPARATION).any()):
        k = int(accuracy.argmax())
        warnings.append(
            f"waymark link {k} of {links} separates its two distributions almost perfectly "
            f"(validation accuracy {float(accuracy[k]):.3f}): the divergence may exceed what "
            "these links can certify; use more waymarks"
        )
    return {
        "held_out": held_out.double().cpu().numpy(),
        "steps": step,
        "history": history,
        "warnings": warnings,
    }


def _split_off(x: Tensor, share: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(rest, held back) of the rows of x, ``share`` of them held back (at least one)."""
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    n = max(1, round(share * len(x)))
    return x[perm[n:]], x[perm[:n]]


def _link_losses(v_pos: Tensor, v_neg: Tensor) -> Tensor:
    """Logistic loss per link (K,): positives are waymark k, negatives waymark k + 1."""
    return nn.functional.softplus(-v_pos).mean(1) + nn.functional.softplus(v_neg).mean(1)


def _snapshot(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _combine(
    values: np.ndarray, fold: np.ndarray, folds: int
) -> tuple[float, float, tuple[float, float]]:
    """Mean of the held-out values, the standard error (fold spread, floored by the per-row
    error) and the 95% interval with Student's t on folds - 1 degrees of freedom."""
    value = float(values.mean())
    means = np.array([values[fold == f].mean() for f in range(folds)])
    between = float(means.std(ddof=1)) / math.sqrt(folds)
    within = float(values.std(ddof=1)) / math.sqrt(len(values))
    stderr = max(between, within)
    half = float(student_t.ppf(0.975, folds - 1)) * stderr
    return value, stderr, (value - half, value + half)
