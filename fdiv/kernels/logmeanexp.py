"""Triton log-mean-exp, the partition term of the Donsker-Varadhan and SMILE bounds (nats).

Three small launches: per-program partials (max of the clipped values, sum of exp(x - max)); a
one-program fixed-order merge into log Z = M + log S; the gradient of log mean exp, the softmax
weights exp(x - log Z) (zero where the clip is active). Deterministic: no float atomics.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from fdiv.kernels.common import (
    DEFAULT_BLOCK,
    RBLOCK,
    block_offsets,
    check_block,
    interpreter_quiet,
    is_interpreted,
    num_warps,
)

__all__ = ["LogMeanExp", "dv_bound", "log_mean_exp"]

_NEG_INF = tl.constexpr(-math.inf)


class LogMeanExp(NamedTuple):
    """log mean exp(v) (0-d, fp32) and its gradient in v (input dtype, times grad_scale)."""

    value: Tensor
    grad: Tensor


@triton.jit
def _clamp(v, clip, CLIP: tl.constexpr):
    if CLIP:
        v = tl.minimum(tl.maximum(v, -clip), clip)
    return v


@triton.jit
def _partials_kernel(v_ptr, max_ptr, sum_ptr, n, clip, CLIP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs, mask = block_offsets(pid, n, BLOCK)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    x = tl.where(mask, _clamp(v, clip, CLIP), _NEG_INF)
    m = tl.max(x, axis=0)
    tl.store(max_ptr + pid, m)
    tl.store(sum_ptr + pid, tl.sum(tl.where(mask, tl.exp(x - m), 0.0), axis=0))


@triton.jit
def _merge_kernel(max_ptr, sum_ptr, out_ptr, n_prog, log_n, RBLOCK: tl.constexpr):
    """out = (log Z, log Z - log n), the partials merged in a fixed order."""
    top = tl.full([RBLOCK], _NEG_INF, tl.float32)
    for start in range(0, n_prog, RBLOCK):
        offs = start + tl.arange(0, RBLOCK)
        top = tl.maximum(top, tl.load(max_ptr + offs, mask=offs < n_prog, other=_NEG_INF))
    m = tl.max(top, axis=0)
    acc = tl.zeros([RBLOCK], dtype=tl.float32)
    for start in range(0, n_prog, RBLOCK):
        offs = start + tl.arange(0, RBLOCK)
        mask = offs < n_prog
        part_max = tl.load(max_ptr + offs, mask=mask, other=0.0)
        part_sum = tl.load(sum_ptr + offs, mask=mask, other=0.0)
        acc += tl.where(mask, part_sum * tl.exp(part_max - m), 0.0)
    log_z = m + tl.log(tl.sum(acc, axis=0))
    tl.store(out_ptr, log_z)
    tl.store(out_ptr + 1, log_z - log_n)


@triton.jit
def _weights_kernel(
    v_ptr, grad_ptr, out_ptr, n, clip, grad_scale, CLIP: tl.constexpr, BLOCK: tl.constexpr
):
    offs, mask = block_offsets(tl.program_id(0), n, BLOCK)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = tl.exp(_clamp(v, clip, CLIP) - tl.load(out_ptr)) * grad_scale
    if CLIP:
        w = tl.where((v > -clip) & (v < clip), w, 0.0)
    tl.store(grad_ptr + offs, w.to(grad_ptr.dtype.element_ty), mask=mask)


INTERPRETED: bool = is_interpreted(_partials_kernel)


def log_mean_exp(
    v: Tensor, clip: float | None = None, grad_scale: float = 1.0, block: int = DEFAULT_BLOCK
) -> LogMeanExp:
    """log mean exp(v) over a 1-D tensor (v clipped to [-clip, clip] first when ``clip`` is given).

    The gradient (softmax weights, zero where clipped) is scaled by ``grad_scale``; nats.
    """
    check_block(block)
    if v.dim() != 1 or v.numel() == 0:
        raise ValueError(f"v must be a non-empty 1-D tensor, got shape {tuple(v.shape)}")
    v = v.contiguous()
    n = v.numel()
    n_prog = triton.cdiv(n, block)
    part = torch.empty(2, n_prog, device=v.device, dtype=torch.float32)
    out = torch.empty(2, device=v.device, dtype=torch.float32)
    grad = torch.empty_like(v)
    has_clip = clip is not None
    c = float(clip) if has_clip else 0.0
    warps = num_warps(block)
    with interpreter_quiet(INTERPRETED):
        _partials_kernel[(n_prog,)](
            v, part[0], part[1], n, c, CLIP=has_clip, BLOCK=block, num_warps=warps
        )
        _merge_kernel[(1,)](part[0], part[1], out, n_prog, math.log(n), RBLOCK=RBLOCK, num_warps=4)
        _weights_kernel[(n_prog,)](
            v, grad, out, n, c, grad_scale, CLIP=has_clip, BLOCK=block, num_warps=warps
        )
    return LogMeanExp(out[1], grad)


class _DVBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, v_p: Tensor, v_q: Tensor, clip: float | None, block: int) -> Tensor:
        lme = log_mean_exp(v_q, clip, -1.0, block)
        ctx.save_for_backward(lme.grad)
        ctx.n_p = v_p.numel()
        return v_p.mean(dtype=torch.float32) - lme.value

    @staticmethod
    def backward(ctx: Any, grad_bound: Tensor) -> tuple[Tensor | None, ...]:
        (grad_q,) = ctx.saved_tensors
        grad_p = (grad_bound / ctx.n_p).expand(ctx.n_p).to(grad_q.dtype)
        return grad_p, grad_q * grad_bound, None, None


def dv_bound(
    v_p: Tensor, v_q: Tensor, clip: float | None = None, block: int = DEFAULT_BLOCK
) -> Tensor:
    """E_P[v] - log E_Q[exp(v)] (Donsker-Varadhan); with ``clip`` the SMILE bound; nats."""
    check_block(block)
    return _DVBound.apply(v_p, v_q, clip, block)
