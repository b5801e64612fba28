"""Pure-torch losses with closed-form gradients: the CPU path and the oracle for the kernels.

Each loss is one ``torch.autograd.Function``: the forward pass evaluates the loss and its
gradient together and saves the gradient, so backward only scales it by ``grad_output``; no
autograd graph is built through the elementwise operations. A backward run with
``create_graph=True`` (a gradient penalty on the loss's gradient, a Hessian-vector product)
instead rebuilds the gradient from the registry's closed-form derivatives with autograd ops
(:func:`differentiable_grad`), so second derivatives are exact, not those of a constant.
fp16/bf16 inputs are computed in fp32 (fp64 stays fp64); gradients come back in the input's
dtype. Values are in nats.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from fdiv.divergences.registry import Elementwise, FDivergence, Terms

Reduction = Literal["mean", "sum"]
GeneratorMode = Literal["nonsaturating", "minimax"]
PenaltyKind = Literal["wgan-gp", "r1"]
# The accepted names, in the order error messages list them (one definition: the Literals).
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
GENERATOR_MODES: tuple[str, ...] = get_args(GeneratorMode)
PENALTIES: tuple[str, ...] = get_args(PenaltyKind)

__all__ = [
    "GENERATOR_MODES",
    "PENALTIES",
    "REDUCTIONS",
    "check_choice",
    "combine_terms",
    "compute_dtype",
    "critic_loss",
    "differentiable_grad",
    "dv_bound",
    "generator_loss",
    "gradient_penalty",
    "log_mean_exp",
]


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else ValueError naming ``name`` and the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} {value!r} is unknown; known: {', '.join(allowed)}")
    return value


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype: fp64 for fp64 input, fp32 for everything narrower."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def combine_terms(term_p: Tensor, term_q: Tensor) -> Tensor:
    """Critic loss ``term_q - term_p`` from the two bound terms (E_P[g], E_Q[f*(g)]).

    Where both terms overflowed to infinities of the same sign (possible for neyman and the alpha
    family with a < 0 or a > 1 when |v| is in the hundreds) the difference is undefined; the loss
    is then +inf, so finite input never gives NaN.
    """
    loss = term_q - term_p
    both_inf = torch.isinf(term_p) & torch.isinf(term_q)
    return torch.where(both_inf & torch.isnan(loss), torch.full_like(loss, math.inf), loss)


def reduction_scale(n: int, reduction: Reduction) -> float:
    """The factor of a sum over n terms: 1/n for "mean", 1 for "sum"."""
    return 1.0 / n if reduction == "mean" else 1.0


def _scaled(terms: Terms, x: Tensor, scale: float) -> tuple[Tensor, Tensor | float]:
    """(scale * sum of a term, scale * its derivative); the derivative is scaled in place."""
    total, grad = terms(x)
    return total * scale, grad * scale if isinstance(grad, float) else grad.mul_(scale)


def differentiable_grad(
    derivative: Elementwise, v: Tensor, scale: float, grad_out: Tensor
) -> Tensor:
    """scale * derivative(v) * grad_out in autograd ops: the backward under ``create_graph``.

    The fast backward scales a gradient saved by the forward pass, a constant to autograd;
    this one is differentiable in ``v`` (and ``grad_out``), in the compute dtype, cast back.
    """
    x = v.to(compute_dtype(v.dtype))
    return (derivative(x) * (grad_out * scale)).to(v.dtype)


def _expand(grad: Tensor | float, grad_out: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """grad_out times a saved derivative; a constant one is broadcast without materialising."""
    if isinstance(grad, float):
        return (grad_out * grad).to(dtype).expand(n)
    return (grad * grad_out).to(dtype)


class _CriticLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, v_p: Tensor, v_q: Tensor, div: FDivergence, reduction: Reduction
    ) -> tuple[Tensor, Tensor, Tensor]:
        cdt = compute_dtype(v_p.dtype)
        x_p, x_q = v_p.to(cdt), v_q.to(cdt)
        s_p, s_q = reduction_scale(x_p.numel(), reduction), reduction_scale(x_q.numel(), reduction)
        term_p, grad_p = _scaled(div.activation_terms, x_p, s_p)
        term_q, grad_q = _scaled(div.conjugate_activation_terms, x_q, s_q)
        ctx.grads = (grad_p, grad_q)
        ctx.save_for_backward(v_p, v_q)
        ctx.div, ctx.scales = div, (s_p, s_q)
        ctx.sizes, ctx.dtype = (x_p.numel(), x_q.numel()), v_p.dtype
        ctx.mark_non_differentiable(term_p, term_q)
        return combine_terms(term_p, term_q), term_p, term_q

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a gradient autograd can differentiate
            return (*critic_grads_differentiable(ctx, grad_loss), None, None)
        (grad_p, grad_q), (n_p, n_q) = ctx.grads, ctx.sizes
        # E_P[g] enters the loss with a minus sign.
        return (
            _expand(grad_p, -grad_loss, n_p, ctx.dtype),
            _expand(grad_q, grad_loss, n_q, ctx.dtype),
            None,
            None,
        )


def critic_grads_differentiable(ctx: Any, grad_loss: Tensor) -> tuple[Tensor, Tensor]:
    """The critic loss's (d/dv_p, d/dv_q) by :func:`differentiable_grad`.

    ``ctx`` saved (v_p, v_q) first and holds ``div`` and the reduction ``scales``.
    """
    v_p, v_q = ctx.saved_tensors[:2]
    (s_p, s_q), div = ctx.scales, ctx.div
    return (
        differentiable_grad(div.activation_grad, v_p, -s_p, grad_loss),
        differentiable_grad(div.conjugate_activation_grad, v_q, s_q, grad_loss),
    )


def generator_grad_differentiable(ctx: Any, grad_loss: Tensor) -> Tensor:
    """The generator loss's d/dv_q by :func:`differentiable_grad`.

    ``ctx`` saved v_q first and holds ``div``, ``mode`` and the signed reduction ``scale``.
    """
    v_q = ctx.saved_tensors[0]
    conj = ctx.mode == "minimax"
    derivative = ctx.div.conjugate_activation_grad if conj else ctx.div.activation_grad
    return differentiable_grad(derivative, v_q, ctx.scale, grad_loss)


class _GeneratorLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, v_q: Tensor, div: FDivergence, mode: GeneratorMode, reduction: Reduction
    ) -> Tensor:
        x = v_q.to(compute_dtype(v_q.dtype))
        terms = div.activation_terms if mode == "nonsaturating" else div.conjugate_activation_terms
        ctx.scale = -reduction_scale(x.numel(), reduction)
        loss, ctx.grad = _scaled(terms, x, ctx.scale)
        ctx.save_for_backward(v_q)
        ctx.div, ctx.mode, ctx.n, ctx.dtype = div, mode, x.numel(), v_q.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a gradient autograd can differentiate
            return generator_grad_differentiable(ctx, grad_loss), None, None, None
        return _expand(ctx.grad, grad_loss, ctx.n, ctx.dtype), None, None, None


def log_mean_exp(v: Tensor, clip: float | None = None) -> Tensor:
    """log mean exp(v) (v clipped to [-clip, clip] first when ``clip`` is given), stable, nats."""
    x = v.to(compute_dtype(v.dtype))
    if clip is not None:
        x = x.clamp(-clip, clip)
    return torch.logsumexp(x, dim=0) - math.log(x.numel())


class _DVBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, v_p: Tensor, v_q: Tensor, clip: float | None) -> Tensor:
        cdt = compute_dtype(v_p.dtype)
        x_p, x_q = v_p.to(cdt), v_q.to(cdt)
        if clip is not None:
            inside = (x_q > -clip) & (x_q < clip)
            x_q = x_q.clamp(-clip, clip)
        log_z = torch.logsumexp(x_q, dim=0)
        bound = x_p.mean() - (log_z - math.log(x_q.numel()))
        grad_q = -torch.exp(x_q - log_z)
        if clip is not None:
            grad_q = grad_q * inside
        ctx.save_for_backward(grad_q)
        ctx.n_p, ctx.dtype = x_p.numel(), v_p.dtype
        return bound

    @staticmethod
    def backward(ctx: Any, grad_bound: Tensor) -> tuple[Tensor | None, ...]:
        (grad_q,) = ctx.saved_tensors
        grad_p = (grad_bound / ctx.n_p).expand(ctx.n_p)
        return grad_p.to(ctx.dtype), (grad_q * grad_bound).to(ctx.dtype), None


class _GradientPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, grads: Tensor, kind: PenaltyKind, weight: float) -> Tensor:
        x = grads.to(compute_dtype(grads.dtype)).flatten(1)
        batch = x.shape[0]
        sq = (x * x).sum(dim=1)
        if kind == "r1":
            penalty = 0.5 * weight * sq.mean()
            d_grads = x * (weight / batch)
        else:
            norm = torch.sqrt(sq)
            penalty = weight * ((norm - 1.0) ** 2).mean()
            # d||g||/dg = g/||g||; the subgradient 0 is taken at g = 0.
            coeff = torch.where(norm > 0, (norm - 1.0) / norm.clamp(min=1e-30), 0.0)
            d_grads = x * (coeff * (2.0 * weight / batch)).unsqueeze(1)
        ctx.save_for_backward(d_grads.view(grads.shape))
        ctx.dtype = grads.dtype
        return penalty

    @staticmethod
    def backward(ctx: Any, grad_penalty: Tensor) -> tuple[Tensor | None, ...]:
        (d_grads,) = ctx.saved_tensors
        return (d_grads * grad_penalty).to(ctx.dtype), None, None


def critic_loss(
    v_p: Tensor, v_q: Tensor, div: FDivergence, reduction: Reduction = "mean"
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, E_P[g(v_p)], E_Q[f*(g(v_q))]) with loss = -(E_P[g] - E_Q[f*(g)]); 1-D inputs."""
    return _CriticLoss.apply(v_p, v_q, div, reduction)


def generator_loss(
    v_q: Tensor, div: FDivergence, mode: GeneratorMode, reduction: Reduction = "mean"
) -> Tensor:
    """-E_Q[g(v_q)] (non-saturating) or -E_Q[f*(g(v_q))] (minimax); 1-D input."""
    return _GeneratorLoss.apply(v_q, div, mode, reduction)


def dv_bound(v_p: Tensor, v_q: Tensor, clip: float | None = None) -> Tensor:
    """E_P[v] - log E_Q[exp(v)] (Donsker-Varadhan); with ``clip``, the SMILE bound; nats."""
    return _DVBound.apply(v_p, v_q, clip)


def gradient_penalty(grads: Tensor, kind: PenaltyKind, weight: float) -> Tensor:
    """WGAN-GP weight * E[(||g|| - 1)^2] or R1 weight/2 * E[||g||^2] over the batch dim."""
    return _GradientPenalty.apply(grads, kind, weight)
