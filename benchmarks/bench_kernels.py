"""Forward + backward of the critic loss: fused Triton vs torch reference vs eager autograd vs
torch.compile of the eager composition (pytest-benchmark; never asserted).

Run: pytest benchmarks/bench_kernels.py --benchmark-enable --benchmark-json=out.json
``bytes_moved`` is the fused kernel's traffic: N values per side read and N gradients written in
the forward pass, then read and written once more by backward's grad_output scaling
(8 * N * itemsize in all); every implementation reports its bandwidth against that same count.
On CUDA, two baselines: a device-to-device copy of the same bytes and an empty Triton launch.
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
SIZES = (2**12, 2**16, 2**20, 2**24)
IMPLS = ("triton", "reference", "eager", "compile") if CUDA else ("reference", "eager", "compile")
NAMES = ("js", "kl", "gan")
WARMUP = 3


def _inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(n)
    return tuple(torch.randn(n, generator=gen, device=DEVICE).requires_grad_() for _ in range(2))


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n.bit_length() - 1}")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", NAMES)
def test_critic_loss_fwd_bwd(benchmark, kb, name: str, impl: str, n: int) -> None:
    if not CUDA and n > 2**20:
        pytest.skip("2^24 per side is too slow for the CPU benchmark")
    benchmark.group = f"critic {name} N=2^{n.bit_length() - 1}"
    v_p, v_q = _inputs(n)
    step = kb.fwd_bwd_step(kb.make_loss(impl, name), v_p, v_q)
    for _ in range(WARMUP):  # torch.compile builds here, outside the timed region
        step()
    benchmark(step)
    kb.record_bandwidth(benchmark, 8 * n * v_p.element_size())


@pytest.mark.skipif(not CUDA, reason="the copy and launch baselines are CUDA targets")
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n.bit_length() - 1}")
def test_copy_baseline(benchmark, kb, n: int) -> None:
    """dst.copy_(src) of 4 N floats: it moves the same 8 N * 4 bytes as the fused fwd+bwd."""
    benchmark.group = f"baseline copy N=2^{n.bit_length() - 1}"
    src = torch.randn(4 * n, device=DEVICE)
    dst = torch.empty_like(src)

    def step() -> None:
        dst.copy_(src)
        kb.sync()

    step()
    benchmark(step)
    kb.record_bandwidth(benchmark, 2 * src.numel() * src.element_size())


@pytest.mark.skipif(not CUDA, reason="the copy and launch baselines are CUDA targets")
def test_empty_launch_baseline(benchmark, kb) -> None:
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
