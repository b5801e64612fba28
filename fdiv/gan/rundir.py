"""The run directory: who may start a run in it, and one writer at a time (a ``flock``).

``check_new_run_directory`` says whether a directory may receive a new run. The lock is an
exclusive ``flock`` on ``<run_dir>/.lock``.

A training process (``train`` or ``resume``, rank 0) holds the lock for the whole run; a second
one refuses at once with a message naming the holder (pid and host, written into the lock
file). The kernel drops the lock when its holder exits, even on SIGKILL, so a killed run never
leaves a stale lock behind. (flock is advisory and local: it does not reach across machines
on every network file system.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fdiv.gan import checkpoint
from fdiv.gan.config import TrainConfig

__all__ = ["LOCK_NAME", "RunLockedError", "check_new_run_directory", "run_lock"]

LOCK_NAME = ".lock"


class RunLockedError(ValueError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_lock(run_dir: str | os.PathLike[str], active: bool = True) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (an existing directory) for the ``with`` block.

    Raises :class:`RunLockedError` naming the holder when another process holds it. With
    ``active`` false (ranks other than 0) nothing is locked.
    """
    if not active:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunLockedError(
                f"{run_dir} is in use by {holder} (lock file {path}); wait for that run to "
                "finish or stop it"
            ) from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        if locked:
            os.ftruncate(fd, 0)  # no stale holder shown to the next reader
        os.close(fd)  # closing the descriptor releases the lock


def check_new_run_directory(directory: Path) -> None:
    """A ValueError unless ``directory`` may receive a new run.

    It may be missing, empty, or a run that never reached a checkpoint (its config.json reads
    as a TrainConfig); anything else would lose files that are not ours, or a run's history.
    """
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ValueError(f"{directory}: exists and is a file; --out needs a directory")
    if checkpoint.checkpoints(directory):
        raise ValueError(
            f"{directory} already holds a run with checkpoints; continue it with resume "
            "(fdiv train --resume) or choose another output directory"
        )
    entries = sorted(p.name for p in directory.iterdir() if p.name != LOCK_NAME)
    if not entries:
        return
    try:
        TrainConfig.from_dict(json.loads((directory / "config.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(
            f"{directory} is not empty and is not an fdiv run (it holds {shown}); "
            "choose a new or empty output directory"
        ) from None
