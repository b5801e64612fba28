"""The fused f-divergence losses against the fp64 torch reference (the oracle).

Tolerances (two-sided):
- Sums (loss, E_P[g], E_Q[f*(g)]): |kernel - fp64 reference| <= 1e-5 * mass, with mass the
  reduction-scaled sum of |terms| (so cancellation between the two sides does not hide errors).
  Each fp32 term is within ~4 ulp plus |argument| * 2^-24 relative (exp(a v) at |a v| <= 20:
  ~1e-6); the fp32 tree sum over <= 200 terms adds ~log2(n) ulp of the mass: ~2e-6 in all.
- fp32 gradients: elementwise rtol 1e-5 (same per-term bound, one more rounding for grad_output).
- fp16 gradients (compared with the fp64 gradient rounded to fp16, which is inf above 65504):
  the fp32 gradient is rounded to fp16 in the forward pass and the product with
  grad_output is rounded again in backward: rtol 2^-10 (two roundings of 2^-11), and atol
  2^-24 * (1 + |grad_output|) for results in fp16's subnormal range.
fp16 inputs are first rounded to fp16; the reference sees the same rounded values in fp64.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from fdiv.divergences import registry
from fdiv.divergences.registry import FDivergence
from fdiv.kernels import fdiv_loss, reference
from fdiv.kernels.eager import eager_critic_loss

# exp overflow in the interpreter (numpy) warns; +-inf there is the documented result
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

BLOCK = 64
SIZES = (1, 7, BLOCK - 1, BLOCK + 1, 3 * BLOCK + 5)
# every size meets a different size on the other side: (1, 7), (7, 63), ..., (197, 1)
PAIRS = tuple(zip(SIZES, SIZES[1:] + SIZES[:1], strict=True))
DIVERGENCES = (*registry.registered(), registry.alpha(-1.0), registry.alpha(2.5))
MODES = ("critic", "minimax", "nonsaturating")
GRAD_OUTPUT = -2.5
SUM_RTOL = 1e-5
GRAD_TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-30},
    torch.float16: {"rtol": 2.0**-10, "atol": 2.0**-24 * (1.0 + abs(GRAD_OUTPUT))},
}

LossFn = Callable[..., tuple[Tensor, ...]]


def _losses(impl: object, div: FDivergence, mode: str, **kw: object) -> LossFn:
    """(loss, *means) of ``impl`` (fdiv_loss or reference) as a function of the inputs."""
    if mode == "critic":
        return lambda v_p, v_q: impl.critic_loss(v_p, v_q, div, "mean", **kw)
    return lambda v_q: (impl.generator_loss(v_q, div, mode, "mean", **kw),)


def _run(fn: LossFn, inputs: tuple[Tensor, ...], grad_output: float) -> tuple[Tensor, ...]:
    """fn's outputs (detached) and the gradients of its first output times ``grad_output``."""
    leaves = tuple(x.detach().clone().requires_grad_() for x in inputs)
    outs = fn(*leaves)
    go = torch.tensor(grad_output, dtype=outs[0].dtype, device=outs[0].device)
    grads = torch.autograd.grad(outs[0], leaves, grad_outputs=go)
    return (*(o.detach() for o in outs), *grads)


def _mass(div: FDivergence, mode: str, inputs: tuple[Tensor, ...]) -> list[float]:
    """Per output (loss, means): the mean-scaled sum of |terms| in fp64."""
    if mode == "critic":
        v_p, v_q = (x.double() for x in inputs)
        m_p = div.activation(v_p).abs().mean().item()
        m_q = div.conjugate_activation(v_q).abs().mean().item()
        return [m_p + m_q, m_p, m_q]
    fn = div.conjugate_activation if mode == "minimax" else div.activation
    return [fn(inputs[0].double()).abs().mean().item()]


