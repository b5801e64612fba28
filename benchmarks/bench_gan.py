"""GANs on the mode-coverage protocol (PacGAN): ring8 and grid25, several objectives and seeds.

Each configuration trains once with the default :class:`TrainConfig` on the CPU (one thread) and
records modes captured, high-quality %, reverse KL (nats), seconds and, for the first seed, 500
generated points in ``benchmark.extra_info["figures"]`` (see ``fdiv.bench.results``); the report
compares them with the published numbers. A second benchmark times one training step with the
fused losses against eager autograd losses.

Run (the full grid is 70 runs; select with environment variables, comma-separated)::

    FDIV_GAN_DIVERGENCES=js,wgan-gp FDIV_GAN_DATASETS=ring8,grid25 FDIV_GAN_SEEDS=0,1 \\
        .venv/bin/fdiv bench --suite gan

``--quick`` keeps ring8 / js / the first seed, trained for 1500 steps.

Defaults (``make bench`` stays within 20 minutes): js and gan on ring8 and grid25, seed 0. The
whole protocol grid: ``FDIV_GAN_DIVERGENCES=js,gan,kl,reverse_kl,hellinger,pearson,wgan-gp
FDIV_GAN_SEEDS=0,1,2,3,4`` (70 runs, about two hours on a 2-core CPU).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fdiv.gan import generate, load_generator
from fdiv.gan.trainer import TrainConfig, Trainer, train

QUICK_STEPS = 1500


def _selection(variable: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(variable, default).split(",") if item.strip()]


DIVERGENCES = _selection("FDIV_GAN_DIVERGENCES", "js,gan")
DATASETS = _selection("FDIV_GAN_DATASETS", "ring8,grid25")
SEEDS = [int(s) for s in _selection("FDIV_GAN_SEEDS", "0")]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CASES = [
    pytest.param(
        data,
        divergence,
        seed,
        marks=() if (data, divergence, seed) == ("ring8", "js", SEEDS[0]) else pytest.mark.full,
    )
    for data in DATASETS
    for divergence in DIVERGENCES
    for seed in SEEDS
]


@pytest.mark.parametrize(("data", "divergence", "seed"), CASES)
def test_mode_coverage(
    benchmark: Any,
    figures: Callable[..., None],
    quick: bool,
    tmp_path: Path,
    data: str,
    divergence: str,
    seed: int,
) -> None:
    steps = {"steps": QUICK_STEPS} if quick else {}
    config = TrainConfig(data=data, divergence=divergence, seed=seed, device="cpu", **steps)
    run_dir = tmp_path / "run"
    outcome: dict[str, Any] = {}

    def run() -> None:
        start = time.perf_counter()
        try:
            outcome.update(train(config, run_dir))
        except RuntimeError as err:  # a diverged run is a result, not a crash
            outcome["error"] = str(err)
        outcome["seconds"] = time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
    figures(data=data, divergence=divergence, seed=seed, config=config.to_dict(), **outcome)
    if seed == SEEDS[0] and "error" not in outcome:
        generator, _ = load_generator(run_dir)
        figures(samples=generate(generator, 500, seed))


@pytest.mark.parametrize("backend", ["auto", "eager"])
def test_step_time(benchmark: Any, quick: bool, tmp_path: Path, backend: str) -> None:
    """One training step (critic + generator update) on ring8/js: fused (auto) vs eager losses."""
    trainer = Trainer(TrainConfig(loss_backend=backend, device="cpu"), tmp_path)
    for _ in range(20):  # warm up
        trainer.train_step()
    rounds = 50 if quick else 200
    benchmark.pedantic(trainer.train_step, rounds=rounds, iterations=1, warmup_rounds=5)
    benchmark.extra_info["backend"] = backend
