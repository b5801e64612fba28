"""Mutual information I(X; Y) = KL(P_XY || P_X x P_Y) from paired samples, with a trained critic.

The rows (x_i, y_i) are split into train / validation / test parts (seeded, by rows: a pair is
never split apart). A critic T(x, y) is trained with Adam on minibatches of train rows, the bound
is evaluated on (at most ``VALIDATION_ROWS``) validation rows every few steps and the best critic
is kept. Training stops ``patience`` steps after the best, or sooner after an early best with at
least 1,000 validation pairs (:func:`fdiv.estimation.crossfit.wait`; on the nine MI-library
tasks below, 18 runs: 19,750 -> 16,800 steps, 576 -> 475 s, 7 of the 8 shortened runs kept
their value, one 1-D Gaussian 0.989 -> 0.983 for 1, coverage unchanged). The kept critic is
scored on the test rows and on as many of its own train rows (see Interval below). Negative
pairs (samples of P_X x P_Y) are always formed within one part, never across parts:

- ``critic="separable"``: T(x, y) = <f(x), g(y)> + a(x) + b(y) with two MLPs; a batch of B pairs
  gives all B(B - 1) off-diagonal pairs as negatives, through ``fdiv.all_pairs_bound`` (memory
  O(B k), so the whole test part is one batch);
- ``critic="joint"``: an MLP on concat(x, y); the negatives are (x_i, y_s(i)) for a random
  derangement s of the batch (B negatives, none paired with its own row);
- an ``nn.Module`` called as ``critic(x, y)``: returning ``(f_x, g_y)`` (each (B, k)) makes it
  separable, returning scores (B,) or (B, 1) of the given pairs makes it joint.

Bounds (all in nats; B = rows of the part evaluated):

==========  ==============================================  ================================
bound       value                                           what it is
==========  ==============================================  ================================
infonce     mean_i [T_ii - logsumexp_j T_ij] + log B        lower bound on I, capped at log B
nwj         mean_i T_ii - mean_{i!=j} exp(T_ij - 1)         lower bound on I (high variance)
dv          mean_i T_ii - log mean_{i!=j} exp(T_ij)         DV / MINE: lower bound on I for the
                                                            true partition term; the sample
                                                            log-mean is biased slightly up
smile       dv with T clipped to [-clip, clip] in the exp   not a bound (biased; low variance)
<f-div>     mean_i g(T_ii) - mean_{i!=j} f*(g(T_ij))        lower bound on the f-mutual
                                                            information D_f(P_XY || P_X x P_Y)
==========  ==============================================  ================================

``infonce`` needs all pairs: a joint critic does not support it. Training objective: infonce,
nwj and the f-divergences train on the bound they report; dv and smile train with the logistic
(``gan``) objective over all pairs (optimal critic: the pointwise MI, up to the constant DV
ignores), for the reasons given in ``fdiv.estimation.estimate``.

Discrete pairs. Where every (x, y) value repeats (at most RARE_SHARE of the pairs on values
held RARE_COUNT times or fewer, :mod:`fdiv.estimation.counts`), ``bound="auto"`` with the
default critic reads I(X; Y) = H(X) + H(Y) - H(X, Y) off the frequency tables, jackknifed over
the pairs (method "counts"): over 300 seeds each, on four tables (6 x 8 random, 10 x 10 noisy
labels, y = x + {0, 1} mod 5, independent 4 x 4) at 500 to 10,000 pairs the intervals held the
truth in 95-100% of runs, the mean error at most 0.011 nats (the noisy labels at 2,000
pairs; 0.0005 at 10,000); the critic gave 0.909 [0.903, 0.917] for log 5 - log 2 = 0.916 in
41 s (5,000 pairs, mod 5).

``bound="auto"``: "infonce" (which needs a separable critic): the critic trains on minibatches
and the all-pairs InfoNCE of the whole test part is reported, so the cap is log(test pairs), not
log(batch). Measured (benchmarks/results/mi-*.md): with a critic trained by the logistic loss,
the all-pairs DV value swung between 0.8 and 3.6 nats from one validation check to the next on a
5-nat Gaussian (d = 5, 10^4 pairs; exp(T) of a few poorly fit negative pairs dominates the
partition term), while InfoNCE, normalised row by row, gave 4.72 (optimal critic: about 4.9 at
B = 2000). Near its cap InfoNCE only says "at least"; a warning says so.

Inputs. A bijection of each coordinate of X, and of Y, leaves I(X; Y) unchanged, so the
built-in critics see each side's marginal Gaussianisation (:class:`fdiv.estimation.features.
MarginalGaussian`, fitted on that side's train rows) beside its robustly standardised columns, as
the divergence critics do: skewed, bounded or steep marginals reach the critic as smooth ones. On
the 23 continuous tasks of the MI library (10,000 pairs, seed 1, the default call with and
without it) 17 intervals held the truth against 16 and the mean |log(estimate / truth)| fell
from 0.091 to 0.081: the 5-nat Gaussian through x -> x^3 went from 4.26 [3.84, 4.67] to 4.67
[4.45, 4.96] (seed 0: 4.19 [3.83, 4.54] to 4.72 [4.54, 5.07]), through the normal CDF from 4.56
[4.37, 4.75] to 4.74 [4.57, 5.10], through asinh from 4.70 [4.51, 4.985] to 4.72 [4.57, 5.05];
two lost their cover by a few hundredths (Student t, 3 dof, rho 0.8: 2.75 [2.64, 2.86] to 2.71
[2.63, 2.83] for 2.85; 8 clusters, 1.94 [1.91, inf] to 1.92 [1.89, 1.95] for 1.96). The
Gaussianisation alone, without the standardised columns, makes the cube the plain Gaussian (4.79
[4.70, 5.25], seed 0) but lost the multivariate t's shared scale (3 dof, rho 0: 0.253 [0.221,
0.284] for 0.299).

Interval. The kept critic's bound on the test pairs is biased low (the critic is not the
optimum) and its bound on as many of its own train pairs biased high (it was fitted to them). As
for the divergences (:func:`fdiv.estimation.crossfit.combine`) the value is their midpoint and the
95% interval runs from the lower of the two minus 1.96 test standard errors to the higher plus as
much, its upper end at least 0 (an f-mutual information is never negative). The test standard
error is the delta method's for the all-pairs statistics (each row's own term plus its share of
the negatives as a row and as a column). The held-out value alone, with that error only, missed
on independent X and Y (d = 10, 5,000 pairs: -0.048 to -0.057 with upper ends below 0, 3 seeds)
and on Gaussians with rho = 0.3 in d = 20 (0.943 nats: 0.68-0.72, upper ends 0.76-0.80): 9 of 18
intervals over six such pairs held the truth, against 17 of 18 with the bracket. On nine tasks
of the MI library (``fdiv.bench.mi_tasks``: dense, sparse and cubed Gaussians, Student-t,
clusters; 10,000 pairs, 2 seeds) the intervals held the truth in 4 of 18 runs before and 14 of
18 after, the mean |log(estimate / truth)| fell from 0.103 to 0.041. The four misses, 5 nats in
d = 5 plain (4.79-4.80) and cubed (4.18-4.23), are low on the critic's own rows too: InfoNCE of
2,000 test pairs is itself low there (the optimal critic's: about 4.9), and the cubed pair's
critic is poor. Warnings name what the interval cannot cover.

InfoNCE's own bias. Even at the optimal critic InfoNCE of B pairs falls short of I by the
positive pair's share of its own partition term, which grows like e^I / B long before the cap
log B: Y = X + N(0, I) in d = 20 (6.93 nats), B = 1,000, the optimal critic gives 5.69 and the
trained one 5.66 [5.18, 6.15], 5.59 [5.24, 5.94] (two seeds, no warning); the 5-nat Gaussian
in d = 5 at B = 2,000: optimal 4.81, trained 4.79 [4.70, 4.88]. So the upper end of an InfoNCE
interval reaches at least to the per-row terms without the positive in the partition
(:func:`_uncapped`, plus 1.96 of their standard errors), which at the optimal critic lie above I
(a log of a sample mean is biased low): 7.41 and 6.97 on the two d = 20 seeds, 5.13 on the
5-nat Gaussian. Where I is far below log B the two agree (1 nat in d = 1: 0.970 against
0.968). Where that reach lies above the bracket's by more than a standard error a warning
says how low the value may be (d = 20: [5.18, 7.68] and [5.24, 7.19] now; the 5-nat Gaussian
4.79 [4.70, 5.23]; none on 1 nat in d = 1 or 5). A poor critic is not covered this way (the
cubed 5-nat pair: 4.17).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fdiv.device import resolve_device
from fdiv.divergences.registry import names
from fdiv.estimation import diagnostics
from fdiv.estimation.counts import counts_mi
from fdiv.estimation.critics import check_sizes, mlp
from fdiv.estimation.crossfit import MIN_SPLIT, bracket, feature_map, snapshot, wait
from fdiv.estimation.estimate import Estimate, check_training, cuda_indices
from fdiv.estimation.ksg import ksg_terms
from fdiv.estimation.result import Z95, in_range, interval, shown_low
from fdiv.io import as_samples, is_integer, is_real
from fdiv.kernels.all_pairs import MI_BOUNDS, BoundSpec, resolve_bound
from fdiv.losses import all_pairs_bound, dv_bound, smile_bound, variational_bound
from fdiv.optim import adam
from fdiv.progress import progress as progress_bar

__all__ = [
    "CRITICS",
    "MI_BOUND_NAMES",
    "JointCritic",
    "SeparableCritic",
    "derangement",
    "mutual_information",
]

CRITICS: tuple[str, ...] = ("separable", "joint")
COUNTS_MI_REASON = (
    "discrete pairs: every (x, y) value repeats, so the frequency tables give I(X; Y) "
    "(plug-in, jackknifed)"
)
VALIDATION_ROWS = 4096  # the validation bound is taken on at most this many rows (all pairs)
CAP_MARGIN = 1.0  # nats: an InfoNCE value within this of log B is reported as near its cap
OVERFIT_MARGIN = 0.1  # nats: train bound above the validation bound by more is reported
#: Coordinate pairs (x_i, y_j) up to which a mutual information (KL) is checked against KSG on
#: each pair (:func:`_with_pairs`), on at most PAIR_ROWS pairs (0.03 s a coordinate pair).
PAIR_CHECK = 100
PAIR_ROWS = 4000
#: Joint dimensions d_x + d_y from 3 up to which the critic's interval is checked against KSG on
#: the whole (x, y) (:func:`_with_ksg`), on at most KSG_ROWS pairs (about 0.3 s).
KSG_CHECK_DIM = 4
KSG_ROWS = 10_000
#: log p/q from the output v of an f-bound's critic at its optimum (v = div.optimal_critic(log
#: p/q)), for the divergences whose means of (p/q)^k ``diagnostics.ratio_powers`` names
_LOG_RATIO = {
    "pearson": lambda v: torch.log1p((v / 2.0).clamp_min(-1.0)),  # v = 2 (p/q - 1)
    "neyman": lambda v: v / 2.0,  # v = 2 log p/q
    "alpha": lambda v: v,  # v = log p/q
}
_INFLUENCE_ELEMENTS = 2**22  # scores per row block of the interval's pass


#: Every accepted ``bound``: auto, the MI bounds and the registered f-divergences (or aliases).
MI_BOUND_NAMES: tuple[str, ...] = ("auto", *MI_BOUNDS, *names())


class SeparableCritic(nn.Module):
    """T(x, y) = <f(x), g(y)> + a(x) + b(y): returns the features (F, G), each (B, k + 2).

    F = [f(x), a(x), 1] and G = [g(y), 1, b(y)], so that F G^T holds every score of a batch.
    """

    def __init__(
        self,
        dim_x: int,
        dim_y: int,
        embedding: int = 32,
        hidden: Sequence[int] = (256, 256),
        activation: str = "silu",
    ) -> None:
        super().__init__()
        check_sizes("hidden", hidden)
        check_sizes("embedding", [embedding])
        self.f = mlp(dim_x, hidden, embedding + 1, activation)
        self.g = mlp(dim_y, hidden, embedding + 1, activation)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        f, g = self.f(x), self.g(y)
        one = torch.ones_like(f[:, :1])
        return torch.cat([f, one], 1), torch.cat([g[:, :-1], one, g[:, -1:]], 1)


class JointCritic(nn.Module):
    """T(x, y) = MLP(concat(x, y)): scores (B,) of the pairs given, row by row."""

    def __init__(
        self, dim_x: int, dim_y: int, hidden: Sequence[int] = (256, 256), activation: str = "silu"
    ) -> None:
        super().__init__()
        check_sizes("hidden", hidden)
        self.net = mlp(dim_x + dim_y, hidden, 1, activation)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([x, y], 1)).squeeze(1)


def derangement(n: int, generator: torch.Generator) -> Tensor:
    """A random permutation s of range(n) with s(i) != i for every i (n >= 2)."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = torch.randperm(n, generator=generator)
    s = torch.empty(n, dtype=torch.long)
    s[order] = order.roll(-1)  # each row's partner is the next row of a random cycle
    return s


