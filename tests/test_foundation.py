"""The bottom layer: the atomic writer, the device resolver, the progress display."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
import torch

from fdiv import io as fio
from fdiv import progress as fprogress
from fdiv.device import resolve_device


def test_atomic_write_fsyncs_renames_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "out.json"
    fio.write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [Path(p).name.startswith(".out.json.") for p in synced] == [True, False]
    assert Path(synced[1]) == tmp_path  # the directory, so that the rename is durable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "result.txt"
    target.write_text("old")

    def broken(out: io.BufferedWriter) -> None:
        out.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fio.atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="'tpu9' is not a torch device"):
        resolve_device("tpu9")
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(3)  # type: ignore[arg-type]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_resolve_device_refuses_cuda_without_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_progress_prints_periodic_lines_when_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    clock = iter(float(t) for t in range(0, 10_000, 20))  # 20 s between successive calls
    monkeypatch.setattr(fprogress.time, "monotonic", lambda: next(clock))
    bar = fprogress.progress(5, "work", log_interval=30.0)
    for _ in range(5):
        bar.update(1)
        bar.refresh()
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 4  # one line per 30 s of (fake) time, not one per refresh
    assert all(line.startswith("work:") and "\r" not in line for line in lines)


def test_progress_is_silent_for_short_work_and_when_disabled(capsys: pytest.CaptureFixture) -> None:
    for enabled in (True, False):
        bar = fprogress.progress(3, "short", enabled=enabled)
        bar.update(3)
        bar.close()
    assert capsys.readouterr().err == ""
