"""Sample sets in and results out: loading files, checking sample matrices, atomic JSON writes.

A sample set is a real matrix (N, d), one sample per row; a 1-D array is read as (N, 1).
Files load without pickle: ``np.load(allow_pickle=False)``, ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import glob
import io
import json
import numbers
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = [
    "SUFFIXES",
    "as_sample_pair",
    "as_samples",
    "atomic_write",
    "check_output",
    "is_integer",
    "is_real",
    "load_samples",
    "torch_load_reason",
    "write_bytes",
    "write_json",
    "write_png",
    "write_text",
]

SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".csv", ".pt")


def as_sample_pair(p: object, q: object) -> tuple[np.ndarray, np.ndarray]:
    """``p`` and ``q`` as :func:`as_samples` matrices of the same dimension, or a clear error."""
    x_p, x_q = as_samples(p, "p"), as_samples(q, "q")
    if x_p.shape[1] != x_q.shape[1]:
        raise ValueError(
            f"p and q must have the same dimension, got p: {x_p.shape[1]} and q: {x_q.shape[1]}"
        )
    return x_p, x_q


def as_samples(x: object, name: str) -> np.ndarray:
    """``x`` (torch tensor, numpy array or nested list) as a finite float64 matrix (N, d), or a
    clear error.

    Booleans count as 0 and 1 (binary features). ``name`` says which input the message is about
    ("p", "q" or a file name).
    """
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {x.dtype}")
        array = x.detach().to("cpu", torch.float64).numpy()
    elif isinstance(x, np.ndarray | list | tuple):
        array = _as_array(x, name)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
        array = array.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor, a numpy.ndarray or a (nested) list of shape (N, d), "
            f"got {type(x).__name__}"
        )
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, d) or (N,) with N, d >= 1, got {array.shape}")
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count:
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} has {count} non-finite value{'s' if count > 1 else ''} "
            f"(first at row {row}, column {column})"
        )
    return np.ascontiguousarray(array)


def _as_array(x: np.ndarray | list | tuple, name: str) -> np.ndarray:
    """``x`` as a numpy array; a list whose rows differ in length is a ValueError."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except ValueError:
        raise ValueError(
            f"{name}'s rows must all have the same length (a list of shape (N, d))"
        ) from None


def load_samples(path: str | os.PathLike[str]) -> np.ndarray:
    """The sample matrix stored in ``path`` (.npy, .npz with one array, .csv, .pt tensor).

    The result is checked by :func:`as_samples` (errors name the file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown file type {suffix!r}; known: {', '.join(SUFFIXES)}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a sample file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    loader = {".npy": _load_npy, ".npz": _load_npz, ".csv": _load_csv, ".pt": _load_pt}[suffix]
    try:
        data = loader(path)
    except OSError as err:  # unreadable (permissions, I/O error): name the file, not a traceback
        raise ValueError(f"{path}: cannot read the file ({err.strerror or err})") from None
    return as_samples(data, str(path))


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:  # object arrays need pickle; a torn header lands here
        raise ValueError(f"{path}: not a numeric .npy array ({err})") from None


def _load_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) != 1:
                raise ValueError(
                    f"{path}: an .npz must hold exactly one array, found {len(names)}"
                    + (f" ({', '.join(names)})" if names else "")
                )
            return archive[names[0]]
    except PermissionError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from None
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a numeric .npz array ({err})") from None


def _load_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text .csv file (it holds binary data)") from None
    lines = [line for line in text.splitlines() if line.strip()]
    rows = [[cell.strip() for cell in line.split(",")] for line in lines]
    if rows and not all(_is_number(cell) for cell in rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        raise ValueError(f"{path}: no numeric rows")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}: row {i} has {len(row)} columns, expected {width}")
        for j, cell in enumerate(row):
            if not _is_number(cell):
                raise ValueError(f"{path}: row {i}, column {j} is not a number: {cell!r}")
    return np.array(rows, dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_pt(path: Path) -> torch.Tensor:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        reason = torch_load_reason(err)
        raise ValueError(f"{path}: not loadable as plain tensors ({reason})") from None
    if not isinstance(obj, torch.Tensor):
        raise TypeError(f"{path}: a .pt file must hold one tensor, found {type(obj).__name__}")
    return obj


def torch_load_reason(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in one line, without torch's advice.

    torch suggests ``weights_only=False``, which would run arbitrary code from the file; we
    never do that, so the message keeps only the reason (e.g. the disallowed global).
    """
    text = str(err).strip()
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip()
            return reason.split(". Please use", 1)[0].rstrip(".")
    if "weights_only" in text:
        return "it holds objects other than tensors and plain Python types"
    return text.splitlines()[0] if text else type(err).__name__


def is_integer(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_real(value: object) -> bool:
    """A real number (Python or numpy, integer or float), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_output(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file to be written, or a ValueError before any work is done.

    Its directory must exist and ``path`` must not be a directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name to write")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: cannot write it, the directory {path.parent} does not exist")
    return path


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    write_bytes(path, text.encode())


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda out: out.write(data))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Let ``write`` fill a temporary file beside ``path``, fsync it, rename it into place.

    A process killed at any moment leaves either the old file or the complete new one (plus at
    most a hidden ``.<name>.*.tmp`` file, which the next successful write of ``path`` removes);
    the directory is fsynced so the rename is durable. The file is readable by all (mode 0644,
    like an ordinary new file). Returns ``path``.
    """
    path = check_output(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and checkpoints are for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stray.unlink(missing_ok=True)  # left by an interrupted write of this file
    return path


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_png(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write a matplotlib figure as a PNG to ``path`` atomically; returns the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    write_bytes(path, buffer.getvalue())
    return Path(path)
