"""Every input that once gave a traceback, a late failure or a misleading message now gives one
line on stderr and exit status 2 (issue 13, items 7, 8 and 10), through ``fdiv.cli.main``."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fdiv import cli, io, progress
from fdiv.gan import checkpoint
from fdiv.gan.trainer import train

sys.path.insert(0, str(Path(__file__).parent / "gan"))
from gan_testing import tiny_config

P = np.random.default_rng(0).normal(size=(200, 1))
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *texts: str) -> str:
    """Run the CLI: exit status 2, one line on stderr holding every text; returns the line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(text in err[0] for text in texts), err
    return err[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run (two checkpoints)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    train(tiny_config(steps=2, checkpoint_every=1), run)
    return run


@pytest.fixture
def p_file(tmp_path: Path) -> str:
    np.save(tmp_path / "p.npy", P)
    return str(tmp_path / "p.npy")


@pytest.mark.parametrize("name", ["empty.npy", "empty.npz", "empty.pt", "empty.csv"])
def test_an_empty_file_is_one_line(
    tmp_path: Path, p_file: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / name).touch()
    empty = str(tmp_path / name)
    _fails(capsys, ["estimate", empty, p_file], empty, "empty (0 bytes)")
    if name == "empty.npy":
        _fails(capsys, ["train", "--data", empty, "--out", str(tmp_path / "r")], "empty")


def test_a_torn_npy_and_a_binary_csv_name_the_file(
    tmp_path: Path, p_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    torn = tmp_path / "torn.npy"
    torn.write_bytes(Path(p_file).read_bytes()[:60])
    _fails(capsys, ["estimate", str(torn), p_file], str(torn), "not a numeric .npy")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\x01\xff\xfe\x80")
    _fails(capsys, ["estimate", str(binary), p_file], str(binary), "binary data")


def test_an_unreadable_file_is_one_line(
    tmp_path: Path, p_file: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permissions are simulated (the tests may run as root, who reads everything)."""
    locked = tmp_path / "locked.npy"
    np.save(locked, P)

    def denied(file: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(np, "load", denied)
    _fails(capsys, ["estimate", str(locked), p_file], str(locked), "cannot read", "Permission")


def test_a_pickled_object_is_refused_without_torchs_advice(
    tmp_path: Path, p_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "object.pt"
    torch.save({"x": Path("anything")}, path)
    line = _fails(capsys, ["estimate", str(path), p_file], str(path), "not loadable")
    assert "weights_only" not in line and "GLOBAL" in line


@NO_CUDA
def test_cuda_on_a_machine_without_it(
    tmp_path: Path, p_file: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "r")
    _fails(capsys, ["train", "--device", "cuda", "--out", out], "CUDA is not available")
    _fails(capsys, ["estimate", p_file, p_file, "--device", "cuda:0"], "CUDA is not available")
    from fdiv.estimation.estimate import estimate
    from fdiv.gan.distributed import from_environment

    with pytest.raises(ValueError, match="CUDA is not available"):
        estimate(P, P, device="cuda", steps=1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="CUDA is not available"):
        from_environment("cuda")


def test_train_out_a_file_and_too_few_eval_samples_fail_before_training(
    tmp_path: Path, p_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails(capsys, ["train", "--out", p_file], p_file, "is a file")
    out = str(tmp_path / "r")
    _fails(capsys, ["train", "--out", out, "--eval-samples", "50"], "eval_samples", ">= 300")
    assert not Path(out).exists()


def test_outputs_in_a_missing_directory_fail_before_the_work(
    tmp_path: Path,
    p_file: str,
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(cli, "estimate", no_work)
    monkeypatch.setattr(cli.gan_commands, "load_generator", no_work)
    target = str(tmp_path / "missing" / "out.json")
    line = _fails(capsys, ["estimate", p_file, p_file, "--json", target], target, "does not exist")
    assert ".tmp" not in line
    target = str(tmp_path / "missing" / "s.npy")
    _fails(capsys, ["sample", str(run_dir), "-o", target], target, "does not exist")


def test_sample_too_many_is_one_line(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "s.npy")
    _fails(capsys, ["sample", str(run_dir), "-n", "100000000000", "-o", out], "GiB", "memory")


def test_one_sample_is_singular_and_files_are_readable_by_all(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.npy"
    (tmp_path / ".s.npy.stray.tmp").write_bytes(b"left by a kill")
    assert cli.main(["sample", str(run_dir), "-n", "1", "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith("wrote 1 sample of dimension 2 ")
    assert out.stat().st_mode & 0o777 == 0o644
    assert checkpoint.latest(run_dir).stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".s.npy.*.tmp"))  # the interrupted write's file is gone


@pytest.mark.parametrize(
    ("change", "text"),
    [("drop", "missing ema"), ("resize", "weights do not match its config")],
)
def test_a_checkpoint_with_missing_keys_or_foreign_weights(
    tmp_path: Path, run_dir: Path, change: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    state = checkpoint.load(checkpoint.latest(run_dir))
    if change == "drop":
        del state["ema"]
    else:
        state["config"]["generator_hidden"] = [8]
    path = run / "ckpt-00000002.pt"
    torch.save(state, path)
    out = str(tmp_path / "s.npy")
    _fails(capsys, ["sample", str(run), "-o", out], str(path), text)
    _fails(capsys, ["train", "--resume", str(run)], str(path), text)


def test_run_directory_messages(
    tmp_path: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "s.npy")
    _fails(capsys, ["sample", str(tmp_path), "-o", out], "no checkpoint in this directory")
    _fails(capsys, ["sample", out + ".x", "-o", out], "it does not exist")
    (tmp_path / "file").touch()
    _fails(capsys, ["sample", str(tmp_path / "file"), "-o", out], "it is a file")
    argv = ["train", "--resume", str(run_dir), "--no-evaluate"]
    _fails(capsys, argv, "got --no-evaluate")


def test_write_json_removes_stray_temporary_files(tmp_path: Path) -> None:
    stray = tmp_path / ".result.json.abc123.tmp"
    stray.write_text("{")
    io.write_json(tmp_path / "result.json", {"a": 1})
    assert json.loads((tmp_path / "result.json").read_text()) == {"a": 1}
    assert not stray.exists()


def test_piped_training_prints_periodic_progress_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stderr is not a terminal here: the progress display prints plain lines, one per
    interval (the clock is advanced 31 s per reading), never a carriage return."""
    clock = itertools.count(0.0, 31.0)
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    run = str(tmp_path / "r")
    argv = ["train", "--out", run, "--steps", "3", "--batch-size", "16", "--latent-dim", "2"]
    argv += ["--generator-hidden", "8", "--critic-hidden", "8", "--no-evaluate", "--log-every", "1"]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("train")]
    assert lines and "3/3" in lines[-1], err


def test_numbers_from_numpy_are_options_and_bools_are_not() -> None:
    from fdiv.estimation.estimate import estimate

    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        estimate(P, P, lr=True)
    result = estimate(P, P, steps=np.int64(2), lr=np.float32(1e-3), eval_every=np.int32(1))
    assert result.steps == 2
