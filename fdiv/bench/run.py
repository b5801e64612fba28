"""Running the benchmark suites: pytest-benchmark in a subprocess, results kept by date and machine.

A run writes ``<date>-<machine>.json``: pytest-benchmark's JSON with fdiv's figures, without the
per-round timings (the statistics stay). A second run on the same day and machine merges into
that file: its benchmarks replace those of the same name, the others stay.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fdiv
from fdiv.bench.results import SUITES
from fdiv.io import write_json

__all__ = ["PYTEST_NO_TESTS", "find_tree", "run_suites", "save"]

PYTEST_NO_TESTS = 5
PACKAGE_TREE = Path(fdiv.__file__).resolve().parents[1]


def find_tree() -> Path:
    """The source tree of the imported fdiv, which holds ``benchmarks/``; else a clear error."""
    tree = PACKAGE_TREE
    if (tree / "benchmarks" / "conftest.py").is_file():
        return tree
    raise ValueError(
        f"fdiv bench needs the source tree: no benchmarks/conftest.py in {tree}, where fdiv is "
        "imported from (install a checkout with pip install -e .)"
    )


def run_suites(
    tree: Path, suites: Sequence[str], quick: bool, out_dir: Path, select: str | None = None
) -> tuple[int, Path | None]:
    """Run ``suites`` under pytest (its output shown as it runs); pytest's status and the file
    the results went to (None if no benchmark ran)."""
    missing = [m for m in ("pytest", "pytest_benchmark") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"fdiv bench needs {' and '.join(missing)}: pip install -e '.[test]'")
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        raise ValueError(f"suite {unknown[0]!r} is unknown; known: {', '.join(SUITES)}")
    with tempfile.TemporaryDirectory(prefix="fdiv-bench-") as tmp:
        raw = Path(tmp) / "run.json"
        command = [sys.executable, "-m", "pytest", *(f"benchmarks/bench_{s}.py" for s in suites)]
        command += ["-p", "no:cacheprovider", "--benchmark-enable", f"--benchmark-json={raw}"]
        command += ["--benchmark-columns=median,iqr,rounds", "--benchmark-sort=name"]
        command += ["--quick"] if quick else []
        command += ["-k", select] if select else []
        print("$ " + shlex.join(command), flush=True)
        status = subprocess.run(command, cwd=tree, env=_bench_environment(), check=False).returncode
        run = json.loads(raw.read_text()) if raw.is_file() else {}
    if not run.get("benchmarks"):
        return status, None
    return status, save(run, out_dir)


def _bench_environment() -> dict[str, str]:
    """This process's environment without pytest-xdist's worker variables: started from inside
    an xdist worker (a test run with ``-n``), pytest-benchmark would read them and disable
    every benchmark."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}


def save(run: dict[str, Any], out_dir: Path) -> Path:
    """Write the run into ``out_dir/<date>-<machine>.json`` (merging a file already there)."""
    machine = run["machine_info"].get("fdiv", {}).get("id", "unknown-machine")
    path = out_dir / f"{run['datetime'][:10]}-{machine}.json"
    for bench in run["benchmarks"]:
        bench["stats"].pop("data", None)
    if path.is_file():
        fresh = {b["fullname"] for b in run["benchmarks"]}
        kept = [b for b in json.loads(path.read_text())["benchmarks"] if b["fullname"] not in fresh]
        run["benchmarks"] = kept + run["benchmarks"]
    write_json(path, run)
    return path
