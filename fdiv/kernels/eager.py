"""The naive eager compositions of the losses: the baseline for benchmarks and a test oracle.

Plain autograd through the registry's elementwise closed forms (the DESIGN table) and torch's
norms, as a user would write them without fdiv's fused losses. fp16/bf16 inputs are computed in
fp32 (as ``reference``); values in nats.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fdiv.divergences.registry import FDivergence, get
from fdiv.kernels.reference import GENERATOR_MODES, PENALTIES, check_choice, compute_dtype

__all__ = [
    "eager_critic_loss",
    "eager_generator_loss",
    "eager_gradient_penalty",
    "make_eager_critic_loss",
]


def eager_critic_loss(v_p: Tensor, v_q: Tensor, divergence: str | FDivergence) -> Tensor:
    """-(mean g(v_p) - mean f*(g(v_q))) with autograd through every elementwise op, nats."""
    div = get(divergence)
    cdt = compute_dtype(v_p.dtype)
    return div.conjugate_activation(v_q.to(cdt)).mean() - div.activation(v_p.to(cdt)).mean()


def make_eager_critic_loss(divergence: str | FDivergence) -> Callable[[Tensor, Tensor], Tensor]:
    """``eager_critic_loss`` with the divergence bound (a plain function, for ``torch.compile``)."""
    div = get(divergence)

    def loss(v_p: Tensor, v_q: Tensor) -> Tensor:
        return eager_critic_loss(v_p, v_q, div)

    return loss


def eager_generator_loss(
    v_q: Tensor, divergence: str | FDivergence, mode: str = "nonsaturating"
) -> Tensor:
    """-mean g(v_q) ("nonsaturating") or -mean f*(g(v_q)) ("minimax") by autograd, nats."""
    div = get(divergence)
    check_choice("mode", mode, GENERATOR_MODES)
    term = div.activation if mode == "nonsaturating" else div.conjugate_activation
    return -term(v_q.to(compute_dtype(v_q.dtype))).mean()


def eager_gradient_penalty(grads: Tensor, kind: str = "wgan-gp", weight: float = 10.0) -> Tensor:
    """weight * mean (||g|| - 1)^2 ("wgan-gp") or weight/2 * mean ||g||^2 ("r1") by autograd.

    ``grads`` has shape (B, ...) (one row per sample; (B,) is read as (B, 1)); the norm is over
    all but the batch dim. At g = 0 the WGAN-GP gradient is the norm's subgradient 0.
    """
    check_choice("kind", kind, PENALTIES)
    x = grads.to(compute_dtype(grads.dtype)).reshape(len(grads), -1)
    if kind == "r1":
        return 0.5 * weight * (x * x).sum(dim=1).mean()
    return weight * (torch.linalg.vector_norm(x, dim=1) - 1.0).square().mean()
