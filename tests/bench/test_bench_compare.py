"""The regression comparison and ``fdiv bench``'s errors, through ``fdiv.cli.main``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fdiv import cli
from fdiv.bench import compare, results, run

FIXTURE = Path(__file__).with_name("results.json")
K = "benchmarks/bench_kernels.py::test_critic_loss_fwd_bwd"
A = "benchmarks/bench_accuracy.py::test_accuracy"
G = "benchmarks/bench_gan.py::test_mode_coverage"
D = "benchmarks/bench_gan.py::test_digits"


def _edited(tmp_path: Path, edits: dict[str, dict[str, Any]]) -> Path:
    """The fixture with, per benchmark name, its median ("median") or figures changed."""
    data = json.loads(FIXTURE.read_text())
    for bench in data["benchmarks"]:
        change = copy.deepcopy(edits.get(bench["fullname"], {}))
        if "median" in change:
            bench["stats"]["median"] = change.pop("median")
        bench["extra_info"]["figures"].update(change)
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """Regressions: a kernel 50% slower, an estimate 0.31 worse in |log error|, a GAN run with
    25% fewer modes, one that stopped, a digits run 20% further in Frechet distance; noise: 5%
    slower, |log error| 0.05 worse, 5% fewer high-quality samples."""
    return _edited(
        tmp_path,
        {
            f"{K}[js-triton-n20]": {"median": 1.5e-4},
            f"{K}[js-eager-n10]": {"median": 2.1e-5},
            f"{A}[0-1-1.0-dv]": {"estimate": 1.5},
            f"{A}[0-1-1.0-knn]": {"estimate": 2.1},
            f"{G}[ring8-js-0]": {"modes_captured": 6, "high_quality": 85.0},
            f"{G}[ring8-js-1]": {"error": "non-finite loss"},
            f"{D}[js-0]": {"frechet": 4.2},
        },
    )


def test_planted_regressions_are_found_and_noise_ignored(planted: Path) -> None:
    found, count = compare.compare(results.load(FIXTURE), results.load(planted), 0.1)
    assert count == 18
    assert sorted((r.name, r.what) for r in found) == [
        (f"{A}[0-1-1.0-dv]", "less accurate, |log(est/truth)|"),
        (f"{D}[js-0]", "higher Frechet distance"),
        (f"{G}[ring8-js-0]", "fewer modes"),
        (f"{G}[ring8-js-1]", "stopped"),
        (f"{K}[js-triton-n20]", "slower"),
    ]
    slower = next(r for r in found if r.what == "slower")
    assert (slower.old, slower.new) == ("100.0 µs", "150.0 µs (+50%)")


def test_threshold_decides(planted: Path) -> None:
    found, _ = compare.compare(results.load(FIXTURE), results.load(planted), 0.6)
    assert [r.what for r in found] == ["stopped"]  # only a run that stopped is never noise
    found, _ = compare.compare(results.load(FIXTURE), results.load(planted), 0.04)
    assert f"{K}[js-eager-n10]" in {r.name for r in found}


def test_cli_exit_status(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = str(FIXTURE), str(planted)
    assert cli.main(["bench", "--compare", old, new]) == 0
    out = capsys.readouterr().out
    assert f"slower: {K}[js-triton-n20]: 100.0 µs -> 150.0 µs (+50%)" in out
    assert out.rstrip().endswith("5 regressions in 18 benchmarks present in both files")
    assert cli.main(["bench", "--compare", old, new, "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert cli.main(["bench", "--compare", old, old, "--fail-on-regression"]) == 0
    assert "0 regressions in 18" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "missing.json: no such file"),
        ('{"a": 1}', "not a pytest-benchmark JSON file"),
        ("not json", "not a JSON file"),
        ('{"machine_info": {}, "benchmarks": [{"name": "x"}]}', "lacks 'fullname'"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "missing.json"
    if content is not None:
        path.write_text(content)
    for argv in (
        ["--compare", str(path), str(FIXTURE)],
        ["--compare", str(path)],  # OLD is read before any suite runs
        ["--report-only", str(path)],
    ):
        assert cli.main(["bench", *argv, "--out", str(tmp_path)]) == 2
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and message in captured.err
        assert captured.err.startswith("fdiv: error: ")


def test_bad_options_are_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(FIXTURE)
    assert cli.main(["bench", "--compare", f, f, "--threshold", "-1"]) == 2
    assert "threshold must be a non-negative" in capsys.readouterr().err
    assert cli.main(["bench", "--compare", f, f, f]) == 2
    assert "at most one NEW.json" in capsys.readouterr().err
    assert cli.main(["bench", "--suite", "speed"]) == 2
    assert "invalid choice: 'speed'" in capsys.readouterr().err


def test_no_source_tree_is_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run, "PACKAGE_TREE", tmp_path)
    assert cli.main(["bench", "--report-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no benchmarks/conftest.py in {tmp_path}" in err
