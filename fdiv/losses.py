"""The public loss API: critic and generator losses, variational bounds, gradient penalties.

Inputs are a critic's raw outputs v (shape (N,) or (N, 1)) on samples of P (the data) and Q
(the model). Every function checks its input, picks a backend (see ``fdiv.kernels.dispatch``)
and returns values in nats. ``all_pairs_bound(f_x, g_y, bound, clip=, backend=)`` (from
``fdiv.kernels.all_pairs``, which checks its input) takes the features of a separable critic
T(x, y) = <f(x), g(y)> instead: the InfoNCE / NWJ / DV / SMILE / f-divergence bound of mutual
information over all B^2 pairs of a batch.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from fdiv.divergences.registry import FDivergence, get
from fdiv.kernels.all_pairs import all_pairs_bound
from fdiv.kernels.dispatch import implementation, resolve_backend
from fdiv.kernels.reference import GENERATOR_MODES, PENALTIES, REDUCTIONS, check_choice

__all__ = [
    "GENERATOR_MODES",
    "PENALTIES",
    "REDUCTIONS",
    "FDivergenceLoss",
    "all_pairs_bound",
    "critic_loss",
    "dv_bound",
    "generator_loss",
    "gradient_penalty",
    "smile_bound",
    "variational_bound",
]


def _logits(name: str, v: object) -> Tensor:
    """``v`` as a 1-D view, or a clear error naming ``name`` and the problem."""
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if not v.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {v.dtype}")
    if v.dim() == 2 and v.shape[1] == 1:
        v = v.squeeze(1)
    if v.dim() != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1), got {tuple(v.shape)}")
    if v.numel() == 0:
        raise ValueError(f"{name} is empty: a bound needs at least one critic output")
    return v


def _pair(v_p: object, v_q: object) -> tuple[Tensor, Tensor]:
    p, q = _logits("v_p", v_p), _logits("v_q", v_q)
    if p.device != q.device:
        raise ValueError(f"v_p and v_q must be on one device, got {p.device} and {q.device}")
    if p.dtype != q.dtype:
        raise ValueError(f"v_p and v_q must have one dtype, got {p.dtype} and {q.dtype}")
    return p, q


def critic_loss(
    v_p: Tensor,
    v_q: Tensor,
    divergence: str | FDivergence = "js",
    reduction: str = "mean",
    backend: str = "auto",
    *,
    return_terms: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The critic's loss -(E_P[g(v_p)] - E_Q[f*(g(v_q))]): minus the variational bound, nats.

    ``reduction="sum"`` sums the per-sample terms instead of averaging them. With
    ``return_terms=True`` returns ``(loss, term_p, term_q)``: term_p = E_P[g(v_p)] and
    term_q = E_Q[f*(g(v_q))] (sums for "sum"), detached, in the compute dtype (fp32 for
    fp32/fp16/bf16 input, fp64 for fp64), from the same pass as the loss.
    """
    div = get(divergence)
    p, q = _pair(v_p, v_q)
    check_choice("reduction", reduction, REDUCTIONS)
    loss, term_p, term_q = implementation(backend, p, q).critic_loss(p, q, div, reduction)
    if return_terms:
        return loss, term_p.detach(), term_q.detach()
    return loss


def variational_bound(
    v_p: Tensor, v_q: Tensor, divergence: str | FDivergence = "js", backend: str = "auto"
) -> Tensor:
    """The f-dual lower bound E_P[g(v_p)] - E_Q[f*(g(v_q))] on D_f(P||Q), in nats."""
    return -critic_loss(v_p, v_q, divergence, "mean", backend)


def generator_loss(
    v_q: Tensor,
    divergence: str | FDivergence = "js",
    mode: str = "nonsaturating",
    reduction: str = "mean",
    backend: str = "auto",
) -> Tensor:
    """The generator's loss on critic outputs for generated samples, nats.

    ``"minimax"`` is -E_Q[f*(g(v_q))] (the generator minimises the bound);
    ``"nonsaturating"`` is -E_Q[g(v_q)], for ``gan`` the -log D(G(z)) trick.
    """
    div = get(divergence)
    q = _logits("v_q", v_q)
    check_choice("mode", mode, GENERATOR_MODES)
    check_choice("reduction", reduction, REDUCTIONS)
    return implementation(backend, q).generator_loss(q, div, mode, reduction)


def dv_bound(v_p: Tensor, v_q: Tensor, backend: str = "auto") -> Tensor:
    """Donsker-Varadhan lower bound on KL(P||Q): E_P[v] - log E_Q[exp(v)], in nats."""
    p, q = _pair(v_p, v_q)
    return implementation(backend, p, q).dv_bound(p, q)


def smile_bound(v_p: Tensor, v_q: Tensor, clip: float = 5.0, backend: str = "auto") -> Tensor:
    """SMILE estimate of KL(P||Q): E_P[v] - log E_Q[exp(clip(v, -clip, clip))], in nats."""
    if not (isinstance(clip, int | float) and clip > 0 and math.isfinite(clip)):
        raise ValueError(f"clip must be a positive finite number, got {clip!r}")
    p, q = _pair(v_p, v_q)
    return implementation(backend, p, q).dv_bound(p, q, float(clip))


def gradient_penalty(
    grads: Tensor, kind: str = "wgan-gp", weight: float = 10.0, backend: str = "auto"
) -> Tensor:
    """Penalty on the critic's input gradients ``grads`` (shape (B, ...), ``create_graph=True``).

    ``"wgan-gp"``: weight * E[(||g|| - 1)^2]; ``"r1"``: weight / 2 * E[||g||^2].
    """
    if not isinstance(grads, Tensor):
        raise TypeError(f"grads must be a torch.Tensor, got {type(grads).__name__}")
    if not grads.is_floating_point():
        raise TypeError(f"grads must be a floating-point tensor, got dtype {grads.dtype}")
    if grads.dim() < 1 or grads.shape[0] == 0:
        raise ValueError(f"grads must have shape (B, ...) with B >= 1, got {tuple(grads.shape)}")
    check_choice("kind", kind, PENALTIES)
    if not (isinstance(weight, int | float) and weight >= 0 and math.isfinite(weight)):
        raise ValueError(f"weight must be a non-negative finite number, got {weight!r}")
    g = grads if grads.dim() > 1 else grads.unsqueeze(1)
    return implementation(backend, g).gradient_penalty(g.contiguous(), kind, float(weight))


class FDivergenceLoss(nn.Module):
    """Module form of :func:`critic_loss`: ``FDivergenceLoss("js")(v_p, v_q)``."""

    def __init__(
        self, divergence: str | FDivergence = "js", reduction: str = "mean", backend: str = "auto"
    ) -> None:
        super().__init__()
        self.divergence = get(divergence)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        resolve_backend(backend)
        self.backend = backend

    def forward(self, v_p: Tensor, v_q: Tensor) -> Tensor:
        return critic_loss(v_p, v_q, self.divergence, self.reduction, self.backend)

    def extra_repr(self) -> str:
        return f"divergence={self.divergence.name!r}, reduction={self.reduction!r}"
