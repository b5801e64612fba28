"""Fused Triton kernels for the f-divergence critic and generator losses (values in nats).

One launch covers both sides: programs ``[0, cdiv(N_p, BLOCK))`` read v_p, the rest read v_q.
Each program evaluates its terms and their derivatives in fp32, writes the scaled gradient in the
input dtype and one partial sum; a one-program kernel then adds the partials in a fixed order and
writes (loss, E_P[g], E_Q[f*(g)]). No float atomics: the same input gives bitwise the same result.
The divergence family is a compile-time constant (``FAMILIES``, generated from the registry);
the alpha family takes alpha at run time.

Overflow (finite input, fp32 arithmetic): exp(x) is +inf for x > 88.72, so terms and gradients
are +-inf where the reference's are in fp32: ``kl`` for v > 89.7, ``hellinger`` f* for v > 88.7,
``reverse_kl`` g and g' for v < -88.7, ``neyman`` for v < -177.4, ``jeffreys`` f* for v > ~89.7,
the alpha family for |(a - 1) v| or |a v| > 88.7 (the overflowing side of the exponential).
A loss with both terms infinite of the same sign is +inf (``reference.combine_terms``); NaN never
comes out of finite input. fp16 gradients above 65504 are +-inf after rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from fdiv.divergences import registry
from fdiv.divergences.registry import FDivergence
from fdiv.kernels.common import (
    DEFAULT_BLOCK,
    RBLOCK,
    block_offsets,
    check_block,
    fixed_order_sum,
    interpreter_quiet,
    is_interpreted,
    num_warps,
)
from fdiv.kernels.reference import (
    GeneratorMode,
    Reduction,
    critic_grads_differentiable,
    generator_grad_differentiable,
    reduction_scale,
)

__all__ = ["FAMILIES", "critic_loss", "generator_loss"]

_LOG2 = tl.constexpr(math.log(2.0))
_INF = tl.constexpr(math.inf)

# The kernel's compile-time family codes, generated from the registry: the fixed divergences'
# families in table order, then the parametric alpha family.
FAMILIES: dict[str, int] = {
    family: code
    for code, family in enumerate(
        dict.fromkeys((*(d.family for d in registry.registered()), registry.alpha(2.0).family))
    )
}
# The names ``_term`` branches on, one per family (the family name in capitals).
KL = tl.constexpr(FAMILIES["kl"])
REVERSE_KL = tl.constexpr(FAMILIES["reverse_kl"])
PEARSON = tl.constexpr(FAMILIES["pearson"])
NEYMAN = tl.constexpr(FAMILIES["neyman"])
HELLINGER = tl.constexpr(FAMILIES["hellinger"])
JS = tl.constexpr(FAMILIES["js"])
GAN = tl.constexpr(FAMILIES["gan"])
TV = tl.constexpr(FAMILIES["tv"])
JEFFREYS = tl.constexpr(FAMILIES["jeffreys"])
ALPHA = tl.constexpr(FAMILIES["alpha"])


# ---------------------------------------------------------------- stable elementwise pieces (fp32)
@triton.jit
def expm1(x):
    """exp(x) - 1 with full relative accuracy near 0 (degree-8 Taylor for |x| < 1/2)."""
    s = tl.minimum(tl.maximum(x, -0.5), 0.5)
    p = 1.0 + s * (1.0 / 7.0) * (1.0 + s * 0.125)
    p = 1.0 + s * (1.0 / 6.0) * p
    p = 1.0 + s * 0.2 * p
    p = 1.0 + s * 0.25 * p
    p = 1.0 + s * (1.0 / 3.0) * p
    p = 1.0 + s * 0.5 * p
    return tl.where(tl.abs(x) < 0.5, s * p, tl.exp(x) - 1.0)


@triton.jit
def log1p_unit(t):
    """log(1 + t) for t in [0, 1], accurate for tiny t (Goldberg's u = 1 + t correction)."""
    u = 1.0 + t
    d = u - 1.0
    return tl.where(d == 0.0, t, tl.log(u) * (t / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def softplus(v):
    """log(1 + e^v) = max(v, 0) + log1p(e^-|v|)."""
    return tl.maximum(v, 0.0) + log1p_unit(tl.exp(-tl.abs(v)))


@triton.jit
def sigmoid(v):
    """1 / (1 + e^-v) from e^-|v| (never overflows)."""
    e = tl.exp(-tl.abs(v))
    r = 1.0 / (1.0 + e)
    return tl.where(v >= 0.0, r, e * r)


@triton.jit
def tanh(v):
    """tanh(v) = -expm1(-2|v|) / (2 + expm1(-2|v|)) with the sign of v."""
    m = expm1(-2.0 * tl.abs(v))
    t = -m / (2.0 + m)
    return tl.where(v < 0.0, -t, t)


@triton.jit
def sech2(v):
    """sech(v)^2 = 4 e^{-2|v|} / (1 + e^{-2|v|})^2."""
    e = tl.exp(-2.0 * tl.abs(v))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


@triton.jit
def log_lambertw_exp(z):
    """y = log W(e^z), the root of y + e^y = z: 8 Newton steps as ``registry.log_lambertw_exp``."""
    zc = tl.maximum(z, 1.0)
    y = tl.where(z > 1.0, tl.log(zc - tl.log(zc) + 1.0), z - tl.exp(tl.minimum(z, 1.0)))
    for _ in tl.static_range(8):
        ey = tl.exp(y)
        y = y - (y + ey - z) / (1.0 + ey)
    return y


@triton.jit
def _term(v, alpha, FAMILY: tl.constexpr, CONJ: tl.constexpr):
    """(term, d term / dv) in fp32: g(v) when CONJ is False, f*(g(v)) when CONJ is True."""
    one = tl.zeros_like(v) + 1.0
    if FAMILY == KL:
        if CONJ:
            val = tl.exp(v - 1.0)
            der = val
        else:
            val = v
            der = one
    elif FAMILY == REVERSE_KL:
        if CONJ:
            val = v - 1.0
            der = one
        else:
            der = tl.exp(-v)
            val = -der
    elif FAMILY == PEARSON:
        if CONJ:
            val = v * v * 0.25 + v
            der = v * 0.5 + 1.0
        else:
            val = v
            der = one
    elif FAMILY == NEYMAN:
        if CONJ:
            val = -2.0 * expm1(-0.5 * v)
            der = tl.exp(-0.5 * v)
        else:
            val = -expm1(-v)
            der = tl.exp(-v)
    elif FAMILY == HELLINGER:
        if CONJ:
            val = expm1(v)
            der = tl.exp(v)
        else:
            val = -expm1(-v)
            der = tl.exp(-v)
    elif FAMILY == JS:
        if CONJ:
            val = 0.5 * (softplus(v) - _LOG2)
            der = 0.5 * sigmoid(v)
        else:
            val = 0.5 * (_LOG2 - softplus(-v))
            der = 0.5 * sigmoid(-v)
    elif FAMILY == GAN:
        if CONJ:
            val = softplus(v)
            der = sigmoid(v)
        else:
            val = -softplus(-v)
            der = sigmoid(-v)
    elif FAMILY == TV:
        val = 0.5 * tanh(v)
        der = 0.5 * sech2(v)
    elif FAMILY == JEFFREYS:
        if CONJ:
            # W + 1/W + v - 2 = e^-y - 1 - y (y = log W, y + W = 1 - v): no cancellation
            y = log_lambertw_exp(1.0 - v)
            der = tl.exp(-y)
            val = expm1(-y) - y
        else:
            val = v
            der = one
    else:  # ALPHA: g = expm1((a - 1) v) / (a - 1), f*(g) = expm1(a v) / a
        c = alpha if CONJ else alpha - 1.0
        val = expm1(c * v) / c
        der = tl.exp(c * v)
    return val, der


# ---------------------------------------------------------------------------------- kernels
@triton.jit
def _side(v_ptr, grad_ptr, part_ptr, pid, block_id, n, grad_scale, alpha, FAMILY, CONJ, BLOCK):
    offs, mask = block_offsets(block_id, n, BLOCK)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    val, der = _term(v, alpha, FAMILY, CONJ)
    tl.store(grad_ptr + offs, (der * grad_scale).to(grad_ptr.dtype.element_ty), mask=mask)
    tl.store(part_ptr + pid, tl.sum(tl.where(mask, val, 0.0), axis=0))


@triton.jit
def _loss_kernel(
    vp_ptr,
    vq_ptr,
    gp_ptr,
    gq_ptr,
    part_ptr,
    n_p,
    n_q,
    n_prog_p,
    grad_scale_p,
    grad_scale_q,
    alpha,
    FAMILY: tl.constexpr,
    Q_CONJ: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Stage 1: P programs sum g(v_p), Q programs sum g or f*(g) of v_q; gradients stored."""
    pid = tl.program_id(0)
    if pid < n_prog_p:
        _side(vp_ptr, gp_ptr, part_ptr, pid, pid, n_p, grad_scale_p, alpha, FAMILY, False, BLOCK)
    else:
        _side(
            vq_ptr, gq_ptr, part_ptr, pid, pid - n_prog_p, n_q, grad_scale_q, alpha, FAMILY,
            Q_CONJ, BLOCK,
        )  # fmt: skip


@triton.jit
def _finalize_kernel(part_ptr, out_ptr, n_prog_p, n_prog_q, scale_p, scale_q, RBLOCK: tl.constexpr):
    """Stage 2: out = (term_q - term_p with inf - inf -> +inf, term_p, term_q)."""
    term_p = fixed_order_sum(part_ptr, n_prog_p, RBLOCK) * scale_p
    term_q = fixed_order_sum(part_ptr + n_prog_p, n_prog_q, RBLOCK) * scale_q
    loss = term_q - term_p
    both_inf = (tl.abs(term_p) == _INF) & (tl.abs(term_q) == _INF)
    loss = tl.where(both_inf & (loss != loss), _INF, loss)
    tl.store(out_ptr, loss)
    tl.store(out_ptr + 1, term_p)
    tl.store(out_ptr + 2, term_q)


INTERPRETED: bool = is_interpreted(_loss_kernel)


# ------------------------------------------------------------------------------------- host
def _family(div: FDivergence) -> tuple[int, float]:
    if div.family not in FAMILIES:
        raise ValueError(f"divergence {div.name!r} has no Triton kernel (family {div.family!r})")
    return FAMILIES[div.family], 0.0 if div.alpha is None else div.alpha


def _launch(
    v_p: Tensor | None,
    v_q: Tensor,
    div: FDivergence,
    q_conj: bool,
    scales: tuple[float, float, float, float],
    block: int,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Run both stages; ``scales`` = (grad P, grad Q, term P, term Q). Returns (out[3], gp, gq)."""
    family, alpha = _family(div)
    n_p = 0 if v_p is None else v_p.numel()
    n_q = v_q.numel()
    n_prog_p, n_prog_q = triton.cdiv(n_p, block), triton.cdiv(n_q, block)
    grad_q = torch.empty_like(v_q)
    grad_p = None if v_p is None else torch.empty_like(v_p)
    partials = torch.empty(n_prog_p + n_prog_q, device=v_q.device, dtype=torch.float32)
    out = torch.empty(3, device=v_q.device, dtype=torch.float32)
    with interpreter_quiet(INTERPRETED):
        _loss_kernel[(n_prog_p + n_prog_q,)](
            v_q if v_p is None else v_p, v_q, grad_q if grad_p is None else grad_p, grad_q,
            partials, n_p, n_q, n_prog_p, scales[0], scales[1], alpha,
            FAMILY=family, Q_CONJ=q_conj, BLOCK=block, num_warps=num_warps(block),
        )  # fmt: skip
        _finalize_kernel[(1,)](
            partials, out, n_prog_p, n_prog_q, scales[2], scales[3], RBLOCK=RBLOCK, num_warps=4
        )
    return out, grad_p, grad_q


class _CriticLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, v_p: Tensor, v_q: Tensor, div: FDivergence, reduction: Reduction, block: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        s_p, s_q = reduction_scale(v_p.numel(), reduction), reduction_scale(v_q.numel(), reduction)
        out, grad_p, grad_q = _launch(v_p, v_q, div, True, (-s_p, s_q, s_p, s_q), block)
        ctx.save_for_backward(v_p, v_q, grad_p, grad_q)
        ctx.div, ctx.scales = div, (s_p, s_q)
        loss, term_p, term_q = out.unbind()
        ctx.mark_non_differentiable(term_p, term_q)
        return loss, term_p, term_q

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: exact second derivatives (torch ops)
            return (*critic_grads_differentiable(ctx, grad_loss), None, None, None)
        grad_p, grad_q = ctx.saved_tensors[2:]
        return grad_p * grad_loss, grad_q * grad_loss, None, None, None


class _GeneratorLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        v_q: Tensor,
        div: FDivergence,
        mode: GeneratorMode,
        reduction: Reduction,
        block: int,
    ) -> Tensor:
        s = -reduction_scale(v_q.numel(), reduction)
        out, _, grad = _launch(None, v_q, div, mode == "minimax", (0.0, s, 0.0, s), block)
        ctx.save_for_backward(v_q, grad)
        ctx.div, ctx.mode, ctx.scale = div, mode, s
        return out[0]

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: exact second derivatives (torch ops)
            return generator_grad_differentiable(ctx, grad_loss), None, None, None, None
        grad = ctx.saved_tensors[1]
        return grad * grad_loss, None, None, None, None


def critic_loss(
    v_p: Tensor,
    v_q: Tensor,
    div: FDivergence,
    reduction: Reduction = "mean",
    block: int = DEFAULT_BLOCK,
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, E_P[g(v_p)], E_Q[f*(g(v_q))]) as ``reference.critic_loss``, fused; 1-D inputs, nats.

    The gradients w.r.t. v_p and v_q are computed in the same pass and saved for backward.
    """
    check_block(block)
    return _CriticLoss.apply(v_p.contiguous(), v_q.contiguous(), div, reduction, block)


def generator_loss(
    v_q: Tensor,
    div: FDivergence,
    mode: GeneratorMode,
    reduction: Reduction = "mean",
    block: int = DEFAULT_BLOCK,
) -> Tensor:
    """-E_Q[g(v_q)] (non-saturating) or -E_Q[f*(g(v_q))] (minimax), fused; 1-D input, nats."""
    check_block(block)
    return _GeneratorLoss.apply(v_q.contiguous(), div, mode, reduction, block)
