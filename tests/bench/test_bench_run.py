"""``fdiv bench`` end to end on the kernel suite at one size, and the results file it keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fdiv import cli
from fdiv.bench import results, run

README = run.find_tree() / "README.md"


def test_quick_kernel_run_writes_results_and_report(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # as inside a pytest-xdist worker (make test): the bench's pytest must still measure
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    readme_before = README.read_text()
    argv = ["bench", "--quick", "--suite", "kernels", "-k", "js and eager and n12"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    assert "test_critic_loss_fwd_bwd[js-eager-n12]" in out  # pytest's progress was shown
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    info = data["machine_info"]["fdiv"]
    assert path.name == f"{data['datetime'][:10]}-{info['id']}.json"
    assert {"cpu", "cores", "gpu", "torch", "triton", "commit"} <= info.keys()
    (bench,) = data["benchmarks"]
    assert "data" not in bench["stats"] and bench["stats"]["rounds"] >= 5
    assert bench["extra_info"] == {
        "suite": "kernels",
        "quick": True,
        "figures": {"kernel": "critic_loss js", "backend": "eager", "n": 4096, "bytes": 131072},
    }
    report = (tmp_path / "REPORT.md").read_text()
    assert "| 2^12 | eager |" in report and info["label"] in report
    assert README.read_text() == readme_before  # only the tree's own results update the README


def test_empty_selection_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--suite", "kernels", "-k", "no_such_case", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "no benchmark ran" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_save_merges_a_days_runs_on_one_machine(tmp_path: Path) -> None:
    def run_of(names: list[str], median: float) -> dict:
        benches = [{"fullname": n, "stats": {"median": median, "data": [median]}} for n in names]
        info = {"fdiv": {"id": "m1", "label": "M1"}}
        return {"machine_info": info, "datetime": "2026-03-04T05:06:07", "benchmarks": benches}

    first = run.save(run_of(["a", "b"], 1.0), tmp_path)
    second = run.save(run_of(["b", "c"], 2.0), tmp_path)
    assert first == second == tmp_path / "2026-03-04-m1.json"
    merged = {e.name: e.median for e in results.load(second).entries}
    assert merged == {"a": 1.0, "b": 2.0, "c": 2.0}
    assert "data" not in json.loads(second.read_text())["benchmarks"][0]["stats"]
