"""All-pairs bounds of a separable critic: B^2 scores S = F G^T without B^2 memory (nats).

A batch of B pairs gives the scores S_ij = <f_x[i], g_y[j]>: the diagonal are the positive pairs
(samples of P_XY), the B(B - 1) off-diagonal pairs the negatives (samples of P_X x P_Y).

- ``infonce``: mean_i [S_ii - logsumexp_j S_ij] + log B (j over all B columns; at most log B)
- ``nwj``: mean_i S_ii - mean_{i!=j} exp(S_ij - 1) (the ``kl`` row of the f-divergence table)
- ``dv``: mean_i S_ii - log mean_{i!=j} exp(S_ij) (Donsker-Varadhan, MINE)
- ``smile``: ``dv`` with S_ij clipped to [-clip, clip] inside the exponential only
- an f-divergence name (registry): mean_i g(S_ii) - mean_{i!=j} f*(g(S_ij)) (f-mutual information)

The torch path (CPU, fp64, ``backend="torch"``) is an autograd.Function over row blocks of
``chunk`` rows: forward keeps the per-row log-sum-exp (infonce) or the global log-partition
(dv/smile) and nothing of size B^2; backward recomputes each block of S and its weights
W_ij = d bound / d S_ij, then grad f_x = W G and grad g_y = W^T F, block by block in a fixed order
(deterministic; peak memory O(chunk * B + B * k)). The Triton path lives in ``all_pairs_triton``.

Overflow: scores are finite for finite input unless |S_ij| exceeds the float range. infonce, dv
and smile are log-sum-exps with a running max: finite for any finite S. The f-divergence bounds
(nwj included) evaluate f*(g(S)) and its derivative as the critic losses do (``fdiv_loss``): in
fp32, exp-based rows are +inf beyond |S| ~ 88 (fp64: ~709); the bound is then -inf (never NaN:
both terms infinite gives -inf) and the gradients are non-finite.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from fdiv.divergences.registry import FDivergence, get, names
from fdiv.kernels.dispatch import resolve_backend
from fdiv.kernels.reference import combine_terms, compute_dtype

__all__ = ["MI_BOUNDS", "BoundSpec", "all_pairs_bound", "default_chunk", "finish", "resolve_bound"]

MI_BOUNDS: tuple[str, ...] = ("infonce", "nwj", "dv", "smile")
CHUNK_ELEMENTS = 2**18  # scores per row block of the torch path (1 MiB in fp32) ...
MIN_CHUNK = 32  # ... but at least 32 rows, so that each block's matmul reuses what it reads
Kind = Literal["infonce", "lme", "fdiv"]


@dataclass(frozen=True)
class BoundSpec:
    """A resolved bound: ``kind`` "infonce", "lme" (dv, smile with ``clip``) or "fdiv" (``div``)."""

    name: str
    kind: Kind
    clip: float | None = None
    div: FDivergence | None = None


def resolve_bound(bound: str | FDivergence, clip: float) -> BoundSpec:
    """The BoundSpec of a bound name (or FDivergence); ValueError listing the known bounds."""
    if isinstance(bound, str) and bound.strip().lower() in MI_BOUNDS:
        key = bound.strip().lower()
        if key == "infonce":
            return BoundSpec(key, "infonce")
        if key == "nwj":
            return BoundSpec(key, "fdiv", div=get("kl"))
        return BoundSpec(key, "lme", clip=clip if key == "smile" else None)
    try:
        div = get(bound)
    except (ValueError, TypeError) as err:
        known = ", ".join((*MI_BOUNDS, *names()))
        raise ValueError(f"bound {bound!r} is unknown ({err}); known bounds: {known}") from err
    return BoundSpec(div.name, "fdiv", div=div)


def default_chunk(n: int) -> int:
    """Rows per block of the torch path: about ``CHUNK_ELEMENTS`` scores, >= ``MIN_CHUNK`` rows."""
    return min(n, max(MIN_CHUNK, CHUNK_ELEMENTS // n))


def finish(spec: BoundSpec, diag: Tensor, stat: Tensor) -> Tensor:
    """The bound from h(S_ii) per row (``diag``; h = g for f-divergences, else identity) and the
    negative-pair statistic ``stat``: row log-sum-exps (infonce), the log-partition log sum_{i!=j}
    exp(x_ij) (lme), or sum_{i!=j} f*(g(S_ij)) (fdiv); nats."""
    n = diag.shape[0]
    if spec.kind == "infonce":
        return (diag - stat).sum() / n + math.log(n)
    if spec.kind == "lme":
        return diag.sum() / n - (stat - math.log(n * (n - 1)))
    return -combine_terms(diag.sum() / n, stat / (n * (n - 1)))


# ------------------------------------------------------------------------ torch (chunked) path
def _block_stats(spec: BoundSpec, s: Tensor, r0: int) -> tuple[Tensor, Tensor]:
    """(h(S_ii) of the block's rows, its share of the statistic); may overwrite ``s``."""
    d = s.diagonal(r0)
    if spec.kind == "infonce":
        return d.clone(), torch.logsumexp(s, dim=1)
    if spec.kind == "lme":
        pos = d.clone()
        x = s.clamp_(-spec.clip, spec.clip) if spec.clip is not None else s
        x.diagonal(r0).fill_(-math.inf)
        return pos, torch.logsumexp(x.flatten(), dim=0)
    phi = spec.div.conjugate_activation(s)
    phi.diagonal(r0).zero_()
    return spec.div.activation(d), phi.sum()


def _block_weights(spec: BoundSpec, s: Tensor, r0: int, stat: Tensor, n: int) -> Tensor:
    """W = d bound / d S on the block of rows [r0, r0 + len(s))."""
    if spec.kind == "infonce":
        w = torch.exp(s - stat[r0 : r0 + s.shape[0], None]).neg_()
        w.diagonal(r0).add_(1.0)
        return w.mul_(1.0 / n)
    if spec.kind == "lme":
        x = s.clamp(-spec.clip, spec.clip) if spec.clip is not None else s
        w = torch.exp(x - stat).neg_()
        if spec.clip is not None:
            w.masked_fill_((s <= -spec.clip) | (s >= spec.clip), 0.0)
        w.diagonal(r0).fill_(1.0 / n)
        return w
    w = spec.div.conjugate_activation_grad(s).mul(-1.0 / (n * (n - 1)))
    w.diagonal(r0).copy_(spec.div.activation_grad(s.diagonal(r0)) / n)
    return w


class _ChunkedBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, f_x: Tensor, g_y: Tensor, spec: BoundSpec, chunk: int) -> Tensor:
        cdt = compute_dtype(f_x.dtype)
        f, g = f_x.to(cdt), g_y.to(cdt)
        n = f.shape[0]
        pos, parts = [], []
        for r0 in range(0, n, chunk):
            d, part = _block_stats(spec, f[r0 : r0 + chunk] @ g.T, r0)
            pos.append(d)
            parts.append(part)
        if spec.kind == "infonce":
            stat = torch.cat(parts)
        elif spec.kind == "lme":
            stat = torch.logsumexp(torch.stack(parts), dim=0)
        else:
            stat = torch.stack(parts).sum()
        ctx.save_for_backward(f_x, g_y, stat)
        ctx.spec, ctx.chunk = spec, chunk
        return finish(spec, torch.cat(pos), stat)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        f_x, g_y, stat = ctx.saved_tensors
        cdt = compute_dtype(f_x.dtype)
        f, g = f_x.to(cdt), g_y.to(cdt)
        n = f.shape[0]
        grad_f, grad_g = torch.empty_like(f), torch.zeros_like(g)
        for r0 in range(0, n, ctx.chunk):
            f_c = f[r0 : r0 + ctx.chunk]
            w = _block_weights(ctx.spec, f_c @ g.T, r0, stat, n)
            torch.mm(w, g, out=grad_f[r0 : r0 + ctx.chunk])
            grad_g.addmm_(w.T, f_c)
        return (grad_f * grad_out).to(f_x.dtype), (grad_g * grad_out).to(g_y.dtype), None, None


