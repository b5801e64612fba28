"""The mathematics of f-divergences: the registry, variational bounds, Gaussian ground truths."""

from fdiv.divergences.registry import FDivergence, alpha, get, names, registered

__all__ = ["FDivergence", "alpha", "get", "names", "registered"]
