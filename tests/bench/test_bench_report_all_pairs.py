"""The all-pairs time / peak-memory table of REPORT.md, checked on hand-made entries."""

from __future__ import annotations

from pathlib import Path

from fdiv.bench import report
from fdiv.bench.machine import Machine
from fdiv.bench.results import Entry, Results, Section


def entry(n: int, backend: str, median: float, peak: int) -> Entry:
    figures = {"kernel": "all_pairs infonce", "backend": backend, "n": n, "k": 64}
    return Entry(f"b::{backend}-{n}", "all_pairs", median, figures | {"peak_bytes": peak})


def test_all_pairs_rows_time_peak_and_ratio() -> None:
    entries = (
        entry(1024, "chunked", 0.013, 4 * 2**20),
        entry(1024, "dense", 0.010, 16 * 2**20),
        entry(32768, "chunked", 13.0, 36 * 2**20),
    )
    machine = Machine("cpu-x", "x86_64, 2 cores, no GPU")
    results = Results(Path("r.json"), machine, "2026-11-29", "abc1234", "torch 2.13", entries)
    lines = report._all_pairs_section(Section("all_pairs", results, entries), None)
    table = [line for line in lines if line.startswith("| 2^")]
    assert table[0].startswith("| 2^10 |") and "4.0 MiB" in table[0] and "16.0 MiB" in table[0]
    assert table[0].rstrip(" |").endswith("25.00%")  # 4 MiB / 16 MiB
    assert table[1].startswith("| 2^15 |") and table[1].count("| - ") == 3  # no dense, no ratio
