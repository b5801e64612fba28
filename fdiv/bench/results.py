"""Benchmark results: pytest-benchmark JSON files with fdiv's figures, loaded for reports.

The convention (``benchmarks/conftest.py`` writes it): each benchmark's ``extra_info`` holds
``suite`` (one of :data:`SUITES`), ``quick`` (run with ``--quick``) and ``figures``, a dict
whose keys depend on the suite:

- ``kernels``: ``kernel`` (label, e.g. ``"critic_loss js"``; ``"copy"`` for the copy baseline),
  ``backend`` (``triton``, ``reference``, ``eager``, ``compile``, ``copy``), ``n`` (elements per
  side), ``bytes`` (bytes moved per call). The time is the benchmark's median.
- ``accuracy``: ``method``, ``d``, ``truth`` and ``estimate`` (nats), ``seconds``; optionally
  ``seed``, ``stderr``, ``ci95``, ``steps``.
- ``gan``: ``data``, ``divergence``, ``seed``, ``modes_captured``, ``modes``, ``high_quality``
  (%), ``reverse_kl`` (nats), ``seconds``; ``error`` (why it stopped) in place of the metrics for a
  run that diverged; optionally ``samples`` ([[x, y], ...], a few hundred generated points).
- ``mi``: ``task``, ``family``, ``method``, ``truth`` and ``estimate`` (nats), ``seconds``;
  optionally ``stderr``, ``ci95``, ``steps``, ``warnings``, ``optimal_infonce``, ``cap``.

The JSON that ``bench_accuracy.py`` wrote before the convention (``{"meta", "rows"}``) loads too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdiv.bench.machine import Machine

__all__ = [
    "SUITES",
    "Entry",
    "Results",
    "Section",
    "abs_log_error",
    "jsonable",
    "load",
    "sections",
    "suite_of",
]

SUITES: tuple[str, ...] = ("kernels", "accuracy", "gan", "mi", "all_pairs")


@dataclass(frozen=True)
class Entry:
    """One benchmark: pytest's full name, its suite, median time (s) and figures."""

    name: str
    suite: str
    median: float
    figures: dict[str, Any]
    quick: bool = False


@dataclass(frozen=True)
class Results:
    """One results file: where and when it was measured (``software``: torch version and
    threads, triton version), and its benchmarks."""

    path: Path
    machine: Machine
    datetime: str
    commit: str
    software: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Section:
    """The newest entries of one suite on one machine, with the file they come from."""

    suite: str
    results: Results
    entries: tuple[Entry, ...]


def suite_of(module: str) -> str:
    """The suite a benchmark module holds: ``benchmarks/bench_gan.py`` -> ``gan``."""
    return Path(module.split("::")[0]).stem.removeprefix("bench_")


def jsonable(value: Any) -> Any:
    """``value`` with tensors, arrays and numpy scalars turned into plain JSON values."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def load(path: str | Path) -> Results:
    """The results in ``path``, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON file ({err})") from None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("machine_info"), dict)
        and isinstance(data.get("benchmarks"), list)
    ):
        raise ValueError(
            f"{path}: not a pytest-benchmark JSON file (no 'machine_info' and 'benchmarks')"
        )
    info = data["machine_info"]
    own = info.get("fdiv") if isinstance(info.get("fdiv"), dict) else {}
    if own:
        machine = Machine(own["id"], own["label"], own.get("gpu"))
    else:
        cpu = info.get("cpu", {})
        machine = Machine.of(cpu.get("brand_raw") or info.get("machine", "?"), cpu.get("count"))
    commit_info = data.get("commit_info") or {}
    commit = str(own.get("commit") or commit_info.get("id") or "unknown")[:7]
    if commit_info.get("dirty"):
        commit += " (uncommitted changes)"
    return Results(
        path,
        machine,
        str(data.get("datetime", "")),
        commit,
        _software(own.get("torch"), own.get("torch_threads"), own.get("triton")),
        tuple(_entry(path, b) for b in data["benchmarks"]),
    )


def _entry(path: Path, bench: Any) -> Entry:
    try:
        name = str(bench["fullname"])
        median = float(bench["stats"]["median"])
        extra = bench.get("extra_info") or {}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"{path}: a benchmark lacks 'fullname' or 'stats.median'") from None
    return Entry(
        name,
        str(extra.get("suite") or suite_of(name)),
        median,
        dict(extra.get("figures") or {}),
        bool(extra.get("quick", False)),
    )


def _software(torch_version: Any, threads: Any, triton: Any) -> str:
    text = f"torch {torch_version or '?'}"
    if threads:
        text += f", {threads} thread{'s' if threads != 1 else ''}"
    return text + (f", triton {triton}" if triton else "")


def sections(results: Iterable[Results]) -> list[Section]:
    """Per suite and machine, the entries of the newest file that has that suite."""
    newest: dict[tuple[str, str], Section] = {}
    for res in results:
        for suite in SUITES:
            entries = tuple(e for e in res.entries if e.suite == suite)
            key = (suite, res.machine.id)
            if entries and (key not in newest or res.datetime > newest[key].results.datetime):
                newest[key] = Section(suite, res, entries)
    return sorted(newest.values(), key=lambda s: (SUITES.index(s.suite), s.results.machine.label))


def abs_log_error(figures: dict[str, Any]) -> float:
    """|log(estimate / truth)| of an accuracy record; inf when the estimate is not positive."""
    estimate, truth = figures["estimate"], figures["truth"]
    return abs(math.log(estimate / truth)) if estimate > 0 else math.inf
