"""Kernel tests: Triton's interpreter on the CPU, or the compiled kernels where CUDA is present.

Triton decides "interpreted or compiled" when a ``@triton.jit`` function is defined, that is when
fdiv's kernel modules are imported, not when ``triton`` itself is. Without CUDA, this conftest
imports (or, if something imported them compiled earlier, reloads) the kernel modules with
``TRITON_INTERPRET=1``, drops the dispatcher's cached kernels and restores the variable, so tests
in other directories keep ``backend="auto"`` -> ``"torch"`` on CPU tensors. The autouse fixture
sets the variable again for each test of this directory only (monkeypatch), so the dispatcher
accepts CPU tensors for ``backend="triton"`` here. Kernel tests pass ``backend="triton"`` or call
the kernel modules directly; they never rely on the variable leaking.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

from fdiv.kernels import dispatch

# common first: the others import its jit functions
KERNEL_MODULES = (
    "fdiv.kernels.common",
    "fdiv.kernels.fdiv_loss",
    "fdiv.kernels.grad_penalty",
    "fdiv.kernels.logmeanexp",
)
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _import_kernels_interpreted() -> None:
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        for name in KERNEL_MODULES:
            module = importlib.import_module(name)
            if not module.INTERPRETED:
                importlib.reload(module)
        dispatch._triton_kernels.cache_clear()  # it may hold the compiled modules' functions
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


if not CUDA:
    _import_kernels_interpreted()


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRITON_INTERPRET=1 for this test (CPU only): the dispatcher then takes CPU tensors."""
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def device() -> str:
    """Where the kernel tests run: CUDA when present (compiled kernels), else the interpreter."""
    return DEVICE
