"""All-pairs bounds (InfoNCE, NWJ, DV, SMILE, f-MI) against a dense fp64 computation.

The oracle materialises S = F G^T in fp64 and differentiates the bound's formula by autograd.
Tolerances:
- fp64 torch path: rtol = atol = 1e-12 (sums of <= 10^4 terms of size O(1-10), ~1e-16 each).
- fp32 (torch and Triton): a score carries |error| <= k 2^-24 sum_l |f_il g_jl| (~4e-6 |S| at
  k = 64) and exp/log pass relative errors on at most unchanged; values and gradients get
  rtol 2e-5 and atol 2e-5 of the reference's largest magnitude (scores of order 1-10).
- fp16 inputs (Triton): the products of fp16 values are exact in fp32, so the value is as for
  fp32; gradients are rounded to fp16 once: rtol 2^-10, atol 2^-24 (half the subnormal step plus
  fp32 error). (On a GPU, W enters TF32 dots: add 2^-11 relative per term; not run here.)
- extreme scores (|S| up to ~80 or 1e4): fp32 errors scale with |S|: atol 1e-5 max |S|.
The Triton tests use the interpreter on the CPU (small B; ``tests/kernels/conftest.py``).
"""

from __future__ import annotations

import importlib
import math
import os
from typing import NamedTuple

import pytest
import torch
from torch import Tensor

from fdiv.bench.memory import peak_cpu_bytes
from fdiv.divergences.registry import get
from fdiv.kernels import all_pairs

CUDA = torch.cuda.is_available()


def _import_triton_module():
    """fdiv.kernels.all_pairs_triton, interpreted without CUDA (as the conftest does)."""
    previous = os.environ.get("TRITON_INTERPRET")
    if not CUDA:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        module = importlib.import_module("fdiv.kernels.all_pairs_triton")
        return module if module.INTERPRETED != CUDA else importlib.reload(module)
    finally:
        if previous is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = previous


apt = _import_triton_module()
GRAD_OUTPUT = -1.75
FDIVS = ("kl", "js", "gan", "hellinger", "pearson", "tv", "alpha(2)")
BOUNDS = ("infonce", "nwj", "dv", "smile", *FDIVS)
ALL_BOUNDS = (*BOUNDS, "reverse_kl", "neyman", "jeffreys", "alpha(-1)")  # the fast torch path
CLIP = 2.0


def scores_terms(s: Tensor, name: str, clip: float = CLIP) -> tuple[Tensor, Tensor]:
    """(positive term, negative term) of the bound of a materialised score matrix, written from
    the definitions; the bound is their difference."""
    n = s.shape[0]
    pos, neg = s.diagonal(), s[~torch.eye(n, dtype=torch.bool, device=s.device)]
    if name == "infonce":
        return pos.mean(), torch.logsumexp(s, dim=1).mean() - math.log(n)
    if name in ("dv", "smile"):
        x = neg.clamp(-clip, clip) if name == "smile" else neg
        return pos.mean(), torch.logsumexp(x, dim=0) - math.log(n * (n - 1))
    if name == "nwj":
        return pos.mean(), torch.exp(neg - 1.0).mean()
    div = get(name)
    return div.activation(pos).mean(), div.conjugate_activation(neg).mean()


def dense_bound(f: Tensor, g: Tensor, name: str) -> Tensor:
    pos, neg = scores_terms(f @ g.T, name)
    return pos - neg


def _inputs(n: int, k: int, scale: float, dtype: torch.dtype, seed: int = 0) -> tuple[Tensor, ...]:
    """(f, g) with correlated rows (positives score higher), |S| of order ``scale``."""
    gen = torch.Generator().manual_seed(1000 * n + k + seed)
    f = torch.randn(n, k, generator=gen, dtype=torch.float64)
    g = 0.8 * f + 0.6 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    c = math.sqrt(scale / math.sqrt(k))
    return (c * f).to(dtype), (c * g).to(dtype)


