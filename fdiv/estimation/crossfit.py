"""Cross-fitted critics: K critics, each reported only on rows it neither trained on nor was
selected on, combined into one value and an interval that includes the spread between folds.

Folds are assigned per distinct row, not per position: a row that occurs several times, in P,
in Q or in both, lands in one fold, so a test row of one side is never a training row of the
other (the same file given as P and Q cannot leak); only the atoms of discrete data (ATOM
copies or more) are spread over the folds. Within the K - 1 folds a critic may use, a
``validation`` fraction of the rows (drawn as the folds are: a rare row's copies together)
selects its training step; the rest trains it. All values in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from fdiv.divergences.registry import FDivergence, get
from fdiv.estimation.counts import row_keys
from fdiv.estimation.features import MarginalGaussian
from fdiv.estimation.parametric import log_ratio_offset
from fdiv.estimation.result import Z95
from fdiv.losses import dv_bound, smile_bound, variational_bound
from fdiv.optim import adam

__all__ = [
    "MIN_SPLIT",
    "WAIT_ROWS",
    "FoldResult",
    "Overfit",
    "Split",
    "assign_folds",
    "bracket",
    "combine",
    "fit_fold",
    "fold_tensors",
    "held_out_and_in_sample",
    "moments",
    "plug_in",
    "reported_bound",
    "snapshot",
    "wait",
]

MIN_SPLIT = 20
#: Copies (over P and Q) from which a row counts as an atom of a discrete distribution, its
#: copies spread over the folds like distinct rows. Rarer repeats (the same file given as P and
#: Q: 2) share a fold, so no critic is tested on a row it was trained on; atoms kept together
#: left each fold's test atoms unseen by its critic (two Poisson samples, d = 2, 10,000 a side:
#: "training failed ... the critic overfits" on 1 seed of 3).
ATOM = 10
#: The interquartile range of a standard Gaussian: a robust standard deviation is IQR / IQR_SD.
IQR_SD = 1.3489795003921634
#: Robust standard deviations beyond which the critic's standardised input grows only
#: logarithmically: a Gaussian row lies beyond 4 with probability 6e-5.
SQUASH = 4.0
_EVAL_CHUNK = 65536
#: A trained critic whose validation objective falls this far (nats) below the constant critic
#: v = 0 has failed (diverged): the constant critic is what an untrained one is close to.
FAIL_MARGIN = 0.1
#: Validation rows a side from which an early best step shortens the wait (:func:`wait`).
WAIT_ROWS = 1000

BoundFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Split:
    """Row indices of one side for one fold: train, validation and test."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def assign_folds(
    x_p: np.ndarray, x_q: np.ndarray, folds: int, validation: float, generator: torch.Generator
) -> list[tuple[Split, Split]]:
    """(P split, Q split) per fold; identical rows (within or across P and Q) share a fold and
    a validation flag. Raises ValueError when a split of a side has fewer than MIN_SPLIT rows."""
    keys = row_keys(np.concatenate([x_p, x_q]))
    _, first, row_id, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    row_id = row_id.ravel()
    # a row's draws are those of its first occurrence (by position, not by value), unless it is
    # an atom: then each copy draws its own, as distinct rows do
    owner = np.where(counts[row_id] >= ATOM, np.arange(len(keys)), first[row_id])
    rank = torch.randperm(len(keys), generator=generator).numpy()
    u = torch.rand(len(keys), generator=generator, dtype=torch.float64).numpy()
    fold, is_val = rank[owner] % folds, u[owner] < validation
    n_p = len(x_p)
    out = []
    for k in range(folds):
        pair = []
        for name, rows in (("p", slice(0, n_p)), ("q", slice(n_p, None))):
            f, v = fold[rows], is_val[rows]
            split = Split(
                np.flatnonzero((f != k) & ~v), np.flatnonzero((f != k) & v), np.flatnonzero(f == k)
            )
            _check_split(name, k, folds, split)
            pair.append(split)
        out.append((pair[0], pair[1]))
    return out


