"""GANs on the mode-coverage protocol (PacGAN), ring8 and grid25, and on the 8x8 digits.

Each configuration trains once with the default :class:`TrainConfig` on the CPU (one thread) and
records modes captured, high-quality %, reverse KL (nats), seconds and, for the first seed, 500
generated points in ``benchmark.extra_info["figures"]`` (see ``fdiv.bench.results``); the report
gives mean ± sd over seeds beside the published numbers and the targets. The digits runs (the
convolutional pair at the digits defaults, ``fdiv.gan.config.DATA_DEFAULTS``) record the Frechet
distance in our digits classifier's features, its floor, the held-out JS estimate, the classes
covered and 64 generated images. A
last benchmark times one training step with the fused losses against eager autograd losses.

Run (select with environment variables, comma-separated)::

    FDIV_GAN_DIVERGENCES=js,wgan-gp FDIV_GAN_DATASETS=ring8,grid25 FDIV_GAN_SEEDS=0,1 \\
        FDIV_GAN_DIGITS=js,hinge FDIV_GAN_DIGITS_SEEDS=0 .venv/bin/fdiv bench --suite gan

``--quick`` keeps ring8 / js / the first seed, trained for 1500 steps, and no digits run.

Defaults (``make bench``): js on ring8 and grid25, seed 0, and js on the digits (about 7 minutes
on a 2-core CPU). The tables of REPORT.md: ``FDIV_GAN_DIVERGENCES=js,gan,hinge,wgan-gp
FDIV_GAN_SEEDS=0,1,2,3,4 FDIV_GAN_DIGITS=js,gan,kl,hellinger,wgan-gp,hinge``.
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


DIVERGENCES = _selection("FDIV_GAN_DIVERGENCES", "js")
DATASETS = _selection("FDIV_GAN_DATASETS", "ring8,grid25")
SEEDS = [int(s) for s in _selection("FDIV_GAN_SEEDS", "0")]
DIGITS_DIVERGENCES = _selection("FDIV_GAN_DIGITS", "js")
DIGITS_SEEDS = [int(s) for s in _selection("FDIV_GAN_DIGITS_SEEDS", "0")]


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


def _train(benchmark: Any, config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``config`` once as the benchmark's round; its final evaluation and seconds."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        start = time.perf_counter()
        try:
            outcome.update(train(config, run_dir))
        except RuntimeError as err:  # a diverged run is a result, not a crash
            outcome["error"] = str(err)
        outcome["seconds"] = time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
    return outcome


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
    outcome = _train(benchmark, config, tmp_path / "run")
    figures(data=data, divergence=divergence, seed=seed, config=config.to_dict(), **outcome)
    if seed == SEEDS[0] and "error" not in outcome:
        generator, _ = load_generator(tmp_path / "run")
        figures(samples=generate(generator, 500, seed))


@pytest.mark.full
@pytest.mark.parametrize(
    ("divergence", "seed"), [(d, s) for d in DIGITS_DIVERGENCES for s in DIGITS_SEEDS]
)
def test_digits(
    benchmark: Any, figures: Callable[..., None], tmp_path: Path, divergence: str, seed: int
) -> None:
    """The convolutional pair on the 8x8 digits: Frechet distance, held-out JS, 64 samples."""
    config = TrainConfig(data="digits", divergence=divergence, seed=seed, device="cpu")
    outcome = _train(benchmark, config, tmp_path / "run")
    figures(data="digits", divergence=divergence, seed=seed, config=config.to_dict(), **outcome)
    if seed == DIGITS_SEEDS[0] and "error" not in outcome:
        generator, _ = load_generator(tmp_path / "run")
        figures(samples=generate(generator, 64, seed))


@pytest.mark.parametrize("backend", ["auto", "eager"])
def test_step_time(benchmark: Any, quick: bool, tmp_path: Path, backend: str) -> None:
    """One training step (critic + generator update) on ring8/js: fused (auto) vs eager losses."""
    trainer = Trainer(TrainConfig(loss_backend=backend, device="cpu"), tmp_path)
    for _ in range(20):  # warm up
        trainer.train_step()
    rounds = 50 if quick else 200
    benchmark.pedantic(trainer.train_step, rounds=rounds, iterations=1, warmup_rounds=5)
    benchmark.extra_info["backend"] = backend