@dataclass(frozen=True)
class _Plan:
    """What is trained and what is reported."""

    report: BoundSpec
    train: BoundSpec
    clip: float


def _plan(bound: str, clip: float) -> _Plan:
    if not isinstance(bound, str):
        raise TypeError(f"bound must be a string, got {type(bound).__name__}")
    key = bound.strip().lower()
    if key == "auto":
        key = "infonce"
    try:
        report = resolve_bound(key, clip)
    except ValueError:
        raise ValueError(
            f"bound {bound!r} is unknown; known: {', '.join(MI_BOUND_NAMES)}"
        ) from None
    train = resolve_bound("gan", clip) if report.name in ("dv", "smile") else report
    return _Plan(report, train, clip)


def _scores(net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor] | Tensor:
    """(F, G) of a separable critic, or the scores (B,) of the given pairs for a joint one."""
    out = net(x, y)
    if isinstance(out, tuple | list):
        if len(out) != 2 or not all(isinstance(t, Tensor) for t in out):
            raise ValueError("a separable critic must return a pair of tensors (f_x, g_y)")
        return out[0], out[1]
    if not isinstance(out, Tensor):
        raise TypeError(f"the critic must return tensors, got {type(out).__name__}")
    if out.dim() == 2 and out.shape[1] == 1:
        out = out.squeeze(1)
    if out.shape != (x.shape[0],):
        raise ValueError(
            f"a joint critic must map B pairs to scores (B,) or (B, 1), got {tuple(out.shape)}"
        )
    return out


