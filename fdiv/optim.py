"""The one Adam of the estimators and the GAN trainer: torch's fused Adam kernel, called directly.

``torch.optim`` imports ``torch._dynamo`` on its first use, 2.0 s on this project's 2-core CPU
machine, which a one-off ``fdiv estimate`` pays on top of its training (12% of the default call
on 20,000 rows a side, d = 10). :class:`FusedAdam` runs the same update, one fused kernel a step
over all tensors of a device, without that import; on devices without the fused kernel
:func:`adam` returns ``torch.optim.Adam``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["FUSED_DEVICES", "FusedAdam", "adam"]

#: Device types with a fused Adam kernel in every torch this project supports (>= 2.4).
FUSED_DEVICES = ("cpu", "cuda")


class FusedAdam:
    """Adam (Kingma & Ba) with L2 ``weight_decay`` added to the gradients, as ``torch.optim.Adam``
    does, on ``torch._fused_adam_``. One parameter group, whose ``lr`` may be changed between
    steps through ``param_groups[0]["lr"]``; ``state_dict`` holds tensors and numbers only."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("FusedAdam got no parameters")
        _check(lr=lr, eps=eps, weight_decay=weight_decay)
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.param_groups = [
            {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        ]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # the fused kernel reads each tensor's step count from a float32 scalar on its device
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        by_device: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(self.params):
            if p.grad is not None:
                by_device.setdefault((p.device, p.dtype), []).append(i)
        for index in by_device.values():
            steps = [self.steps[i] for i in index]
            torch._foreach_add_(steps, 1.0)
            torch._fused_adam_(
                [self.params[i] for i in index],
                [self.params[i].grad for i in index],
                [self.exp_avg[i] for i in index],
                [self.exp_avg_sq[i] for i in index],
                [],
                steps,
                lr=float(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                amsgrad=False,
                maximize=False,
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "param_groups": [dict(self.param_groups[0])],
            "exp_avg": [t.clone() for t in self.exp_avg],
            "exp_avg_sq": [t.clone() for t in self.exp_avg_sq],
            "steps": [t.clone() for t in self.steps],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an Adam over parameters of the same shapes."""
        if set(state) != {"param_groups", "exp_avg", "exp_avg_sq", "steps"}:
            raise ValueError(f"not a FusedAdam state: keys {sorted(state)}")
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            mine, theirs = getattr(self, name), state[name]
            shapes = [tuple(t.shape) for t in mine], [tuple(t.shape) for t in theirs]
            if shapes[0] != shapes[1]:
                raise ValueError(f"saved {name} shapes {shapes[1]} differ from {shapes[0]}")
            for t, saved in zip(mine, theirs, strict=True):
                t.copy_(saved)
        self.param_groups[0].update(state["param_groups"][0])


def _check(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def adam(params: Iterable[nn.Parameter], lr: float, **options: Any) -> FusedAdam | torch.optim.Adam:
    """Adam over ``params``: :class:`FusedAdam` when every parameter is a floating-point tensor
    on a device in :data:`FUSED_DEVICES`, else ``torch.optim.Adam``; ``options`` (``betas``,
    ``weight_decay``) pass through."""
    params = list(params)
    if all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params):
        return FusedAdam(params, lr, **options)
    return torch.optim.Adam(params, lr=lr, **options)
