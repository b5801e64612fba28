"""The one Adam constructor of the estimators and the GAN trainer: fused where it can be."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["FUSED_DEVICES", "adam"]

#: Device types with a fused Adam kernel in every torch this project supports (>= 2.4).
FUSED_DEVICES = ("cpu", "cuda")


def adam(params: Iterable[nn.Parameter], lr: float, **options: object) -> torch.optim.Adam:
    """``torch.optim.Adam`` over ``params``, fused (one kernel over all tensors a step instead of
    about ten per tensor) when every parameter is a floating-point tensor on a device in
    :data:`FUSED_DEVICES`; ``options`` (``betas``, ``weight_decay``) pass through."""
    params = list(params)
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **options)
