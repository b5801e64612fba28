"""The task-library accuracy tables: per task and per method, coverage and errors by hand."""

from __future__ import annotations

import math
from pathlib import Path

from fdiv.bench import plots, report
from fdiv.bench.results import Entry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(task: str, method: str, estimate: float, covered: bool | None, **extra: object) -> Entry:
    truth = 2.0
    figures = {
        "task": task,
        "divergence": "kl",
        "method": method,
        "n": extra.pop("n", 2000),
        "seed": extra.pop("seed", 0),
        "truth": truth,
        "truth_stderr": extra.pop("truth_stderr", 0.0),
        "estimate": estimate,
        "abs_log_error": abs(math.log(estimate / truth)) if estimate > 0 else None,
        "covered": covered,
        "seconds": extra.pop("seconds", 1.0),
        "warnings": extra.pop("warnings", []),
    }
    return Entry(f"bench::{task}-{method}", "accuracy", 1.0, figures | extra)


ENTRIES = [
    run("a", "auto", 2.2, True, seconds=3.0, sample_value=2.1),
    run("a", "auto", 1.0, False, seed=1, seconds=5.0, warnings=["w"], sample_value=1.6),
    run("a", "knn", -1.0, None),
    run("b", "auto", 4.0, True, truth_stderr=0.01),
]


def test_task_tables_rows() -> None:
    tables = report.task_tables(ENTRIES)
    assert list(tables) == ["a", "b"]
    auto, knn = tables["a"]
    # mean of 2.2 and 1.0; worst |log| = log 2 (the 1.0 run); the sample's own worst log 1.25
    # (1.6 for 2); 1 of 2 covered; 1 of 2 warned; a run without a sample value shows "-"
    log2, log125 = f"{math.log(2):.3f}", f"{math.log(1.25):.3f}"
    assert auto == ["kl", "2000", "auto", "2", "1.6", log2, log125, "1/2", "1/2", "4.0"]
    assert knn == ["kl", "2000", "knn", "2", "-1", "inf", "-", "-", "0/1", "1.0"]
    assert tables["b"][0][3] == "2 ± 0.01"


def test_method_summary_pools_tasks_per_sample_size() -> None:
    rows = report.method_summary([*ENTRIES, run("b", "auto", 2.0, True, n=10000, seconds=9.0)])
    # auto at N = 2000: errors log(1.1), log 2, log 2 -> median log 2; 2 of 3 covered
    log2 = f"{math.log(2):.3f}"
    assert rows[0] == ["kl", "auto", "2000", "3", log2, log2, "2/3", "3.0"]
    assert rows[1] == ["kl", "auto", "10000", "1", "0.000", "0.000", "1/1", "9.0"]
    assert rows[2][:7] == ["kl", "knn", "2000", "1", "inf", "inf", "-"]


def test_coverage_counts_one_sided_intervals() -> None:
    runs = [
        run("c", "auto", 1.0, True, ci95=[0.5, math.inf], warnings=["heavy"]),
        run("c", "auto", 1.9, True, seed=1, ci95=[1.5, 2.5]),
        run("c", "auto", 1.0, False, seed=2, ci95=[0.8, 1.2]),
    ]
    assert report.task_tables(runs)["c"][0][7] == "2/3 (1 one-sided)"
    assert report.method_summary(runs)[0][6] == "2/3 (1 one-sided)"


def test_task_suite_renders_and_plots(tmp_path: Path) -> None:
    assert report.is_task_suite(ENTRIES)
    png = plots.task_errors(tmp_path / "t.png", ENTRIES, "title")
    assert png is not None and png.read_bytes().startswith(PNG_MAGIC)
