"""Checkpoints that survive a killed process: write a temporary file, fsync, rename into place.

A checkpoint is ``ckpt-<step>.pt`` in the run directory; the latest is the one with the highest
step. A process killed while writing leaves at most a stray ``.ckpt-*.tmp`` file, which is never
read and is removed by the next successful save, so the latest checkpoint is always complete.
Checkpoints hold only tensors and plain Python types and load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from fdiv.io import atomic_write

__all__ = ["checkpoints", "latest", "load", "save"]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in ``run_dir``, oldest first."""
    found = []
    for path in Path(run_dir).iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest(run_dir: str | os.PathLike[str]) -> Path:
    """The newest checkpoint in ``run_dir``, or a ValueError saying there is none."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise ValueError(f"{run_dir}: not a run directory (it does not exist)")
    found = checkpoints(directory)
    if not found:
        raise ValueError(f"{run_dir}: no checkpoint to resume from (no ckpt-*.pt files)")
    return found[-1][1]


def save(run_dir: str | os.PathLike[str], step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``ckpt-<step>.pt`` atomically, then keep only the newest ``keep``."""
    directory = Path(run_dir)
    path = atomic_write(directory / f"ckpt-{step:08d}.pt", lambda out: torch.save(state, out))
    for stale in directory.glob(".ckpt-*.tmp"):
        stale.unlink(missing_ok=True)
    for _, old in checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state in checkpoint ``path`` (on the CPU), loaded with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path}: not an fdiv GAN checkpoint")
    return state
