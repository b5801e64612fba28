"""REPORT.md and the README's Performance section, rendered from benchmark results.

Kernel tables give, per kernel, size and backend, the median time of one forward + backward
call and the speed-ups ``t(eager) / t`` and ``t(compile) / t`` (above 1: faster); where the copy
baseline ran (a GPU), the effective bandwidth (the kernel's bytes over its median) and its share
of the copy bandwidth measured at the same size. "fdiv" is the backend ``backend="auto"`` picks:
``triton`` where it ran, else the torch ``reference``.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdiv.bench import gan_tables, plots
from fdiv.bench.results import Entry, Results, Section, abs_log_error, sections
from fdiv.io import write_text

__all__ = [
    "KernelRow",
    "accuracy_summary",
    "format_time",
    "is_task_suite",
    "kernel_tables",
    "method_summary",
    "readme_section",
    "render",
    "report_markdown",
    "task_tables",
    "update_readme",
]

BACKENDS = ("triton", "reference", "compile", "eager")
BASELINES = ("copy", "launch")
README_START, README_END = "<!-- performance:start -->", "<!-- performance:end -->"


@dataclass(frozen=True)
class KernelRow:
    """One kernel at one size on one backend: median seconds, speed-ups, GB/s, share of copy."""

    n: int
    backend: str
    median: float
    vs_eager: float | None
    vs_compile: float | None
    gbps: float | None
    of_copy: float | None


def kernel_tables(entries: Sequence[Entry]) -> dict[str, list[KernelRow]]:
    """Rows per kernel (baselines left out), by size then backend."""
    times = {(e.figures["kernel"], e.figures["backend"], e.figures["n"]): e for e in entries}
    copy_gbps = {
        e.figures["n"]: e.figures["bytes"] / e.median / 1e9
        for e in entries
        if e.figures["kernel"] == "copy"
    }
    tables: dict[str, list[KernelRow]] = {}
    for kernel in sorted({k for k, _, _ in times if k not in BASELINES}):
        rows = []
        for n in sorted({n for k, _, n in times if k == kernel}):
            present = [b for k, b, m in times if k == kernel and m == n]
            for backend in sorted(present, key=_backend_order):
                entry = times[kernel, backend, n]
                eager, compiled = times.get((kernel, "eager", n)), times.get((kernel, "compile", n))
                gbps = entry.figures["bytes"] / entry.median / 1e9 if copy_gbps else None
                rows.append(
                    KernelRow(
                        n,
                        backend,
                        entry.median,
                        eager.median / entry.median if eager else None,
                        compiled.median / entry.median if compiled else None,
                        gbps,
                        gbps / copy_gbps[n] if gbps is not None and n in copy_gbps else None,
                    )
                )
        tables[kernel] = rows
    return tables


def _backend_order(backend: str) -> tuple[int, str]:
    return (BACKENDS.index(backend) if backend in BACKENDS else len(BACKENDS), backend)


def _headline(kernel_sections: Sequence[Section]) -> list[str]:
    """Per machine and kernel, the largest size: fdiv's backend against eager and compile."""
    rows = []
    for section in kernel_sections:
        for kernel, table in kernel_tables(section.entries).items():
            n = max(r.n for r in table)
            at_n = {r.backend: r for r in table if r.n == n}
            fdiv = at_n.get("triton") or at_n.get("reference")
            if fdiv is None:
                continue
            eager, compiled = at_n.get("eager"), at_n.get("compile")
            rows.append(
                [
                    section.results.machine.label,
                    kernel,
                    _size(n),
                    f"{format_time(fdiv.median)} ({fdiv.backend})",
                    format_time(eager.median) if eager else "-",
                    format_time(compiled.median) if compiled else "-",
                    _ratio(fdiv.vs_eager),
                    _ratio(fdiv.vs_compile),
                ]
            )
    header = ["machine", "kernel", "N", "fdiv", "eager", "torch.compile", "vs eager", "vs compile"]
    return _table(header, rows)


