"""Backend choice for the losses: the fused Triton kernels or the pure-torch reference.

``"auto"`` picks ``"triton"`` for CUDA tensors and, when ``TRITON_INTERPRET=1`` is set, for CPU
tensors (Triton's interpreter: slow, for tests), otherwise ``"torch"``. Triton is imported only
when a Triton backend is considered, so ``import fdiv`` works without it. The interpreter is
chosen by Triton when the kernel modules are imported (once, on the first Triton-backend call;
the result is cached), so ``TRITON_INTERPRET=1`` must be set before that call for CPU tensors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from fdiv.kernels import reference

Backend = Literal["auto", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
TRITON_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)

__all__ = ["BACKENDS", "TRITON_DTYPES", "Implementation", "implementation", "resolve_backend"]


@dataclass(frozen=True)
class Implementation:
    """The four loss entry points of one backend, with ``reference``'s signatures."""

    critic_loss: Callable[..., tuple[Tensor, Tensor, Tensor]]
    generator_loss: Callable[..., Tensor]
    dv_bound: Callable[..., Tensor]
    gradient_penalty: Callable[..., Tensor]


_TORCH = Implementation(
    reference.critic_loss, reference.generator_loss, reference.dv_bound, reference.gradient_penalty
)


def _interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def _triton_kernels() -> tuple[Implementation, bool]:
    """The kernel modules' entry points and whether Triton built them interpreted (imported once;
    raises ImportError without triton, and then is tried again on the next call)."""
    from fdiv.kernels import fdiv_loss, grad_penalty, logmeanexp

    modes = {fdiv_loss.INTERPRETED, grad_penalty.INTERPRETED, logmeanexp.INTERPRETED}
    if len(modes) != 1:
        raise RuntimeError(
            "fdiv's Triton kernel modules were imported some interpreted, some compiled: set "
            "TRITON_INTERPRET=1 (or leave it unset) before importing them, or restart the process"
        )
    impl = Implementation(
        fdiv_loss.critic_loss,
        fdiv_loss.generator_loss,
        logmeanexp.dv_bound,
        grad_penalty.gradient_penalty,
    )
    return impl, modes.pop()


def _triton_implementation() -> Implementation:
    """The Triton entry points, if they were built in the mode TRITON_INTERPRET asks for now."""
    impl, interpreted = _triton_kernels()
    if interpreted != _interpreter_requested():
        mode = "interpreted" if interpreted else "compiled"
        raise RuntimeError(
            f"fdiv's Triton kernels were imported {mode}, but TRITON_INTERPRET is now "
            f"{'set' if _interpreter_requested() else 'unset'}: set TRITON_INTERPRET=1 before the "
            "first Triton-backend call (for CPU tensors) and leave it, or restart the process"
        )
    return impl


def _triton_problem(tensors: tuple[Tensor, ...]) -> str | None:
    """Why the Triton backend cannot run on ``tensors`` (None when it can)."""
    for t in tensors:
        if t.dtype not in TRITON_DTYPES:
            return (
                f"the Triton kernels take float32, float16 or bfloat16 tensors, got {t.dtype}; "
                "use backend='torch' (e.g. for float64)"
            )
        if t.device.type not in ("cuda", "cpu"):
            return f"the Triton kernels run on CUDA tensors, got a {t.device.type} tensor"
        if t.device.type == "cpu" and not _interpreter_requested():
            return (
                "the tensors are on the CPU and TRITON_INTERPRET is not set: move them to a CUDA "
                "device, set TRITON_INTERPRET=1 before the first Triton-backend call (Triton's "
                "interpreter, slow), or use backend='torch'"
            )
    try:
        _triton_implementation()
    except ImportError as err:
        return (
            f"triton cannot be imported ({err}); install it (pip install triton, Linux x86_64) "
            "or use backend='torch'"
        )
    except RuntimeError as err:
        return str(err)
    return None


def resolve_backend(backend: str, *tensors: Tensor) -> str:
    """The concrete backend ("torch" or "triton") for ``backend`` and the given tensors.

    ``backend="triton"`` where the kernels cannot run raises ValueError saying why; with no
    tensors only the name is checked.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is unknown; known: {', '.join(BACKENDS)}")
    if backend == "torch" or not tensors:
        return "torch" if backend == "auto" else backend
    if backend == "auto":
        if any(t.device.type == "cpu" for t in tensors) and not _interpreter_requested():
            return "torch"
        return "triton" if _triton_problem(tensors) is None else "torch"
    problem = _triton_problem(tensors)
    if problem is not None:
        raise ValueError(f"backend 'triton' cannot run here: {problem}")
    return "triton"


def implementation(backend: str, *tensors: Tensor) -> Implementation:
    """The loss functions of the backend ``resolve_backend(backend, *tensors)`` picks."""
    if resolve_backend(backend, *tensors) == "torch":
        return _TORCH
    return _triton_implementation()
