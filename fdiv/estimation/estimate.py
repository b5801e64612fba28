"""Estimate an f-divergence between two sample sets with a trained critic, honestly.

Each sample set is split into train / validation / test parts (seeded). A critic is trained with
Adam on the train parts, the bound is evaluated on the validation parts every few steps and the
best critic is kept (early stopping); the reported value is that critic's bound on the test parts,
on which nothing was trained or selected. Its standard error comes from the delta method over the
test terms. All values are in nats.

Training objectives. ``fdual`` trains on the bound it reports. ``dv`` and ``smile`` train with
the logistic (``gan``) objective, whose optimal critic v* = log p/q is also optimal for DV (DV is
invariant to shifts of v) and SMILE's target; they report their own value of that critic, and the
validation split selects on that value. Why not the DV objective itself: on a minibatch,
log mean_Q exp(v) is a biased estimate of the partition term, and where P and Q barely overlap
(KL ~ 5) the critic learns to raise v on P-regions no Q sample of the batch reaches; the minibatch
bound climbs past the truth while the held-out bound falls to large negative values. The SMILE
expression is unbounded above in the critic (raise v beyond the clip and E_P[v] grows while the
clipped term stays put), so Song & Ermon (2020) also train its critic with another objective. The
logistic loss is bounded per sample and has no exp terms to overflow.

Limits. The partition terms (DV, SMILE below its clip, NWJ's exp(v - 1)) average exp(v) over Q;
when KL is large (a few nats) the mass of that average sits in Q's rare tail, the test mean is
heavy-tailed and the delta-method interval is too narrow (see benchmarks/results/accuracy-*.md).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from fdiv.device import resolve_device
from fdiv.divergences.registry import FDivergence, get
from fdiv.estimation.critics import MLPCritic
from fdiv.io import as_samples, is_integer, is_real
from fdiv.losses import dv_bound, smile_bound, variational_bound
from fdiv.progress import progress as progress_bar

__all__ = ["BOUNDS", "MIN_SPLIT", "Estimate", "estimate", "split_indices"]

BOUNDS: tuple[str, ...] = ("auto", "fdual", "dv", "smile")
MIN_SPLIT = 20
_Z95 = 1.959963984540054
_EVAL_CHUNK = 65536

BoundFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Estimate:
    """A divergence estimate in nats with its standard error and 95% interval (from the test split).

    Sample counts are (N_p, N_q) per split; ``history`` holds (step, mean train-minibatch bound
    since the previous evaluation, validation bound); ``best_step`` is the step whose critic was
    kept; ``steps`` the number of steps trained before stopping.
    """

    value: float
    stderr: float
    ci95: tuple[float, float]
    divergence: str
    bound: str
    n_train: tuple[int, int]
    n_validation: tuple[int, int]
    n_test: tuple[int, int]
    steps: int
    best_step: int
    seconds: float
    history: tuple[tuple[int, float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types, ready for ``json.dump``."""
        out = asdict(self)
        out["history"] = [list(row) for row in self.history]
        for key in ("ci95", "n_train", "n_validation", "n_test"):
            out[key] = list(out[key])
        return out

    def __str__(self) -> str:
        low, high = self.ci95
        return (
            f"{self.divergence} ({self.bound}): {self.value:.4f} +- {self.stderr:.4f} nats, "
            f"95% interval [{low:.4f}, {high:.4f}]"
        )