def _kernel_section(section: Section, plot: Path | None) -> list[str]:
    lines = [f"### {section.results.machine.label}", "", _provenance(section), ""]
    if plot:
        lines += [f"![time vs N]({plot.name})", ""]
    for kernel, table in kernel_tables(section.entries).items():
        bandwidth = any(r.gbps is not None for r in table)
        header = ["N", "backend", "median", "vs eager", "vs compile"]
        header += ["GB/s", "of copy"] if bandwidth else []
        rows = []
        for r in table:
            row = [
                _size(r.n),
                r.backend,
                format_time(r.median),
                _ratio(r.vs_eager),
                _ratio(r.vs_compile),
            ]
            if bandwidth:
                share = None if r.of_copy is None else 100 * r.of_copy
                row += [_number(r.gbps, 1), _number(share, 0, "%")]
            rows.append(row)
        lines += [f"**{kernel}**", "", *_table(header, rows), ""]
    for e in section.entries:
        if e.figures["kernel"] == "copy":
            gbps = e.figures["bytes"] / e.median / 1e9
            lines.append(f"- copy baseline, N = {_size(e.figures['n'])}: {gbps:.1f} GB/s")
        elif e.figures["kernel"] == "launch":
            lines.append(f"- empty Triton launch: {format_time(e.median)}")
    return lines[:-1] if lines[-1] == "" else lines


def _accuracy_cells(entries: Sequence[Entry]) -> dict[tuple[int, float, str], list[Entry]]:
    cells: dict[tuple[int, float, str], list[Entry]] = defaultdict(list)
    for e in entries:
        f = e.figures
        cells[int(f["d"]), round(float(f["truth"]), 6), str(f["method"])].append(e)
    return cells


def _methods(entries: Sequence[Entry]) -> list[str]:
    return list(dict.fromkeys(str(e.figures["method"]) for e in entries))


def _accuracy_section(section: Section, plot: Path | None) -> list[str]:
    if is_task_suite(section.entries):
        return _task_section(section, plot)
    cells = _accuracy_cells(section.entries)
    methods = _methods(section.entries)
    seeds = sorted({e.figures.get("seed") for e in section.entries}, key=str)
    lines = [f"### {section.results.machine.label}", "", _provenance(section), ""]
    lines += [
        f"Cells: mean estimate over seeds {seeds} (worst |log(estimate/truth)|, mean seconds).",
        "",
    ]
    rows = []
    for d, truth in sorted({(d, t) for d, t, _ in cells}):
        row = [str(d), f"{truth:g}"]
        for method in methods:
            runs = cells.get((d, truth, method), [])
            if not runs:
                row.append("-")
                continue
            mean = statistics.mean(e.figures["estimate"] for e in runs)
            worst = max(abs_log_error(e.figures) for e in runs)
            seconds = statistics.mean(e.figures["seconds"] for e in runs)
            row.append(f"{mean:.3f} ({worst:.3f}, {seconds:.0f} s)")
        rows.append(row)
    lines += _table(["d", "true KL", *methods], rows)
    if plot:
        lines += ["", f"![error vs dimension]({plot.name})"]
    return lines


def is_task_suite(entries: Sequence[Entry]) -> bool:
    """True for the task-library accuracy suite (figures name a ``task``), False for the older
    Gaussian grid (figures name ``d`` and ``truth`` only)."""
    return any("task" in e.figures for e in entries)


def _coverage(runs: Sequence[dict[str, Any]]) -> str:
    """k/n runs whose interval holds the truth, and how many of the n were one-sided."""
    checked = [r for r in runs if r.get("covered") is not None]
    if not checked:
        return "-"
    open_ended = sum(1 for r in checked if math.isinf(float(r.get("ci95", [0.0, 0.0])[1])))
    text = f"{sum(r['covered'] for r in checked)}/{len(checked)}"
    return text + (f" ({open_ended} one-sided)" if open_ended else "")


