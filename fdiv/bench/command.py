"""``fdiv bench``: run the benchmark suites, render the report, compare with earlier results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fdiv.bench import compare, report, results
from fdiv.bench.run import PYTEST_NO_TESTS, find_tree, run_suites

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fdiv bench``."""
    parser.add_argument(
        "--quick", action="store_true", help="the small configuration (minutes, not tens)"
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=results.SUITES,
        help="run this suite only (repeatable; default: all)",
    )
    parser.add_argument("-k", dest="select", metavar="EXPR", help="pytest -k selection")
    parser.add_argument(
        "--report-only",
        nargs="*",
        metavar="RESULTS.json",
        help="render the report from these results files without running (none given: every "
        "results file in the output directory)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="JSON",
        help="OLD.json [NEW.json]: print what got slower or less accurate from OLD to NEW "
        "(default NEW: this run's results, or the one --report-only file); with NEW, only compare",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="regression threshold: 0.1 flags times 10%% slower and |log error| 0.1 worse",
    )
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when the comparison finds a regression",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default benchmarks/results; only that one updates README.md)",
    )


def run(args: argparse.Namespace) -> int:
    """Run, render and compare as the options say; the exit status."""
    old_path, *new = args.compare or [None]
    if len(new) > 1:
        raise ValueError("--compare takes OLD.json and at most one NEW.json")
    old = results.load(old_path) if old_path is not None else None  # bad input fails first
    if old is not None and new:
        return _compare(old, results.load(new[0]), args)
    out_dir = args.out if args.out is not None else find_tree() / "benchmarks" / "results"
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir}: no such directory for the results")
    status = 0
    if args.report_only is not None:
        produced = [Path(p) for p in args.report_only]
        loaded = [results.load(p) for p in produced]
    else:
        tree = find_tree()
        status, path = run_suites(
            tree, args.suite or results.SUITES, args.quick, out_dir, args.select
        )
        if path is None:
            if status in (0, PYTEST_NO_TESTS):
                raise ValueError("no benchmark ran: the selection left nothing to measure")
            return status
        print(f"results: {path}")
        produced, loaded = [path], []
    if not loaded:
        loaded = _results_in(out_dir)
    readme = find_tree() / "README.md" if args.out is None else None
    for path in report.render(loaded, out_dir, readme):
        print(f"wrote {path}")
    if old is not None:
        if len(produced) != 1:
            raise ValueError("--compare OLD.json needs one new results file to compare with")
        status = max(status, _compare(old, results.load(produced[0]), args))
    return 1 if status else 0


def _compare(old: results.Results, new: results.Results, args: argparse.Namespace) -> int:
    text, regressions = compare.describe(old, new, args.threshold)
    print(text)
    return 1 if regressions and args.fail_on_regression else 0


def _results_in(out_dir: Path) -> list[results.Results]:
    """Every results file in ``out_dir``; files that are not results are skipped with a note."""
    loaded = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            loaded.append(results.load(path))
        except ValueError as err:
            print(f"fdiv bench: skipping {err}", file=sys.stderr)
    return loaded
