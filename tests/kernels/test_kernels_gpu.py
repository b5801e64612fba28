"""GPU-only checks: bf16 numerics, large sizes, determinism of the compiled kernels on CUDA.

Tolerances: the compiled kernels use the GPU's fast exp/log (ex2/lg2.approx, ~2 ulp plus
|x| * 2^-24 from the base change), so sums get rtol 2e-5 of the mass; the fp32 tree sum of 2^24
terms adds ~log2(2^24) ulp. bf16 gradients: two roundings of 2^-8 (rtol 2^-7).
"""

from __future__ import annotations

import pytest
import torch

from fdiv.divergences import registry
from fdiv.kernels import fdiv_loss, logmeanexp, reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DIVERGENCES = (*registry.registered(), registry.alpha(-1.0), registry.alpha(2.5))


def _pair(n_p: int, n_q: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(n_p + n_q)
    return tuple((2.0 * torch.randn(n, generator=gen, device="cuda")).to(dtype) for n in (n_p, n_q))


def _check(
    div: registry.FDivergence, v_p: torch.Tensor, v_q: torch.Tensor, grad_rtol: float
) -> None:
    p, q = v_p.clone().requires_grad_(), v_q.clone().requires_grad_()
    loss, term_p, term_q = fdiv_loss.critic_loss(p, q, div)
    loss.backward(torch.tensor(-1.5, device="cuda"))
    w_p, w_q = (v.double().requires_grad_() for v in (v_p, v_q))
    want = reference.critic_loss(w_p, w_q, div)
    want[0].backward(torch.tensor(-1.5, device="cuda", dtype=torch.float64))
    m_p = div.activation(v_p.double()).abs().mean().item()
    m_q = div.conjugate_activation(v_q.double()).abs().mean().item()
    for got, exp, mass in zip((loss, term_p, term_q), want, (m_p + m_q, m_p, m_q), strict=True):
        assert abs(got.item() - exp.item()) <= 2e-5 * mass
    for got, exp in ((p.grad, w_p.grad), (q.grad, w_q.grad)):
        assert got.dtype == v_p.dtype
        torch.testing.assert_close(
            got.double(), exp.to(v_p.dtype).double(), rtol=grad_rtol, atol=2.0**-120
        )


@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_dtypes_on_gpu(div: registry.FDivergence, dtype: torch.dtype) -> None:
    rtol = {torch.float32: 2e-5, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[dtype]
    _check(div, *_pair(5000, 3001, dtype), rtol)


@pytest.mark.parametrize("name", ["js", "kl", "gan"])
def test_large_sizes(name: str) -> None:
    _check(registry.get(name), *_pair(2**24, 2**24 - 7, torch.float32), 2e-5)


def test_bitwise_deterministic_on_gpu() -> None:
    v_p, v_q = _pair(2**22 + 3, 2**21, torch.float32)
    runs = []
    for _ in range(2):
        p, q = v_p.clone().requires_grad_(), v_q.clone().requires_grad_()
        out = fdiv_loss.critic_loss(p, q, registry.get("jeffreys"))
        out[0].backward()
        lme = logmeanexp.log_mean_exp(v_q, 5.0)
        runs.append((*out, p.grad, q.grad, lme.value, lme.grad))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_log_mean_exp_large() -> None:
    v = 3.0 * torch.randn(2**24, device="cuda")
    got = logmeanexp.log_mean_exp(v, 5.0)
    want = reference.log_mean_exp(v.double(), 5.0)
    torch.testing.assert_close(got.value.double(), want, rtol=1e-6, atol=1e-6)


def test_no_host_sync() -> None:
    """Forward and backward of every fused loss run without a host synchronisation."""
    import fdiv

    def run() -> None:
        p, q = (v.requires_grad_() for v in _pair(1000, 999, torch.float32))
        fdiv.critic_loss(p, q, "jeffreys", backend="triton").backward()
        fdiv.generator_loss(q, "gan", backend="triton").backward()
        fdiv.smile_bound(p, q, 2.0, backend="triton").backward()
        g = q.detach().view(-1, 9).requires_grad_()
        fdiv.gradient_penalty(g, "wgan-gp", backend="triton").backward()

    run()  # compiles the kernels outside the checked region
    torch.cuda.set_sync_debug_mode("error")
    try:
        run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
