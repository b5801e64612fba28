"""Refined GAN samples: an independence Metropolis-Hastings chain on the generator's draws,
steered by a density ratio between the data and the generator (Turner et al. 2019, MH-GAN).

A generator with density g that misses the data's density p leaves mass where p has none (the
spaces between the modes of ``ring8`` and ``grid25``). Fit r(x) = log p(x)/g(x) on real rows and
the generator's draws (:func:`fdiv.estimation.ratio.fit_log_ratio`: a fresh critic, not the GAN's
own, which at equilibrium is nearly flat); then each chain starts at a generated x, proposes a
fresh generated x' and moves there with probability min(1, exp(r(x') - r(x))). With the exact
ratio the chain's stationary law is p; its state after ``steps`` proposals is the refined sample.
Data on discrete levels (the digits) are dequantised for the fit as in the held-out metric, and
the ratio is read at each proposal's rounded levels.
The raw generator stays the result of training: refinement is reported beside it, never instead.

Measured with ``fdiv evaluate RUN -n 5000 --refine`` on default js runs: on grid25 (seed 1) the
held-out JS between data and samples fell from 0.102 +- 0.009 to 0.004 +- 0.002 nats and the
high-quality share from 97.1% to 92.2%; on ring8 (seed 3) JS 0.003 -> 0.005 (+- 0.003), high
quality 96.5% -> 87.3%. On that ring8 run the generator's modes are narrower than the data's
(RMS distance to the nearest mode over the high-quality samples 0.61 mode standard deviations,
data 0.98; 3.5% of its samples beyond 3 of them): the refined chains widen the modes (0.87) but
overshoot, 12.7% beyond 3 (the fitted log-ratio averages +0.62 on the generator's points beyond
3 standard deviations and -0.65 within). Tempered chains (moving with probability
min(1, exp(b (r(x') - r(x)))), b = 0.5 and 0.25) gave 92.5% and 94.8% high quality: no setting
tried beat the raw generator on that measure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fdiv.estimation.ratio import fit_log_ratio
from fdiv.gan.data import Dataset
from fdiv.gan.metrics import dequantise, quantise
from fdiv.gan.models import generate

__all__ = ["FIT_SAMPLES", "STEPS", "Refined", "independence_chain", "refine"]

#: Real rows and generated draws the density ratio is fitted on (each side); array data give
#: at most their training rows.
FIT_SAMPLES = 10_000
#: Proposals per chain.
STEPS = 20


@dataclass(frozen=True)
class Refined:
    """The refined samples (n, dim), the share of proposals accepted, the share of chains that
    never moved (their sample is a raw draw), and the ratio critic's validation objective
    (nats, -log 4 when it learnt nothing)."""

    samples: Tensor
    acceptance: float
    unmoved: float
    critic_validation: float


def refine(
    generator: nn.Module,
    dataset: Dataset,
    n: int,
    seed: int = 0,
    *,
    steps: int = STEPS,
    fit_samples: int = FIT_SAMPLES,
    fit_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> Refined:
    """``n`` refined samples of ``generator`` (module docstring): ``steps`` proposals per
    chain, the ratio fitted on ``fit_samples`` real training rows and as many generated ones
    (``fit_options``: training options of :func:`fit_log_ratio`). The same ``seed`` gives the
    same samples. ValueError for bad sizes."""
    for name, value, least in (("n", n, 1), ("steps", steps, 1), ("fit_samples", fit_samples, 100)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    draws = torch.Generator().manual_seed(seed)
    if dataset.parts is not None:
        real = dataset.parts[0][torch.randperm(len(dataset.parts[0]), generator=draws)]
        real = real[:fit_samples]
    else:
        real = dataset.sample(fit_samples, draws)
    # independent latent codes for the fit, the chains' starts and each round of proposals
    codes = [int(c) for c in torch.randint(2**62, (steps + 2,), generator=draws)]
    fake = generate(generator, len(real), codes[0]).cpu()
    grid = dataset.grid
    if grid is not None:  # discrete levels: the ratio of the level distributions (metrics.py)
        real = dequantise(real, grid, draws)
        fake = dequantise(quantise(fake, grid), grid, draws)
    fitted = fit_log_ratio(real, fake, seed=seed, progress=progress, **(fit_options or {}))
    log_ratio = fitted if grid is None else lambda x: fitted(quantise(x, grid))
    rounds = iter(codes[1:])
    chain = independence_chain(
        lambda: generate(generator, n, next(rounds)).cpu(), log_ratio, steps, draws
    )
    return Refined(*chain, fitted.validation)


def independence_chain(
    draw: Callable[[], Tensor],
    log_ratio: Callable[[Tensor], Tensor],
    steps: int,
    generator: torch.Generator,
) -> tuple[Tensor, float, float]:
    """Parallel independence Metropolis-Hastings chains: ``draw()`` gives one proposal per
    chain (n, dim), the first call their starts; a chain at x moves to x' with probability
    min(1, exp(log_ratio(x') - log_ratio(x))), where log_ratio = log target/proposal density.
    Returns the states after ``steps`` proposals, the share accepted and the share of chains
    that never moved."""
    state = draw()
    r_state = log_ratio(state).double()
    moved = torch.zeros(len(state), dtype=torch.bool)
    accepted = 0
    for _ in range(steps):
        proposal = draw()
        r_new = log_ratio(proposal).double()
        uniform = torch.rand(len(state), generator=generator, dtype=torch.float64)
        take = torch.log(uniform) < r_new - r_state
        state = torch.where(take[:, None], proposal, state)
        r_state = torch.where(take, r_new, r_state)
        moved |= take
        accepted += int(take.sum())
    return state, accepted / (len(state) * steps), float((~moved).double().mean())
