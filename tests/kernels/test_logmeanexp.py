"""Log-mean-exp (DV / SMILE partition term) and the DV / SMILE bounds against fp64 torch.

Tolerances: the value is an fp32 log of an fp32 sum of <= 200 terms each within a few ulp:
|error| <= 1e-6 absolute for values of order 1-10 (rtol 1e-6). Gradients (softmax weights) are
elementwise exp(x - log Z): rtol 1e-5 for fp32 (argument rounding |x - log Z| * 2^-24 <= 1e-6 plus
the error of log Z), and for fp16 the output rounding dominates: rtol 2^-10 (two roundings with a
grad_output != 1), atol 2^-24 * (1 + |grad_output|) for fp16 subnormals.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from fdiv.kernels import logmeanexp, reference

BLOCK = 64
SIZES = (1, 7, BLOCK - 1, BLOCK + 1, 3 * BLOCK + 5)
GRAD_OUTPUT = 1.75
GRAD_TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-30},
    torch.float16: {"rtol": 2.0**-10, "atol": 2.0**-24 * (1.0 + GRAD_OUTPUT)},
}
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])


def _logits(n: int, dtype: torch.dtype, device: str, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed + n)
    return (4.0 * torch.randn(n, generator=gen)).to(dtype).to(device)


def _eager_lme(v: Tensor, clip: float | None) -> tuple[Tensor, Tensor]:
    """fp64 log mean exp and its autograd gradient (zero where the clamp is active)."""
    x = v.double().requires_grad_()
    c = x.clamp(-clip, clip) if clip is not None else x
    value = torch.logsumexp(c, dim=0) - math.log(x.numel())
    return value.detach(), torch.autograd.grad(value, x)[0]


@DTYPES
@pytest.mark.parametrize("clip", [None, 3.0], ids=["dv", "smile"])
@pytest.mark.parametrize("n", SIZES)
def test_log_mean_exp(n: int, clip: float | None, dtype: torch.dtype, device: str) -> None:
    v = _logits(n, dtype, device)
    got = logmeanexp.log_mean_exp(v, clip, GRAD_OUTPUT, block=BLOCK)
    value, grad = _eager_lme(v, clip)
    torch.testing.assert_close(got.value.double(), value, rtol=1e-6, atol=1e-6)
    assert got.grad.dtype == dtype
    torch.testing.assert_close(got.grad.double(), grad * GRAD_OUTPUT, **GRAD_TOL[dtype])


@DTYPES
@pytest.mark.parametrize("clip", [None, 2.0], ids=["dv", "smile"])
@pytest.mark.parametrize("sizes", [(1, 7), (3 * BLOCK + 5, BLOCK - 1)], ids=["1-7", "197-63"])
def test_dv_bound(
    sizes: tuple[int, int], clip: float | None, dtype: torch.dtype, device: str
) -> None:
    v_p, v_q = (_logits(n, dtype, device, seed=1).requires_grad_() for n in sizes)
    bound = logmeanexp.dv_bound(v_p, v_q, clip, block=BLOCK)
    grads = torch.autograd.grad(bound, (v_p, v_q), torch.tensor(GRAD_OUTPUT, device=device))
    w_p, w_q = (v.detach().double().requires_grad_() for v in (v_p, v_q))
    want = reference.dv_bound(w_p, w_q, clip)
    want_grads = torch.autograd.grad(
        want, (w_p, w_q), torch.tensor(GRAD_OUTPUT, dtype=torch.float64)
    )
    torch.testing.assert_close(bound.double(), want.detach(), rtol=1e-6, atol=1e-6)
    for g, w in zip(grads, want_grads, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), w.to(dtype).double(), **GRAD_TOL[dtype])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_extreme_logits(device: str) -> None:
    v = torch.tensor([1e4, -1e4, 0.0, 80.0, -80.0], device=device)
    got = logmeanexp.log_mean_exp(v, block=BLOCK)
    assert got.value.item() == pytest.approx(1e4 - math.log(5.0), rel=1e-7)
    torch.testing.assert_close(got.grad, torch.tensor([1.0, 0, 0, 0, 0], device=device))
    clipped = logmeanexp.log_mean_exp(v, 5.0, block=BLOCK)
    torch.testing.assert_close(clipped.value.double(), _eager_lme(v, 5.0)[0], rtol=1e-6, atol=1e-6)
    assert not clipped.grad[[0, 1, 3, 4]].any()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        logmeanexp.log_mean_exp(torch.zeros(0), block=BLOCK)