class Reference(NamedTuple):
    """fp64 value and gradients (times GRAD_OUTPUT); ``mass`` = |W| |G| and |W|^T |F| with
    |W| = |W_pos| + |W_neg| (the scale of a gradient entry before any cancellation); ``eps``
    bounds an fp32 score's error."""

    value: Tensor
    grads: tuple[Tensor, Tensor]
    mass: tuple[Tensor, Tensor]
    eps: float
    w_mass: float  # sum of |d bound / d S|: the value's sensitivity to score errors


def _reference(f: Tensor, g: Tensor, name: str) -> Reference:
    fd, gd = f.detach().double(), g.detach().double()
    s = (fd @ gd.T).requires_grad_()
    pos, neg = scores_terms(s, name)
    # W = d bound / d S from each term (autograd), then the chain rule of S = F G^T by hand
    w_pos, w_neg = (torch.autograd.grad(t, s)[0] * GRAD_OUTPUT for t in (pos, neg))
    w = w_pos - w_neg
    eps = f.shape[1] * 2.0**-24 * (fd.abs() @ gd.abs().T).max().item()
    size = w_pos.abs() + w_neg.abs()  # |W| before the two terms cancel
    mass = (size @ gd.abs(), size.T @ fd.abs())
    w_mass = size.sum().item() / abs(GRAD_OUTPUT)
    value = pos - neg
    return Reference(value.detach(), (w @ gd, w.T @ fd), mass, eps, w_mass)


def _run(fn, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    a, b = f.clone().requires_grad_(), g.clone().requires_grad_()
    value = fn(a, b)
    go = torch.tensor(GRAD_OUTPUT, dtype=value.dtype, device=value.device)
    grads = torch.autograd.grad(value, (a, b), go)
    return value.detach(), *grads


def _check(got: tuple[Tensor, ...], ref: Reference, w_rel: float = 1e-6) -> None:
    """fp32 / fp16 results against the fp64 reference (tolerances: module docstring);
    ``w_rel``: the relative error of one weight W_ij beyond that of its score."""
    value, *grads = got
    assert value.dtype == torch.float32
    value_err = abs(value.item() - ref.value.item())
    assert value_err <= 2.0 * ref.eps * ref.w_mass + 2e-6 * (1.0 + abs(ref.value.item()))
    for x, want, mass in zip(grads, ref.grads, ref.mass, strict=True):
        unit = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}.get(x.dtype, 0.0)
        subnormal = {torch.float16: 2.0**-25, torch.bfloat16: 2.0**-134}.get(x.dtype, 0.0)
        rounding = unit * want.abs() + subnormal  # the output's rounding
        bound = rounding + (2.0 * ref.eps + w_rel) * mass
        err = (x.double() - want).abs()
        assert (err <= bound).all(), f"max excess {(err - bound).max().item():.3g}"


def _torch_fn(name: str):
    return lambda a, b: all_pairs.all_pairs_bound(a, b, name, clip=CLIP, chunk=3)


def _triton(name: str, block: int = apt.BLOCK, max_split: int = apt.MAX_SPLIT):
    spec = all_pairs.resolve_bound(name, CLIP)
    return lambda a, b: apt.all_pairs_bound(a, b, spec, block, max_split)


# ------------------------------------------------------------------------------- torch path
@pytest.mark.parametrize("name", ALL_BOUNDS)
@pytest.mark.parametrize(
    ("n", "k", "chunk"), [(2, 1, 1), (7, 3, 3), (33, 64, 5), (100, 3, 7), (100, 64, 128)]
)
def test_torch_path_fp64(name: str, n: int, k: int, chunk: int) -> None:
    f, g = _inputs(n, k, 3.0, torch.float64)
    got = _run(lambda a, b: all_pairs.all_pairs_bound(a, b, name, clip=CLIP, chunk=chunk), f, g)
    ref = _reference(f, g, name)
    for x, want in zip(got, (ref.value, *ref.grads), strict=True):
        assert x.dtype == torch.float64
        torch.testing.assert_close(x, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["infonce", "smile", "js"])
def test_torch_path_fp32_and_fp16(name: str) -> None:
    f, g = _inputs(33, 64, 3.0, torch.float32)
    fn = _torch_fn(name)
    _check(_run(fn, f, g), _reference(f, g, name))
    got = _run(fn, f.half(), g.half())
    assert all(t.dtype == torch.float16 for t in got[1:])
    _check(got, _reference(f.half(), g.half(), name))