def _check_split(name: str, fold: int, folds: int, split: Split) -> None:
    sizes = [len(split.train), len(split.validation), len(split.test)]
    if min(sizes) < MIN_SPLIT:
        raise ValueError(
            f"{name} has {sum(sizes)} sample{'s' if sum(sizes) != 1 else ''}, split for fold "
            f"{fold + 1} of {folds} into "
            f"train/validation/test = {'/'.join(map(str, sizes))}; every split needs at least "
            f"{MIN_SPLIT} (give more samples or fewer folds)"
        )


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate mean and standard deviation (1 where constant), computed on x scaled by
    its largest magnitude so that values near the float64 limit (1e200) do not overflow."""
    scale = np.abs(x).max(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    y = x / scale
    std = y.std(axis=0) * scale
    return y.mean(axis=0) * scale, np.where(std > 0, std, 1.0)


def robust_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate median and a robust standard deviation (the interquartile range over its
    Gaussian value 1.349; :func:`moments`' standard deviation where that range is 0)."""
    q1, median, q3 = np.percentile(x, [25, 50, 75], axis=0)
    iqr = (q3 - q1) / IQR_SD
    return median, np.where(iqr > 0, iqr, moments(x)[1])


def feature_map(
    train: np.ndarray, dev: torch.device, dtype: torch.dtype, gaussianise: bool
) -> Callable[[np.ndarray], Tensor]:
    """The critic's input for rows x (n, d): x standardised with the robust moments of
    ``train`` and squashed beyond SQUASH robust standard deviations (u -> SQUASH asinh(u /
    SQUASH), a bijection: near the identity inside, logarithmic outside), and with
    ``gaussianise`` its marginal Gaussianisation fitted on ``train`` beside it.

    Mean and standard deviation fail on heavy tails: on a Cauchy sample the standard deviation
    follows the largest rows, the bulk lands within 0.01 of 0 and the critic resolves it with
    large weights that send its output to 43 on one far test row of Q (the DV estimate of a
    Cauchy shift, KL 0.69, came out -5.1; d = 5, KL 1.12: -70.7, -19.1 and -0.54 on 3 seeds;
    robust and squashed, with :func:`fit_fold`'s clamp: 0.72, 0.73, 0.66 and 0.97, 0.94,
    1.04)."""
    center, scale = robust_moments(train)
    to_z = MarginalGaussian(train) if gaussianise else None

    def features(x: np.ndarray) -> Tensor:
        u = SQUASH * np.arcsinh((x - center) / scale / SQUASH)
        if to_z is not None:
            u = np.concatenate([u, to_z(x)], axis=1)
        return torch.from_numpy(u).to(dev, dtype)

    return features


def fold_tensors(
    x_p: np.ndarray,
    x_q: np.ndarray,
    split_p: Split,
    split_q: Split,
    dev: torch.device,
    dtype: torch.dtype,
    gaussianise: bool = False,
    offset: bool = False,
    diagonal: bool = False,
) -> tuple[tuple[Tensor, Tensor], ...]:
    """The (P, Q) tensors of train, validation and test: :func:`feature_map` fitted on the
    pooled train rows (so nothing about the test rows enters). ``gaussianise`` appends each
    row's marginal Gaussianisation (:class:`MarginalGaussian` fitted on the same pooled train
    rows): 2 d columns. ``offset`` appends a last column, the log-ratio of Student t fits to
    P's and Q's train rows (:func:`parametric.log_ratio_offset`; ``diagonal``: with diagonal
    scale matrices), for an :class:`OffsetCritic`."""
    train_p, train_q = x_p[split_p.train], x_q[split_q.train]
    train = np.concatenate([train_p, train_q])
    features = feature_map(train, dev, dtype, gaussianise)
    if offset:
        fitted = log_ratio_offset(train_p, train_q, *robust_moments(train), diagonal)
        plain = features

        def features(x: np.ndarray) -> Tensor:
            column = torch.from_numpy(fitted(x)).to(dev, dtype)
            return torch.cat([plain(x), column[:, None]], dim=1)

    return tuple(
        tuple(features(x[getattr(split, part)]) for x, split in ((x_p, split_p), (x_q, split_q)))
        for part in ("train", "validation", "test")
    )


