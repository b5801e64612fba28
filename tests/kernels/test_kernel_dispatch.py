"""Backend choice and the public API's Triton path (fdiv.critic_loss & co. with backend=...)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import fdiv
from fdiv.kernels import dispatch

CPU = torch.zeros(3)


def test_auto_follows_the_interpreter_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.resolve_backend("auto", CPU) == "triton"
    assert dispatch.resolve_backend("auto", CPU.double()) == "torch"
    assert dispatch.resolve_backend("torch", CPU) == "torch"
    monkeypatch.delenv("TRITON_INTERPRET")
    assert dispatch.resolve_backend("auto", CPU) == "torch"


@pytest.mark.parametrize(
    ("setup", "tensor", "message"),
    [
        ("no-interpreter", CPU, "TRITON_INTERPRET is not set"),
        ("interpreter", CPU.double(), "float64"),
        ("no-triton", CPU, "triton cannot be imported"),
    ],
)
def test_triton_where_it_cannot_run(
    setup: str, tensor: torch.Tensor, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if setup == "no-interpreter":
        monkeypatch.delenv("TRITON_INTERPRET")
    if setup == "no-triton":

        def missing() -> dispatch.Implementation:
            raise ImportError("No module named 'triton'")

        monkeypatch.setattr(dispatch, "_triton_implementation", missing)
        assert dispatch.resolve_backend("auto", tensor) == "torch"
    with pytest.raises(ValueError, match=message):
        fdiv.critic_loss(tensor, tensor, "js", backend="triton")


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="known: auto, torch, triton"):
        fdiv.critic_loss(CPU, CPU, backend="cuda")


def test_import_without_triton() -> None:
    """``import fdiv`` neither needs nor imports triton; asking for it then fails clearly."""
    code = (
        "import sys\n"
        "import fdiv, torch\n"
        "assert 'triton' not in sys.modules\n"
        "sys.modules['triton'] = None\n"
        "v = torch.randn(4)\n"
        "print(float(fdiv.critic_loss(v, v)))\n"
        "try:\n"
        "    fdiv.critic_loss(v, v, backend='triton')\n"
        "except ValueError as err:\n"
        "    print('ValueError:', err)\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "ValueError: backend 'triton' cannot run here: triton cannot be imported" in out.stdout


def _pair(device: str, n_p: int = 70, n_q: int = 33) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return (
        torch.randn(n_p, 1, generator=gen).to(device),
        torch.randn(n_q, generator=gen).to(device),
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda p, q, b: fdiv.critic_loss(p, q, "jeffreys", backend=b),
        lambda p, q, b: fdiv.critic_loss(p, q, "alpha(0.5)", "sum", backend=b),
        lambda p, q, b: fdiv.variational_bound(p, q, "tv", backend=b),
        lambda p, q, b: fdiv.generator_loss(q, "gan", "nonsaturating", backend=b),
        lambda p, q, b: fdiv.generator_loss(q, "hellinger", "minimax", backend=b),
        lambda p, q, b: fdiv.dv_bound(p, q, backend=b),
        lambda p, q, b: fdiv.smile_bound(p, q, 1.0, backend=b),
        lambda p, q, b: fdiv.FDivergenceLoss("kl", backend=b)(p, q),
    ],
    ids=["critic", "alpha-sum", "bound", "gen-ns", "gen-mm", "dv", "smile", "module"],
)
def test_public_api_triton_matches_torch(call, device: str) -> None:
    results = {}
    for backend in ("triton", "torch"):
        p, q = (x.requires_grad_() for x in _pair(device))
        value = call(p, q, backend)
        value.backward()
        results[backend] = (value.detach(), p.grad, q.grad)
    for a, b in zip(results["triton"], results["torch"], strict=True):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_public_gradient_penalty_triton_matches_torch(device: str) -> None:
    g = torch.randn(6, 4, device=device)
    for kind in ("wgan-gp", "r1"):
        a = fdiv.gradient_penalty(g, kind, 3.0, backend="triton")
        b = fdiv.gradient_penalty(g, kind, 3.0, backend="torch")
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_return_terms_on_both_backends(reduction: str, dtype: torch.dtype, device: str) -> None:
    """kl's terms E_P[v] and E_Q[exp(v - 1)] (sums for "sum") against the fp64 closed form:
    fp32 sums of <= 70 terms, each within a few ulp: 1e-6 of the mass sum |terms|."""
    p, q = (x.to(dtype) for x in _pair(device))
    reduce = torch.mean if reduction == "mean" else torch.sum
    want = (p.double().squeeze(1), torch.exp(q.double() - 1.0))
    for backend in ("triton", "torch"):
        loss, term_p, term_q = fdiv.critic_loss(
            p, q, "kl", reduction, backend=backend, return_terms=True
        )
        assert term_p.dtype == term_q.dtype == torch.float32 and not term_q.requires_grad
        torch.testing.assert_close(loss, term_q - term_p, rtol=0, atol=0)
        for got, terms in zip((term_p, term_q), want, strict=True):
            error = abs(got.item() - reduce(terms).item())
            assert error <= 1e-6 * reduce(terms.abs()).item(), (backend, got, reduce(terms))


def test_triton_kernels_are_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Later calls reuse the cached kernel modules (no import machinery per call) and still
    check that TRITON_INTERPRET matches the mode they were built in."""
    first = dispatch.implementation("triton", CPU)
    hits = dispatch._triton_kernels.cache_info().hits
    assert dispatch.implementation("triton", CPU) is first
    assert dispatch._triton_kernels.cache_info().hits > hits
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="imported interpreted, but TRITON_INTERPRET"):
            dispatch._triton_implementation()
