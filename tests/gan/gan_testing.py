"""Tiny GAN configurations for the tests (a module of its own: spawned test workers import it by
name, and a second ``conftest`` module elsewhere in tests/ would shadow it)."""

from __future__ import annotations

from typing import Any

from fdiv.gan.config import TrainConfig


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
