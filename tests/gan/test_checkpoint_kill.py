"""A process killed (SIGKILL) while writing a checkpoint leaves the previous one intact.

The child trains with a checkpoint every 2 steps and kills itself at the ``fsync`` of the second
checkpoint: the new file is written but not yet renamed into place. The parent then finds the
step-2 checkpoint as the latest, loads it, and resumes to the end: the weights equal those of a
run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from gan_testing import tiny_config

from fdiv.gan import checkpoint
from fdiv.gan.trainer import resume, train

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, {tests!r})
    from gan_testing import tiny_config
    from fdiv.gan.trainer import train

    torch.set_num_threads(1)
    real_fsync = os.fsync

    def fsync_then_die(fd):
        if os.readlink(f"/proc/self/fd/{{fd}}").rsplit("/", 1)[-1].startswith(".ckpt-00000004"):
            os.kill(os.getpid(), signal.SIGKILL)  # mid-way through the second checkpoint
        real_fsync(fd)

    os.fsync = fsync_then_die
    train(tiny_config(steps=6), {run_dir!r})
    """
)


def test_sigkill_during_a_checkpoint_write_leaves_a_loadable_latest(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    code = CHILD.format(tests=str(Path(__file__).parent), run_dir=str(run_dir))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert list(run_dir.glob(".ckpt-00000004.pt.*.tmp")), "the kill should hit the second write"
    latest = checkpoint.latest(run_dir)
    assert latest.name == "ckpt-00000002.pt"
    assert checkpoint.load(latest)["step"] == 2

    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert logged == [1, 2, 3, 4]

    resume(run_dir)
    assert not list(run_dir.glob(".ckpt-*.tmp"))
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert logged == [1, 2, 3, 4, 5, 6]  # the records past the checkpoint were rewritten
    train(tiny_config(steps=6), tmp_path / "straight")
    for part in ("generator", "critic", "ema"):
        killed = checkpoint.load(checkpoint.latest(run_dir))[part]
        straight = checkpoint.load(checkpoint.latest(tmp_path / "straight"))[part]
        assert all(torch.equal(killed[k], straight[k]) for k in straight)