@dataclass(frozen=True)
class FoldResult:
    """One critic's result: its bound on the test rows with the delta-method variance, its
    in-sample bound on its own training rows, its selected validation value with variance (in
    the reported bound), the raw test outputs and ``limits``, the range of its outputs on its
    training rows, to which the reported bounds clamp them (:meth:`clamped`)."""

    value: float
    variance: float
    train: float
    validation: float
    validation_variance: float
    v_p: Tensor
    v_q: Tensor
    history: list[tuple[float, ...]]
    best_step: int
    steps: int
    diverged_at: int | None
    limits: tuple[float, float] = (-math.inf, math.inf)

    def clamped(self, v: Tensor) -> Tensor:
        """Outputs v clamped to ``limits``, as the reported bounds see them."""
        return v.clamp(*self.limits)


def critic_outputs(net: nn.Module, x: Tensor) -> Tensor:
    """The critic's raw outputs (B,), evaluated in chunks without gradients."""
    with torch.no_grad():
        return torch.cat([_outputs(net, chunk) for chunk in x.split(_EVAL_CHUNK)])


def _outputs(net: nn.Module, x: Tensor) -> Tensor:
    v = net(x)
    if v.dim() == 2 and v.shape[1] == 1:
        v = v.squeeze(1)
    if v.shape != (x.shape[0],):
        raise ValueError(f"the critic must map (B, d) to (B,) or (B, 1), got {tuple(v.shape)}")
    return v


def training_objective() -> BoundFn:
    """What every critic maximises and is selected on: the logistic (``gan``) bound, whose
    optimal critic is v* = log p/q and which is bounded above per sample (unlike DV, NWJ, SMILE
    or the f-dual bounds of divergences with unbounded range, on a finite sample)."""
    gan = get("gan")
    return lambda v_p, v_q: variational_bound(v_p, v_q, gan)


def reported_bound(
    v_p: Tensor, v_q: Tensor, bound: str, div: FDivergence, clip: float
) -> tuple[float, float]:
    """The reported bound from log-ratio estimates v ~ log p/q (float64) and its delta-method
    variance (nats^2 for kl-type divergences).

    ``fdual`` evaluates the divergence's f-dual bound at its optimal critic for the estimated
    log ratio (NWJ at log p/q + 1 for kl), a lower bound for any v. ``dv`` is Donsker-Varadhan
    for kl, E_P[v] - log E_Q[e^v], and ``smile`` its clipped form.
    """
    v_p, v_q = v_p.double(), v_q.double()
    if bound == "fdual":
        t_p, t_q = div.optimal_critic(v_p), div.optimal_critic(v_q)
        a_p, a_q = div.activation(t_p), div.conjugate_activation(t_q)
        return float(a_p.mean() - a_q.mean()), float(a_p.var() / len(a_p) + a_q.var() / len(a_q))
    value = dv_bound(v_p, v_q) if bound == "dv" else smile_bound(v_p, v_q, clip)
    w = v_q.clamp(-clip, clip) if bound == "smile" else v_q
    e = torch.exp(w - w.max())  # Var(e^w) / mean(e^w)^2 is invariant to the shift
    var = v_p.var() / len(v_p) + e.var() / (len(v_q) * e.mean() ** 2)
    return float(value), float(var)


class Overfit(ValueError):
    """Training failed because the critic fit its training rows better than a constant critic
    but never did on the validation rows: the samples are too few for it."""


