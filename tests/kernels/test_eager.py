"""The eager (plain autograd) baselines against the torch reference losses.

Both sides evaluate the same closed forms in the same compute dtype; they differ in summation
order (torch's mean vs the reference's one-pass sums) and, for the gradients, in autograd's
chain rule vs the closed-form derivative. In fp64 that is a few ulp of the result: rtol 1e-12.
fp16 inputs are upcast to fp32 on both sides: fp32 sums of <= 50 terms, rtol 1e-6.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from fdiv.divergences import registry
from fdiv.divergences.registry import FDivergence
from fdiv.kernels import eager, reference

DIVERGENCES = (*registry.registered(), registry.alpha(-1.0), registry.alpha(2.5))
TOL = {torch.float64: {"rtol": 1e-12, "atol": 1e-14}, torch.float16: {"rtol": 1e-6, "atol": 1e-7}}


def _values(n: int, dtype: torch.dtype, seed: int, *shape: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (1.5 * torch.randn(n, *shape, generator=gen, dtype=torch.float64)).to(dtype)


def _value_and_grad(fn, x: Tensor, grad_output: float) -> tuple[Tensor, Tensor]:
    leaf = x.detach().clone().requires_grad_()
    value = fn(leaf)
    go = torch.tensor(grad_output, dtype=value.dtype)
    return value.detach(), torch.autograd.grad(value, leaf, go)[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=["fp64", "fp16"])
@pytest.mark.parametrize("mode", ["nonsaturating", "minimax"])
@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.name)
def test_generator_loss_equals_reference(div: FDivergence, mode: str, dtype: torch.dtype) -> None:
    v_q = _values(37, dtype, seed=3)
    got = _value_and_grad(lambda v: eager.eager_generator_loss(v, div, mode), v_q, -1.5)
    want = _value_and_grad(lambda v: reference.generator_loss(v, div, mode), v_q, -1.5)
    assert got[0].dtype == want[0].dtype == reference.compute_dtype(dtype)
    assert got[1].dtype == dtype
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=["fp64", "fp16"])
@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
@pytest.mark.parametrize("shape", [(6, 3), (5, 2, 3), (4,)], ids=["6x3", "5x2x3", "4"])
def test_gradient_penalty_equals_reference(
    shape: tuple[int, ...], kind: str, dtype: torch.dtype
) -> None:
    g = _values(shape[0], dtype, 5, *shape[1:])
    g[1] = 0.0  # the WGAN-GP subgradient at g = 0 is 0 on both sides
    got = _value_and_grad(lambda x: eager.eager_gradient_penalty(x, kind, 3.0), g, 0.7)
    # the reference takes (B, D, ...); (B,) is one value per row, as in the public API
    as_rows = (lambda x: x.unsqueeze(1)) if g.dim() == 1 else (lambda x: x)
    want = _value_and_grad(lambda x: reference.gradient_penalty(as_rows(x), kind, 3.0), g, 0.7)
    assert got[0].dtype == reference.compute_dtype(dtype) and got[1].dtype == dtype
    assert not got[1][1].any()
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_gradient_penalty_closed_form() -> None:
    """Row norms 5 and 0: wgan-gp = w * ((5 - 1)^2 + 1) / 2, r1 = w / 2 * 25 / 2."""
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    assert eager.eager_gradient_penalty(g, "wgan-gp", 2.0).item() == pytest.approx(17.0, rel=1e-15)
    assert eager.eager_gradient_penalty(g, "r1", 2.0).item() == pytest.approx(12.5, rel=1e-15)


def test_defaults_and_bad_choices() -> None:
    v = _values(9, torch.float64, seed=1)
    torch.testing.assert_close(
        eager.eager_generator_loss(v, "gan"),
        reference.generator_loss(v, registry.get("gan"), "nonsaturating"),
    )
    g = v.view(3, 3)
    torch.testing.assert_close(
        eager.eager_gradient_penalty(g), reference.gradient_penalty(g, "wgan-gp", 10.0)
    )
    with pytest.raises(ValueError, match="mode 'saturating' is unknown; known: nonsaturating"):
        eager.eager_generator_loss(v, "gan", "saturating")
    with pytest.raises(ValueError, match="kind 'l2' is unknown; known: wgan-gp, r1"):
        eager.eager_gradient_penalty(g, "l2")
