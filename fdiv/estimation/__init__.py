"""Estimates from samples: f-divergences and mutual information with a trained critic, kNN and
KSG baselines, the critic networks."""

from fdiv.estimation.critics import MLPCritic
from fdiv.estimation.estimate import Estimate, estimate
from fdiv.estimation.knn import knn_estimate, knn_kl
from fdiv.estimation.ksg import ksg_mi
from fdiv.estimation.mutual_information import mutual_information

__all__ = [
    "Estimate",
    "MLPCritic",
    "estimate",
    "knn_estimate",
    "knn_kl",
    "ksg_mi",
    "mutual_information",
]