def fit_fold(
    net: nn.Module,
    data: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], tuple[Tensor, Tensor]],
    fold: int,
    div: FDivergence,
    bound: str,
    clip: float,
    generator: torch.Generator,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    eval_every: int,
    patience: int,
    bar: tqdm,
) -> FoldResult:
    """Train ``net`` (Adam, early stopping on the validation objective), keep its best state
    and report it on the test rows. ``data`` holds the (P, Q) tensors of train, validation, test.
    ``bar`` counts steps: ``steps`` of them for the fold, early stopping included.
    """
    (train_p, train_q), validation, (test_p, test_q) = data
    objective = training_objective()
    optimiser = adam(net.parameters(), lr)
    b_p, b_q = min(batch_size, len(train_p)), min(batch_size, len(train_q))
    if (b_p, b_q) == (len(train_p), len(train_q)):
        eval_every = 1  # full batches: every step is a pass over the rows, which few rows overfit
    validation_rows = min(map(len, validation))
    history: list[tuple[float, ...]] = []
    best_value, best_step, best_state = -math.inf, 0, snapshot(net)
    running, count, step, diverged_at, bar_steps = 0.0, 0, 0, None, 0
    for step in range(1, steps + 1):
        net.train()
        i_p = torch.randint(len(train_p), (b_p,), generator=generator).to(train_p.device)
        i_q = torch.randint(len(train_q), (b_q,), generator=generator).to(train_q.device)
        v = _outputs(net, torch.cat([train_p[i_p], train_q[i_q]]))
        value = objective(v[:b_p], v[b_p:])
        optimiser.zero_grad(set_to_none=True)
        (-value).backward()
        optimiser.step()
        running, count = running + float(value.detach()), count + 1
        if step % eval_every and step != steps:
            continue
        net.eval()
        val = float(objective(*(critic_outputs(net, x) for x in validation)))
        history.append((fold, step, running / count, val))
        running, count = 0.0, 0
        if not math.isfinite(val):
            diverged_at = step
            break
        if val > best_value:
            best_value, best_step, best_state = val, step, snapshot(net)
        bar.update(step - bar_steps)
        bar_steps = step
        if step - best_step >= wait(best_step, patience, validation_rows):
            break
    bar.update(steps - bar_steps)
    if best_step == 0:
        raise ValueError(
            f"training diverged: the validation objective was not finite at step {diverged_at} "
            f"and no finite critic was found (lr={lr} may be too large)"
        )
    zero = torch.zeros(1, dtype=torch.float64)
    floor = float(objective(zero, zero)) - FAIL_MARGIN
    if best_value < floor:
        fitted = max(train for _, _, train, _ in history) > floor + 2 * FAIL_MARGIN
        cause = (
            f"the critic overfits its {len(train_p)} + {len(train_q)} training rows (it fits "
            "them better than a constant critic): try a smaller critic, a lower lr or more "
            "samples"
            if fitted
            else f"lr={lr} may be too large"
        )
        raise (Overfit if fitted else ValueError)(
            f"training failed in fold {fold + 1}: the best validation objective "
            f"({best_value:.4g} nats) is below a constant critic's ({floor + FAIL_MARGIN:.4g}); "
            f"{cause}"
        )
    net.load_state_dict(best_state)
    net.eval()
    # beyond the range of its outputs on the training rows the critic extrapolates: the bounds
    # see its outputs clamped to that range (a function of x like any other critic, so they
    # hold), which keeps one far test row of Q from deciding the partition term; the raw
    # outputs are kept for the diagnostics (a clamped tail would hide P's heavy one)
    v_train = [critic_outputs(net, x) for x in (train_p, train_q)]
    limits = (min(float(v.min()) for v in v_train), max(float(v.max()) for v in v_train))
    v_p, v_q = critic_outputs(net, test_p), critic_outputs(net, test_q)
    value, variance = reported_bound(v_p.clamp(*limits), v_q.clamp(*limits), bound, div, clip)
    train = reported_bound(*v_train, bound, div, clip)
    val_value, val_var = reported_bound(
        *(critic_outputs(net, x).clamp(*limits) for x in validation), bound, div, clip
    )
    return FoldResult(
        value, variance, train[0], val_value, val_var, v_p, v_q, history, best_step, step,
        diverged_at, limits,
    )  # fmt: skip


