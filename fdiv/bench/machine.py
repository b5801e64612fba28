"""The machine a benchmark ran on: a short id for file names and a label for reports."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fdiv import __version__

__all__ = ["Machine", "describe", "slug"]


@dataclass(frozen=True)
class Machine:
    """``id`` names result files (``cpu-amd-epyc-2c``); ``label`` names the machine in reports."""

    id: str
    label: str
    gpu: str | None = None

    @classmethod
    def of(cls, cpu: str, cores: int | None, gpu: str | None = None) -> Machine:
        """The machine with this CPU model, core count and GPU name (None: no GPU)."""
        host = f"{cpu}, {cores} cores" if cores else cpu
        if gpu:
            return cls(slug(gpu), f"{gpu} (host {host})", gpu)
        return cls(slug(f"cpu {cpu} {cores}c" if cores else f"cpu {cpu}"), f"{host}, no GPU")


def slug(text: str) -> str:
    """``text`` in lower case, runs of other characters as one dash: for file names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _git_commit(tree: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def describe(tree: Path) -> dict[str, Any]:
    """CPU model, cores, GPU, library versions and the git commit of source tree ``tree``."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu, cores = _cpu_model(), os.cpu_count()
    machine = Machine.of(cpu, cores, gpu)
    try:
        import triton

        triton_version: str | None = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "id": machine.id,
        "label": machine.label,
        "cpu": cpu,
        "cores": cores,
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "triton": triton_version,
        "fdiv": __version__,
        "commit": _git_commit(tree),
    }