def _inputs(sizes: tuple[int, ...], dtype: torch.dtype, device: str, seed: int) -> tuple[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple((2.0 * torch.randn(n, generator=gen)).to(dtype).to(device) for n in sizes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("sizes", PAIRS, ids=[f"{p}-{q}" for p, q in PAIRS])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.name)
def test_matches_fp64_reference(
    div: FDivergence, mode: str, sizes: tuple[int, int], dtype: torch.dtype, device: str
) -> None:
    inputs = _inputs(sizes if mode == "critic" else sizes[1:], dtype, device, seed=sum(sizes))
    got = _run(_losses(fdiv_loss, div, mode, block=BLOCK), inputs, GRAD_OUTPUT)
    want = _run(_losses(reference, div, mode), tuple(x.double() for x in inputs), GRAD_OUTPUT)
    n_out = len(got) - len(inputs)
    for value, expected, mass in zip(
        got[:n_out], want[:n_out], _mass(div, mode, inputs), strict=True
    ):
        assert value.dtype == torch.float32 and value.dim() == 0
        assert abs(value.item() - expected.item()) <= SUM_RTOL * mass, (value, expected)
    for grad, expected in zip(got[n_out:], want[n_out:], strict=True):
        assert grad.dtype == dtype and grad.shape == expected.shape
        # rounded to the output dtype, so fp16 overflow (> 65504) is expected as inf
        expected = expected.to(dtype).double()
        torch.testing.assert_close(grad.double(), expected, **GRAD_TOL[dtype])


EXTREMES = (80.0, -80.0, 1e4, -1e4, 0.5, -3.0, 88.0, -120.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("div", DIVERGENCES, ids=lambda d: d.name)
def test_extreme_logits(div: FDivergence, mode: str, dtype: torch.dtype, device: str) -> None:
    """No NaN from finite input; +inf exactly where the reference overflows in fp32 (documented
    in ``fdiv_loss``); finite values as close as the fp32 reference allows."""
    v = torch.tensor(EXTREMES).to(dtype).to(device)
    inputs = (v, v.flip(0)) if mode == "critic" else (v,)
    got = _run(_losses(fdiv_loss, div, mode, block=BLOCK), inputs, 1.0)
    want = _run(_losses(reference, div, mode), inputs, 1.0)
    for value, expected in zip(got, want, strict=True):
        assert not value.isnan().any(), (value, expected)
        assert torch.equal(value.isinf(), expected.isinf()), (value, expected)
        assert torch.equal(value.isposinf(), expected.isposinf()), (value, expected)
        finite = value.isfinite()
        torch.testing.assert_close(
            value[finite].double(), expected[finite].double(), rtol=2.0**-10, atol=1e-6
        )


@pytest.mark.parametrize("div", [registry.get("js"), registry.get("jeffreys"), registry.alpha(2.5)])
def test_bitwise_deterministic(div: FDivergence, device: str) -> None:
    inputs = _inputs((3 * BLOCK + 5, 2 * BLOCK - 3), torch.float32, device, seed=7)
    first = _run(_losses(fdiv_loss, div, "critic", block=BLOCK), inputs, 1.0)
    second = _run(_losses(fdiv_loss, div, "critic", block=BLOCK), inputs, 1.0)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reduction_scales(reduction: str, device: str) -> None:
    div = registry.get("gan")
    v_p, v_q = _inputs((BLOCK + 1, 7), torch.float32, device, seed=3)
    got = fdiv_loss.critic_loss(v_p, v_q, div, reduction, block=BLOCK)
    want = reference.critic_loss(v_p.double(), v_q.double(), div, reduction)
    for value, expected in zip(got, want, strict=True):
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0.0)
    gen = fdiv_loss.generator_loss(v_q, div, "minimax", reduction, block=BLOCK)
    torch.testing.assert_close(
        gen.double(),
        reference.generator_loss(v_q.double(), div, "minimax", reduction),
        rtol=1e-6,
        atol=0.0,
    )


@pytest.mark.parametrize("name", ["js", "kl", "gan"])
def test_eager_composition_agrees(name: str, device: str) -> None:
    """The benchmarks' eager baseline computes the same loss and gradients as the kernel."""
    div = registry.get(name)
    inputs = _inputs((BLOCK + 1, 2 * BLOCK), torch.float32, device, seed=11)
    got = _run(lambda p, q: fdiv_loss.critic_loss(p, q, div, block=BLOCK), inputs, 1.0)
    want = _run(lambda p, q: (eager_critic_loss(p, q, div),), inputs, 1.0)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[3:], want[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def test_bad_block() -> None:
    v = torch.zeros(3)
    with pytest.raises(ValueError, match="power of two"):
        fdiv_loss.critic_loss(v, v, registry.get("js"), block=100)


def test_family_codes_follow_the_registry() -> None:
    """One code per registry family, in table order, alpha last; ``_term`` branches on each by
    its constant (the family name in capitals), alpha taking the final ``else``."""
    families = [*dict.fromkeys(d.family for d in registry.registered()), "alpha"]
    assert list(fdiv_loss.FAMILIES) == families
    assert list(fdiv_loss.FAMILIES.values()) == list(range(len(families)))
    source = inspect.getsource(fdiv_loss)  # the module: jit functions are not inspectable
    for family, code in fdiv_loss.FAMILIES.items():
        assert getattr(fdiv_loss, family.upper()).value == code
        assert (f"FAMILY == {family.upper()}:" in source) == (family != "alpha"), family
