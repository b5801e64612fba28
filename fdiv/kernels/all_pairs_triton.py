"""Triton kernels of the all-pairs bounds (``all_pairs``): B^2 scores in tiles, never stored.

Forward: a (row tile, column split) grid. Program (m, p) computes the score tiles
S = F[rows] G[cols]^T (``tl.dot``: fp16/bf16 on tensor cores, fp32 with IEEE products; fp32
accumulation) for the column tiles p, p + SPLIT, ... and keeps per-row partials: a running
max and sum of exp (infonce over all columns; dv/smile over the off-diagonal, clipped) or a
sum of f*(g(S_ij)) over the off-diagonal. The diagonal tile stores h(S_ii). The (2, SPLIT, B)
partials are merged by fixed-shape torch reductions: bitwise deterministic, no atomics, memory
O(B * SPLIT) with SPLIT <= 16.

Backward recomputes the tiles: grad f_x[rows, d] = sum over column tiles of W @ G[cols, d], and
grad g_y[cols, d] = sum over row tiles, in order, of W^T @ F[rows, d] (a second kernel, so no
atomics), with W = d bound / d S (``all_pairs._block_weights`` is the same formula in torch):
infonce (delta_ij - softmax_j S_i.) / B; dv delta_ij / B - [i!=j] exp(S_ij - log Z);
smile the same with the clip's indicator; f-divergences (nwj = kl) delta_ij g'(S_ii) / B -
[i!=j] (f* o g)'(S_ij) / (B (B - 1)). For half inputs these dots take W in fp32 against the
upcast tile with TF32 products (fp16/bf16 values are exact in TF32; W keeps the fp32 range).
grad_output is read on the device (no host sync).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from fdiv.kernels.all_pairs import BoundSpec, finish
from fdiv.kernels.fdiv_loss import FAMILIES, _term

__all__ = ["BLOCK", "INTERPRETED", "MAX_SPLIT", "all_pairs_bound"]

BLOCK = 64  # rows and columns of a score tile (the same, so diagonal tiles are aligned)
MAX_SPLIT = 16  # column splits of the forward grid
_KINDS = {"infonce": 0, "lme": 1, "fdiv": 2}
_NEG_INF = tl.constexpr(-math.inf)


@triton.jit
def _scores(f_ptr, g_ptr, rows, cols, n, k, PRECISION: tl.constexpr, BLOCK: tl.constexpr,
            BLOCK_K: tl.constexpr):  # fmt: skip
    """S[rows, cols] = F[rows] G[cols]^T in fp32 (rows/cols beyond n read zeros)."""
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a_mask = (rows[:, None] < n) & (ks[None, :] < k)
        a = tl.load(f_ptr + rows[:, None].to(tl.int64) * k + ks[None, :], mask=a_mask, other=0.0)
        b_mask = (ks[:, None] < k) & (cols[None, :] < n)
        b = tl.load(g_ptr + cols[None, :].to(tl.int64) * k + ks[:, None], mask=b_mask, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _clamp(s, clip, CLIP: tl.constexpr):
    if CLIP:
        s = tl.minimum(tl.maximum(s, -clip), clip)
    return s


@triton.jit
def _positive(s, alpha, KIND: tl.constexpr, FAMILY: tl.constexpr):
    """(h(s), h'(s)): g for the f-divergences, the identity for infonce/dv/smile."""
    if KIND == 2:
        val, der = _term(s, alpha, FAMILY, False)
    else:
        val = s
        der = tl.zeros_like(s) + 1.0
    return val, der


@triton.jit
def _forward_kernel(
    f_ptr, g_ptr, diag_ptr, part_ptr, n, k, n_split, clip, alpha,
    KIND: tl.constexpr, FAMILY: tl.constexpr, CLIP: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_p = tl.program_id(1)
    rows = pid_m * BLOCK + tl.arange(0, BLOCK)
    run_max = tl.full([BLOCK], _NEG_INF, tl.float32)
    run_sum = tl.zeros([BLOCK], dtype=tl.float32)
    for col0 in range(pid_p * BLOCK, n, n_split * BLOCK):
        cols = col0 + tl.arange(0, BLOCK)
        s = _scores(f_ptr, g_ptr, rows, cols, n, k, PRECISION, BLOCK, BLOCK_K)
        eye = rows[:, None] == cols[None, :]
        if col0 == pid_m * BLOCK:
            pos, _ = _positive(s, alpha, KIND, FAMILY)
            tl.store(diag_ptr + rows, tl.sum(tl.where(eye, pos, 0.0), axis=1), mask=rows < n)
        keep = cols[None, :] < n
        if KIND != 0:
            keep = keep & (rows[:, None] != cols[None, :])
        if KIND == 2:
            val, _ = _term(s, alpha, FAMILY, True)
            run_sum += tl.sum(tl.where(keep, val, 0.0), axis=1)
        else:
            x = tl.where(keep, _clamp(s, clip, CLIP), _NEG_INF)
            new_max = tl.maximum(run_max, tl.max(x, axis=1))
            safe = tl.where(new_max == _NEG_INF, 0.0, new_max)
            run_sum = run_sum * tl.exp(run_max - safe) + tl.sum(tl.exp(x - safe[:, None]), axis=1)
            run_max = new_max
    out = part_ptr + pid_p * n + rows
    tl.store(out, run_max, mask=rows < n)
    tl.store(out + n_split * n, run_sum, mask=rows < n)


@triton.jit
def _weights(
    s, rows, cols, n, stat_ptr, diag_tile, clip, alpha, inv_n, inv_pairs,
    KIND: tl.constexpr, FAMILY: tl.constexpr, CLIP: tl.constexpr,
):  # fmt: skip
    """W = d bound / d S on one tile (zero outside the batch), fp32."""
    eye = rows[:, None] == cols[None, :]
    if KIND == 0:
        lse = tl.load(stat_ptr + rows, mask=rows < n, other=0.0)
        w = -tl.exp(s - lse[:, None])
        w = tl.where(eye, 1.0 + w, w) * inv_n
    else:
        if KIND == 1:
            w = -tl.exp(_clamp(s, clip, CLIP) - tl.load(stat_ptr))
            if CLIP:
                w = tl.where((s > -clip) & (s < clip), w, 0.0)
        else:
            _, der = _term(s, alpha, FAMILY, True)
            w = -der * inv_pairs
        if diag_tile:
            _, pos_der = _positive(s, alpha, KIND, FAMILY)
            w = tl.where(eye, pos_der * inv_n, w)
    return tl.where((rows[:, None] < n) & (cols[None, :] < n), w, 0.0)


@triton.jit
def _grad_kernel(
    f_ptr, g_ptr, stat_ptr, go_ptr, out_ptr, n, k, clip, alpha, inv_n, inv_pairs,
    WRT_G: tl.constexpr, KIND: tl.constexpr, FAMILY: tl.constexpr, CLIP: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Program (t, c): grad f_x[tile t, c-th BLOCK_D columns] = sum_j W[t, j] G[j] (WRT_G False),
    or grad g_y[tile t, ...] = sum_i W[i, t]^T F[i] (WRT_G True), over the other tiles in order."""
    own = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ds = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK, BLOCK_D], dtype=tl.float32)
    other_ptr = f_ptr if WRT_G else g_ptr
    for start in range(0, n, BLOCK):
        other = start + tl.arange(0, BLOCK)
        rows = other if WRT_G else own
        cols = own if WRT_G else other
        s = _scores(f_ptr, g_ptr, rows, cols, n, k, PRECISION, BLOCK, BLOCK_K)
        diag_tile = start == tl.program_id(0) * BLOCK
        w = _weights(
            s, rows, cols, n, stat_ptr, diag_tile, clip, alpha, inv_n, inv_pairs, KIND, FAMILY,
            CLIP,
        )  # fmt: skip
        mask = (other[:, None] < n) & (ds[None, :] < k)
        v = tl.load(other_ptr + other[:, None].to(tl.int64) * k + ds[None, :], mask=mask, other=0.0)
        w = tl.trans(w) if WRT_G else w
        acc = tl.dot(w, v.to(tl.float32), acc, input_precision=PRECISION)
    acc = acc * tl.load(go_ptr)
    mask = (own[:, None] < n) & (ds[None, :] < k)
    ptrs = out_ptr + own[:, None].to(tl.int64) * k + ds[None, :]
    tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


INTERPRETED: bool = isinstance(_forward_kernel, InterpretedFunction)


# ------------------------------------------------------------------------------------- host
def _config(spec: BoundSpec, f: Tensor, block: int) -> dict[str, Any]:
    """Compile-time constants shared by the launches."""
    k = f.shape[1]
    family = FAMILIES[spec.div.family] if spec.kind == "fdiv" else 0
    return {
        "KIND": _KINDS[spec.kind],
        "FAMILY": family,
        "CLIP": spec.clip is not None,
        "PRECISION": "ieee" if f.dtype == torch.float32 else "tf32",
        "BLOCK": block,
        "BLOCK_K": min(max(triton.next_power_of_2(k), 16), _max_block_k(f)),
        "num_warps": 8 if block >= 64 else 4,  # 4 warps spill fp32 64x64 tiles on sm_90
    }


def _max_block_k(f: Tensor) -> int:
    """The widest slice of k (and of the gradient's columns) per step: fp32 IEEE products of
    64 x 64 tiles spill to the stack beyond 16 (compiled for sm_80 / sm_90, 8 warps)."""
    return 16 if f.dtype == torch.float32 else 64


def _scalars(spec: BoundSpec) -> tuple[float, float]:
    alpha = spec.div.alpha if spec.kind == "fdiv" and spec.div.alpha is not None else 0.0
    return (spec.clip or 0.0), alpha


def _forward(
    f: Tensor, g: Tensor, spec: BoundSpec, block: int, max_split: int
) -> tuple[Tensor, Tensor]:
    """(bound, statistic saved for backward) from the tile partials."""
    n, k = f.shape
    n_tiles = triton.cdiv(n, block)
    split = min(n_tiles, max_split)
    diag = torch.empty(n, device=f.device, dtype=torch.float32)
    part = torch.empty(2, split, n, device=f.device, dtype=torch.float32)
    _forward_kernel[(n_tiles, split)](
        f, g, diag, part, n, k, split, *_scalars(spec), **_config(spec, f, block)
    )
    top, sums = part.unbind()
    if spec.kind == "fdiv":
        stat = sums.sum()
    else:
        if spec.kind == "lme":
            top, sums = top.reshape(-1), sums.reshape(-1)
        peak = top.max(dim=0).values
        finite = torch.where(peak == -math.inf, 0.0, peak)
        stat = finite + torch.log((sums * torch.exp(top - finite)).sum(dim=0))
    return finish(spec, diag, stat), stat


class _TritonBound(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, f_x: Tensor, g_y: Tensor, spec: BoundSpec, block: int, max_split: int
    ) -> Tensor:
        value, stat = _forward(f_x, g_y, spec, block, max_split)
        ctx.save_for_backward(f_x, g_y, stat)
        ctx.spec, ctx.block = spec, block
        return value

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        f, g, stat = ctx.saved_tensors
        n, k = f.shape
        config = _config(ctx.spec, f, ctx.block)
        block_d = min(max(triton.next_power_of_2(k), 16), _max_block_k(f))
        grid = (triton.cdiv(n, ctx.block), triton.cdiv(k, block_d))
        go = grad_out.to(torch.float32).reshape(())
        inv = (1.0 / n, 1.0 / (n * (n - 1)))
        grads = []
        for wrt_g, like in ((False, f), (True, g)):
            out = torch.empty_like(like)
            _grad_kernel[grid](
                f, g, stat, go, out, n, k, *_scalars(ctx.spec), *inv,
                WRT_G=wrt_g, BLOCK_D=block_d, **config,
            )  # fmt: skip
            grads.append(out)
        return grads[0], grads[1], None, None, None


def all_pairs_bound(
    f_x: Tensor, g_y: Tensor, spec: BoundSpec, block: int = BLOCK, max_split: int = MAX_SPLIT
) -> Tensor:
    """The all-pairs bound ``spec`` of (B, k) inputs by the Triton kernels (0-d fp32, nats).

    ``block`` (a power of two >= 16) is the score tile's side, ``max_split`` the most column
    splits of the forward grid (results depend on neither beyond rounding); inputs are made
    contiguous.
    """
    if spec.kind == "fdiv" and spec.div.family not in FAMILIES:
        raise ValueError(f"divergence {spec.div.name!r} has no Triton kernel")
    if block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16, got {block!r}")
    if max_split < 1:
        raise ValueError(f"max_split must be >= 1, got {max_split!r}")
    return _TritonBound.apply(f_x.contiguous(), g_y.contiguous(), spec, block, max_split)
