"""Backend choice for the losses: the fused Triton kernels or the pure-torch reference."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Backend = Literal["auto", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "torch")


def resolve_backend(backend: str, *tensors: Tensor) -> str:
    """The concrete backend ("torch" or "triton") for ``backend`` and the given tensors."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is unknown; known: {', '.join(BACKENDS)}")
    return "torch"
