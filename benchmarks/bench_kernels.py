"""Forward + backward of the critic loss: fused Triton vs torch reference vs eager autograd vs
torch.compile of the eager composition (pytest-benchmark; never asserted).

Run: ``fdiv bench --suite kernels [--quick]`` (or ``pytest benchmarks/bench_kernels.py
--benchmark-enable [--quick]``). ``--quick``: the js loss only, at every size.
``bytes`` is the fused kernel's traffic: N values per side read and N gradients written in the
forward pass, then read and written once more by backward's grad_output scaling
(8 * N * itemsize in all); the report rates every implementation against that same count.
On CUDA, two baselines: a device-to-device copy of the same bytes and an empty Triton launch.
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# 2^24 per side is too slow for the CPU benchmark; on a GPU every size is quick
SIZES = [pytest.param(n, id=f"n{n.bit_length() - 1}") for n in (2**12, 2**16, 2**20, 2**24)]
SIZES = SIZES if CUDA else SIZES[:3]
IMPLS = ("triton", "reference", "eager", "compile") if CUDA else ("reference", "eager", "compile")
NAMES = ["js", *(pytest.param(name, marks=pytest.mark.full) for name in ("kl", "gan"))]
WARMUP = 3


def _inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(n)
    return tuple(torch.randn(n, generator=gen, device=DEVICE).requires_grad_() for _ in range(2))


def _size(n: int) -> str:
    return f"N=2^{n.bit_length() - 1}"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", NAMES)
def test_critic_loss_fwd_bwd(benchmark, kb, figures, name: str, impl: str, n: int) -> None:
    benchmark.group = f"critic {name} {_size(n)}"
    v_p, v_q = _inputs(n)
    step = kb.fwd_bwd_step(kb.make_loss(impl, name), v_p, v_q)
    for _ in range(WARMUP):  # torch.compile builds here, outside the timed region
        step()
    benchmark(step)
    figures(kernel=f"critic_loss {name}", backend=impl, n=n, bytes=8 * n * v_p.element_size())


@pytest.mark.skipif(not CUDA, reason="the copy and launch baselines are CUDA targets")
@pytest.mark.parametrize("n", SIZES)
def test_copy_baseline(benchmark, kb, figures, n: int) -> None:
    """dst.copy_(src) of 4 N floats: it moves the same 8 N * 4 bytes as the fused fwd+bwd."""
    benchmark.group = f"baseline copy {_size(n)}"
    src = torch.randn(4 * n, device=DEVICE)
    dst = torch.empty_like(src)

    def step() -> None:
        dst.copy_(src)
        kb.sync()

    step()
    benchmark(step)
    figures(kernel="copy", backend="copy", n=n, bytes=2 * src.numel() * src.element_size())


@pytest.mark.skipif(not CUDA, reason="the copy and launch baselines are CUDA targets")
def test_empty_launch_baseline(benchmark, kb, figures) -> None:
    """One launch of an empty Triton kernel: the floor for small N."""
    import triton

    @triton.jit
    def _empty(x_ptr):
        pass

    x = torch.empty(1, device=DEVICE)

    def step() -> None:
        _empty[(1,)](x)
        kb.sync()

    step()
    benchmark.group = "baseline empty launch"
    benchmark(step)
    figures(kernel="launch", backend="triton", n=1, bytes=0)
