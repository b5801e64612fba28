"""A fitted density ratio: log p/q in nats at new points, learnt from samples of P and Q.

The critic, its inputs and its training are those of one fold of the default estimate
(:func:`fdiv.estimation.estimate.estimate`): an :class:`MLPCritic` on the standardised rows and
their marginal Gaussianisation, trained with the logistic loss (whose optimum is log p/q) on
balanced batches and stopped early on a validation share of the rows. Used to refine a GAN's
samples (:mod:`fdiv.gan.refine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fdiv.device import resolve_device
from fdiv.divergences.registry import get
from fdiv.estimation.critics import MLPCritic
from fdiv.estimation.crossfit import (
    MIN_SPLIT,
    Split,
    critic_outputs,
    feature_map,
    fit_fold,
    training_objective,
)
from fdiv.estimation.estimate import DEFAULT_HIDDEN, check_training
from fdiv.io import as_sample_pair, as_samples, is_integer
from fdiv.progress import progress as progress_bar

__all__ = ["LogRatio", "fit_log_ratio"]


@dataclass(frozen=True)
class LogRatio:
    """log p/q (nats) of a trained critic; ``validation`` is its logistic objective on the
    validation rows, E_P[log sigmoid(v)] + E_Q[log sigmoid(-v)] (nats): 2 JS - log 4 at the
    optimum, -log 4 for a critic that learnt nothing."""

    net: nn.Module
    features: Callable[[np.ndarray], Tensor]
    validation: float

    def __call__(self, x: Tensor | np.ndarray) -> Tensor:
        """log p/q at the rows of ``x`` (n, d): a float64 CPU tensor (n,)."""
        rows = as_samples(x, "x")
        return critic_outputs(self.net, self.features(rows)).double().cpu()


def fit_log_ratio(
    p: Tensor | np.ndarray,
    q: Tensor | np.ndarray,
    *,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    validation: float = 0.2,
    eval_every: int = 50,
    patience: int = 400,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> LogRatio:
    """Fit log p/q on all rows of ``p`` (N_p, d) and ``q`` (N_q, d) but a ``validation``
    share, which selects the training step (options as in :func:`fdiv.estimate`). Raises
    ValueError for bad input or a critic that learnt less than a constant one."""
    check_training(
        steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every, patience=patience
    )
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 < validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1), got {validation!r}")
    x_p, x_q = as_sample_pair(p, q)
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    split_p = _split("p", len(x_p), validation, generator)
    split_q = _split("q", len(x_q), validation, generator)
    features = feature_map(
        np.concatenate([x_p[split_p.train], x_q[split_q.train]]), dev, torch.float32, True
    )
    data = tuple(
        (features(x_p[getattr(split_p, part)]), features(x_q[getattr(split_q, part)]))
        for part in ("train", "validation", "test")
    )
    bar = progress_bar(steps, "fit log p/q", enabled=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLPCritic(2 * x_p.shape[1], DEFAULT_HIDDEN).to(dev)
    result = fit_fold(
        net, data, 0, get("kl"), "dv", 5.0, generator,
        steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every, patience=patience,
        bar=bar,
    )  # fmt: skip
    bar.close()
    return LogRatio(net, features, float(training_objective()(result.v_p, result.v_q)))


def _split(name: str, n: int, validation: float, generator: torch.Generator) -> Split:
    """Training and validation rows of one side (the validation rows double as its test)."""
    chosen = torch.rand(n, generator=generator, dtype=torch.float64).numpy() < validation
    train, held = np.flatnonzero(~chosen), np.flatnonzero(chosen)
    if min(len(train), len(held)) < MIN_SPLIT:
        raise ValueError(
            f"{name} has {n} samples, split into train/validation = {len(train)}/{len(held)}; "
            f"each needs at least {MIN_SPLIT}"
        )
    return Split(train, held, held)