# ------------------------------------------------------------------------------ public entry
def _check_inputs(f_x: object, g_y: object) -> tuple[Tensor, Tensor]:
    for name, t in (("f_x", f_x), ("g_y", g_y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape (B, k), got {tuple(t.shape)}")
    if f_x.shape != g_y.shape:
        raise ValueError(f"f_x and g_y must have one shape (B, k), got {tuple(f_x.shape)} and "
                         f"{tuple(g_y.shape)}")  # fmt: skip
    if f_x.shape[0] < 2 or f_x.shape[1] < 1:
        raise ValueError(f"all-pairs bounds need B >= 2 pairs and k >= 1, got {tuple(f_x.shape)}")
    if f_x.device != g_y.device:
        raise ValueError(f"f_x and g_y must be on one device, got {f_x.device} and {g_y.device}")
    if f_x.dtype != g_y.dtype:
        raise ValueError(f"f_x and g_y must have one dtype, got {f_x.dtype} and {g_y.dtype}")
    return f_x, g_y


def _triton_module(backend: str, f_x: Tensor, g_y: Tensor) -> Any | None:
    """The Triton module when ``backend`` resolves to it (dispatch's rules), else None."""
    if resolve_backend(backend, f_x, g_y) == "torch":
        return None
    module = importlib.import_module("fdiv.kernels.all_pairs_triton")
    interpret = f_x.device.type == "cpu"  # resolve_backend allowed CPU only under the interpreter
    if interpret != module.INTERPRETED:
        if backend == "auto":
            return None
        raise ValueError(
            "backend 'triton' cannot run here: fdiv.kernels.all_pairs_triton was imported "
            f"{'interpreted' if module.INTERPRETED else 'compiled'}; set TRITON_INTERPRET before "
            "its first import (or restart the process)"
        )
    return module


def all_pairs_bound(
    f_x: Tensor,
    g_y: Tensor,
    bound: str | FDivergence = "infonce",
    *,
    clip: float = 5.0,
    backend: str = "auto",
    chunk: int | None = None,
) -> Tensor:
    """The bound of the critic T(x, y) = <f(x), g(y)> over all B^2 pairs of a batch, in nats.

    ``f_x``, ``g_y``: (B, k), one dtype and device, B >= 2; row i of each is pair i. ``clip``
    (smile only, checked always) must be positive and finite. ``chunk``: rows per block of the
    torch path (default: about 2^18 scores, at least 32 rows). Returns a 0-d tensor (fp32 for
    half inputs) differentiable in both inputs; memory O(B k) besides one block of scores.
    """
    f_x, g_y = _check_inputs(f_x, g_y)
    if isinstance(clip, bool) or not isinstance(clip, int | float) or not 0 < clip < math.inf:
        raise ValueError(f"clip must be a positive finite number, got {clip!r}")
    spec = resolve_bound(bound, float(clip))
    n = f_x.shape[0]
    if chunk is None:
        chunk = default_chunk(n)
    elif isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    module = _triton_module(backend, f_x, g_y)
    if module is not None:
        return module.all_pairs_bound(f_x, g_y, spec)
    return _ChunkedBound.apply(f_x, g_y, spec, chunk)
