"""GAN training on the fused f-divergence losses: data, models, trainer, metrics, plots."""

from fdiv.gan.config import TrainConfig
from fdiv.gan.data import Dataset, load_dataset
from fdiv.gan.metrics import evaluate, mode_coverage
from fdiv.gan.models import generate
from fdiv.gan.trainer import NonFiniteLossError, Trainer, load_generator, resume, train

__all__ = [
    "Dataset",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "generate",
    "load_dataset",
    "load_generator",
    "mode_coverage",
    "resume",
    "train",
]
