"""A short GAN demo on ring8 (8 Gaussians on a circle), on the CPU.

Run as ``python -m fdiv.gan.demo``; ``make demo`` calls :func:`ring8_demo`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fdiv.gan import metrics
from fdiv.gan.config import TrainConfig
from fdiv.gan.trainer import train

__all__ = ["ring8_demo"]

DEMO_STEPS = 3000


def ring8_demo(out: str | Path = "runs") -> None:
    """Train the default js GAN on ring8 for a short while and print how well it covers the modes.

    The run goes to a fresh ``out/ring8-demo-<time>`` directory (plots included).
    """
    run_dir = Path(out) / f"ring8-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    config = TrainConfig(data="ring8", divergence="js", steps=DEMO_STEPS, device="cpu")
    print(f"training a js GAN on ring8 for {DEMO_STEPS} steps on the CPU ...", flush=True)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: one thread is fastest and leaves the rest free
    try:
        result = train(config, run_dir)
    finally:
        torch.set_num_threads(threads)
    print(metrics.describe(result))
    print(
        f"({time.perf_counter() - start:.0f} s) plots: {run_dir / 'samples.png'}, "
        f"{run_dir / 'curves.png'}"
    )


if __name__ == "__main__":
    ring8_demo()
