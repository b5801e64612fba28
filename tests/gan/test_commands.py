"""``fdiv train / sample / evaluate`` end to end on a tiny run, and one-line errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fdiv import cli

TINY = [
    "--steps", "4", "--batch-size", "32", "--latent-dim", "4", "--generator-hidden", "16", "16",
    "--critic-hidden", "16", "16", "--checkpoint-every", "2", "--device", "cpu",
]  # fmt: skip


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str], text: str) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0], err


def test_train_resume_sample_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(tmp_path / "run")
    argv = ["train", "--data", "ring8", "--divergence", "js", "--out", run, *TINY]
    assert cli.main([*argv, "--no-evaluate"]) == 0
    assert cli.main(["train", "--resume", run, "--steps", "6", "--eval-samples", "200"]) == 2
    assert "only --steps may be given" in capsys.readouterr().err
    assert cli.main(["train", "--resume", run, "--steps", "6"]) == 0
    assert capsys.readouterr().out == f"run directory: {run}\n"  # this run does not evaluate
    out = tmp_path / "samples.npy"
    assert cli.main(["sample", run, "-n", "300", "-o", str(out)]) == 0
    samples = np.load(out, allow_pickle=False)
    assert samples.shape == (300, 2) and samples.dtype == np.float32
    assert cli.main(["evaluate", run, "-n", "300", "--estimate-steps", "20"]) == 0
    printed = capsys.readouterr().out
    assert "modes captured:" in printed and "held-out js estimate" in printed
    assert (tmp_path / "run" / "samples.png").stat().st_size > 10_000


def test_train_evaluates_and_plots_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "digits"
    argv = ["train", "--data", "digits", "--out", str(run), *TINY, "--channels", "4"]
    assert cli.main([*argv, "--eval-samples", "300", "--eval-steps", "20"]) == 0
    printed = capsys.readouterr().out
    assert "digit classes covered" in printed and f"run directory: {run}" in printed
    assert {"samples.png", "curves.png", "evaluation.json"} <= {p.name for p in run.iterdir()}


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["train", "--data", "ring9", "--out", "x"], "dataset 'ring9' is unknown"),
        (["train", "--steps", "-3", "--out", "x"], "steps must be a positive integer"),
        (["train", "--steps", "3"], "give --out RUN_DIR"),
        (["sample", "nowhere", "-o", "s.npy"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], text: str
) -> None:
    _one_error_line(capsys, argv, text)


def test_resume_without_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_error_line(capsys, ["train", "--resume", str(tmp_path)], "no checkpoint in this directory")
    _one_error_line(capsys, ["evaluate", str(tmp_path)], "no checkpoint")
