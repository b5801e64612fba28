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
from fdiv.losses import critic_loss, generator_loss

__all__ = ["COMPARISON", "GENERATOR_OBJECTIVES", "LOSS_BACKENDS", "Objective", "objective"]

COMPARISON: tuple[str, ...] = ("wgan-gp", "hinge")
GENERATOR_OBJECTIVES: tuple[str, ...] = ("nonsaturating", "minimax")
LOSS_BACKENDS: tuple[str, ...] = ("auto", "torch", "triton", "eager")


@dataclass(frozen=True)
class Objective:
    """The losses of one GAN formulation.

    ``divergence`` is the f-divergence record, or None for ``wgan-gp`` / ``hinge`` (``name``).
    """

    name: str
    divergence: FDivergence | None
    mode: str
    backend: str

    def critic(self, v_p: Tensor, v_q: Tensor) -> Tensor:
        """The critic's loss on outputs for real (v_p) and generated (v_q) samples."""
        if self.divergence is None:
            if self.name == "hinge":
                return torch.relu(1.0 - v_p).mean() + torch.relu(1.0 + v_q).mean()
            return v_q.mean() - v_p.mean()
        if self.backend == "eager":
            term_p, term_q = self._terms(v_p, v_q)
            return term_q - term_p
        return critic_loss(v_p, v_q, self.divergence, backend=self.backend)

    def generator(self, v_q: Tensor) -> Tensor:
        """The generator's loss on critic outputs for generated samples."""
        if self.divergence is None:
            return -v_q.mean()
        if self.backend == "eager":
            div = self.divergence
            g = div.activation if self.mode == "nonsaturating" else div.conjugate_activation
            return -g(v_q).mean()
        return generator_loss(v_q, self.divergence, self.mode, backend=self.backend)

    def bound_terms(self, v_p: Tensor, v_q: Tensor) -> tuple[Tensor, Tensor]:
        """The two terms of the bound, (E_P[g(v_p)], E_Q[f*(g(v_q))]); (E_P[v], E_Q[v]) else."""
        with torch.no_grad():
            return self._terms(v_p, v_q)

    def _terms(self, v_p: Tensor, v_q: Tensor) -> tuple[Tensor, Tensor]:
        if self.divergence is None:
            return v_p.mean(), v_q.mean()
        div = self.divergence
        return div.activation(v_p).mean(), div.conjugate_activation(v_q).mean()


def objective(name: str, mode: str = "nonsaturating", backend: str = "auto") -> Objective:
    """The objective for a divergence name (any registered one, ``alpha(a)``) or a comparison."""
    if mode not in GENERATOR_OBJECTIVES:
        raise ValueError(
            f"generator objective {mode!r} is unknown; known: {', '.join(GENERATOR_OBJECTIVES)}"
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
