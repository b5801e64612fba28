"""Runs that survive kills, torn and corrupt files, careless output directories and a second
process; each test names the defect it guards against (issue 13).

The kill tests run a child that trains or resumes with ``os.replace`` patched to SIGKILL itself
just before a named file is renamed into place: the moment an atomic write commits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_testing import tiny_config

from fdiv import cli
from fdiv.gan import checkpoint
from fdiv.gan.config import TrainConfig
from fdiv.gan.rundir import RunLockedError, run_lock
from fdiv.gan.trainer import resume, train

EVAL = {"evaluate": True, "eval_samples": 300, "eval_steps": 5}


def _killed_child(target: str, action: Callable[[], object]) -> None:
    """Run ``action`` in a forked child that is SIGKILLed as it renames ``target`` into place.

    A fork, not a new interpreter: the child starts with torch and fdiv already imported.
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            real_replace = os.replace

            def replace_or_die(src: str, dst: str) -> None:
                if os.path.basename(dst) == target:
                    os.kill(os.getpid(), signal.SIGKILL)
                real_replace(src, dst)

            os.replace = replace_or_die
            action()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.latest(run_dir))["generator"]


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_while_resume_rewrites_metrics_keeps_the_history(tmp_path: Path) -> None:
    """Item 1: a kill at the rename of resume's rewritten metrics.jsonl leaves the old file."""
    run = tmp_path / "run"
    train(tiny_config(steps=6, keep_checkpoints=5), run)
    straight = _weights(run)
    (run / "ckpt-00000006.pt").unlink()  # as if killed after logging step 6, before its checkpoint
    _killed_child("metrics.jsonl", lambda: resume(run))
    assert _steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]  # nothing lost
    resume(run)
    assert _steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]
    assert not list(run.glob(".metrics.jsonl.*.tmp"))  # the stray file was cleaned
    assert _equal(_weights(run), straight)


@pytest.mark.parametrize(
    ("steps", "eval_every", "evaluated"),
    [(2, 0, [2]), (4, 2, [2, 4])],
    ids=["final-evaluation", "periodic-evaluation"],
)
def test_an_evaluation_interrupted_by_a_kill_is_redone_on_resume(
    tmp_path: Path, steps: int, eval_every: int, evaluated: list[int]
) -> None:
    """Item 2: killed while writing the first evaluation (at step 2, where a checkpoint was just
    written), the resumed run evaluates step 2 before going on."""
    run = tmp_path / "run"
    config = tiny_config(steps=steps, eval_every=eval_every, **EVAL)
    _killed_child("evaluation.json", lambda: train(config, run))
    assert checkpoint.latest(run).name == "ckpt-00000002.pt"
    assert not (run / "eval.jsonl").exists()
    result = resume(run)
    assert "heldout_js" in result
    assert _steps(run / "eval.jsonl") == evaluated
    assert json.loads((run / "evaluation.json").read_text())["step"] == steps
    assert (run / "samples.png").stat().st_size > 0
    assert resume(run) == {}  # done: nothing is evaluated twice
    assert _steps(run / "eval.jsonl") == evaluated


def test_a_torn_last_log_line_is_dropped_and_a_bad_one_leaves_the_run_untouched(
    tmp_path: Path,
) -> None:
    """Item 4: a torn last line (a kill mid-append) does not block resume; an unreadable line
    elsewhere is an error naming the file, raised before config.json is rewritten."""
    run = tmp_path / "run"
    train(tiny_config(steps=4), run)
    (run / "ckpt-00000004.pt").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:3]) + "{}\n" + lines[3][:-1])
    config = (run / "config.json").read_bytes()
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 4 is not a record"):
        resume(run, steps=8)
    assert (run / "config.json").read_bytes() == config  # steps still 4
    (run / "metrics.jsonl").write_text("".join(lines[:3]) + '{"step": 4, "crit')
    resume(run)
    assert _steps(run / "metrics.jsonl") == [1, 2, 3, 4]


@pytest.mark.parametrize("size", [0, 100], ids=["empty", "truncated"])
def test_a_corrupt_latest_checkpoint_falls_back_to_an_older_one(tmp_path: Path, size: int) -> None:
    """Item 5: the newest checkpoint cut to ``size`` bytes: resume warns and continues from the
    older one, ending with the weights of the uninterrupted run."""
    run = tmp_path / "run"
    train(tiny_config(steps=4), run)
    straight = _weights(run)
    newest = run / "ckpt-00000004.pt"
    os.truncate(newest, size)
    with pytest.warns(RuntimeWarning, match=r"ckpt-00000004\.pt: not a readable checkpoint.*"):
        resume(run)
    assert _equal(_weights(run), straight)
    for path in checkpoint.checkpoints(run):
        os.truncate(path[1], size)
    with pytest.raises(ValueError, match="no checkpoint loads"):
        resume(run)


def test_a_second_process_refuses_a_locked_run_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 6: while one process holds the run, a resume (library or CLI) refuses at once,
    naming the holder's pid and host; the first run's files are untouched."""
    run = tmp_path / "run"
    train(tiny_config(steps=2), run)
    before = (run / "metrics.jsonl").read_bytes()
    held_r, held_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder: a second process with the run's lock
        try:
            with run_lock(run):
                os.write(held_w, b"1")
                os.read(release_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(held_r, 1) == b"1"
        assert cli.main(["train", "--resume", str(run), "--steps", "4"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert f"is in use by pid {pid} on host {socket.gethostname()}" in err[0]
    finally:
        os.write(release_w, b"1")
        os.waitpid(pid, 0)
    assert (run / "metrics.jsonl").read_bytes() == before
    with run_lock(run), pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        resume(run, steps=4)  # the same process, another descriptor: refused too
    resume(run, steps=3)  # released: the next one proceeds
    assert _steps(run / "metrics.jsonl") == [1, 2, 3]


def test_train_out_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    """Item 3: a foreign directory keeps its files; a file is refused; a run that never reached
    a checkpoint is restarted."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    files = {"config.json": '{"mine": 1}\n', "metrics.jsonl": "x\n", "eval.jsonl": "y\n"}
    for name, text in files.items():
        (foreign / name).write_text(text)
    with pytest.raises(ValueError, match="is not empty and is not an fdiv run"):
        train(tiny_config(steps=2), foreign)
    assert {p.name: p.read_text() for p in foreign.iterdir() if p.name in files} == files
    with pytest.raises(ValueError, match="exists and is a file"):
        train(tiny_config(steps=2), foreign / "config.json")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps(tiny_config(steps=9).to_dict()))
    (partial / "metrics.jsonl").write_text('{"step": 7}\n')
    train(tiny_config(steps=2), partial)
    assert _steps(partial / "metrics.jsonl") == [1, 2]


def test_options_accept_numpy_scalars_and_refuse_bools() -> None:
    """Item 10: numpy integers and floats are numbers; True is not one."""
    config = tiny_config(steps=np.int64(3), lr_g=np.float32(1e-3), betas_d=(np.float64(0.5), 0.9))
    config.validate()
    assert type(config.steps) is int and type(config.lr_g) is float
    json.dumps(config.to_dict())
    with pytest.raises(TypeError, match="steps must be int"):
        tiny_config(steps=True).validate()
    with pytest.raises(ValueError, match="eval_samples must be an integer >= 300"):
        TrainConfig(eval_samples=50).validate()
