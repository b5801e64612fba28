"""The shared Adam: torch's fused kernel without torch.optim, the same updates as torch's plain
Adam, a state that round-trips, and no torch._dynamo import."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from fdiv.optim import FusedAdam, adam


def _largest_gap(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    with torch.no_grad():
        return max(float((x - y).abs().max()) for x, y in pairs)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.SiLU(), nn.Linear(16, 1))


def _train(model: nn.Module, opt, x: torch.Tensor, steps: int, lr: float | None = None) -> None:
    for _ in range(steps):
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def test_adam_steps_as_torch_plain_adam_also_after_an_lr_change() -> None:
    net = _net()
    start, twin = copy.deepcopy(net), copy.deepcopy(net)
    fused = adam(net.parameters(), 1e-2, betas=(0.5, 0.9), weight_decay=1e-3)
    plain = torch.optim.Adam(twin.parameters(), lr=1e-2, betas=(0.5, 0.9), weight_decay=1e-3)
    assert isinstance(fused, FusedAdam) and plain.defaults["fused"] is None
    x = torch.randn(64, 5)
    for model, opt in ((net, fused), (twin, plain)):
        _train(model, opt, x, 20)
        _train(model, opt, x, 10, lr=3e-3)
    # 30 steps moved the weights by over 0.05; the two runs agree to float32 rounding
    assert _largest_gap(net, start) > 0.05
    assert _largest_gap(net, twin) < 1e-5


def test_adam_state_round_trips_and_continues_exactly() -> None:
    net = _net()
    opt = adam(net.parameters(), 1e-2)
    x = torch.randn(64, 5)
    _train(net, opt, x, 5)
    state, weights = opt.state_dict(), copy.deepcopy(net.state_dict())
    _train(net, opt, x, 5)
    resumed = _net()
    resumed.load_state_dict(weights)
    opt2 = adam(resumed.parameters(), 1.0)  # the saved lr replaces this one
    opt2.load_state_dict(state)
    _train(resumed, opt2, x, 5)
    assert _largest_gap(net, resumed) == 0.0


def test_adam_rejects_a_foreign_state_and_bad_settings() -> None:
    net = _net()
    opt = adam(net.parameters(), 1e-2)
    with pytest.raises(ValueError, match="not a FusedAdam state"):
        opt.load_state_dict(torch.optim.Adam(net.parameters()).state_dict())
    other = adam(nn.Linear(3, 1).parameters(), 1e-2)
    with pytest.raises(ValueError, match="shapes"):
        other.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="lr must be"):
        adam(net.parameters(), float("nan"))
    with pytest.raises(ValueError, match="betas"):
        adam(net.parameters(), 1e-3, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="no parameters"):
        adam([], 1e-3)


def test_a_critic_fit_does_not_import_torch_dynamo() -> None:
    code = (
        "import sys, numpy as np, fdiv\n"
        "r = np.random.default_rng(0)\n"
        "fdiv.estimate(r.normal(size=(300, 2)), r.normal(size=(300, 2)), steps=20)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False"