# ------------------------------------------------------------------------------ Triton path
# (B, k, tile side, most column splits): one partial tile; several tiles with a split each; 4
# tiles in 2 splits (each program merges two column tiles); B not a multiple of the tile.
TRITON_CASES = [(2, 1, apt.BLOCK, 16), (7, 3, 16, 16), (33, 64, 16, 16), (100, 3, 32, 2)]


@pytest.mark.parametrize("name", BOUNDS)
@pytest.mark.parametrize(("n", "k", "block", "split"), TRITON_CASES)
def test_triton_fp32(name: str, n: int, k: int, block: int, split: int) -> None:
    f, g = _inputs(n, k, 3.0, torch.float32)
    got = _run(_triton(name, block, split), f, g)
    assert all(t.dtype == torch.float32 for t in got[1:])
    _check(got, _reference(f, g, name))


@pytest.mark.parametrize("name", ["infonce", "nwj", "dv", "smile", "gan", "alpha(2)"])
def test_triton_fp16(name: str) -> None:
    f, g = _inputs(40, 24, 1.0, torch.float16)  # alpha(2)'s e^S / B stays below fp16's max
    got = _run(_triton(name, 16, 2), f, g)
    assert all(t.dtype == torch.float16 for t in got[1:])
    _check(got, _reference(f, g, name))


def test_public_function_dispatches_to_triton_under_the_interpreter() -> None:
    f, g = _inputs(20, 5, 3.0, torch.float32)
    direct = apt.all_pairs_bound(f, g, all_pairs.resolve_bound("dv", 5.0))
    assert torch.equal(all_pairs.all_pairs_bound(f, g, "dv", backend="triton"), direct)
    assert torch.equal(all_pairs.all_pairs_bound(f, g, "dv"), direct)  # auto
    chunked = all_pairs.all_pairs_bound(f, g, "dv", backend="torch")
    torch.testing.assert_close(chunked, direct, rtol=2e-6, atol=2e-6)


