"""GANs on the mode-coverage protocol (PacGAN): ring8 and grid25, several objectives and seeds.

Each configuration trains once with the default :class:`TrainConfig` on the CPU (one thread) and
reports modes captured, high-quality %, reverse KL (nats) and seconds in ``benchmark.extra_info``;
the session writes ``benchmarks/results/gan-<date>-cpu.md`` (one row per run, then the means over
seeds against the targets) and copies the seed's sample plot of each configuration beside it.
A second benchmark times one training step with the fused losses against eager autograd losses.

Run (the full grid is 70 runs; select with environment variables, comma-separated)::

    FDIV_GAN_DIVERGENCES=js,wgan-gp FDIV_GAN_DATASETS=ring8,grid25 FDIV_GAN_SEEDS=0,1 \\
        .venv/bin/python -m pytest benchmarks/bench_gan.py --benchmark-enable -q

Defaults: divergences js, gan, kl, reverse_kl, hellinger, pearson, wgan-gp; datasets ring8,
grid25; seeds 0-4.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fdiv.gan.trainer import TrainConfig, Trainer, train

RESULTS = Path(__file__).parent / "results"
TARGETS = {  # (modes, high-quality %, reverse KL) to meet on average over the seeds
    "ring8": (8.0, 97.0, 0.02),
    "grid25": (25.0, 95.0, 0.02),
}
_RUNS: list[dict[str, Any]] = []


def _selection(variable: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(variable, default).split(",") if item.strip()]


DIVERGENCES = _selection("FDIV_GAN_DIVERGENCES", "js,gan,kl,reverse_kl,hellinger,pearson,wgan-gp")
DATASETS = _selection("FDIV_GAN_DATASETS", "ring8,grid25")
SEEDS = [int(s) for s in _selection("FDIV_GAN_SEEDS", "0,1,2,3,4")]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if _RUNS:
        _write_report(RESULTS / f"gan-{time.strftime('%Y-%m-%d')}-cpu.md")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("data", DATASETS)
def test_mode_coverage(
    benchmark: Any, tmp_path: Path, data: str, divergence: str, seed: int
) -> None:
    config = TrainConfig(data=data, divergence=divergence, seed=seed, device="cpu")
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
    record = {"data": data, "divergence": divergence, "seed": seed, "config": config}
    record.update(outcome)
    benchmark.extra_info.update({**record, "config": config.to_dict()})
    _RUNS.append(record)
    if seed == SEEDS[0] and (run_dir / "samples.png").exists():
        RESULTS.mkdir(exist_ok=True)
        name = f"gan-{time.strftime('%Y-%m-%d')}-{data}-{divergence}-seed{seed}.png"
        shutil.copyfile(run_dir / "samples.png", RESULTS / name)


@pytest.mark.parametrize("backend", ["auto", "eager"])
def test_step_time(benchmark: Any, tmp_path: Path, backend: str) -> None:
    """One training step (critic + generator update) on ring8/js: fused (auto) vs eager losses."""
    trainer = Trainer(TrainConfig(loss_backend=backend, device="cpu"), tmp_path)
    for _ in range(20):  # warm up
        trainer.train_step()
    benchmark.pedantic(trainer.train_step, rounds=200, iterations=1, warmup_rounds=5)
    benchmark.extra_info["backend"] = backend
    _STEP_TIMES[backend] = benchmark.stats.stats.median * 1e3 if benchmark.stats else float("nan")


_STEP_TIMES: dict[str, float] = {}


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _settings(config: TrainConfig) -> str:
    """The training options that shape a run, in one line."""
    weight = config.gp_weight if config.resolved_penalty == "wgan-gp" else config.r1_weight
    return (
        f"{config.steps} steps, batch {config.batch_size}, n_critic {config.n_critic}, "
        f"Adam lr G/D {config.lr_g:g}/{config.lr_d:g}, betas G {config.betas_g} "
        f"D {config.betas_d}, lr decay over the last {config.lr_decay:g}, "
        f"{config.resolved_penalty} weight {weight:g}, EMA {config.ema:g}, "
        f"latent {config.latent_dim}, G {config.generator_hidden}, D {config.critic_hidden}"
    )


def _write_report(path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    lines = [
        f"# GAN mode coverage, CPU ({time.strftime('%Y-%m-%d')})",
        "",
        "Default `TrainConfig` (one thread); 2,500 samples of the EMA generator; high quality =",
        "within 3 std of the nearest mode; reverse KL over the high-quality samples (nats).",
        "",
        "| data | divergence | seed | steps | modes | high quality % | reverse KL | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in _RUNS:
        if "error" in r:
            lines.append(
                f"| {r['data']} | {r['divergence']} | {r['seed']} | {r['config'].steps} | "
                f"stopped: {r['error'][:60]} | | | {_fmt(r['seconds'], 0)} |"
            )
            continue
        lines.append(
            f"| {r['data']} | {r['divergence']} | {r['seed']} | {r['config'].steps} | "
            f"{r['modes_captured']}/{r['modes']} | {_fmt(r['high_quality'], 1)} | "
            f"{_fmt(r['reverse_kl'], 4)} | {_fmt(r['seconds'], 0)} |"
        )
    lines += ["", "Settings (the defaults of `TrainConfig` for each loss):", ""]
    configs = {r["divergence"]: r["config"] for r in _RUNS}
    lines += [f"- {name}: {_settings(config)}" for name, config in configs.items()]
    lines += [
        "",
        "Means over seeds (target: modes, high quality %, reverse KL):",
        "",
        "| data | divergence | seeds | modes | high quality % | reverse KL | mean s | target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in _RUNS:
        groups.setdefault((r["data"], r["divergence"]), []).append(r)
    for (data, divergence), runs in groups.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append(f"| {data} | {divergence} | {len(runs)} | all stopped | | | | no |")
            continue
        modes = statistics.mean(r["modes_captured"] for r in ok)
        quality = statistics.mean(r["high_quality"] for r in ok)
        rkl = statistics.mean(r["reverse_kl"] for r in ok)
        seconds = statistics.mean(r["seconds"] for r in runs)
        t_modes, t_quality, t_rkl = TARGETS.get(data, (0.0, 0.0, float("inf")))
        met = len(ok) == len(runs) and modes >= t_modes and quality >= t_quality and rkl <= t_rkl
        lines.append(
            f"| {data} | {divergence} | {len(runs)} | {_fmt(modes, 2)} | {_fmt(quality, 1)} | "
            f"{_fmt(rkl, 4)} | {_fmt(seconds, 0)} | {'yes' if met else 'no'} |"
        )
    if _STEP_TIMES:
        lines += ["", "Median time per training step (ring8, js, default networks):", ""]
        lines += [f"- {name}: {ms:.2f} ms" for name, ms in _STEP_TIMES.items()]
    path.write_text("\n".join(lines) + "\n")
