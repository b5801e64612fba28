"""The critic and generator objectives a GAN can train with, on raw critic outputs v.

Every registered f-divergence (and ``alpha(a)``) goes through the public losses
``fdiv.critic_loss`` / ``fdiv.generator_loss`` (fused kernels on CUDA); ``wgan-gp`` and ``hinge``
are the usual comparison losses. ``backend="eager"`` builds the f-divergence losses from the
registry's elementwise closed forms with plain autograd: the baseline the fused path is timed
against. All values are in nats for the f-divergences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fdiv.divergences.registry import FDivergence, get
from fdiv.kernels.dispatch import BACKENDS
from fdiv.kernels.eager import eager_critic_loss, eager_generator_loss, eager_gradient_penalty
from fdiv.losses import GENERATOR_MODES, critic_loss, generator_loss, gradient_penalty

__all__ = ["COMPARISON", "LOSS_BACKENDS", "Objective", "objective"]

COMPARISON: tuple[str, ...] = ("wgan-gp", "hinge")
LOSS_BACKENDS: tuple[str, ...] = (*BACKENDS, "eager")


@dataclass(frozen=True)
class Objective:
    """The losses of one GAN formulation.

    ``divergence`` is the f-divergence record, or None for ``wgan-gp`` / ``hinge`` (``name``).
    """

    name: str
    divergence: FDivergence | None
    mode: str
    backend: str

    def critic(self, v_p: Tensor, v_q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The critic's loss on outputs for real (v_p) and generated (v_q) samples, and the two
        (detached) terms of its bound: (E_P[g(v_p)], E_Q[f*(g(v_q))]), or (E_P[v], E_Q[v])."""
        if self.divergence is None:
            terms = v_p.detach().mean(), v_q.detach().mean()
            if self.name == "hinge":
                return torch.relu(1.0 - v_p).mean() + torch.relu(1.0 + v_q).mean(), *terms
            return v_q.mean() - v_p.mean(), *terms
        if self.backend == "eager":
            loss = eager_critic_loss(v_p, v_q, self.divergence)
            _, term_p, term_q = critic_loss(
                v_p.detach(), v_q.detach(), self.divergence, return_terms=True
            )
            return loss, term_p, term_q
        return critic_loss(v_p, v_q, self.divergence, backend=self.backend, return_terms=True)

    def generator(self, v_q: Tensor) -> Tensor:
        """The generator's loss on critic outputs for generated samples."""
        if self.divergence is None:
            return -v_q.mean()
        if self.backend == "eager":
            return eager_generator_loss(v_q, self.divergence, self.mode)
        return generator_loss(v_q, self.divergence, self.mode, backend=self.backend)

    def penalty(self, grads: Tensor, kind: str, weight: float) -> Tensor:
        """The gradient penalty ``kind`` of the critic's input gradients, on this backend."""
        if self.backend == "eager":
            return eager_gradient_penalty(grads, kind, weight)
        return gradient_penalty(grads, kind, weight, self.backend)


def objective(name: str, mode: str = "nonsaturating", backend: str = "auto") -> Objective:
    """The objective for a divergence name (any registered one, ``alpha(a)``) or a comparison."""
    if mode not in GENERATOR_MODES:
        raise ValueError(
            f"generator objective {mode!r} is unknown; known: {', '.join(GENERATOR_MODES)}"
        )
    if backend not in LOSS_BACKENDS:
        raise ValueError(f"loss backend {backend!r} is unknown; known: {', '.join(LOSS_BACKENDS)}")
    if name in COMPARISON:
        return Objective(name, None, mode, backend)
    try:
        div = get(name)
    except ValueError as err:
        raise ValueError(f"{err}; or a comparison loss: {', '.join(COMPARISON)}") from None
    return Objective(div.name, div, mode, backend)