# -------------------------------------------------------------------------- extreme scores
@pytest.mark.parametrize("name", ["infonce", "dv", "smile", "nwj", "js", "gan", "tv", "hellinger"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_scores_near_80(name: str, backend: str) -> None:
    """|S| up to ~80: exp(S) is ~1e34, still finite in fp32; everything matches fp64."""
    f, g = _inputs(20, 3, 18.0, torch.float32, seed=1)
    s_max = (f.double() @ g.double().T).abs().max().item()
    assert 60.0 < s_max < 87.0
    fn = _triton(name, 16, 2) if backend == "triton" else _torch_fn(name)
    got = _run(fn, f, g)
    assert all(torch.isfinite(x).all() for x in got)
    _check(got, _reference(f, g, name))


# the dv weights exp(S_ij - log Z) overflow on the diagonal, where W is 1/B instead (discarded)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("name", ["infonce", "dv", "smile"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_log_sum_exp_bounds_stable_at_1e4(name: str, backend: str) -> None:
    f, g = _inputs(9, 2, 1e4, torch.float32, seed=2)
    s_max = (f.double() @ g.double().T).abs().max().item()
    assert s_max > 5e3
    fn = _triton(name, 16, 2) if backend == "triton" else _torch_fn(name)
    got = _run(fn, f, g)
    assert all(torch.isfinite(x).all() for x in got)
    _check(got, _reference(f, g, name))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("name", ["nwj", "alpha(2)", "hellinger"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_overflowing_f_divergence_bound_is_minus_inf_not_nan(name: str, backend: str) -> None:
    f, g = _inputs(9, 2, 300.0, torch.float32, seed=3)
    fn = _triton(name, 16, 2) if backend == "triton" else _torch_fn(name)
    assert fn(f, g).item() == -math.inf


# ------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", ["infonce", "smile", "js"])
def test_bitwise_deterministic(name: str, backend: str) -> None:
    f, g = _inputs(30, 7, 3.0, torch.float32, seed=4)
    fn = _triton(name, 16, 2) if backend == "triton" else _torch_fn(name)
    first, second = _run(fn, f, g), _run(fn, f, g)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["infonce", "nwj", "smile", "js"])
def test_triton_on_gpu(name: str, dtype: torch.dtype) -> None:
    """B = 3000 with the default tile (47 row tiles, 16 splits). The GPU's exp/log are ~2 ulp and
    half inputs meet W in TF32 dots (W rounded to 2^-11): w_rel = 2^-10."""
    f, g = (t.cuda() for t in _inputs(3000, 64, 3.0, dtype, seed=6))
    fn = lambda a, b: all_pairs.all_pairs_bound(a, b, name, clip=CLIP, backend="triton")  # noqa: E731
    got = _run(fn, f, g)
    assert all(t.dtype == dtype for t in got[1:])
    _check(got, _reference(f, g, name), w_rel=2.0**-10 if dtype != torch.float32 else 1e-5)
    again = _run(fn, f, g)
    assert all(torch.equal(a, b) for a, b in zip(got, again, strict=True))
    a, b = f.clone().requires_grad_(), g.clone().requires_grad_()
    go = torch.tensor(GRAD_OUTPUT, device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # forward and backward without a host sync
    try:
        torch.autograd.grad(fn(a, b), (a, b), go)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -------------------------------------------------------------------------------- bad input
def test_bad_input() -> None:
    f = torch.randn(5, 3)
    bound = all_pairs.all_pairs_bound
    with pytest.raises(ValueError, match="one shape"):
        bound(f, torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"shape \(B, k\)"):
        bound(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="B >= 2"):
        bound(f[:1], f[:1])
    with pytest.raises(TypeError, match="floating-point"):
        bound(torch.ones(5, 3, dtype=torch.int64), f)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        bound(f.tolist(), f)
    with pytest.raises(ValueError, match="one dtype"):
        bound(f, f.double())
    with pytest.raises(ValueError, match="one device"):
        bound(f, torch.empty(5, 3, device="meta"))
    with pytest.raises(ValueError, match=r"unknown.*known bounds: infonce, nwj, dv, smile, kl"):
        bound(f, f, "infonse")
    with pytest.raises(ValueError, match="alpha family needs its parameter"):
        bound(f, f, "alpha")
    for clip in (0.0, -1.0, math.inf, math.nan, True, "5"):
        with pytest.raises(ValueError, match="clip must be a positive finite number"):
            bound(f, f, "smile", clip=clip)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        bound(f, f, chunk=0)
    with pytest.raises(ValueError, match="backend 'cuda' is unknown"):
        bound(f, f, backend="cuda")
    with pytest.raises(ValueError, match="float64"):
        bound(f.double(), f.double(), backend="triton")


def test_names_resolve_like_the_registry() -> None:
    assert all_pairs.resolve_bound("InfoNCE", 5.0).kind == "infonce"
    assert all_pairs.resolve_bound("NWJ", 5.0).div is get("kl")
    assert all_pairs.resolve_bound("smile", 3.0).clip == 3.0
    assert all_pairs.resolve_bound("dv", 3.0).clip is None
    assert all_pairs.resolve_bound("jsd", 5.0).div is get("js")
    assert all_pairs.resolve_bound("alpha(0.5)", 5.0).div.alpha == 0.5


# ----------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("name", ["infonce", "smile"])
def test_torch_path_memory_is_far_below_b_squared(name: str) -> None:
    """fwd + bwd at B = 4096, k = 64 (fp32, default chunk): peak live tensor bytes stay below
    B^2 * 4 / 8, while the dense computation's peak is at least B^2 * 4 (so the measurement
    does see B^2 tensors)."""
    n, k = 4096, 64
    f, g = (t.requires_grad_() for t in _inputs(n, k, 3.0, torch.float32, seed=5))

    def chunked() -> None:
        torch.autograd.grad(all_pairs.all_pairs_bound(f, g, name, backend="torch"), (f, g))

    def dense() -> None:
        torch.autograd.grad(dense_bound(f, g, name), (f, g))

    square = n * n * 4
    assert peak_cpu_bytes(chunked) < square / 8
    assert peak_cpu_bytes(dense) >= square
