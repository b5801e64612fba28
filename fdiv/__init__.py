"""fdiv: f-divergences between sample sets, fused critic losses, f-GAN training.

All divergences and bounds are in nats.
"""

from fdiv import divergences, estimation
from fdiv.divergences.registry import FDivergence
from fdiv.estimation import Estimate, estimate, knn_kl, ksg_mi, mutual_information
from fdiv.losses import (
    FDivergenceLoss,
    all_pairs_bound,
    critic_loss,
    dv_bound,
    generator_loss,
    gradient_penalty,
    smile_bound,
    variational_bound,
)

__version__ = "0.1.0"

__all__ = [
    "Estimate",
    "FDivergence",
    "FDivergenceLoss",
    "__version__",
    "all_pairs_bound",
    "critic_loss",
    "divergences",
    "dv_bound",
    "estimate",
    "estimation",
    "generator_loss",
    "gradient_penalty",
    "knn_kl",
    "ksg_mi",
    "mutual_information",
    "smile_bound",
    "variational_bound",
]
