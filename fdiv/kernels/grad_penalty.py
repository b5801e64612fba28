"""Triton gradient penalties on a critic's input gradients G of shape (B, ...): WGAN-GP and R1.

One kernel reads G (rows of D = prod(...) values, a tile of rows per program), computes the row
norms in fp32, writes d penalty / dG in the input dtype and one partial sum per program; the
partials are summed by ``torch.sum`` of a fixed-size buffer (deterministic). Backward scales the
saved d penalty / dG, so double backprop continues into the critic through autograd.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from fdiv.kernels.common import (
    DEFAULT_BLOCK,
    check_block,
    interpreter_quiet,
    is_interpreted,
    num_warps,
)
from fdiv.kernels.reference import PenaltyKind

__all__ = ["gradient_penalty"]


@triton.jit
def _penalty_kernel(
    g_ptr,
    d_ptr,
    part_ptr,
    n_rows,
    n_cols,
    grad_scale,
    R1: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Per row: ||g||^2 (R1) or (||g|| - 1)^2 (WGAN-GP) summed per program; dG = coeff * g."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_mask = rows < n_rows
    base = rows[:, None] * n_cols
    sq = tl.zeros([ROWS], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK_D):
        cols = start + tl.arange(0, BLOCK_D)
        mask = row_mask[:, None] & (cols < n_cols)[None, :]
        x = tl.load(g_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        sq += tl.sum(x * x, axis=1)
    if R1:
        term = sq
        coeff = tl.zeros_like(sq) + grad_scale
    else:
        norm = tl.sqrt(sq)
        term = (norm - 1.0) * (norm - 1.0)
        # d||g||/dg = g/||g||; the subgradient 0 is taken at g = 0.
        safe = tl.where(norm > 0.0, norm, 1.0)
        coeff = tl.where(norm > 0.0, (norm - 1.0) / safe, 0.0) * grad_scale
    tl.store(part_ptr + tl.program_id(0), tl.sum(tl.where(row_mask, term, 0.0), axis=0))
    for start in range(0, n_cols, BLOCK_D):
        cols = start + tl.arange(0, BLOCK_D)
        mask = row_mask[:, None] & (cols < n_cols)[None, :]
        x = tl.load(g_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        d = x * coeff[:, None]
        tl.store(d_ptr + base + cols[None, :], d.to(d_ptr.dtype.element_ty), mask=mask)


INTERPRETED: bool = is_interpreted(_penalty_kernel)


class _GradientPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, grads: Tensor, kind: PenaltyKind, weight: float, block: int) -> Tensor:
        g = grads.contiguous()
        n_rows = g.shape[0]
        n_cols = g.numel() // n_rows
        block_d = min(triton.next_power_of_2(max(n_cols, 1)), block)
        rows = max(1, block // block_d)
        n_prog = triton.cdiv(n_rows, rows)
        d_grads = torch.empty_like(g)
        partials = torch.empty(n_prog, device=g.device, dtype=torch.float32)
        r1 = kind == "r1"
        grad_scale = weight / n_rows if r1 else 2.0 * weight / n_rows
        meta = {"R1": r1, "ROWS": rows, "BLOCK_D": block_d, "num_warps": num_warps(rows * block_d)}
        with interpreter_quiet(INTERPRETED):
            _penalty_kernel[(n_prog,)](g, d_grads, partials, n_rows, n_cols, grad_scale, **meta)
        ctx.save_for_backward(d_grads)
        return partials.sum() * ((0.5 if r1 else 1.0) * weight / n_rows)

    @staticmethod
    def backward(ctx: Any, grad_penalty: Tensor) -> tuple[Tensor | None, ...]:
        (d_grads,) = ctx.saved_tensors
        return d_grads * grad_penalty, None, None, None


def gradient_penalty(
    grads: Tensor, kind: PenaltyKind, weight: float, block: int = DEFAULT_BLOCK
) -> Tensor:
    """WGAN-GP weight * E[(||g|| - 1)^2] or R1 weight/2 * E[||g||^2] over the batch dim, fused."""
    check_block(block)
    if grads.dim() < 2 or grads.shape[0] == 0:
        raise ValueError(f"grads must have shape (B, D, ...) with B >= 1, got {tuple(grads.shape)}")
    return _GradientPenalty.apply(grads, kind, weight, block)
