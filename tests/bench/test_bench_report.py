"""The report renderer on a small fixed results file: tables, ratios, plots, README section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fdiv.bench import gan_tables, report, results

FIXTURE = Path(__file__).with_name("results.json")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fixture() -> results.Results:
    return results.load(FIXTURE)


def test_load_reads_machine_commit_and_entries(fixture: results.Results) -> None:
    assert fixture.machine.label == "Test GPU (host Test CPU, 4 cores)"
    assert fixture.machine.id == "test-gpu" and fixture.commit == "abcdef0"
    suites = [e.suite for e in fixture.entries]
    assert (suites.count("kernels"), suites.count("accuracy"), suites.count("gan")) == (10, 4, 4)


def test_kernel_table_ratios_and_bandwidth(fixture: results.Results) -> None:
    kernels = [e for e in fixture.entries if e.suite == "kernels"]
    (name, rows), *others = report.kernel_tables(kernels).items()
    assert name == "critic_loss js" and not others  # copy and launch are baselines, not kernels
    assert [(r.n, r.backend) for r in rows[:4]] == [
        (1024, "triton"),
        (1024, "reference"),
        (1024, "compile"),
        (1024, "eager"),
    ]
    big = {r.backend: r for r in rows if r.n == 2**20}
    assert big["triton"].vs_eager == pytest.approx(4.0)  # 400 us / 100 us
    assert big["triton"].vs_compile == pytest.approx(2.0)
    assert big["reference"].vs_compile == pytest.approx(0.25)
    assert big["triton"].gbps == pytest.approx(32 * 2**20 / 1e-4 / 1e9)  # 335.54 GB/s
    assert big["triton"].of_copy == pytest.approx(0.5)  # the copy moves the bytes in 50 us
    small = {r.backend: r for r in rows if r.n == 1024}
    assert small["compile"].vs_eager == pytest.approx(0.5)
    assert small["triton"].of_copy is None  # no copy baseline at this size


def test_rendered_report_tables(fixture: results.Results, tmp_path: Path) -> None:
    written = report.render([fixture], tmp_path)
    assert {p.name for p in written} == {
        "REPORT.md",
        "REPORT-kernels-test-gpu.png",
        "REPORT-accuracy-test-gpu.png",
        "REPORT-gan-test-gpu.png",
    }
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
    text = (tmp_path / "REPORT.md").read_text()
    expected = [
        "| Test GPU (host Test CPU, 4 cores) | critic_loss js | 2^20 | 100.0 µs (triton) | "
        "400.0 µs | 200.0 µs | 4.00× | 2.00× |",
        "| 2^20 | triton | 100.0 µs | 4.00× | 2.00× | 335.5 | 50% |",
        "| 2^20 | reference | 800.0 µs | 0.50× | 0.25× | 41.9 | 6% |",
        "| 2^10 | compile | 40.0 µs | 0.50× | 1.00× | 0.8 | - |",
        "- copy baseline, N = 2^20: 671.1 GB/s",
        "- empty Triton launch: 5.0 µs",
        "| 1 | 1 | 1.000 (0.105, 15 s) | 2.000 (0.693, 1 s) |",  # mean of 1.1 and 0.9
        "| 5 | 1 | -0.500 (inf, 30 s) | - |",
        "| ring8 | js | 2 | 7.0 ± 1.4/8 [6] | 85.0 ± 7.1 [80.0] | 0.020 ± 0.014 [0.030] | 0/2 "
        "| 70 |",
        "| ring8 | gan | 1 (1 stopped) | - | - | - | 0/1 | 10 |",
        "| ring8 | PacGAN2 (published) | - | 7.9 | 95.6 | 0.07 | - | - |",
        "| ring8 | WGAN-GP (published) | - | 6.8 | - | - | - | - |",
        "| js | 1 | 3.50 | 1.80 | 0.050 [0.01] | 10.0 | 0.012 | 100 |",
        "commit abcdef0",
    ]
    for line in expected:
        assert line in text


def test_accuracy_summary(fixture: results.Results) -> None:
    rows = report.accuracy_summary([e for e in fixture.entries if e.suite == "accuracy"])
    assert rows == [
        ["dv", "3", f"{-math.log(0.9):.3f}", "inf", "20.0"],
        ["knn", "1", f"{math.log(2.0):.3f}", f"{math.log(2.0):.3f}", "1.0"],
    ]


def test_readme_section_replaces_only_between_markers(
    fixture: results.Results, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.README_START}\nold\n{report.README_END}\nafter\n")
    (tmp_path / "results").mkdir()
    report.render([fixture], tmp_path / "results", readme)
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- performance:start -->\n_Generated")
    assert text.endswith("<!-- performance:end -->\nafter\n") and "old" not in text
    assert "[results/REPORT.md](results/REPORT.md)" in text
    assert "measured on Test GPU (host Test CPU, 4 cores) (2026-01-02" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- performance:start -->"):
        report.update_readme(readme, "section")


def test_newest_file_per_suite_and_machine(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    data["datetime"] = "2026-02-01T00:00:00+00:00"
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["suite"] == "gan"]
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    secs = results.sections([results.load(FIXTURE), results.load(newer)])
    assert [(s.suite, s.results.path.name) for s in secs] == [
        ("kernels", "results.json"),
        ("accuracy", "results.json"),
        ("gan", "newer.json"),
    ]


def test_the_pre_convention_accuracy_format_is_refused_by_name(tmp_path: Path) -> None:
    """The one old {"meta", "rows"} file was converted; such a file is now a clear error."""
    legacy = tmp_path / "accuracy-2026-01-01-cpu.json"
    legacy.write_text(json.dumps({"meta": {}, "rows": []}))
    with pytest.raises(ValueError, match=r"accuracy-2026-01-01-cpu\.json: not a pytest-benchmark"):
        results.load(legacy)


def test_recorded_results_all_load() -> None:
    recorded = sorted((Path(__file__).parents[2] / "benchmarks" / "results").glob("*.json"))
    assert recorded
    for path in recorded:
        assert results.load(path).entries, path


def test_gan_target_needs_every_mode_the_quality_and_the_reverse_kl() -> None:
    run = {"data": "ring8", "modes_captured": 8, "modes": 8, "high_quality": 97.0}
    assert gan_tables.meets_target({**run, "reverse_kl": 0.02})
    assert not gan_tables.meets_target({**run, "reverse_kl": 0.021})
    assert not gan_tables.meets_target({**run, "reverse_kl": 0.0, "high_quality": 96.9})
    assert not gan_tables.meets_target({**run, "reverse_kl": 0.0, "modes_captured": 7})
    assert not gan_tables.meets_target({"data": "ring8", "error": "stopped", "seconds": 1.0})
    grid = {"data": "grid25", "modes_captured": 25, "modes": 25, "reverse_kl": 0.01}
    assert gan_tables.meets_target({**grid, "high_quality": 95.0})
    assert not gan_tables.meets_target({**grid, "high_quality": 94.9})
