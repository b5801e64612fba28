"""Checkpoints that survive a killed process: write a temporary file, fsync, rename into place.

A checkpoint is ``ckpt-<step>.pt`` in the run directory; the latest is the one with the highest
step. A process killed while writing leaves at most a stray ``.ckpt-*.tmp`` file, which is never
read and is removed by the next successful save, so the latest checkpoint is always complete.
Should the disk still damage it (truncated, emptied), :func:`load_latest` falls back to the
newest older checkpoint that loads, with a warning. Checkpoints hold only tensors and plain
Python types and load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from fdiv.io import atomic_write, torch_load_reason

__all__ = ["KEYS", "checkpoints", "latest", "load", "load_latest", "run_directory", "save"]

#: The entries of a checkpoint (``Trainer.state``).
KEYS: frozenset[str] = frozenset(
    {"step", "world_size", "config", "generator", "critic", "ema", "opt_g", "opt_d"}
    | {"rng_data", "rng_noise"}
)

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in ``run_dir``, oldest first."""
    found = []
    for path in Path(run_dir).iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def run_directory(run_dir: str | os.PathLike[str]) -> Path:
    """``run_dir`` as a Path, or a ValueError when it is not a directory."""
    directory = Path(run_dir)
    if not directory.exists():
        raise ValueError(f"{run_dir}: not a run directory (it does not exist)")
    if not directory.is_dir():
        raise ValueError(f"{run_dir}: not a run directory (it is a file)")
    return directory


def latest(run_dir: str | os.PathLike[str]) -> Path:
    """The newest checkpoint file in ``run_dir`` (not loaded), or a ValueError if there is none."""
    found = checkpoints(run_directory(run_dir))
    if not found:
        raise ValueError(f"{run_dir}: no checkpoint in this directory (no ckpt-*.pt files)")
    return found[-1][1]


def load_latest(run_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """(path, state) of the newest checkpoint in ``run_dir`` that loads.

    A newer checkpoint that does not load (truncated, empty, not a checkpoint) is skipped with a
    RuntimeWarning naming it; a ValueError when there is no checkpoint or none loads.
    """
    latest(run_dir)  # the errors for no directory, no checkpoint
    problems = []
    for _, path in reversed(checkpoints(run_dir)):
        try:
            state = load(path)
        except ValueError as err:
            problems.append(str(err))
            continue
        for problem in problems:
            warnings.warn(f"{problem}; using the older {path.name}", RuntimeWarning, stacklevel=2)
        return path, state
    raise ValueError(f"{run_dir}: no checkpoint loads: {'; '.join(problems)}")


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
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({torch_load_reason(err)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not an fdiv GAN checkpoint")
    missing = sorted(KEYS - set(state))
    if missing:
        shown = ", ".join(missing)
        raise ValueError(f"{path}: not a complete fdiv GAN checkpoint (missing {shown})")
    return state
