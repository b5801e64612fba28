"""Estimate an f-divergence between two sample sets, with an interval and warnings you can trust.

``method="auto"`` picks the estimator (:mod:`fdiv.estimation.auto`): on discrete samples whose
frequency tables resolve P and Q, the jackknifed plug-in over them (:mod:`fdiv.estimation.counts`,
method "counts"); otherwise the variational estimate, which
cross-fits ``folds`` critics (:mod:`fdiv.estimation.crossfit`): each is trained with Adam on its
train rows, selected (early stopping) on its validation rows and reported on its test fold,
which it never saw. The value is the midpoint of the folds' held-out (biased low) and in-sample
(biased high) bounds, and the interval spans both, widened by the held-out standard error
(pooled test-split noise plus the between-fold spread). Where the log-ratio on P has a heavy
upper tail (far rows of P that no row of Q pins down) the interval's upper end is open: a
lower bound is all such samples certify. All values are in nats.

Training objective. Every critic, whatever the divergence and bound, is trained and selected
with the logistic (``gan``) objective, whose optimum is v* = log p/q: it is bounded per sample
and has no exp terms. Training or selecting on DV, NWJ, SMILE or an f-dual bound with unbounded
range fails: on a finite sample each is unbounded above in the critic (raise v where only P has
samples: the sample partition term does not see it), so the selected critic overstates the
bound on validation and falls apart on test (SMILE 46 nats for a truth of 10). The reported
bound is then evaluated at the estimated log ratio: DV for kl, otherwise the f-dual bound at the
divergence's optimal critic f'(exp v) (NWJ for kl), each a lower bound for any critic.
reverse_kl is KL(Q||P): the kl estimate of the swapped samples, with every kl method and check.

Limits. Where P and Q barely overlap (several nats) the partition terms average exp(v) over Q's
rare tail; the warnings (:mod:`fdiv.estimation.diagnostics`) say when that happens.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
import time

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from fdiv.device import resolve_device
from fdiv.divergences.registry import FDivergence, get
from fdiv.estimation import diagnostics, parametric
from fdiv.estimation.auto import COUNTS_REASON, LARGE_KL, choose_method
from fdiv.estimation.counts import counts_estimate
from fdiv.estimation.critics import MLPCritic, OffsetCritic
from fdiv.estimation.crossfit import (
    MIN_SPLIT,
    FoldResult,
    Overfit,
    Split,
    assign_folds,
    combine,
    fit_fold,
    fold_tensors,
    held_out_and_in_sample,
    plug_in,
    reported_bound,
    robust_moments,
)
from fdiv.estimation.knn import knn_estimate
from fdiv.estimation.result import Z95, Estimate, in_range, interval, shown_low
from fdiv.io import as_sample_pair, is_integer, is_real
from fdiv.progress import progress as progress_bar

__all__ = [
    "BOUNDS",
    "METHODS",
    "MIN_SPLIT",
    "Estimate",
    "check_training",
    "cuda_indices",
    "estimate",
]

BOUNDS: tuple[str, ...] = ("auto", "fdual", "dv", "smile")
METHODS: tuple[str, ...] = ("auto", "variational", "knn", "telescoping", "counts")
#: Up to this dimension ``method="auto"`` checks a kl estimate against kNN (see auto.py).
KNN_CHECK_DIM = 5
#: From 2 dimensions up to this one it also checks it against kNN on each coordinate's
#: marginal (``_with_marginals``), on at most MARGINAL_ROWS rows a side.
MARGINAL_CHECK_DIM = 50
MARGINAL_ROWS = 4000
#: Parameters per row up to which the t fits' own KL stretches a large-KL interval (see
#: ``_fitted_kl``): looser than the offset critic's ``parametric.LOOSE``.
FITTED_LOOSE = 0.2
#: The default critic: smaller than the GAN's, so that ``folds`` of them fit the time budget.
DEFAULT_HIDDEN = (128, 128)


def estimate(
    p: Tensor | np.ndarray | list,
    q: Tensor | np.ndarray | list,
    divergence: str | FDivergence = "kl",
    bound: str = "auto",
    *,
    method: str = "auto",
    critic: nn.Module | None = None,
    folds: int = 3,
    steps: int = 6000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    validation: float = 0.2,
    eval_every: int = 50,
    patience: int = 400,
    clip: float = 5.0,
    k: int = 5,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Estimate:
    """Estimate D(P||Q) in nats from samples ``p`` (N_p, d) and ``q`` (N_q, d): tensors, arrays
    or nested lists (a 1-D one is one column).

    ``reverse_kl`` is KL(Q||P): the kl estimate of ``q`` against ``p``, every option below
    applying to the swapped samples as to kl. ``method``: ``"auto"`` (see
    :func:`fdiv.estimation.auto.choose_method`; an explicit ``bound`` or ``critic`` means
    ``"variational"``), ``"variational"``, ``"knn"`` (kl only, ``k`` neighbours),
    ``"telescoping"`` (kl only) or ``"counts"`` (discrete samples, :mod:`counts`; ValueError
    saying why where it does not apply). ``bound``: ``"fdual"`` (any registered
    divergence; NWJ for kl), ``"dv"`` (kl) or ``"smile"`` (kl only, ``clip`` is SMILE's),
    ``"auto"`` = dv for kl, fdual otherwise. ``critic``: any module
    mapping (B, d) to (B,) or (B, 1), trained as a log-ratio estimate (logistic loss), copied
    per fold; samples are standardised with each fold's pooled train rows' median and
    interquartile range, squashed beyond 4 of those scales (:func:`crossfit.feature_map`) and
    cast to its dtype; its test outputs are clamped to its training outputs' range (beyond it
    a critic extrapolates). The default critic (:class:`MLPCritic` with ``DEFAULT_HIDDEN``)
    sees 2 d inputs: the standardised sample and its marginal Gaussianisation
    (:mod:`fdiv.estimation.features`, fitted on the same rows), which f-divergences are
    invariant to, and where the fold's train rows number at least 10 per parameter of a t fit
    (d = 10: 660 a side) it corrects the log-ratio of Student t fits to P's and Q's train rows
    (:mod:`fdiv.estimation.parametric`), which extrapolates beyond Q's last rows; where only
    fits with diagonal scale matrices have as many, a critic on theirs and the plain one are
    both fitted and the better on the validation rows kept (twice the time). ``folds``
    critics are cross-fitted, each selecting on a ``validation`` fraction of its non-test rows;
    ``batch_size`` samples per side per Adam step, the validation objective every
    ``eval_every`` steps (every step when one batch holds all training rows), stop after
    ``patience`` steps without improvement (fewer, down to half, while the best step is early
    and the validation rows many: :func:`crossfit.wait`) or after ``steps`` (most runs stop by
    patience after 300-1,500; a sharp ratio needs more: P a ring of 8 Gaussians, sd 0.5, against
    one Gaussian, d = 3, 0.923 nats, 10,000 a side, stopped at the old limit of 2,000 while
    still improving, 0.78 and 0.80 with intervals that missed; with 6,000, 0.83 and 0.92, both
    held it, the folds stopping at 1,750-4,550). Where DV's partition term rests
    on a few of Q's rows (effective sample size) the default critic that corrects the t fits
    reports its plug-in held-out mean log-ratio instead (:func:`crossfit.plug_in`), the interval
    spanning both; up to five dimensions a kl value below ``LARGE_KL`` is checked against kNN
    (:func:`_with_knn`). The same ``seed`` gives bitwise the same result on the CPU.
    ``progress`` shows a progress bar on stderr. Raises ValueError when training diverges
    before any finite validation value.
    """
    start = time.perf_counter()
    div = get(divergence)
    if div.family == "reverse_kl":
        x_p, x_q = as_sample_pair(p, q)
        options = {"bound": bound, "method": method, "critic": critic, "folds": folds,
                   "steps": steps, "batch_size": batch_size, "lr": lr, "validation": validation,
                   "eval_every": eval_every, "patience": patience, "clip": clip, "k": k,
                   "seed": seed, "device": device, "progress": progress}  # fmt: skip
        try:
            return _as_reverse(estimate(x_q, x_p, "kl", **options), div.name)
        except ValueError as err:  # name the caller's sides
            raise ValueError(_swap_sides(str(err))) from None
    _check_options(
        method, bound, div, folds, steps, batch_size, lr, validation, eval_every, patience, clip
    )
    if critic is not None and not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    x_p, x_q = as_sample_pair(p, q)
    dev = resolve_device(device)
    explicit = bound != "auto" or critic is not None
    chosen, reason = choose_method(method, div, explicit)
    auto = method == "auto" and not explicit
    counted = counts_estimate(x_p, x_q, div) if auto or method == "counts" else None
    if method == "counts" and isinstance(counted, str):
        raise ValueError(f"method 'counts' does not apply: {counted}")
    if isinstance(counted, Estimate):
        result = dataclasses.replace(counted, reason=COUNTS_REASON if auto else reason)
    elif chosen == "knn":
        result = dataclasses.replace(knn_estimate(x_p, x_q, k), reason=reason)
    elif chosen == "telescoping":
        result = _telescoping(x_p, x_q, seed, reason, start)
    else:
        bound = ("dv" if div.family == "kl" else "fdual") if bound == "auto" else bound
        options = {"steps": steps, "batch_size": batch_size, "lr": lr, "eval_every": eval_every,
                   "patience": patience}  # fmt: skip
        result, dv, certified = _variational(
            x_p, x_q, div, bound, critic, folds, validation, clip, seed, dev, progress, options
        )
        auto_kl = auto and div.family == "kl"
        # DV's value counts too where the plug-in stands in for it: on a Gaussian against a
        # ring of 16 narrow modes (d = 2, 9.75 nats) the plug-in fell to 4.78 and 4.98 on two
        # of 10 seeds with DV above 5, and their two-sided intervals missed it
        if auto_kl and max(result.value, dv) > LARGE_KL:
            result = _large(x_p, x_q, seed, result, start)  # says why telescoping ran or not
        else:
            result = dataclasses.replace(result, reason=reason)
            if auto_kl:
                # the marginals first: the joint kNN's stretch would hide them (the oscillating
                # pair in d = 2: stretched to 0.236 by kNN, the value stayed 0.052 for 0.233)
                result = _with_knn(x_p, x_q, _with_marginals(x_p, x_q, result, k, seed), k)
                result = _with_diagonal_fits(x_p, x_q, result)
            elif auto:
                result = _f_with_marginals(x_p, x_q, result, div, certified, k, seed)
    result = in_range(_support_checked(result, x_p, x_q, div), div.value_range)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


def _cross_fit(
    x_p: np.ndarray,
    x_q: np.ndarray,
    splits: list[tuple[Split, Split]],
    critic: nn.Module | None,
    offset: bool,
    diagonal: bool,
    div: FDivergence,
    bound: str,
    clip: float,
    generator: torch.Generator,
    dev: torch.device,
    bar: tqdm,
    training: dict,
) -> tuple[list[FoldResult], list[Tensor]]:
    """Each fold's critic fitted (:func:`crossfit.fit_fold`), and where ``offset`` the t fits'
    log-ratio on P's test rows, fold by fold (``diagonal``: fits with diagonal scales)."""
    results: list[FoldResult] = []
    fitted_p: list[Tensor] = []
    for fold, (split_p, split_q) in enumerate(splits):
        # a user's critic is copied: left untouched, the same start in every fold; the
        # default one also sees the marginal Gaussianisation (features.py): 2 d inputs
        if critic is None:
            net = MLPCritic(2 * x_p.shape[1], DEFAULT_HIDDEN)
            net = OffsetCritic(net) if offset else net
        else:
            net = copy.deepcopy(critic)
        net = net.to(dev)
        dtype = next((t.dtype for t in net.parameters() if t.is_floating_point()), torch.float32)
        data = fold_tensors(
            x_p, x_q, split_p, split_q, dev, dtype, critic is None, offset, diagonal
        )
        results.append(fit_fold(net, data, fold, div, bound, clip, generator, bar=bar, **training))
        if offset:
            fitted_p.append(data[2][0][:, -1].double().cpu())
    return results, fitted_p


