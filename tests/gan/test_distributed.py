"""Two processes on the CPU (gloo): synchronised networks, rank-averaged metrics, exact resume.

One ``torch.multiprocessing.spawn`` runs every check, to pay the process start-up once.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from gan_testing import tiny_config

from fdiv.gan import checkpoint
from fdiv.gan.distributed import end_process
from fdiv.gan.rundir import RunLockedError, run_lock
from fdiv.gan.trainer import Trainer, resume, train

WORLD = 2


def _environment(rank: int, port: int) -> None:
    """What torchrun sets for one of WORLD ranks on this machine."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )


def _worker(rank: int, port: int, root: str) -> None:
    _environment(rank, port)
    out = Path(root)
    # The gradient penalty (double backward) is on: the hardest case for DDP.
    config = tiny_config(divergence="wgan-gp", steps=6, checkpoint_every=3)
    train(config, out / "straight")
    interrupted = Trainer(config, out / "cut")
    if rank == 0:
        (out / "cut").mkdir()
    for _ in range(3):
        interrupted.train_step()
    interrupted.save_checkpoint()
    interrupted.ctx.barrier()
    resume(out / "cut")

    trainer = Trainer(tiny_config(divergence="js", penalty="r1"), out / "unused")
    local: dict[str, float] = {}
    for name in ("critic_update", "generator_update"):
        update = getattr(trainer, name)

        def record(detailed: bool = False, *args: bool, update=update) -> dict[str, torch.Tensor]:
            values = update(detailed, *args)
            local.update({k: float(v) for k, v in values.items()})
            return values

        setattr(trainer, name, record)
    reduced = trainer.train_step(detailed=True)
    torch.save(
        {
            "local": local,
            "reduced": reduced,
            "generator": trainer.generator.state_dict(),
            "critic": trainer.critic.state_dict(),
        },
        out / f"rank{rank}.pt",
    )
    end_process(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_in_sync_and_average_their_metrics(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for part in ("generator", "critic"):
        assert all(torch.equal(ranks[0][part][k], ranks[1][part][k]) for k in ranks[0][part])
    assert ranks[0]["local"]["critic_loss"] != ranks[1]["local"]["critic_loss"]  # own data
    for key, value in ranks[0]["reduced"].items():
        mean = (ranks[0]["local"][key] + ranks[1]["local"][key]) / 2
        assert abs(value - mean) <= 1e-6 * max(1.0, abs(mean)), key
    assert ranks[1]["reduced"] == ranks[0]["reduced"]

    assert not (tmp_path / "unused").exists()
    straight = checkpoint.load(checkpoint.latest(tmp_path / "straight"))
    cut = checkpoint.load(checkpoint.latest(tmp_path / "cut"))
    assert straight["world_size"] == 2 and straight["rng_data"].shape[0] == 2
    for part in ("generator", "critic", "ema", "rng_data", "rng_noise"):
        a, b = straight[part], cut[part]
        assert all(torch.equal(a[k], b[k]) for k in a) if isinstance(a, dict) else torch.equal(a, b)
    steps = [line for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 6


def _refused_worker(rank: int, port: int, root: str) -> None:
    _environment(rank, port)
    try:
        train(tiny_config(steps=2), Path(root) / "busy")
    except ValueError as err:
        (Path(root) / f"refused{rank}.txt").write_text(type(err).__name__)
    end_process(0)


def test_a_locked_run_directory_stops_every_rank(tmp_path: Path) -> None:
    # rank 0 cannot take the lock; the other rank used to wait for it in its first update (under
    # gloo until rank 0's exit broke the connection: a traceback of a collective, no reason)
    busy = tmp_path / "busy"
    busy.mkdir()
    with run_lock(busy):
        ranks = mp.spawn(
            _refused_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False
        )
        deadline = time.monotonic() + 120
        while not ranks.join(timeout=2):
            if time.monotonic() > deadline:
                for process in ranks.processes:
                    process.kill()
                pytest.fail("a rank still waits for rank 0 two minutes after its refusal")
    assert (tmp_path / "refused0.txt").read_text() == "RunLockedError"
    assert (tmp_path / "refused1.txt").read_text() == "RunStartError"


def test_a_refused_start_frees_its_trainer_with_the_error(tmp_path: Path) -> None:
    # the trainer (under torchrun: its DDP wrappers, holding the process group) must go with the
    # error, not wait in a reference cycle for interpreter shutdown, where gloo's threads could
    # abort the process (SIGABRT) after its clean refusal; gc is off so that only reference
    # counting frees it
    busy = tmp_path / "busy"
    busy.mkdir()
    gc.collect()
    gc.disable()
    try:
        with run_lock(busy):
            try:
                train(tiny_config(steps=2), busy)
            except RunLockedError:
                pass
            else:
                pytest.fail("a locked run directory was not refused")
        alive = sum(type(o) is Trainer for o in gc.get_objects())
    finally:
        gc.enable()
    assert alive == 0


def test_the_cli_under_torchrun_ends_each_rank_with_its_status_and_output(tmp_path: Path) -> None:
    # a rank ends in distributed.end_process (os._exit, no interpreter shutdown, where gloo
    # aborted 1 of 40 clean exits): its status is the command's and its output is flushed
    port = _free_port()
    out = tmp_path / "run"
    args = [sys.executable, "-m", "fdiv.cli", "train", "--out", str(out), "--steps", "2"]
    args += ["--batch-size", "32", "--latent-dim", "4", "--generator-hidden", "16"]
    args += ["--critic-hidden", "16", "--device", "cpu", "--no-evaluate", "--penalty", "none"]
    ranks = []
    for rank in range(WORLD):
        env = os.environ | {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "OMP_NUM_THREADS": "1",
        }
        env.pop("PYTHONUNBUFFERED", None)  # stdout to a pipe is block-buffered: flushed or lost
        ranks.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True))
    try:
        outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()  # a rank left waiting for a dead peer
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert f"run directory: {out}" in outputs[0] and "run directory" not in outputs[1]
    assert checkpoint.load(checkpoint.latest(out))["step"] == 2
