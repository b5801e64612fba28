"""Gradient penalties (WGAN-GP, R1) against autograd of the eager fp64 formula, and a real
critic update through double backprop.

Tolerances: the penalty is an fp32 sum of B per-row terms, each from an fp32 sum of D squares:
rtol 1e-5. d penalty / dG is g times an fp32 row coefficient: rtol 1e-5 in fp32. For WGAN-GP the
coefficient (||g|| - 1) / ||g|| cancels near ||g|| = 1, where fp32 leaves it an absolute error of
a few 2^-24: atol = 2^-20 * 2 weight / B * max|g| * |grad_output|. fp16 output rounding (twice,
with grad_output != 1): rtol 2^-10, plus atol 2^-24 * (1 + |grad_output|) for subnormals.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import fdiv
from fdiv.kernels import grad_penalty

BLOCK = 64
GRAD_OUTPUT = 0.7
SHAPES = ((1, 3), (5, 2), (130, 2), (7, 3, 4, 5), (3, 200))
GRAD_TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-30},
    torch.float16: {"rtol": 2.0**-10, "atol": 2.0**-24 * (1.0 + GRAD_OUTPUT)},
}


def _eager_penalty(g: Tensor, kind: str, weight: float) -> Tensor:
    norm = torch.linalg.vector_norm(g.flatten(1), dim=1)
    if kind == "r1":
        return 0.5 * weight * (norm**2).mean()
    return weight * ((norm - 1.0) ** 2).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_eager_autograd(
    shape: tuple[int, ...], kind: str, dtype: torch.dtype, device: str
) -> None:
    gen = torch.Generator().manual_seed(len(shape) + shape[0])
    g = (0.6 * torch.randn(shape, generator=gen)).to(dtype)
    g[0] = 0.0  # the WGAN-GP subgradient at g = 0 is 0, as in the reference
    g = g.to(device).requires_grad_()
    penalty = grad_penalty.gradient_penalty(g, kind, 10.0, block=BLOCK)
    (d_g,) = torch.autograd.grad(penalty, g, torch.tensor(GRAD_OUTPUT, device=device))
    g64 = g.detach().double().requires_grad_()
    want = _eager_penalty(g64, kind, 10.0)
    (want_d,) = torch.autograd.grad(want, g64, torch.tensor(GRAD_OUTPUT, dtype=torch.float64))
    assert penalty.dtype == torch.float32 and d_g.dtype == dtype and d_g.shape == g.shape
    torch.testing.assert_close(penalty.double(), want.detach(), rtol=1e-5, atol=1e-7)
    tol = dict(GRAD_TOL[dtype])
    tol["atol"] += 2.0**-20 * 20.0 / shape[0] * g.detach().abs().max().item() * GRAD_OUTPUT
    torch.testing.assert_close(d_g.double(), want_d.to(dtype).double(), **tol)
    assert not d_g[0].any()


def _critic_step(backend: str, device: str) -> list[Tensor]:
    """One WGAN-GP critic update of a tiny MLP; returns the updated parameters."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).to(device)
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)
    real, fake = torch.randn(16, 2, device=device), torch.randn(16, 2, device=device) + 1.0
    t = torch.rand(16, 1, device=device)
    x = (t * real + (1 - t) * fake).requires_grad_()
    (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    loss = fdiv.critic_loss(critic(real), critic(fake), "kl", backend=backend)
    loss = loss + fdiv.gradient_penalty(grads, "wgan-gp", 10.0, backend=backend)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return [p.detach().clone() for p in critic.parameters()]


def test_double_backprop_critic_update(device: str) -> None:
    """The penalty's gradient flows into the critic's parameters through autograd."""
    fused, ref = _critic_step("triton", device), _critic_step("torch", device)
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_eager_double_backprop_matches(device: str) -> None:
    """The penalty's parameter gradients equal autograd through the eager formula."""
    torch.manual_seed(1)
    critic = nn.Sequential(nn.Linear(3, 5), nn.Softplus(), nn.Linear(5, 1)).to(device)
    x = torch.randn(9, 3, device=device, requires_grad=True)
    (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    params = list(critic.parameters())[:3]  # the last bias does not enter the input gradient
    for kind in ("wgan-gp", "r1"):
        penalty = grad_penalty.gradient_penalty(grads, kind, 2.0, block=BLOCK)
        fused = torch.autograd.grad(penalty, params, retain_graph=True)
        eager = torch.autograd.grad(_eager_penalty(grads, kind, 2.0), params, retain_graph=True)
        for a, b in zip(fused, eager, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(B, D"):
        grad_penalty.gradient_penalty(torch.zeros(3), "r1", 1.0, block=BLOCK)
