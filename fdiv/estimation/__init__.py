"""Estimates from samples: f-divergences with a trained critic, kNN, the critic networks."""

from fdiv.estimation.critics import MLPCritic
from fdiv.estimation.estimate import Estimate, estimate
from fdiv.estimation.knn import knn_estimate, knn_kl

__all__ = ["Estimate", "MLPCritic", "estimate", "knn_estimate", "knn_kl"]