def wait(best_step: int, patience: int, validation_rows: int) -> int:
    """Steps without improvement after which a fit stops: ``patience``, or with at least
    WAIT_ROWS validation rows a side twice the best step so far where that is shorter, down to
    half of ``patience``.

    A critic whose validation objective peaked within the first steps has fitted an easy ratio
    when that objective is precise (a 1-nat shift, d = 10, 20,000 a side, 2,667 validation rows
    a side: best steps 50-150, then 400 steps without a gain; 1,550 steps in all, 1,150 with
    this rule: 16.4 -> 12.4 s). With few validation rows an early peak is noise (Laplace against
    a Gaussian, d = 5, 2,000 a side, 267 validation rows: stopping 2 x best after it gave 0.18-0.20
    for 0.362 on 3 of 5 seeds, against 0.22-0.25 with the full wait). One that peaked later may
    climb again after a plateau (8 narrow modes in 3-D, 10,000 a side: a plateau from step 250
    to past 600, best at 4,150), so past a best step of patience / 2 the wait is all of it."""
    if validation_rows < WAIT_ROWS:
        return patience
    return min(patience, max(patience // 2, 2 * best_step))


def snapshot(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def combine(results: list[FoldResult]) -> tuple[float, float]:
    """(value, stderr) over folds, in nats.

    A trained critic's held-out bound is biased low (the critic is not the optimum) and its
    in-sample bound on its own training rows biased high (it was fitted to them); to first order
    in the estimation error the two biases are equal and opposite (the optimism of an M-estimate),
    so the value is their midpoint. The standard error is that of an interval running from the
    lower of the two minus 1.96 held-out standard errors to the higher plus as much; the
    held-out standard error is the pooled delta-method variance plus the between-fold variance
    of the mean (which also carries how much the trained critics differ). Folds are weighted by
    their test sizes.
    """
    (held_out, stderr), in_sample = held_out_and_in_sample(results)
    return bracket(held_out, stderr, in_sample)


def bracket(held_out: float, stderr: float, in_sample: float) -> tuple[float, float]:
    """(value, stderr) in nats from a critic's held-out bound (standard error ``stderr``) and its
    bound on its own training rows: their midpoint, with the standard error of an interval from
    the lower of the two minus Z95 * ``stderr`` to the higher plus as much (see :func:`combine`).
    """
    half_gap = abs(in_sample - held_out) / 2
    return (held_out + in_sample) / 2, stderr + half_gap / Z95


def held_out_and_in_sample(results: list[FoldResult]) -> tuple[tuple[float, float], float]:
    """((held-out value, its standard error), in-sample value) over folds, in nats: the
    test-size-weighted means of the folds' test and own-training-row bounds."""
    held_out = _pooled(results, [r.value for r in results], [r.variance for r in results])
    return held_out, float(_weights(results) @ np.array([r.train for r in results]))


def plug_in(results: list[FoldResult]) -> tuple[float, float]:
    """(value, stderr) in nats of the plug-in kl estimate over folds: the mean held-out
    log-ratio over P, clamped as the bounds see it.

    Unlike DV it has no partition term log E_Q[e^v], a mean of a heavy-tailed variable where
    E_Q[(p/q)^2] is large or infinite; the logistic loss that trains every critic pins its
    level (the optimum is log p/q itself, not up to a constant). Its standard error pools the
    test noise and the spread between folds as :func:`combine` does.
    """
    sides = [r.clamped(r.v_p).double() for r in results]
    return _pooled(
        results, [float(v.mean()) for v in sides], [float(v.var()) / len(v) for v in sides]
    )


def _weights(results: list[FoldResult]) -> np.ndarray:
    """Each fold's share of the test rows."""
    sizes = np.array([len(r.v_p) + len(r.v_q) for r in results], dtype=np.float64)
    return sizes / sizes.sum()


def _pooled(
    results: list[FoldResult], values: list[float], variances: list[float]
) -> tuple[float, float]:
    """The folds' test-size-weighted mean of ``values`` and its standard error: the pooled
    ``variances`` plus the between-fold variance of the mean."""
    w, v = _weights(results), np.array(values)
    mean = float(w @ v)
    within = float(np.square(w) @ np.array(variances))
    k = len(results)
    between = float(np.sum(w * np.square(v - mean)) * k / (k - 1) / k) if k > 1 else 0.0
    return mean, math.sqrt(within + between)