def split_indices(
    n: int, holdout: tuple[float, float], generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Disjoint (train, validation, test) index sets covering range(n), from one permutation.

    ``holdout`` holds the validation and test fractions; the rest trains.
    """
    n_val, n_test = (round(n * fraction) for fraction in holdout)
    perm = torch.randperm(n, generator=generator)
    return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]


def estimate(
    p: Tensor | np.ndarray,
    q: Tensor | np.ndarray,
    divergence: str | FDivergence = "kl",
    bound: str = "auto",
    *,
    critic: nn.Module | None = None,
    steps: int = 4000,
    batch_size: int = 512,
    lr: float = 1e-3,
    holdout: tuple[float, float] = (0.2, 0.2),
    eval_every: int = 50,
    patience: int = 600,
    clip: float = 5.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Estimate:
    """Estimate D(P||Q) in nats from samples ``p`` (N_p, d) and ``q`` (N_q, d).

    ``bound``: ``"fdual"`` (any registered divergence; NWJ for kl), ``"dv"`` or ``"smile"``
    (kl only, ``clip`` is SMILE's), ``"auto"`` = dv for kl, fdual otherwise. ``critic``: any
    module mapping (B, d) to (B,) or (B, 1), copied before training (default :class:`MLPCritic`);
    the samples are standardised with the pooled train split's moments and cast to its dtype.
    ``fdual`` trains on itself, ``dv`` and ``smile`` with the logistic loss (module docstring).
    ``batch_size`` samples are drawn from each side per Adam step; the validation bound is taken
    every ``eval_every`` steps and training stops after ``patience`` steps without improvement
    or after ``steps``. ``holdout``: validation and test fractions. The same ``seed`` gives
    bitwise the same result on the CPU. ``progress`` shows a progress bar on stderr (a periodic
    line when stderr is not a terminal).
    """
    start = time.perf_counter()
    div = get(divergence)
    bound = _resolve_bound(bound, div)
    _check_options(steps, batch_size, lr, holdout, eval_every, patience, clip, seed)
    if critic is not None and not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    x_p, x_q = as_samples(p, "p"), as_samples(q, "q")
    if x_p.shape[1] != x_q.shape[1]:
        raise ValueError(
            f"p and q must have the same dimension, got p: {x_p.shape[1]} and q: {x_q.shape[1]}"
        )
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    parts_p = _split("p", x_p, holdout, generator)
    parts_q = _split("q", x_q, holdout, generator)
    mean, std = _pooled_moments(parts_p[0], parts_q[0])
    report = _report_fn(bound, div, clip)
    objective = report if bound == "fdual" else _fdual_fn("gan")
    with torch.random.fork_rng(devices=_cuda_indices(dev)):
        torch.manual_seed(seed)
        net = (MLPCritic(x_p.shape[1]) if critic is None else copy.deepcopy(critic)).to(dev)
        dtype = next((t.dtype for t in net.parameters() if t.is_floating_point()), torch.float32)
        train_p, val_p, test_p = (_standardise(x, mean, std, dev, dtype) for x in parts_p)
        train_q, val_q, test_q = (_standardise(x, mean, std, dev, dtype) for x in parts_q)
        history, best_step, last_step = _train(
            net,
            (train_p, train_q),
            (val_p, val_q),
            report,
            objective,
            generator,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            eval_every=eval_every,
            patience=patience,
            bar=progress_bar(steps, f"estimate {div.name}", enabled=progress),
        )
    value, stderr = _test_bound(net, test_p, test_q, bound, div, clip)
    return Estimate(
        value=value,
        stderr=stderr,
        ci95=(value - _Z95 * stderr, value + _Z95 * stderr),
        divergence=div.name,
        bound=bound,
        n_train=(len(train_p), len(train_q)),
        n_validation=(len(val_p), len(val_q)),
        n_test=(len(test_p), len(test_q)),
        steps=last_step,
        best_step=best_step,
        seconds=time.perf_counter() - start,
        history=tuple(history),
    )


def _resolve_bound(bound: str, div: FDivergence) -> str:
    if bound not in BOUNDS:
        raise ValueError(f"bound {bound!r} is unknown; known: {', '.join(BOUNDS)}")
    if bound == "auto":
        return "dv" if div.family == "kl" else "fdual"
    if bound in ("dv", "smile") and div.family != "kl":
        raise ValueError(
            f"bound {bound!r} applies only to kl, not to {div.name!r}; use 'fdual' (or 'auto')"
        )
    return bound


def _check_options(
    steps: int,
    batch_size: int,
    lr: float,
    holdout: tuple[float, float],
    eval_every: int,
    patience: int,
    clip: float,
    seed: int,
) -> None:
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("eval_every", eval_every),
        ("patience", patience),
    ):
        if not is_integer(value):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    for name, value in (("lr", lr), ("clip", clip)):
        if not (is_real(value) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if (
        not isinstance(holdout, tuple | list)
        or len(holdout) != 2
        or not all(is_real(f) and 0 < f < 1 for f in holdout)
        or sum(holdout) >= 1
    ):
        raise ValueError(
            "holdout must be (validation, test) fractions in (0, 1) summing to less than 1, "
            f"got {holdout!r}"
        )


def _split(
    name: str, x: np.ndarray, holdout: tuple[float, float], generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = tuple(x[idx.numpy()] for idx in split_indices(len(x), holdout, generator))
    sizes = [len(part) for part in parts]
    if min(sizes) < MIN_SPLIT:
        raise ValueError(
            f"{name} has {len(x)} sample{'s' if len(x) != 1 else ''}, split into "
            "train/validation/test = "
            f"{'/'.join(map(str, sizes))}; every split needs at least {MIN_SPLIT}"
        )
    return parts  # type: ignore[return-value]


def _pooled_moments(train_p: np.ndarray, train_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate mean and standard deviation of the pooled train samples (1 where constant)."""
    pooled = np.concatenate([train_p, train_q])
    std = pooled.std(axis=0)
    return pooled.mean(axis=0), np.where(std > 0, std, 1.0)


def _standardise(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray, dev: torch.device, dtype: torch.dtype
) -> Tensor:
    return torch.from_numpy((x - mean) / std).to(dev, dtype)


def _cuda_indices(dev: torch.device) -> list[int]:
    """The CUDA device whose RNG the critic's initialisation and dropout draw from, if any."""
    if dev.type != "cuda":
        return []
    return [torch.cuda.current_device() if dev.index is None else dev.index]


def _fdual_fn(divergence: str | FDivergence) -> BoundFn:
    """The f-dual bound of ``divergence`` as a function of (v_p, v_q)."""
    div = get(divergence)
    return lambda v_p, v_q: variational_bound(v_p, v_q, div)


def _report_fn(bound: str, div: FDivergence, clip: float) -> BoundFn:
    if bound == "dv":
        return dv_bound
    if bound == "smile":
        return lambda v_p, v_q: smile_bound(v_p, v_q, clip)
    return _fdual_fn(div)


def _critic_outputs(net: nn.Module, x: Tensor) -> Tensor:
    v = net(x)
    if v.dim() == 2 and v.shape[1] == 1:
        v = v.squeeze(1)
    if v.shape != (x.shape[0],):
        raise ValueError(f"the critic must map (B, d) to (B,) or (B, 1), got {tuple(v.shape)}")
    return v


@torch.no_grad()
def _outputs_in_chunks(net: nn.Module, x: Tensor) -> Tensor:
    return torch.cat([_critic_outputs(net, chunk) for chunk in x.split(_EVAL_CHUNK)])


def _train(
    net: nn.Module,
    train: tuple[Tensor, Tensor],
    validation: tuple[Tensor, Tensor],
    report: BoundFn,
    objective: BoundFn,
    generator: torch.Generator,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    eval_every: int,
    patience: int,
    bar: tqdm,
) -> tuple[list[tuple[int, float, float]], int, int]:
    """Adam on minibatches with early stopping; leaves ``net`` holding the best critic.

    Returns the history, the best step and the last step trained.
    """
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    train_p, train_q = train
    b_p, b_q = min(batch_size, len(train_p)), min(batch_size, len(train_q))
    history: list[tuple[int, float, float]] = []
    best_value, best_step, best_state = -math.inf, 0, _snapshot(net)
    running, count, step = 0.0, 0, 0
    for step in range(1, steps + 1):
        net.train()
        i_p = torch.randint(len(train_p), (b_p,), generator=generator).to(train_p.device)
        i_q = torch.randint(len(train_q), (b_q,), generator=generator).to(train_q.device)
        v = _critic_outputs(net, torch.cat([train_p[i_p], train_q[i_q]]))
        v_p, v_q = v[:b_p], v[b_p:]
        value = report(v_p, v_q)
        loss = -(value if objective is report else objective(v_p, v_q))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running, count = running + float(value.detach()), count + 1
        if step % eval_every and step != steps:
            continue
        net.eval()
        val = float(report(*(_outputs_in_chunks(net, x) for x in validation)))
        history.append((step, running / count, val))
        running, count = 0.0, 0
        if val > best_value:
            best_value, best_step, best_state = val, step, _snapshot(net)
        bar.update(step - bar.n)
        bar.set_postfix(validation=f"{val:.4f} nats", refresh=False)
        if step - best_step >= patience:
            break
    bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return history, best_step, step


def _snapshot(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _test_bound(
    net: nn.Module, test_p: Tensor, test_q: Tensor, bound: str, div: FDivergence, clip: float
) -> tuple[float, float]:
    """The bound on the test split and its delta-method standard error, in nats (float64)."""
    v_p = _outputs_in_chunks(net, test_p).double()
    v_q = _outputs_in_chunks(net, test_q).double()
    n_p, n_q = len(v_p), len(v_q)
    if bound == "fdual":
        value = variational_bound(v_p, v_q, div)
        var = div.activation(v_p).var() / n_p + div.conjugate_activation(v_q).var() / n_q
    else:
        value = dv_bound(v_p, v_q) if bound == "dv" else smile_bound(v_p, v_q, clip)
        w = v_q.clamp(-clip, clip) if bound == "smile" else v_q
        e = torch.exp(w - w.max())  # Var(e^w) / mean(e^w)^2 is invariant to the shift
        var = v_p.var() / n_p + e.var() / (n_q * e.mean() ** 2)
    return float(value), math.sqrt(float(var))
