"""Shared helpers for the GAN tests: tiny configurations that train in milliseconds per step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from fdiv.gan.trainer import TrainConfig


def tiny_config(**overrides: Any) -> TrainConfig:
    """A ring8 run with 16-unit networks, small batches, no penalty and no evaluation."""
    values: dict[str, Any] = {
        "data": "ring8",
        "steps": 4,
        "batch_size": 32,
        "latent_dim": 4,
        "generator_hidden": (16, 16),
        "critic_hidden": (16, 16),
        "device": "cpu",
        "log_every": 1,
        "evaluate": False,
        "checkpoint_every": 2,
        "penalty": "none",
    }
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small networks: one thread is fastest and leaves the other cores to concurrent runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
