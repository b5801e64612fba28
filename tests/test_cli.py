"""The `fdiv` command: the divergence table, version, help, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fdiv import __version__, cli
from fdiv.divergences import registry


def test_divergences_lists_every_entry_with_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["divergences"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "aliases"]
    listed = [line.split()[0] for line in lines[2:]]
    assert listed == registry.names()
    assert "jsd, jensen_shannon" in out and "[0, log 2]" in out and "[-log 4, 0]" in out


def test_divergences_with_alpha_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["divergences", "--alpha", "0.5", "--alpha", "3"]) == 0
    out = capsys.readouterr().out
    assert "alpha(0.5)" in out and "[0, 4]" in out and "alpha(3)" in out


def test_divergences_rejects_alpha_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["divergences", "--alpha", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other than 0 and 1" in err[0]


def test_unknown_subcommand_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "invalid choice: 'frobnicate'" in lines[0]


def test_version_and_help_through_the_installed_entry_point() -> None:
    run = [sys.executable, "-m", "fdiv.cli"]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"fdiv {__version__}"
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True)
    assert "divergences" in helped.stdout and "nats" in helped.stdout
    bad = subprocess.run([*run, "divergences", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
