"""The shared configuration of the benchmark suites (pytest-benchmark).

- ``--quick``: the small configuration (the whole quick run in under 3 minutes on a 2-core CPU).
  Cases marked ``full`` (``pytest.param(..., marks=pytest.mark.full)``) are deselected; the
  ``quick`` fixture (bool) lets a case shrink its own work (samples, steps).
- Every benchmark's ``extra_info`` gets ``suite`` (the module name without ``bench_``) and
  ``quick``; the ``figures`` fixture records a suite's figures into ``extra_info["figures"]``
  with the keys documented in :mod:`fdiv.bench.results` (tensors and arrays become lists).
- ``FDIV_BENCH_THREADS=n`` sets torch's thread count for every suite (on a shared,
  oversubscribed CPU one thread avoids OpenMP spin-waiting); results record it.
- Machine and library info (CPU model, cores, GPU, torch/triton versions, git commit) goes into
  every results file's ``machine_info["fdiv"]``.
- Calibration: the kernel suite is calibrated by pytest-benchmark (``CALIBRATION``, full or
  quick); its explicit warm-up steps (torch.compile builds there) precede the timed rounds. The
  accuracy and GAN suites time one round per case (``benchmark.pedantic(..., rounds=1)``): a
  training run is the measurement, and its figures are what matters.

The kernel helpers (device choice, the implementations of the critic loss, synchronised fwd+bwd
steps) reach the benchmark modules through the ``kb`` fixture (benchmarks/ is no package).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor

from fdiv.bench.machine import describe
from fdiv.bench.results import jsonable, suite_of
from fdiv.divergences.registry import get
from fdiv.kernels import reference
from fdiv.kernels.eager import make_eager_critic_loss

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
LossFn = Callable[[Tensor, Tensor], Tensor]
CALIBRATION: dict[str, dict[bool, dict[str, Any]]] = {  # suite -> quick -> benchmark marker
    "kernels": {
        False: {"max_time": 1.0, "min_rounds": 10},
        True: {"max_time": 0.25, "min_rounds": 5},
    },
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick", action="store_true", help="fdiv benchmarks: the small configuration"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full: a benchmark case left out by --quick")
    if os.environ.get("FDIV_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["FDIV_BENCH_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    quick = bool(config.getoption("quick"))
    if quick:
        dropped = [item for item in items if item.get_closest_marker("full")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if not item.get_closest_marker("full")]
    for item in items:
        settings = CALIBRATION.get(suite_of(item.nodeid), {}).get(quick)
        if settings:
            item.add_marker(pytest.mark.benchmark(**settings))


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["fdiv"] = describe(Path(config.rootpath))


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    """True under --quick: a case should do its small version."""
    return bool(request.config.getoption("quick"))


@pytest.fixture(autouse=True)
def _suite(request: pytest.FixtureRequest, quick: bool) -> None:
    """Tag each benchmark with its suite and mode."""
    if "benchmark" in request.fixturenames:
        benchmark = request.getfixturevalue("benchmark")
        benchmark.extra_info.update(suite=suite_of(request.node.nodeid), quick=quick)


@pytest.fixture
def figures(benchmark: Any) -> Callable[..., None]:
    """``figures(key=value, ...)`` adds to this benchmark's ``extra_info["figures"]``."""

    def record(**values: Any) -> None:
        benchmark.extra_info.setdefault("figures", {}).update(jsonable(values))

    return record


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


@pytest.fixture
def kb() -> SimpleNamespace:
    """The kernel helpers of this module, for the benchmark functions."""
    return SimpleNamespace(device=DEVICE, sync=sync, make_loss=make_loss, fwd_bwd_step=fwd_bwd_step)
