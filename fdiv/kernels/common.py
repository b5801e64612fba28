"""What fdiv's Triton kernel modules share: tile sizes, warps, interpreter detection, and the
block-indexing and fixed-order reduction pieces of the two-stage deterministic reductions.

Importing this module imports triton (``fdiv.kernels.dispatch`` imports the kernel modules only
when a Triton backend is considered).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

__all__ = [
    "DEFAULT_BLOCK",
    "INTERPRETED",
    "RBLOCK",
    "block_offsets",
    "check_block",
    "fixed_order_sum",
    "interpreter_quiet",
    "is_interpreted",
    "num_warps",
]

DEFAULT_BLOCK = 2048  # elements per program of the elementwise stages
RBLOCK = 1024  # lanes of the one-program stage that adds the per-program partials


def check_block(block: int) -> int:
    """``block`` if it is a power of two >= 16, else ValueError."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16, got {block!r}")
    return block


def num_warps(block: int) -> int:
    """Warps for a program of ``block`` elements: 8 from 2048 on (8 fp32 per thread), else 4."""
    return 8 if block >= 2048 else 4


def is_interpreted(kernel: object) -> bool:
    """Whether Triton built ``kernel`` for its interpreter (TRITON_INTERPRET=1 at definition)."""
    return isinstance(kernel, InterpretedFunction)


def interpreter_quiet(interpreted: bool) -> AbstractContextManager[object]:
    """Silence numpy's floating-point warnings around an interpreted launch.

    The interpreter evaluates kernels with numpy, which warns where exp overflows to +inf or a
    masked-out lane divides by zero; on a GPU these are the kernels' documented, silent results.
    """
    if not interpreted:
        return nullcontext()
    return np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore")


@triton.jit
def block_offsets(block_id, n, BLOCK: tl.constexpr):
    """(offsets, in-bounds mask) of tile ``block_id`` of a length-n array (int64 offsets)."""
    offs = block_id.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < n


@triton.jit
def fixed_order_sum(ptr, n, RBLOCK: tl.constexpr):
    """Sum of ptr[0:n] in fp32 in an order fixed by n and RBLOCK alone (deterministic)."""
    acc = tl.zeros([RBLOCK], dtype=tl.float32)
    for start in range(0, n, RBLOCK):
        offs = start + tl.arange(0, RBLOCK)
        acc += tl.load(ptr + offs, mask=offs < n, other=0.0)
    return tl.sum(acc, axis=0)


INTERPRETED: bool = is_interpreted(fixed_order_sum)