def _error(figures: dict[str, Any]) -> float:
    value = figures.get("abs_log_error")
    return math.inf if value is None else float(value)


def _sample_error(runs: Sequence[dict[str, Any]]) -> str:
    """The worst |log(sample value / truth)| over the runs that record a ``sample_value`` (the
    exact log-ratio averaged over their rows), "-" where none does."""
    errors = [
        abs(math.log(r["sample_value"] / r["truth"])) if r["sample_value"] > 0 else math.inf
        for r in runs
        if r.get("sample_value") is not None and r["truth"] > 0
    ]
    return f"{max(errors):.3f}" if errors else "-"


TASK_HEADER = [
    "divergence",
    "N",
    "method",
    "truth",
    "mean estimate",
    "worst abs log ratio",
    "the sample's own",
    "coverage",
    "warned",
    "mean s",
]


def task_tables(entries: Sequence[Entry]) -> dict[str, list[list[str]]]:
    """Per task, one row per (divergence, N, method) over seeds: truth (+- its Monte Carlo
    stderr), mean estimate, worst |log(estimate/truth)|, the worst the exact log-ratio makes of
    the same rows (:func:`_sample_error`), interval coverage k/n, runs with a warning, mean
    seconds."""
    groups: dict[str, dict[tuple[str, int, str], list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for e in entries:
        f = e.figures
        groups[f["task"]][f["divergence"], int(f["n"]), f["method"]].append(f)
    tables = {}
    for task, cells in groups.items():
        rows = []
        for (divergence, n, method), runs in cells.items():
            truth, se = runs[0]["truth"], runs[0].get("truth_stderr") or 0.0
            rows.append(
                [
                    divergence,
                    str(n),
                    method,
                    f"{truth:.4g}" + (f" ± {se:.1g}" if se else ""),
                    f"{statistics.mean(r['estimate'] for r in runs):.4g}",
                    f"{max(_error(r) for r in runs):.3f}",
                    _sample_error(runs),
                    _coverage(runs),
                    f"{sum(bool(r.get('warnings')) for r in runs)}/{len(runs)}",
                    f"{statistics.mean(r['seconds'] for r in runs):.1f}",
                ]
            )
        tables[task] = rows
    return tables


def method_summary(entries: Sequence[Entry]) -> list[list[str]]:
    """Per (divergence, method, samples per side N) of the task suite, N ascending within a
    method: runs, median and worst |log ratio|, coverage k/n, mean seconds."""
    groups: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for e in entries:
        f = e.figures
        groups[f["divergence"], f["method"]][int(f["n"])].append(f)
    rows = []
    for (divergence, method), sizes in groups.items():
        for n, runs in sorted(sizes.items()):
            errors = [_error(r) for r in runs]
            rows.append(
                [
                    divergence,
                    method,
                    str(n),
                    str(len(runs)),
                    f"{statistics.median(errors):.3f}",
                    f"{max(errors):.3f}",
                    _coverage(runs),
                    f"{statistics.mean(r['seconds'] for r in runs):.1f}",
                ]
            )
    return rows


SUMMARY_HEADER = ["divergence", "method", "N", "runs", "median", "worst", "coverage", "mean s"]


def _task_section(section: Section, plot: Path | None) -> list[str]:
    seeds = sorted({e.figures["seed"] for e in section.entries})
    lines = [f"### {section.results.machine.label}", "", _provenance(section), ""]
    lines += [
        f"Seeds {seeds}. abs log ratio: |log(estimate / truth)| (inf: estimate <= 0); coverage: "
        "runs whose 95% interval holds the truth (widened by 2 Monte Carlo stderr of the truth; "
        "one-sided: upper end open, after a heavy-tail or noise-fit warning); "
        "warned: runs that carried a warning; the sample's own: the worst abs log ratio of the "
        "exact log-ratio averaged over the same rows (no estimator that averages over the rows "
        "escapes it; '-' for runs recorded before it was).",
        "",
        *_table(SUMMARY_HEADER, method_summary(section.entries)),
    ]
    if plot:
        lines += ["", f"![error per task]({plot.name})"]
    for task, rows in task_tables(section.entries).items():
        lines += ["", f"**{task}**", "", *_table(TASK_HEADER, rows)]
    return lines


def accuracy_summary(entries: Sequence[Entry]) -> list[list[str]]:
    """Per method: cases, median and worst |log(estimate/truth)|, mean seconds."""
    rows = []
    for method in _methods(entries):
        runs = [e for e in entries if e.figures["method"] == method]
        errors = [abs_log_error(e.figures) for e in runs]
        seconds = statistics.mean(e.figures["seconds"] for e in runs)
        rows.append(
            [
                method,
                str(len(runs)),
                f"{statistics.median(errors):.3f}",
                f"{max(errors):.3f}",
                f"{seconds:.1f}",
            ]
        )
    return rows


def _gan_section(section: Section, plot: Path | None) -> list[str]:
    lines = [f"### {section.results.machine.label}", "", _provenance(section), ""]
    toy = gan_tables.toy_rows(section.entries)
    if toy:
        targets = ", ".join(
            f"{data} all modes, >= {quality:g}% high quality, reverse KL <= {rkl:g}"
            for data, (quality, rkl) in gan_tables.TARGETS.items()
        )
        lines += [
            "Mean ± sd over seeds, the worst seed in brackets; targets met on every seed: "
            f"{targets}.",
            "",
            *_table(gan_tables.TOY_HEADER, toy),
        ]
    digits = gan_tables.digits_rows(section.entries)
    if digits:
        lines += [
            "",
            "Digits (8x8, the convolutional pair): Frechet distance between generated and "
            "held-out images in the features of our digits classifier (floor: the training "
            "images), the held-out JS estimate with its standard error (the 359 held-out digits "
            "against as many generated images rounded to the 17 grey levels, both dequantised: "
            "the JS between the two distributions over levels; the training digits against the "
            "held-out ones score 0.003 ± 0.005 nats), predicted classes.",
            "",
            *_table(gan_tables.DIGITS_HEADER, digits),
        ]
    if plot:
        lines += ["", f"![generated samples]({plot.name})"]
    return lines


def _all_pairs_section(section: Section, plot: Path | None) -> list[str]:
    """Per batch size B: each backend's median time and peak memory of one forward + backward
    (peak: bytes allocated at once above the inputs), and the ratio to the dense B x B path."""
    cells = {
        (int(e.figures["n"]), str(e.figures["backend"])): e
        for e in section.entries
        if "peak_ratio" not in e.figures
    }
    backends = list(dict.fromkeys(b for _, b in cells))
    rows = []
    for n in sorted({n for n, _ in cells}):
        row = [f"2^{n.bit_length() - 1}"]
        dense = cells.get((n, "dense"))
        for backend in backends:
            e = cells.get((n, backend))
            if e is None:
                row += ["-", "-"]
                continue
            row += [format_time(e.median), f"{e.figures['peak_bytes'] / 2**20:.1f} MiB"]
        fast = [cells[n, b] for b in backends if b != "dense" and (n, b) in cells]
        ratio = (
            f"{fast[0].figures['peak_bytes'] / dense.figures['peak_bytes']:.2%}"
            if fast and dense is not None
            else "-"
        )
        rows.append([*row, ratio])
    header = ["B", *(f"{b} {what}" for b in backends for what in ("time", "peak")), "peak ratio"]
    return [
        f"### {section.results.machine.label}",
        "",
        _provenance(section),
        "",
        "k = 64, fp32; peak ratio: the fast path's peak over the dense path's.",
        "",
        *_table(header, rows),
    ]


def _mi_section(section: Section, plot: Path | None) -> list[str]:
    """Per MI task: the truth and each method's estimate (seconds); solved = |log(est/truth)|
    < log 1.5; then the all-pairs InfoNCE rows beside the optimal critic's value."""
    grid = [e.figures for e in section.entries if "optimal_infonce" not in e.figures]
    methods = list(dict.fromkeys(str(f["method"]) for f in grid))
    cells = {(f["task"], f["method"]): f for f in grid}
    tasks = list(dict.fromkeys(str(f["task"]) for f in grid))
    lines = [f"### {section.results.machine.label}", "", _provenance(section), ""]
    lines += ["Cells: estimate in nats (seconds); * marks |log(estimate/truth)| >= log 1.5.", ""]
    rows = []
    for task in tasks:
        truths = {cells[task, m]["truth"] for m in methods if (task, m) in cells}
        present = [m for m in methods if (task, m) in cells]
        mi_truth = cells[task, next((m for m in present if m != "js"), present[0])]["truth"]
        row = [task, f"{mi_truth:.3f}"]
        for method in methods:
            f = cells.get((task, method))
            if f is None:
                row.append("-")
                continue
            missed = not f["estimate"] > 0 or abs(math.log(f["estimate"] / f["truth"])) >= math.log(
                1.5
            )
            truth_note = f" [truth {f['truth']:.3f}]" if len(truths) > 1 and method == "js" else ""
            row.append(
                f"{f['estimate']:.3f}{'*' if missed else ''} ({f['seconds']:.0f} s){truth_note}"
            )
        rows.append(row)
    lines += _table(["task", "true MI", *methods], rows)
    for e in section.entries:
        f = e.figures
        if "optimal_infonce" in f:
            lines += [
                "",
                f"{f['task']} (truth {f['truth']:g} nats), {f['method']}: {f['estimate']:.3f} "
                f"+- {f['stderr']:.3f} nats; optimal critic at B = {f['n_test']}: "
                f"{f['optimal_infonce']:.3f} +- {f['optimal_infonce_stderr']:.3f}; cap log B = "
                f"{f['cap']:.3f}; {f['seconds']:.0f} s",
            ]
    return lines


def report_markdown(secs: Sequence[Section], plot_paths: dict[int, Path | None]) -> str:
    """REPORT.md for these sections; ``plot_paths`` maps a section's index to its PNG."""
    by_suite: dict[str, list[tuple[int, Section]]] = defaultdict(list)
    for i, s in enumerate(secs):
        by_suite[s.suite].append((i, s))
    sources = sorted({s.results.path.name for s in secs})
    lines = [
        "# fdiv benchmarks",
        "",
        "Rendered by `fdiv bench`; for each suite and machine, the newest of these results files:",
        f"{', '.join(sources) or 'none'}. Times are medians; every table names its machine.",
        "",
        "## Headline: critic loss forward + backward at the largest size",
        "",
        *(_headline([s for _, s in by_suite["kernels"]]) or ["No kernel results yet."]),
        "",
        "## Kernels: critic loss forward + backward",
        "",
        "vs eager, vs compile: t(eager) / t and t(torch.compile) / t (above 1: faster). GB/s: the",
        "fused kernel's traffic (8 N x itemsize bytes) over the median, where a copy baseline ran.",
    ]
    kinds = {"kernels": _kernel_section, "accuracy": _accuracy_section, "gan": _gan_section}
    kinds["mi"] = _mi_section
    kinds["all_pairs"] = _all_pairs_section
    titles = {
        "accuracy": "Estimator accuracy (task library or Gaussian ground truth)",
        "gan": "GAN mode coverage (PacGAN protocol)",
        "mi": "Mutual information accuracy (MI task library)",
        "all_pairs": "All-pairs bound (InfoNCE) forward + backward: time and peak memory",
    }
    for suite, render_section in kinds.items():
        if suite in titles:
            lines += ["", f"## {titles[suite]}"]
        if not by_suite[suite]:
            lines += ["", "No results yet."]
        for i, section in by_suite[suite]:
            lines += ["", *render_section(section, plot_paths.get(i))]
    return "\n".join(lines) + "\n"


def readme_section(secs: Sequence[Section], report: str) -> str:
    """The README's Performance section (between the markers), from the same sections."""
    lines = [
        README_START,
        f"_Generated by `fdiv bench` from the committed results; all tables and plots: [{report}]"
        f"({report})._",
    ]
    kernels = [s for s in secs if s.suite == "kernels"]
    if kernels:
        lines += [
            "",
            "Critic loss forward + backward, median time per call at the largest size measured "
            "(vs: t(other) / t(fdiv), above 1 means fdiv is faster):",
            "",
            *_headline(kernels),
            "",
            *(f"- {_provenance(s)}" for s in kernels),
        ]
    for s in secs:
        if s.suite == "accuracy" and is_task_suite(s.entries):
            lines += [
                "",
                f"Estimates over the task library, |log(estimate/truth)| and 95% interval "
                f"coverage over {len(s.entries)} runs; measured on {_where(s)}:",
                "",
                *_table(SUMMARY_HEADER, method_summary(s.entries)),
            ]
        elif s.suite == "accuracy":
            lines += [
                "",
                f"KL estimates against Gaussian ground truth, |log(estimate/truth)| over "
                f"{len(s.entries)} cases; measured on {_where(s)}:",
                "",
                *_table(
                    ["method", "cases", "median", "worst", "mean s"], accuracy_summary(s.entries)
                ),
            ]
        elif s.suite == "gan":
            lines += [
                "",
                f"GAN mode coverage against the published results; measured on {_where(s)}:",
                "",
                *_table(gan_tables.TOY_HEADER, gan_tables.toy_rows(s.entries)),
            ]
    return "\n".join([*lines, README_END])


def update_readme(readme: Path, section: str) -> None:
    """Replace the text between the performance markers of ``readme`` (atomically)."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no {README_START} ... {README_END} markers to fill")
    write_text(readme, text[:start] + section + text[end + len(README_END) :])


def render(results: Sequence[Results], out_dir: Path, readme: Path | None = None) -> list[Path]:
    """Write REPORT.md and its plots into ``out_dir`` (and the README section); the paths."""
    secs = sections(results)
    draw = {
        "kernels": plots.kernel_times,
        "accuracy": plots.accuracy_errors,
        "gan": plots.gan_samples,
    }
    plot_paths: dict[int, Path | None] = {}
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "fdiv bench: matplotlib is not installed, so the report has no plots", file=sys.stderr
        )
    else:
        plot_paths = {
            i: (plots.task_errors if is_task_suite(s.entries) else draw[s.suite])(
                out_dir / f"REPORT-{s.suite}-{s.results.machine.id}.png", s.entries, _where(s)
            )
            for i, s in enumerate(secs)
            if s.suite in draw  # the MI suite has no plot
        }
    report = out_dir / "REPORT.md"
    write_text(report, report_markdown(secs, plot_paths))
    written = [report, *(p for p in plot_paths.values() if p)]
    if readme is not None:
        update_readme(readme, readme_section(secs, report.relative_to(readme.parent).as_posix()))
        written.append(readme)
    return written


def _provenance(section: Section) -> str:
    res = section.results
    quick = ", quick run" if any(e.quick for e in section.entries) else ""
    return f"Measured on {_where(section)}; commit {res.commit}; from {res.path.name}{quick}."


def _where(section: Section) -> str:
    res = section.results
    return f"{res.machine.label} ({res.datetime[:10]}, {res.software})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _size(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def format_time(seconds: float) -> str:
    """``seconds`` in µs, ms or s, whichever reads best."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _ratio(value: float | None) -> str:
    return _number(value, 2, "×")


def _number(value: float | None, digits: int, unit: str = "") -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}{unit}"
