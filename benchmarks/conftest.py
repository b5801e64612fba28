"""Shared helpers for the kernel benchmarks: device choice, the four implementations of the
critic loss (fused Triton, torch reference, eager autograd composition, torch.compile of the
eager composition), synchronised fwd+bwd steps and the bandwidth record; the benchmark modules
get them through the ``kb`` fixture (benchmarks/ is no package, so no imports from here)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch import Tensor

from fdiv.divergences.registry import get
from fdiv.kernels import reference
from fdiv.kernels.eager import make_eager_critic_loss

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
LossFn = Callable[[Tensor, Tensor], Tensor]


def sync() -> None:
    """Wait for queued GPU work, so that wall-clock timing covers it (no-op on the CPU)."""
    if CUDA:
        torch.cuda.synchronize()


def make_loss(impl: str, name: str) -> LossFn:
    """The critic loss of divergence ``name`` by implementation ``impl``."""
    div = get(name)
    if impl == "triton":
        from fdiv.kernels import fdiv_loss

        return lambda v_p, v_q: fdiv_loss.critic_loss(v_p, v_q, div)[0]
    if impl == "reference":
        return lambda v_p, v_q: reference.critic_loss(v_p, v_q, div)[0]
    if impl == "eager":
        return make_eager_critic_loss(div)
    if impl == "compile":
        # automatic dynamic shapes: one static and one dynamic build per divergence, not per size
        return torch.compile(make_eager_critic_loss(div))
    raise ValueError(f"implementation {impl!r} is unknown")


def fwd_bwd_step(loss_fn: LossFn, v_p: Tensor, v_q: Tensor) -> Callable[[], None]:
    """A callable running loss + gradients w.r.t. both inputs, synchronised at the end."""

    def step() -> None:
        torch.autograd.grad(loss_fn(v_p, v_q), (v_p, v_q))
        sync()

    return step


def record_bandwidth(benchmark: BenchmarkFixture, nbytes: int) -> None:
    """Store bytes moved and, when timed, the effective bandwidth (GB/s at the median)."""
    benchmark.extra_info["bytes_moved"] = nbytes
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["effective_GBps"] = nbytes / stats.stats.median / 1e9


@pytest.fixture
def kb() -> SimpleNamespace:
    """The helpers of this module, for the benchmark functions."""
    return SimpleNamespace(
        device=DEVICE,
        sync=sync,
        make_loss=make_loss,
        fwd_bwd_step=fwd_bwd_step,
        record_bandwidth=record_bandwidth,
    )
