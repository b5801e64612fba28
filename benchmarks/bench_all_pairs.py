"""All-pairs InfoNCE, forward + backward: the chunked/tiled ``all_pairs_bound`` against the dense
computation that materialises S = F G^T (pytest-benchmark; never asserted).

Run: ``pytest benchmarks/bench_all_pairs.py --benchmark-enable [--quick]``. B = 2^10 ... 2^16,
k = 64, fp32. ``--quick`` stops at B = 2^13. Implementations: ``chunked`` (the torch path),
``dense`` (autograd through logsumexp of the B x B matrix; on the CPU only up to B = 2^14, whose
S alone is 1 GiB and whose autograd peak is ~4 GiB), and on CUDA ``triton`` (the tiled kernels).
Each case is timed over ``rounds`` rounds (one from B = 2^13 on: a CPU round takes seconds).
Peak memory (``figures["peak_bytes"]``), measured once outside the timing: on the CPU the peak of
live tensor bytes from torch's allocator events (``fdiv.bench.memory.peak_cpu_bytes``, the
profiler's allocation records), on CUDA ``torch.cuda.max_memory_allocated`` above the inputs.
``test_peak_ratio`` records peak(chunked or triton) / peak(dense) at B = 2^14 (target <= 5%).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor

from fdiv.bench.memory import peak_cpu_bytes
from fdiv.kernels.all_pairs import all_pairs_bound

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
K = 64
DENSE_MAX = 2**15 if CUDA else 2**14
FAST = "triton" if CUDA else "chunked"
RATIO_AT = 2**14


def _size(n: int):
    marks = [pytest.mark.full] if n > 2**13 else []
    return pytest.param(n, id=f"B{n}", marks=marks)


SIZES = [_size(2**e) for e in range(10, 17)]


def _inputs(n: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(n)
    f = torch.randn(n, K, generator=gen, device=DEVICE) / K**0.25
    g = (0.8 * f + 0.6 * torch.randn(n, K, generator=gen, device=DEVICE) / K**0.25).detach()
    return f.requires_grad_(), g.requires_grad_()


def _dense_infonce(f: Tensor, g: Tensor) -> Tensor:
    s = f @ g.T
    return (s.diagonal() - torch.logsumexp(s, dim=1)).mean() + math.log(s.shape[0])


def _step(impl: str, f: Tensor, g: Tensor):
    def step() -> None:
        if impl == "dense":
            value = _dense_infonce(f, g)
        else:
            value = all_pairs_bound(f, g, "infonce", backend="torch" if impl == "chunked" else impl)
        torch.autograd.grad(value, (f, g))
        if CUDA:
            torch.cuda.synchronize()

    return step


@functools.cache
def _peak(impl: str, n: int) -> int:
    """Peak bytes of one fwd+bwd above what the inputs hold."""
    step = _step(impl, *_inputs(n))
    if not CUDA:
        return peak_cpu_bytes(step)
    step()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    return torch.cuda.max_memory_allocated() - base


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", [FAST, "dense"])
def test_all_pairs_fwd_bwd(benchmark, figures, impl: str, n: int) -> None:
    if impl == "dense" and n > DENSE_MAX:
        pytest.skip(f"dense B x B autograd beyond B = {DENSE_MAX} does not fit / takes too long")
    benchmark.group = f"all-pairs infonce B=2^{n.bit_length() - 1}"
    step = _step(impl, *_inputs(n))
    step()  # warm-up (Triton compilation on CUDA)
    rounds = 5 if n < 2**13 else 1
    benchmark.pedantic(step, rounds=rounds, iterations=1)
    figures(kernel="all_pairs infonce", backend=impl, n=n, k=K, peak_bytes=_peak(impl, n))


@pytest.mark.full
def test_peak_ratio(benchmark, figures) -> None:
    """peak(FAST) / peak(dense) at B = 2^14 (the measurements are cached across cases)."""
    fast, dense = _peak(FAST, RATIO_AT), _peak("dense", RATIO_AT)
    benchmark.group = "all-pairs peak memory ratio"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    figures(kernel="all_pairs infonce", backend=FAST, n=RATIO_AT, peak_ratio=fast / dense,
            peak_bytes=fast, dense_peak_bytes=dense)  # fmt: skip