def _validation_score(results: list[FoldResult]) -> float:
    """The folds' summed best validation objective (the logistic one every critic trains on)."""
    return sum(max(row[-1] for row in r.history) for r in results)


def _still_rising(fold: FoldResult, steps: int) -> bool:
    """The fold's critic was stopped by the step limit while improving: its best validation
    value is the last one, above the best of the first half of the steps by more than one
    standard error of the reported bound on the validation rows (a critic on two samples of one
    distribution wanders at a far smaller scale). An undertrained critic is low: a 1.5-sd shift,
    d = 2 (1.125 nats), 2,000 a side, after 50 steps."""
    if fold.best_step != steps:
        return False
    first_half = [h[-1] for h in fold.history if h[1] <= steps // 2]
    rise = fold.history[-1][-1] - max(first_half, default=-math.inf)
    return rise > math.sqrt(fold.validation_variance)


def _support_checked(
    result: Estimate, x_p: np.ndarray, x_q: np.ndarray, div: FDivergence
) -> Estimate:
    """``result`` with its upper end open and a warning where P repeats values that Q never
    takes (:func:`diagnostics.unmatched_values`) and ``div`` is infinite where q = 0 but p > 0
    (f(t) / t grows without bound: kl, pearson, jeffreys; not js, hellinger, tv)."""
    t = torch.tensor([1e6, 1e12], dtype=torch.float64)
    growth = div.f(t) / t
    if not float(growth[1] - growth[0]) > 1.0:
        return result
    found = diagnostics.unmatched_values(x_p, x_q)
    if found is None:
        return result
    return dataclasses.replace(
        result, ci95=(result.ci95[0], math.inf), warnings=(*result.warnings, found)
    )


def check_training(**options: float) -> None:
    """TypeError / ValueError naming the first bad training option: ``lr`` and ``clip`` must be
    positive finite numbers, every other option a positive integer."""
    for name, value in options.items():
        if name in ("lr", "clip"):
            if not (is_real(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        elif not is_integer(value):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        elif value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _check_options(
    method: str,
    bound: str,
    div: FDivergence,
    folds: int,
    steps: int,
    batch_size: int,
    lr: float,
    validation: float,
    eval_every: int,
    patience: int,
    clip: float,
) -> None:
    if method not in METHODS:
        raise ValueError(f"method {method!r} is unknown; known: {', '.join(METHODS)}")
    if bound not in BOUNDS:
        raise ValueError(f"bound {bound!r} is unknown; known: {', '.join(BOUNDS)}")
    if bound == "smile" and div.family != "kl":
        raise ValueError(f"bound 'smile' applies only to kl, not to {div.name!r}; use 'auto'")
    if bound == "dv" and div.family != "kl":
        raise ValueError(
            f"bound 'dv' applies only to kl and reverse_kl, not to {div.name!r}; use 'fdual' "
            "(or 'auto')"
        )
    if method in ("knn", "telescoping") and div.family != "kl":
        raise ValueError(f"method {method!r} estimates kl only, not {div.name!r}")
    check_training(folds=folds, steps=steps, batch_size=batch_size, eval_every=eval_every,
                   patience=patience, lr=lr, clip=clip)  # fmt: skip
    if folds < 2:
        raise ValueError(
            f"folds must be at least 2 (each critic needs rows it never saw), got {folds}"
        )
    if not (is_real(validation) and 0 < validation < 1):
        raise ValueError(f"validation must be a fraction in (0, 1), got {validation!r}")


def _variational(
    x_p: np.ndarray,
    x_q: np.ndarray,
    div: FDivergence,
    bound: str,
    critic: nn.Module | None,
    folds: int,
    validation: float,
    clip: float,
    seed: int,
    dev: torch.device,
    progress: bool,
    training: dict,
) -> tuple[Estimate, float, tuple[float, float]]:
    """The cross-fitted estimate, the bound's own value (DV's where the plug-in stands in) and
    the KL that the critics' log-ratio certifies, whatever the divergence: DV on their held-out
    outputs, in nats, with its standard error."""
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    seed = int(seed)
    generator = torch.Generator().manual_seed(seed)
    splits = assign_folds(x_p, x_q, folds, validation, generator)
    # the default critic starts from the log-ratio of t fits (parametric.py) where they are
    # tight: on the least of any fold's train rows of either side. Where only fits with
    # diagonal scale matrices are, a critic on theirs competes with the plain one (below)
    rows, dim = min(len(s.train) for pair in splits for s in pair), x_p.shape[1]
    offset = critic is None and parametric.fits(dim, rows)
    candidates = [(offset, False)]
    if critic is None and not offset and parametric.fits(dim, rows, diagonal=True):
        candidates.append((True, True))
    bar = progress_bar(
        len(candidates) * folds * training["steps"], f"estimate {div.name}", enabled=progress
    )
    fitted, errors = [], []
    with torch.random.fork_rng(devices=cuda_indices(dev)):
        torch.manual_seed(seed)
        for use_offset, diagonal in candidates:
            if diagonal and fitted and _certified(fitted[0][1], clip)[0] > LARGE_KL:
                # in the density chasm the logistic loss no longer pins a critic down, so
                # validation cannot choose (a 20-nat shift, d = 20, 2,000 a side: the diagonal
                # fits' critic won with DV 52 nats and took 180 s against 33): that is
                # telescoping's ground (:func:`_large`)
                bar.update(folds * training["steps"])
                break
            batches = torch.Generator()
            batches.set_state(generator.get_state())
            try:
                found = _cross_fit(
                    x_p, x_q, splits, critic, use_offset, diagonal, div, bound, clip, batches,
                    dev, bar, training,
                )  # fmt: skip
            except ValueError as err:
                errors.append(err)
                continue
            fitted.append((use_offset, *found))
    if not fitted:
        # with the default critic and training a fit fails so where the rows are too few for
        # it; with the caller's own settings the error says what to change
        defaults = inspect.signature(estimate).parameters
        settled = all(defaults[k].default == v for k, v in training.items())
        if critic is None and settled and isinstance(errors[0], Overfit):
            return _unresolved(errors[0], div, bound, splits, folds)
        raise errors[0]
    # the better fit on the validation rows (ties: the plain critic). In high dimensions a
    # network alone misses a ratio spread over every coordinate: Q = N(0, 1.05^2 I), d = 128,
    # 0.297 nats, 10,000 a side, gave 0.065 [0, 0.160] with no warning, the diagonal fits'
    # critic 0.300 [0.182, 0.418]. Fits diagonal in the raw axes overstated a shift along
    # (1, ..., 1) with correlation 0.5 (d = 50, 0.353 nats) 20-fold and lost on validation,
    # but won it on a t against the Gaussian of its covariance, correlation 0.5, d = 50 (2.07
    # nats), and missed its tail: 0.21-0.25 with intervals that missed, silently, on 5 of 10
    # seeds (the plain critic: 0.57 [-0.03, inf], warned). In the principal axes
    # (parametric.log_ratio_offset) they carry it: 1.80-2.11, lower ends 1.56-1.98
    offset, results, fitted_p = max(fitted, key=lambda found: _validation_score(found[1]))
    bar.close()
    value, stderr = combine(results)
    low, high = interval(value, stderr)
    # the divergence is never below its range's low end (0 for kl): a lower bound whose interval
    # lies entirely below it (a slightly overfit critic on P = Q) is extended to reach it
    high = max(high, div.value_range[0])
    n_test = (sum(len(r.v_p) for r in results), sum(len(r.v_q) for r in results))
    warnings, heavy_tail, few_terms = _warnings(results, div, bound, clip, min(n_test), x_p, x_q)
    (held_out, _), in_sample = held_out_and_in_sample(results)
    noise = diagnostics.fits_noise(in_sample, held_out, rows, dim)
    bound_value = value
    if few_terms and bound == "dv" and offset:
        # DV's partition term rests on a few rows (E_Q[(p/q)^2] large or infinite: a correlated
        # Gaussian, d = 10, 4.15 nats: DV 4.23-4.53 and 2 of 10 intervals missing, the plug-in
        # 4.04-4.22); the plug-in mean log-ratio does without it, and the interval spans both.
        # Only for the critic that corrects the t fits' log-ratio of two normalised densities,
        # whose level the fits anchor (a small critic trained 300 steps alone: plug-in 1.9-2.1,
        # DV 2.0-2.3 for 2.42)
        value, plug_se = plug_in(results)
        low, high = min(low, value - Z95 * plug_se), max(high, value + Z95 * plug_se)
        warnings = (
            *warnings,
            "with the partition term on a few rows, the value is the plug-in mean log-ratio "
            f"over the held-out rows ({value:.3f} nats; DV {bound_value:.3f}), the interval "
            "spanning both",
        )
    if heavy_tail:
        # the value rests on far rows of P that no row of Q pins down: a lower bound is all
        # these samples certify (no finite sample bounds a divergence from above)
        high = math.inf
    if few_terms and diagnostics.unbounded_alpha(div) is not None:
        # a mean of a power of p/q on a few rows falls short of the mean as a rule, and nothing
        # bounds it from above: a 10-nat shift, d = 20 (chi2 4.9e8), came out 8.6e5 [-2.8e5,
        # 2.0e6] at 2,000 a side and 8.8e7 [2.9e7, 1.5e8] at 10,000; a 3-sd shift, d = 1,
        # alpha(1.5) 37.6: 16.4 [8.1, 24.7], silently
        open_end = (
            f"{div.name}'s value rests on a few rows' density ratios (the effective sample size "
            "above), which bound it only from below: the interval's upper end is open (inf)"
        )
        warnings, high = (*warnings, open_end), math.inf
    if noise:
        warnings, high = (*warnings, noise), div.value_range[1]
    if fitted_p and div.family == "kl":
        v_p, v_q = (torch.cat([getattr(r, side) for r in results]) for side in ("v_p", "v_q"))
        extrapolated = diagnostics.extrapolated(v_p, v_q, torch.cat(fitted_p), value)
        if extrapolated:
            warnings, high = (*warnings, extrapolated), math.inf
    unfinished = [str(f + 1) for f, r in enumerate(results) if _still_rising(r, training["steps"])]
    if unfinished:
        warnings = (
            *warnings,
            f"fold(s) {', '.join(unfinished)}: the validation objective still rose at the last "
            f"step ({training['steps']}): more steps may raise the estimate, so the interval's "
            "upper end is open",
        )
        high = div.value_range[1]
    result = Estimate(
        value=value,
        stderr=stderr,
        ci95=(low, high),
        divergence=div.name,
        bound=bound,
        n_train=(sum(len(s.train) for s, _ in splits), sum(len(s.train) for _, s in splits)),
        n_validation=(
            sum(len(s.validation) for s, _ in splits),
            sum(len(s.validation) for _, s in splits),
        ),
        n_test=n_test,
        steps=max(r.steps for r in results),
        best_step=max(r.best_step for r in results),
        seconds=0.0,
        history=tuple(row for r in results for row in r.history),
        method="variational",
        warnings=warnings,
        folds=folds,
    )
    return result, bound_value, _certified(results, clip)


def _unresolved(
    err: Overfit, div: FDivergence, bound: str, splits: list[tuple[Split, Split]], folds: int
) -> tuple[Estimate, float, tuple[float, float]]:
    """What the samples say where no default critic beat a constant one on validation: the
    divergence lies in its range, no more (the value is a constant critic's, the range's low
    end). In high dimensions a few thousand rows are fitted before the ratio is found: N(0, I)
    against N(0, 1.08^2 I), d = 64, 2,000 a side (0.360 nats), failed so on 10 of 10 seeds."""
    low, high = div.value_range
    note = (
        f"{err}. No critic did better than a constant on the validation rows, so these samples "
        f"bound {div.name} only by its range: the value is a constant critic's ({low:.4g}) and "
        f"the interval [{low:.4g}, {high:.4g}]; more rows, fewer dimensions or a smaller critic "
        "can narrow it"
    )
    sizes = [
        tuple(sum(len(getattr(pair[side], part)) for pair in splits) for side in (0, 1))
        for part in ("train", "validation", "test")
    ]
    result = Estimate(
        value=low,
        stderr=0.0,
        ci95=(low, high),
        divergence=div.name,
        bound=bound,
        n_train=sizes[0],
        n_validation=sizes[1],
        n_test=sizes[2],
        steps=0,
        best_step=0,
        seconds=0.0,
        history=(),
        method="variational",
        warnings=(note,),
        folds=folds,
    )
    return result, low, (0.0, 0.0)


def _certified(results: list[FoldResult], clip: float) -> tuple[float, float]:
    """The KL that the folds' critics certify, whatever the divergence they were reported in:
    DV on their clamped held-out outputs, with its standard error (nats)."""
    outputs = [torch.cat([r.clamped(getattr(r, side)) for r in results]) for side in ("v_p", "v_q")]
    certified, variance = reported_bound(*outputs, "dv", get("kl"), clip)
    return certified, math.sqrt(variance)


def _warnings(
    results: list[FoldResult],
    div: FDivergence,
    bound: str,
    clip: float,
    n: int,
    x_p: np.ndarray,
    x_q: np.ndarray,
) -> tuple[tuple[str, ...], bool, bool]:
    """The warnings, whether the log-ratio's tail on P is heavy (the upper end is open) and
    whether a mean of exp(log-ratio) rests on a few rows (its effective sample size)."""
    found: list[str | None] = []
    for fold, r in enumerate(results):
        if r.diverged_at is not None:
            found.append(
                f"fold {fold + 1}: training diverged at step {r.diverged_at} (validation not "
                f"finite); the critic from step {r.best_step} is reported (lower lr?)"
            )
        found.append(
            diagnostics.test_disagrees(
                fold, r.validation, r.validation_variance, r.value, r.variance
            )
        )
    v_p = torch.cat([r.v_p for r in results])
    v_q = torch.cat([r.v_q for r in results])
    found.append(diagnostics.separation(v_p, v_q, n))
    tails: list[str | None] = []
    ess: str | None = None
    if div.family == "kl":  # the side whose mean log-ratio is the value, unclamped
        # the log-ratio's tail, and the samples' own (the critic's inputs are squashed far out,
        # so its outputs on P's far rows can grow too slowly to show P's heavy tail: the t with
        # 3 dof against a Gaussian, 2,000 a side, was covered on 0 of 10 seeds, silently)
        tails = [diagnostics.heavy_tail(v_p, v_q), diagnostics.heavier_tail(x_p, x_q)]
        found += tails
    powers = diagnostics.ratio_powers(div, bound)
    if powers:  # the value holds means of powers of p/q, as the value saw them (clamped)
        terms = [(r.clamped(getattr(r, side)), k) for r in results for side, k in powers]
        ess = next((w for side, k in terms if (w := diagnostics.partition_ess(side, k))), None)
        found.append(ess)
    if bound == "smile":
        found.append(diagnostics.smile_clip_active(v_p, clip))
    found.append(diagnostics.discrete_against_continuous(x_p, x_q))
    heavy_tail = any(w is not None for w in tails)
    return tuple(w for w in found if w is not None), heavy_tail, ess is not None


def _swap_sides(text: str) -> str:
    """``text`` with the sides' names P, Q (and p, q) exchanged: what the swapped call said,
    in the caller's names (KL(P||Q) of the swapped samples is the caller's KL(Q||P))."""
    swap = {"P": "Q", "Q": "P", "p": "q", "q": "p"}
    return re.sub(r"\b[PQpq]\b", lambda m: swap[m[0]], text)


def _as_reverse(est: Estimate, name: str) -> Estimate:
    """``est``, the kl estimate of the swapped samples KL(Q||P), as ``name`` (reverse_kl) of the
    caller's (P, Q): sizes in the caller's order, the sides' names swapped in the warnings."""
    return dataclasses.replace(
        est,
        divergence=name,
        n_train=est.n_train[::-1],
        n_validation=est.n_validation[::-1],
        n_test=est.n_test[::-1],
        reason=f"{name} = KL(Q||P), estimated as kl with the samples swapped; {est.reason}",
        warnings=tuple(_swap_sides(w) for w in est.warnings),
    )


def _telescoping(
    x_p: np.ndarray, x_q: np.ndarray, seed: int, reason: str, start: float
) -> Estimate:
    try:
        from fdiv.estimation.telescoping import telescoping_kl
    except ImportError:
        raise ValueError("method 'telescoping' is not available in this installation") from None
    est = telescoping_kl(x_p, x_q, seed=seed)
    return dataclasses.replace(
        est, method="telescoping", reason=reason, seconds=time.perf_counter() - start
    )


def _large(x_p: np.ndarray, x_q: np.ndarray, seed: int, pilot: Estimate, start: float) -> Estimate:
    """The variational pilot found a large KL: telescoping if it is available, P and Q are not
    heavy-tailed, and it agrees (at least half the pilot's value and not above its interval),
    else the pilot with a warning.

    Heavy tails (:func:`diagnostics.leptokurtic`) rule telescoping out before it runs: its
    quadratic links are exact for Gaussian pairs, and on a t with 5 dof shifted by 13.7 nats
    (d = 20, 10,000 a side) it gave 10.3 with intervals that missed, where the pilot gave 13.8
    [11.8, 15.8] and 12.2 [10.2, 14.1]. Where P is the heavy one the pilot's upper end opens
    (inf): with 2,000 rows a side the pilot fell to 11.5 on that pair and its two-sided
    intervals held the truth on 4 of 10 seeds.

    A telescoping value below half the pilot's means that the quadratic links cannot represent
    this ratio (the pilot's lower end is no test: at 10 nats, d = 20, the pilot came out 12.2
    [10.9, 13.5] where telescoping gave 10.8): P and Q with equal means and covariances look
    alike to them whatever the divergence (two spikes at -3 and 3, sd 0.005, against the
    Gaussian of the same moments, KL 5.7: telescoping 0.00 +- 0.02 nats). The pilot then stands
    with its upper end open: in the density chasm it may be far too low (N(0, 2.2^2 I) against a
    ring of 16 narrow Gaussians, d = 2, KL 10.07: the pilot 5.29 [5.13, 5.45]), or too high
    where its critic separates P from Q, so its lower end reaches the t fits' value and log N
    (P = N(0, 0.01^2 I) inside Q = N(0, I), d = 3, 12.3 nats: 24.3 [23.9, inf]). Above the
    pilot's interval it extrapolates a ratio that is not quadratic (two unit Gaussians at +-0.71
    (1, ..., 1) in d = 20 against N(0, I), KL 10.0: telescoping 16.3 and 16.7, the pilot 13.6
    [12.5, 14.8] and 12.0 [10.0, 14.1]); then the pilot stands, warned, with its interval
    stretched to telescoping's upper end. Where they agree the pilot's interval is much the
    wider at 20 nats (d = 20: 24.5 [18.6, 30.4] against telescoping's 21.2 [17.3, 25.1]), so
    telescoping's stands, unless its fit was loose (more than LOOSE_FIT parameters per pair):
    then its value is biased up by more than its jackknife shows (+30% at KL 20, d = 20, 2,000 a
    side) and the interval's lower end is the pilot's, or log N where that is lower and the fit
    nearly interpolates (more than VERY_LOOSE_FIT parameters per pair).
    """
    why = (
        f"the variational estimate ({pilot.value:.2f} nats) exceeds {LARGE_KL:g} nats, where one "
        "density ratio fails (density chasm)"
    )
    tails = diagnostics.leptokurtic(x_p, x_q)
    if tails is not None:
        # P's heavy tail: KL(P||Q) rests on P's far rows, which N samples bound only from below
        open_end = diagnostics.heavy_kurtosis(x_p) is not None
        note = "; P's tail is the heavy one: the interval's upper end is open" if open_end else ""
        low, high = _stretched(pilot.ci95, _fitted_kl(x_p, x_q))
        return dataclasses.replace(
            pilot,
            ci95=(low, math.inf if open_end else high),
            reason=f"{why}; {tails}, so the variational estimate stands",
            warnings=(
                *pilot.warnings,
                f"{why}: the value may be off by a large factor; {tails}{note}",
            ),
            seconds=time.perf_counter() - start,
        )
    try:
        est = _telescoping(x_p, x_q, seed, f"{why}: telescoping density-ratio estimation", start)
    except ValueError:
        return dataclasses.replace(
            pilot,
            reason=f"{why}; telescoping is not available, so the variational estimate stands",
            warnings=(*pilot.warnings, f"{why}: the value may be off by a large factor"),
            seconds=time.perf_counter() - start,
        )
    low, high = pilot.ci95
    if pilot.value / 2 <= est.value <= high:
        fitted = _fitted_kl(x_p, x_q)
        if fitted is not None and not est.ci95[0] <= fitted <= est.ci95[1]:
            # the pilot can overshoot as far as telescoping's quadratic links (two modes at
            # d = 20, KL 10: both about 16.3 on 2 of 10 seeds, silently; the fits 9.2)
            est = dataclasses.replace(
                est,
                ci95=_stretched(est.ci95, fitted),
                warnings=(
                    *est.warnings,
                    f"telescoping ({est.value:.2f} nats) and the t fits' own value ({fitted:.2f}) "
                    "disagree: the ratio may not be quadratic (two modes), so the interval spans "
                    "both",
                ),
            )
        from fdiv.estimation.telescoping import LOOSE_FIT, VERY_LOOSE_FIT

        loose = _looseness(x_p.shape[1], est.n_train)
        if loose <= LOOSE_FIT:
            return est
        floor = math.log(min(len(x_p), len(x_q)))
        if loose > VERY_LOOSE_FIT and low > floor:
            # nearly interpolating (2,000 a side, d = 50: 0.83 parameters per pair), telescoping
            # overshot a 20-nat shift by 33-85% on 10 of 10 seeds and the pilot's lower end was
            # above the truth on 2; beyond about log N nats no N samples certify a lower bound
            # (McAllester and Stratos 2020), and a fit this loose adds nothing to them
            low, whose = floor, f"log N ({floor:.2f} nats), as the fit is nearly interpolating"
        else:
            whose = f"the variational interval's ({low:.2f} nats)"
        if low >= est.ci95[0]:
            return est
        return dataclasses.replace(
            est,
            ci95=(low, est.ci95[1]),
            warnings=(
                *est.warnings,
                "the loose fit's upward bias is not in telescoping's own interval, so its lower "
                f"end is {whose}",
            ),
        )
    # telescoping and the pilot disagree, so neither is reliable: the interval reaches the t
    # fits' value, and its lower end no higher than log N, as beyond about log N nats no N
    # samples certify a lower bound (McAllester and Stratos 2020): a mean shift of 10 nats,
    # d = 50, 2,000 a side, gave pilots of 11.4-12.5 with lower ends of 10.3-10.7 on 3 of 10
    # seeds; P = N(0, 0.01^2 I) inside Q = N(0, I), d = 3, 12.3 nats, 5,000 a side, a pilot of
    # 24.3 [23.9, inf] (its network raises its outputs on P's rows, which it separates from Q's,
    # with nothing to stop it; telescoping 4.5, its linear waymarks putting the whole change of
    # scale into the first link)
    fitted_low, fitted_high = _stretched(pilot.ci95, _fitted_kl(x_p, x_q))
    fitted_low = min(fitted_low, math.log(min(len(x_p), len(x_q))))
    if est.value > high:
        above = (
            f"telescoping gave {est.value:.2f} nats, above the variational interval "
            f"[{low:.2f}, {high:.2f}]: its quadratic links extrapolate a ratio that is not "
            "quadratic (two modes: measured 16.3 for 10.0, where the variational value was 13.6)"
        )
        return dataclasses.replace(
            pilot,
            ci95=(fitted_low, max(fitted_high, est.ci95[1])),
            reason=f"{why}; {above}, so the variational estimate stands",
            warnings=(
                *pilot.warnings,
                f"{why} and {above}: neither value is reliable; the interval spans both",
            ),
            seconds=time.perf_counter() - start,
        )
    below = (
        f"telescoping gave {est.value:.2f} nats, below half the variational value: its "
        "quadratic links cannot represent this density ratio"
    )
    return dataclasses.replace(
        pilot,
        ci95=(fitted_low, math.inf),
        reason=f"{why}; {below}, so the variational estimate stands",
        warnings=(
            *pilot.warnings,
            f"{why} and {below}: the value may be far too low (or too high, where the critic "
            "separates P from Q), so the interval's upper end is open and its lower end reaches "
            "the t fits' value and log N",
        ),
        seconds=time.perf_counter() - start,
    )


def _fitted_kl(x_p: np.ndarray, x_q: np.ndarray) -> float | None:
    """The t fits' own KL estimate, the mean over P of log p_t - log q_t (:mod:`parametric`,
    fitted on all rows; two normalised densities, so no partition term), where each fit has
    at least 1 / FITTED_LOOSE rows per parameter (else None). :func:`_large` stretches a
    standing pilot's interval to it, and telescoping's where it falls outside. The bar is half
    the offset critic's, as this value only stretches an interval: at 2,000 a side, d = 20 (8.7
    rows per parameter; 5 seeds each) it came out 9.7-10.4 for a 10-nat shift, 18.8-21.9 for
    20, 12.6-13.6 for the t below (13.7) and 8.6-9.2 for the two modes (10.0), whose pilot
    (13-16) had held the truth on 1 of 10 seeds without it.

    In the density chasm the logistic loss no longer pins the critic's correction to the fits
    down: P's rows are separated from Q's, and Adam keeps raising their outputs (its steps do
    not shrink with the vanishing gradient). Measured, 10,000 a side, d = 20: two unit
    Gaussians at +-1.03 (1, ..., 1) against N(0, I), KL 10.0: the pilot 14.4 (12.3 to 16.4 over
    10 seeds; the fits alone 9.2); the t (5 dof) shifted by 13.7 nats: 14.4, its lower end
    above the truth on 4 of 10 seeds (the fits alone 13.2, 12.9, 13.1 on seeds 0-2). DV's
    partition term is itself biased there: even at the true log-ratio log mean_Q e^v came out
    -1.7, -0.8, -0.8 (its expectation is 0), DV 1.7 nats high on seed 0. Neither the critic
    nor the fits are certified in the chasm, so the interval spans both."""
    if not parametric.fits(x_p.shape[1], min(len(x_p), len(x_q)), FITTED_LOOSE):
        return None
    offset = parametric.log_ratio_offset(x_p, x_q, *robust_moments(np.concatenate([x_p, x_q])))
    fitted = float(offset(x_p).mean())
    return fitted if math.isfinite(fitted) else None


def _with_knn(x_p: np.ndarray, x_q: np.ndarray, result: Estimate, k: int) -> Estimate:
    """``result``, its interval stretched to the kNN estimate's where that value lies above it,
    warned (up to :data:`KNN_CHECK_DIM` dimensions, where kNN costs under a second at 20,000
    rows a side). Only above: a critic too smooth for the density ratio is low (DV is a lower
    bound at any critic), and so is kNN's own bias from three dimensions on (a narrower Q, d =
    3: 0.16 for 0.46); a kNN value that warns itself is no evidence. Where kNN finds that the
    samples bound the divergence only from below (P's rows outside Q's sample), so do the
    critics, which extrapolate there too: the upper end opens. Replayed on the suite's 440
    recorded kl runs up to d = 5 (kNN on the same samples) this opened 8 intervals: the 5 that
    missed a Gaussian against 16 narrow modes (d = 2, 9.75 nats, 2,000 a side: 3.3-4.3) and 3 of
    a 5-nat shift in 1-D at 10,000 (one of them a miss)."""
    if x_p.shape[1] > KNN_CHECK_DIM:
        return result
    knn = knn_estimate(x_p, x_q, k)
    low, high = result.ci95
    if knn.ci95[1] == math.inf and high < math.inf:
        said = tuple(f"kNN's check: {w}" for w in knn.warnings if w not in result.warnings)
        return dataclasses.replace(result, ci95=(low, math.inf), warnings=(*result.warnings, *said))
    if knn.warnings or knn.value <= high:
        return result
    return dataclasses.replace(
        result,
        ci95=(min(low, knn.ci95[0]), knn.ci95[1]),
        warnings=(
            *result.warnings,
            f"the kNN estimate ({knn.value:.3f} nats) lies above the variational interval "
            f"[{low:.3f}, {high:.3f}]: the critics may be too smooth for the density ratio "
            "(sharp modes), so the interval reaches kNN's",
        ),
    )


def _with_diagonal_fits(x_p: np.ndarray, x_q: np.ndarray, result: Estimate) -> Estimate:
    """``result`` with its upper end open, warned, where the KL of t fits with diagonal scales
    in the pooled rows' principal axes (the mean over P of their log-ratio, fitted on all rows)
    lies above its interval; only where such fits are tight and the full ones are not. In many
    dimensions a few thousand rows can leave every critic near a constant: the t (10 dof,
    correlation 0.5) against the Gaussian of its covariance, d = 50, 2,000 a side (2.07 nats),
    read 0.017 [0, 0.184] on 1 seed of 10 with no warning; these fits give 1.74 there, itself
    low (a t's tail is rarely sampled), so the end opens rather than stretching to it."""
    rows, dim = min(len(x_p), len(x_q)), x_p.shape[1]
    low, high = result.ci95
    if parametric.fits(dim, rows) or not parametric.fits(dim, rows, diagonal=True):
        return result
    if not math.isfinite(high):
        return result
    pooled = np.concatenate([x_p, x_q])
    offset = parametric.log_ratio_offset(x_p, x_q, *robust_moments(pooled), diagonal=True)
    fitted = float(offset(x_p).mean())
    if not (math.isfinite(fitted) and fitted > high):
        return result
    return dataclasses.replace(
        result,
        ci95=(low, math.inf),
        warnings=(
            *result.warnings,
            f"t fits with diagonal scales in the pooled rows' principal axes give {fitted:.3f} "
            f"nats, above the variational interval [{max(low, 0.0):.3f}, {high:.3f}]: the "
            "critics may miss a ratio spread over many coordinates (a heavy tail), and the fits "
            "are only a model, so the interval's upper end is open",
        ),
    )


def _with_marginals(
    x_p: np.ndarray, x_q: np.ndarray, result: Estimate, k: int, seed: int
) -> Estimate:
    """``result``, or where one coordinate's marginal kNN interval lies above its interval
    (above its value by Z95 standard errors where the upper end is already open), that
    marginal's value with the upper end open, warned (from 2 to
    MARGINAL_CHECK_DIM dimensions; MARGINAL_ROWS rows a side drawn with ``seed``: 1-D kNN on
    4,000 rows takes about 0.03 s).

    KL(P||Q) is at least the KL of any marginal (data processing), and 1-D kNN resolves a ratio
    that a smooth critic in d dimensions misses: P = Q (1 + 0.9 sin(8 x_1)), Q = N(0, I_10), KL
    0.233, 5,000 a side, came out 0.002 [-0.035, 0.040] and 0.001 [-0.042, 0.044] with no
    warning (at sin(3 x_1): 0.035 [-0.045, 0.114]; in d = 5, 0.001 [-0.015, 0.018], where kNN
    in all five dimensions, :func:`_with_knn`, did not see it). The marginal's lower end, not
    its value, must clear the interval, as the largest of d noisy values is biased up; kNN
    values that warn themselves (repeated values, heavy tails) are no evidence. The value is
    then the marginal's, a lower bound that the critics' value is shown to fall short of (on
    the oscillating pair at 10,000 a side, 10 seeds, the critics gave -0.001 to 0.003, the
    marginal 0.213-0.241), and nothing bounds the divergence from above: kNN's own interval on
    2,000 rows a side missed 0.233 on 3 of 10 seeds (0.171 [0.136, 0.207]), and the other
    coordinates may hold more that neither sees. Replayed on the suite's 452 recorded kl and
    reverse_kl runs from d = 2 to 10 below LARGE_KL, none fired (every marginal's lower end
    at least 0.11 nats below a finite upper end), nor on the 137 one-sided ones."""
    found = _top_marginal(x_p, x_q, k, seed)
    if found is None:
        return result
    coordinate, best, rows = found
    if not shown_low(result, best.ci95[0]):
        return result
    low, high = result.ci95
    return dataclasses.replace(
        result,
        value=best.value,
        stderr=best.stderr,
        ci95=(low, math.inf),
        method="knn",
        reason=f"{result.reason}; coordinate {coordinate + 1}'s marginal (kNN) lies above the "
        "critics' interval, and KL is at least any marginal's, so the value is the marginal's",
        warnings=(
            *result.warnings,
            f"coordinate {coordinate + 1}'s marginal alone diverges by {best.value:.3f} nats "
            f"[{best.ci95[0]:.3f}, {best.ci95[1]:.3f}] (kNN on {rows} rows a side), above the "
            f"critics' value {result.value:.3f} [{low:.3f}, {high:.3f}]: KL "
            "is at least any marginal's, so the critics miss what that coordinate shows (a "
            "sharp or oscillating density ratio) and may miss more; the value is the "
            "marginal's, a lower bound, and the interval's upper end is open (inf)",
        ),
    )


def _f_with_marginals(
    x_p: np.ndarray,
    x_q: np.ndarray,
    result: Estimate,
    div: FDivergence,
    certified: tuple[float, float],
    k: int,
    seed: int,
) -> Estimate:
    """``result`` of a divergence other than kl, its upper end at the divergence's largest value
    where one coordinate's marginal kNN KL has its lower end above the KL the critics'
    log-ratio certifies (``certified``: DV and its standard error; above it by Z95 of them),
    warned. The critics are those of kl, trained on the same logistic loss, so a log-ratio that
    misses what a marginal shows leaves any divergence computed from it too low: P = Q (1 + 0.9
    sin(8 x_1)), Q = N(0, I_10), 5,000 a side, gave js -0.001 [-0.013, 0.011] for 0.065 with no
    warning. No marginal value replaces it (kNN estimates KL only). Replayed on the suite's
    452 kl and reverse_kl runs from d = 2 to 10 below LARGE_KL (critics alike), no marginal's
    lower end came within 0.10 nats of the kl value plus Z95 standard errors."""
    found = _top_marginal(x_p, x_q, k, seed)
    if found is None or found[1].ci95[0] <= interval(*certified)[1]:
        return result
    coordinate, best, rows = found
    return dataclasses.replace(
        result,
        ci95=(result.ci95[0], div.value_range[1]),
        warnings=(
            *result.warnings,
            f"coordinate {coordinate + 1}'s marginal alone has a KL of {best.value:.3f} nats "
            f"[{best.ci95[0]:.3f}, {best.ci95[1]:.3f}] (kNN on {rows} rows a side), above the "
            f"{certified[0]:.3f} that the critics' log-ratio certifies: they miss what that "
            f"coordinate shows (a sharp or oscillating density ratio), so the {div.name} value "
            "may be far too low and the interval's upper end is the divergence's largest value",
        ),
    )


def _top_marginal(
    x_p: np.ndarray, x_q: np.ndarray, k: int, seed: int
) -> tuple[int, Estimate, int] | None:
    """The coordinate whose marginal kNN KL has the highest lower end, its estimate and the
    rows a side it used (MARGINAL_ROWS at most, drawn with ``seed``), from 2 to
    MARGINAL_CHECK_DIM dimensions; None elsewhere or where no marginal's kNN can be trusted."""
    if not 1 < x_p.shape[1] <= MARGINAL_CHECK_DIM:
        return None
    rng = np.random.default_rng(seed)
    rows_p = x_p[rng.permutation(len(x_p))[:MARGINAL_ROWS]]
    rows_q = x_q[rng.permutation(len(x_q))[:MARGINAL_ROWS]]
    marginals = [_marginal(rows_p[:, [i]], rows_q[:, [i]], k) for i in range(x_p.shape[1])]
    coordinate, best = max(
        ((i, m) for i, m in enumerate(marginals) if m is not None),
        key=lambda pair: pair[1].ci95[0],
        default=(-1, None),
    )
    return None if best is None else (coordinate, best, min(len(rows_p), len(rows_q)))


def _marginal(x_p: np.ndarray, x_q: np.ndarray, k: int) -> Estimate | None:
    """The kNN estimate of one coordinate, None where it warns or cannot run (too few distinct
    values for ``k`` neighbours: a constant or few-valued coordinate)."""
    try:
        est = knn_estimate(x_p, x_q, k)
    except ValueError:
        return None
    return None if est.warnings else est


def _stretched(ci: tuple[float, float], value: float | None) -> tuple[float, float]:
    """``ci`` stretched to hold ``value`` (unchanged for None)."""
    return ci if value is None else (min(ci[0], value), max(ci[1], value))


def _looseness(dim: int, n_train: tuple[int, int]) -> float:
    """Parameters per training pair of telescoping's link critics."""
    from fdiv.estimation.telescoping import MAX_PAIRS, looseness

    return looseness(dim, min(*n_train, MAX_PAIRS))


def cuda_indices(dev: torch.device) -> list[int]:
    """The CUDA device whose RNG the critic's initialisation and dropout draw from, if any."""
    if dev.type != "cuda":
        return []
    return [torch.cuda.current_device() if dev.index is None else dev.index]