def _batch_bounds(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    specs: Sequence[BoundSpec],
    clip: float,
    generator: torch.Generator,
) -> list[Tensor]:
    """Each bound of ``specs`` on one batch of pairs: all pairs for a separable critic, the
    pairs (x_i, y_s(i)) of a random derangement s for a joint one (scores computed once)."""
    out = _scores(net, x, y)
    if isinstance(out, tuple):
        return [all_pairs_bound(*out, spec.name, clip=clip) for spec in specs]
    v_q = _scores(net, x, y[derangement(len(x), generator).to(x.device)])
    return [_joint_bound(out, v_q, spec) for spec in specs]


def _joint_bound(v_p: Tensor, v_q: Tensor, spec: BoundSpec) -> Tensor:
    if spec.kind == "infonce":
        raise ValueError("bound 'infonce' needs all pairs: use a separable critic")
    if spec.kind == "lme":
        return dv_bound(v_p, v_q) if spec.clip is None else smile_bound(v_p, v_q, spec.clip)
    return variational_bound(v_p, v_q, spec.div)


def mutual_information(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    bound: str = "auto",
    critic: str | nn.Module = "separable",
    *,
    seed: int = 0,
    steps: int = 3000,
    batch_size: int = 512,
    lr: float = 1e-3,
    holdout: tuple[float, float] = (0.2, 0.2),
    eval_every: int = 50,
    patience: int = 500,
    clip: float = 5.0,
    embedding: int = 32,
    hidden: Sequence[int] = (256, 256),
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Estimate:
    """I(X; Y) in nats from paired rows ``x`` (N, d_x) and ``y`` (N, d_y), held out honestly.

    ``bound``: "auto", "infonce", "nwj", "dv", "smile" or a registered f-divergence (then the
    f-mutual information D_f(P_XY || P_X x P_Y)); see the module docstring for which are lower
    bounds and which are capped. ``critic``: "separable" (all pairs; ``embedding`` and ``hidden``
    size its two MLPs), "joint" (shuffled pairs) or an ``nn.Module`` (copied before training).
    x and y are standardised per coordinate as the divergence critics' inputs are (median and
    interquartile range of the train rows, squashed far out: :func:`crossfit.feature_map`; MI
    is unchanged by such maps of X and of Y); the built-in critics also see each side's
    marginal Gaussianisation (module docstring, Inputs), a module of the caller's only the
    standardised columns. The other options are
    those of :func:`fdiv.estimate`; ``batch_size`` is in pairs. The same ``seed`` gives bitwise
    the same result on the CPU. Problems the interval cannot show come back in
    ``Estimate.warnings``.
    """
    start = time.perf_counter()
    plan = _plan(bound, clip)
    check_training(steps=steps, batch_size=batch_size, eval_every=eval_every,
                   patience=patience, lr=lr, clip=clip)  # fmt: skip
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not (
        isinstance(holdout, tuple | list)
        and len(holdout) == 2
        and all(is_real(f) and 0 < f < 1 for f in holdout)
        and sum(holdout) < 1
    ):
        raise ValueError(
            "holdout must be (validation, test) fractions in (0, 1) summing to less than 1, "
            f"got {holdout!r}"
        )
    x_np, y_np = as_samples(x, "x"), as_samples(y, "y")
    if len(x_np) != len(y_np):
        raise ValueError(
            f"x and y must have the same number of rows (pairs), got {len(x_np)} and {len(y_np)}"
        )
    if bound.strip().lower() == "auto" and isinstance(critic, str) and critic == "separable":
        counted = counts_mi(x_np, y_np)
        if isinstance(counted, Estimate):
            return in_range(dataclasses.replace(counted, reason=COUNTS_MI_REASON), (0.0, math.inf))
    dev = resolve_device(device)
    generator = torch.Generator().manual_seed(int(seed))
    parts = _split_rows(len(x_np), holdout, generator)
    with torch.random.fork_rng(devices=cuda_indices(dev)):
        torch.manual_seed(seed)
        # the built-in critics see each side's marginal Gaussianisation beside it (2 d columns)
        gaussianise = isinstance(critic, str)
        width = 2 if gaussianise else 1
        net = _make_critic(
            critic, width * x_np.shape[1], width * y_np.shape[1], embedding, hidden
        ).to(dev)
        dtype = next((t.dtype for t in net.parameters() if t.is_floating_point()), torch.float32)
        maps = [feature_map(a[parts[0]], dev, dtype, gaussianise) for a in (x_np, y_np)]
        train, val, test = (
            tuple(f(a[idx]) for f, a in zip(maps, (x_np, y_np), strict=True)) for idx in parts
        )
        separable = _is_separable(net, train)
        if plan.report.kind == "infonce" and not separable:
            raise ValueError("bound 'infonce' needs all pairs: use a separable critic")
        val = tuple(t[:VALIDATION_ROWS] for t in val)
        history, best_step, last_step = _train(
            net, train, val, plan, generator, steps, batch_size, lr, eval_every, patience,
            progress,
        )  # fmt: skip
    held_out, held_se, ess = _test_bound(net, *test, plan, torch.Generator().manual_seed(seed + 1))
    own = tuple(t[: len(test[0])] for t in train)  # as many pairs (where there are): same B
    in_sample = _test_bound(net, *own, plan, torch.Generator().manual_seed(seed + 2))[0]
    value, stderr = bracket(held_out, held_se, in_sample)
    low, high = interval(value, stderr)
    short = None  # how far InfoNCE's own bias may leave the value below I
    if plan.report.kind == "infonce":
        with torch.no_grad():
            uncapped, uncapped_se = _uncapped(*(t.double() for t in _scores(net, *test)))
        reach = uncapped + Z95 * uncapped_se
        if reach > high + stderr:
            short = (
                f"InfoNCE of {len(test[0])} pairs falls short of I by the positive pair's share "
                f"of its own partition term, which grows like e^I / B: without it the pairs' "
                f"terms reach {uncapped:.3f} nats, so the value may be low by up to "
                f"{reach - value:.2f} nats and the interval reaches up to {reach:.3f}; more "
                "pairs narrow it"
            )
        high = max(high, reach)
    if _near_cap(plan, held_out, len(test[0])) or best_step == last_step == steps:
        # InfoNCE near log B says only "at least" (X = Y, d = 2: 6.77 for inf), and so does a
        # critic stopped while still improving (Y = X + N(0, 1e-6), 6.91 nats: 5.07 at 3,000)
        high = math.inf
    found = _warnings(
        plan, held_out, held_se, ess, len(test[0]), min(batch_size, len(train[0])), history,
        best_step, last_step, steps,
    )  # fmt: skip
    if short is not None and math.isfinite(high):
        found.append(short)
    few = _few_pairs(net, *test, plan.report, torch.Generator().manual_seed(seed + 1))
    if few is not None:
        # a mean of a power of p/q on a few pairs falls short of the mean as a rule (pearson,
        # rho = 0.99, d = 1, 5,000 pairs: 6.19 [4.33, 8.06] for 49.25, silently)
        high = math.inf
        found += [
            few,
            f"the {plan.report.name} mutual information rests on a few pairs' density ratios, "
            "which bound it only from below: the interval's upper end is open (inf)",
        ]
    result = Estimate(
        value=value,
        stderr=stderr,
        ci95=(low, max(high, 0.0)),  # an f-mutual information is never negative
        divergence="mi"
        if plan.report.div is None or plan.report.name == "nwj"
        else f"{plan.report.name}-mi",
        bound=plan.report.name,
        n_train=(len(train[0]), len(train[0])),
        n_validation=(len(val[0]), len(val[0])),
        n_test=(len(test[0]), len(test[0])),
        steps=last_step,
        best_step=best_step,
        seconds=time.perf_counter() - start,
        history=tuple(history),
        warnings=tuple(found),
        method=f"mutual_information/{'separable' if separable else 'joint'}",
    )
    if result.divergence != "mi":
        return in_range(result, plan.report.div.value_range)
    return in_range(
        _with_pairs(x_np, y_np, _with_ksg(x_np, y_np, result, seed), seed), (0.0, math.inf)
    )


def _with_ksg(x: np.ndarray, y: np.ndarray, result: Estimate, seed: int) -> Estimate:
    """``result``, its interval stretched up to KSG's on the whole (x, y) where KSG's value lies
    above it, warned (d_x + d_y from 3 to KSG_CHECK_DIM; KSG_ROWS pairs drawn with ``seed``).

    Only above, as for kNN and the divergences (:func:`fdiv.estimation.estimate._with_knn`): a
    critic too smooth for the pointwise MI is low, and so is KSG from a few dimensions on (the
    cubed 5-nat Gaussian, d = 5 a side: 2.56). 8 clusters on a circle, d = 2 a side (1.962
    nats, 10,000 pairs): the critic 1.918 [1.888, 1.948], missed, KSG 1.979 +- 0.007. Pairs
    with repeated values and discrete or coarsely rounded coordinates are skipped (KSG needs
    continuous densities)."""
    if not 3 <= x.shape[1] + y.shape[1] <= KSG_CHECK_DIM:
        return result
    rows = np.random.default_rng(seed).permutation(len(x))[:KSG_ROWS]
    joint = np.hstack([x[rows], y[rows]])
    if diagnostics.coarse_coordinate(joint, joint[:0]) is not None:
        return result
    found = _ksg(x[rows], y[rows])
    if found is None:
        return result
    value, stderr = found
    low, high = result.ci95
    if value <= high:
        return result
    reach = interval(value, stderr)[1]
    return dataclasses.replace(
        result,
        ci95=(low, reach),
        warnings=(
            *result.warnings,
            f"KSG on the whole (x, y) ({value:.3f} nats on {len(rows)} pairs) lies above the "
            f"critic's interval [{low:.3f}, {high:.3f}]: the critic may be too smooth for the "
            f"dependence (sharp clusters), so the interval reaches up to {reach:.3f}",
        ),
    )


def _with_pairs(x: np.ndarray, y: np.ndarray, result: Estimate, seed: int) -> Estimate:
    """``result``, or where one coordinate pair's KSG interval (x_i, y_j; PAIR_ROWS pairs drawn
    with ``seed``) lies above its interval (above its value by Z95 standard errors where the
    upper end is already open), that pair's KSG value with the upper end open, warned; up to
    PAIR_CHECK coordinate pairs.

    I(X; Y) is at least I(X_i; Y_j) (data processing), and 2-D KSG resolves a dependence that a
    smooth critic misses: Y_1 = sin(8 X_1) + 0.3 N(0, 1), d = 5 on each side, 5,000 pairs,
    0.862 nats by quadrature: the default call gave 0.006 [-0.024, 0.035] with no warning, KSG
    on (X_1, Y_1) 0.84. The pair's lower end must clear the interval (the largest of d_x d_y
    noisy values is biased up); pairs with repeated values are skipped (KSG needs continuous
    data). The value is then the pair's, a lower bound, with nothing to bound it from above."""
    if x.shape[1] * y.shape[1] > PAIR_CHECK:
        return result
    rows = np.random.default_rng(seed).permutation(len(x))[:PAIR_ROWS]
    best = None
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            found = _ksg(x[rows, i : i + 1], y[rows, j : j + 1])
            if found is not None and (best is None or interval(*found)[0] > interval(*best[2:])[0]):
                best = (i, j, *found)
    if best is None or not shown_low(result, interval(*best[2:])[0]):
        return result
    i, j, value, stderr = best
    low, high = result.ci95
    pair_low, pair_high = interval(value, stderr)
    return dataclasses.replace(
        result,
        value=value,
        stderr=stderr,
        ci95=(low, math.inf),
        method="ksg",
        warnings=(
            *result.warnings,
            f"the coordinate pair (x_{i + 1}, y_{j + 1}) alone shares {value:.3f} nats "
            f"[{pair_low:.3f}, {pair_high:.3f}] (KSG on {len(rows)} "
            f"pairs), above the critic's {result.value:.3f} [{low:.3f}, {high:.3f}]: I(X; Y) is "
            "at least any coordinate pair's, so the critic misses what that pair shows (a "
            "sharp or oscillating dependence) and may miss more; the value is the pair's, a "
            "lower bound, and the interval's upper end is open (inf)",
        ),
    )


def _ksg(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(KSG's value, its standard error) in nats, or None where KSG refuses (repeated pairs, too
    few)."""
    try:
        terms = ksg_terms(x, y)
    except ValueError:
        return None
    return float(terms.mean()), float(terms.std(ddof=1) / math.sqrt(len(terms)))


def _split_rows(
    n: int, holdout: tuple[float, float], generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, validation, test) row indices of the n pairs; ``holdout`` holds the
    validation and test fractions. Whole rows move together: a pair is never split."""
    n_val, n_test = (round(n * fraction) for fraction in holdout)
    perm = torch.randperm(n, generator=generator).numpy()
    parts = perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]
    sizes = [len(part) for part in parts]
    if min(sizes) < MIN_SPLIT:
        raise ValueError(
            f"the pairs (x, y) number {n}, split into train/validation/test = "
            f"{'/'.join(map(str, sizes))}; every split needs at least {MIN_SPLIT}"
        )
    return parts


def _make_critic(
    critic: str | nn.Module, dim_x: int, dim_y: int, embedding: int, hidden: Sequence[int]
) -> nn.Module:
    if isinstance(critic, nn.Module):
        return copy.deepcopy(critic)
    if critic == "separable":
        return SeparableCritic(dim_x, dim_y, embedding, hidden)
    if critic == "joint":
        return JointCritic(dim_x, dim_y, hidden)
    raise ValueError(
        f"critic must be one of {', '.join(CRITICS)} or a torch.nn.Module, got {critic!r}"
    )


def _is_separable(net: nn.Module, pairs: tuple[Tensor, Tensor]) -> bool:
    with torch.no_grad():
        return isinstance(_scores(net, pairs[0][:2], pairs[1][:2]), tuple)


def _train(
    net: nn.Module,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    plan: _Plan,
    generator: torch.Generator,
    steps: int,
    batch_size: int,
    lr: float,
    eval_every: int,
    patience: int,
    progress: bool,
) -> tuple[list[tuple[int, float, float]], int, int]:
    """Adam on minibatches of train pairs, early stopping on the validation bound; leaves ``net``
    holding the best critic. Returns (history, best step, last step)."""
    optimiser = adam(net.parameters(), lr)
    x_tr, y_tr = train
    b = min(batch_size, len(x_tr))
    val_seed = int(torch.randint(2**62, (), generator=generator))
    val_generator = torch.Generator().manual_seed(val_seed)
    val_state = val_generator.get_state()
    history: list[tuple[int, float, float]] = []
    best_value, best_step, best_state = -math.inf, 0, snapshot(net)
    running, count, step = 0.0, 0, 0
    bar = progress_bar(steps, f"mutual information ({plan.report.name})", enabled=progress)
    for step in range(1, steps + 1):
        net.train()
        rows = torch.randperm(len(x_tr), generator=generator)[:b].to(x_tr.device)
        specs = (plan.train,) if plan.train is plan.report else (plan.train, plan.report)
        values = _batch_bounds(net, x_tr[rows], y_tr[rows], specs, plan.clip, generator)
        optimiser.zero_grad(set_to_none=True)
        (-values[0]).backward()
        optimiser.step()
        value = values[-1]
        running, count = running + float(value.detach()), count + 1
        if step % eval_every and step != steps:
            continue
        net.eval()
        val_generator.set_state(val_state)  # the same validation negatives at every evaluation
        with torch.no_grad():
            v = float(_batch_bounds(net, *val, (plan.report,), plan.clip, val_generator)[0])
        history.append((step, running / count, v))
        running, count = 0.0, 0
        if v > best_value:
            best_value, best_step, best_state = v, step, snapshot(net)
        bar.update(step - bar.n)
        bar.set_postfix(validation=f"{v:.4f} nats", refresh=False)
        if step - best_step >= wait(best_step, patience, len(val[0])):
            break
    bar.close()
    if best_step == 0:  # every validation bound was nan or -inf: nothing to report
        raise ValueError(
            f"mutual information ({plan.report.name}): no validation bound in {step} steps was "
            "finite (training diverged); try a lower lr or bound='infonce'"
        )
    net.load_state_dict(best_state)
    net.eval()
    return history, best_step, step


@torch.no_grad()
def _test_bound(
    net: nn.Module, x: Tensor, y: Tensor, plan: _Plan, generator: torch.Generator
) -> tuple[float, float, float | None]:
    """(value, delta-method stderr, effective number of negatives of the partition term or None)
    of the reported bound on the test pairs, in nats (float64)."""
    out = _scores(net, x, y)
    spec = plan.report
    if isinstance(out, tuple):
        f, g = (t.double() for t in out)
        value = float(all_pairs_bound(f, g, spec.name, clip=plan.clip))
        psi, ess = _all_pairs_influence(f, g, spec)
        return value, float(psi.std() / math.sqrt(len(psi))), ess
    v_p = out.double()
    v_q = _scores(net, x, y[derangement(len(x), generator).to(x.device)]).double()
    value = float(_joint_bound(v_p, v_q, spec))
    n = len(v_p)
    if spec.kind == "lme":
        w = v_q.clamp(-spec.clip, spec.clip) if spec.clip is not None else v_q
        e = torch.exp(w - w.max())  # Var(e^w) / mean(e^w)^2 is invariant to the shift
        var = v_p.var() / n + e.var() / (n * e.mean() ** 2)
        ess = float(e.sum() ** 2 / (e**2).sum())
    else:
        var = spec.div.activation(v_p).var() / n + spec.div.conjugate_activation(v_q).var() / n
        ess = None
    return value, math.sqrt(float(var)), ess


def _few_pairs(
    net: nn.Module, x: Tensor, y: Tensor, spec: BoundSpec, generator: torch.Generator
) -> str | None:
    """Whether a few test pairs carry a mean of (p/q)^k in the f-bound's value
    (:func:`diagnostics.ratio_powers`: pearson, neyman, unbounded alpha), the positives against
    the negatives of a derangement; None for the other bounds."""
    if spec.div is None or diagnostics.unbounded_alpha(spec.div) is None:
        return None
    to_log_ratio, powers = _LOG_RATIO[spec.div.family], diagnostics.ratio_powers(spec.div, "fdual")
    perm = derangement(len(x), generator).to(x.device)
    with torch.no_grad():
        out = _scores(net, x, y)
        if isinstance(out, tuple):  # separable: the scores f(x_i) . g(y_j), one pass
            f, g = out
            out, neg = (f * g).sum(1), (f * g[perm]).sum(1)
        else:
            neg = _scores(net, x, y[perm])
    sides = {"v_p": to_log_ratio(out.double()), "v_q": to_log_ratio(neg.double())}
    return next((m for side, k in powers if (m := diagnostics.partition_ess(sides[side], k))), None)


def _all_pairs_influence(
    f: Tensor, g: Tensor, spec: BoundSpec, chunk: int | None = None
) -> tuple[Tensor, float | None]:
    """Each pair's influence psi_i on the all-pairs bound (var of the bound ~ var(psi) / B), and
    for dv/smile the effective number of negatives (sum w)^2 / sum w^2 of the weights exp(S_ij).

    psi_i is pair i's positive term minus its share of the negative statistic as a row and as a
    column: infonce a_i - sum_k softmax_k(S_k.)_i; f-divergences h(S_ii) - (r_i + c_i) / (B - 1)
    with r, c the row and column sums of f*(g(S)); dv/smile S_ii - B (rho_i + kappa_i), with
    rho, kappa the row and column shares of sum_{i!=j} exp(S_ij). Blocks of ``chunk`` rows.
    """
    n = len(f)
    chunk = chunk or max(1, min(n, _INFLUENCE_ELEMENTS // n))
    pos, rows, cols = [], [], []
    for r0 in range(0, n, chunk):
        s = f[r0 : r0 + chunk] @ g.T
        d = s.diagonal(r0).clone()
        if spec.kind == "infonce":
            lse = torch.logsumexp(s, 1)
            pos.append(d - lse)
            c = torch.exp(s - lse[:, None]).sum(0)
        elif spec.kind == "lme":
            x = s.clamp_(-spec.clip, spec.clip) if spec.clip is not None else s
            x.diagonal(r0).fill_(-math.inf)
            pos.append(d)
            rows.append(torch.stack([torch.logsumexp(x, 1), torch.logsumexp(2 * x, 1)]))
            c = torch.logsumexp(x, 0)
        else:
            q = spec.div.conjugate_activation(s)
            q.diagonal(r0).zero_()
            pos.append(spec.div.activation(d))
            rows.append(q.sum(1))
            c = q.sum(0)
        cols.append(c)
    stacked = torch.stack(cols)
    col = torch.logsumexp(stacked, 0) if spec.kind == "lme" else stacked.sum(0)
    p = torch.cat(pos)
    if spec.kind == "infonce":
        return p - col, None
    if spec.kind == "lme":
        row, row2 = torch.cat(rows, 1)
        total = torch.logsumexp(row, 0)
        ess = float(torch.exp(2 * total - torch.logsumexp(row2, 0)))
        return p - n * (torch.exp(row - total) + torch.exp(col - total)), ess
    return p - (torch.cat(rows) + col) / (n - 1), None


def _uncapped(f: Tensor, g: Tensor) -> tuple[float, float]:
    """(mean, standard error) over the pairs of S_ii - log mean_{j != i} exp(S_ij), S = f g^T
    (float64, nats): InfoNCE without the positive pair in its own partition term, so without
    its cap log B. At the optimal critic InfoNCE falls short of I by the positive's share of
    its row, which grows like e^I / B, while this lies above I (a log of a sample mean is
    biased low): the upper end of an InfoNCE interval (see the module docstring)."""
    n = len(f)
    chunk = max(1, min(n, _INFLUENCE_ELEMENTS // n))
    terms = []
    for r0 in range(0, n, chunk):
        s = f[r0 : r0 + chunk] @ g.T
        positive = s.diagonal(r0).clone()
        s.diagonal(r0).fill_(-math.inf)
        terms.append(positive - torch.logsumexp(s, 1) + math.log(n - 1))
    t = torch.cat(terms)
    return float(t.mean()), float(t.std() / math.sqrt(n))


def _near_cap(plan: _Plan, value: float, n_test: int) -> bool:
    """An InfoNCE value within CAP_MARGIN of its cap log(test pairs): a lower bound only."""
    return plan.report.kind == "infonce" and value > math.log(n_test) - CAP_MARGIN


def _warnings(
    plan: _Plan,
    value: float,
    stderr: float,
    ess: float | None,
    n_test: int,
    batch: int,
    history: Sequence[tuple[int, float, float]],
    best_step: int,
    last_step: int,
    steps: int,
) -> list[str]:
    """What the interval does not cover: the InfoNCE cap, overfitting, a partition term carried
    by few negatives, training stopped while still improving. ``batch``: pairs per train step
    (an InfoNCE train value near its cap log ``batch`` is not compared with the validation one)."""
    found = []
    if _near_cap(plan, value, n_test):
        found.append(
            f"the InfoNCE estimate {value:.3f} nats is within {CAP_MARGIN:g} nat of its cap "
            f"log B = {math.log(n_test):.3f} (B = {n_test} test pairs): the mutual information "
            "may be much higher, so the interval's upper end is open (inf); use more pairs or "
            "bound='dv'"
        )
    train, val = next((t, v) for s, t, v in history if s == best_step)
    capped = plan.report.kind == "infonce" and train > math.log(batch) - CAP_MARGIN
    if not capped and train - val > max(OVERFIT_MARGIN, 3 * stderr):
        found.append(
            f"the critic overfits: its train bound {train:.3f} nats exceeds its validation "
            f"bound {val:.3f} nats; more pairs or a smaller critic may help"
        )
    if ess is not None and ess < 100:
        found.append(
            f"the partition term rests on about {ess:.0f} negative pairs: the interval is "
            "unreliable (the mutual information may be too high for this many pairs)"
        )
    if best_step == last_step == steps:
        found.append(
            f"the validation bound still rose at the last step ({steps}): more steps may "
            "raise the estimate, so the interval's upper end is open (inf)"
        )
    return found
