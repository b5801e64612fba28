"""The naive eager composition of the critic loss: the baseline for benchmarks and a test oracle.

Autograd through the registry's elementwise closed forms (the DESIGN table), as a user would
write it without fdiv's fused losses. fp16/bf16 inputs are computed in fp32; values in nats.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from fdiv.divergences.registry import FDivergence, get
from fdiv.kernels.reference import compute_dtype

__all__ = ["eager_critic_loss", "make_eager_critic_loss"]


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
