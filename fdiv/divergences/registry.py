"""The f-divergence family: one immutable record per divergence, looked up by name or alias.

D_f(P||Q) = E_Q[f(p/q)] >= sup_T E_P[T] - E_Q[f*(T)], with T = g(v) and v a critic's raw output.
Every record carries the closed form of f*(g(v)) and both derivatives in v, written so that they
never leave the conjugate's domain. All values are in nats. Elementwise functions take and return
torch tensors of any floating dtype and compute in that dtype.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ALPHA_GAP", "FDivergence", "alpha", "get", "names", "registered"]

Elementwise = Callable[[Tensor], Tensor]
# (sum over v of a term, its derivative in v): the derivative is a fresh tensor the caller may
# scale in place, or a float where it is constant; both share subexpressions (one exp, not two).
Terms = Callable[[Tensor], tuple[Tensor, Tensor | float]]

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FDivergence:
    """An f-divergence with the pieces a variational (f-GAN) bound needs.

    ``family`` names the closed forms (equal to ``name`` except for the alpha family, whose
    records share ``family="alpha"`` and carry their parameter in ``alpha``).
    ``activation_terms`` and ``conjugate_activation_terms`` give (sum of g(v), g'(v)) and
    (sum of f*(g(v)), d f*(g(v))/dv) in one pass: the fast path of the torch reference losses.
    """

    name: str
    family: str
    description: str
    aliases: tuple[str, ...]
    f: Elementwise
    conjugate: Elementwise
    activation: Elementwise
    activation_grad: Elementwise
    conjugate_activation: Elementwise
    conjugate_activation_grad: Elementwise
    optimal_critic: Elementwise
    value_range: tuple[float, float]
    f_text: str
    g_text: str
    conjugate_activation_text: str
    activation_terms: Terms
    conjugate_activation_terms: Terms
    alpha: float | None = None

    def __repr__(self) -> str:
        return f"FDivergence({self.name!r})"


def _inf_like(t: Tensor) -> Tensor:
    return torch.full_like(t, math.inf)


def _sech2(v: Tensor) -> Tensor:
    """sech(v)^2 = 4 e^{-2|v|} / (1 + e^{-2|v|})^2, without overflow."""
    e = torch.exp(-2.0 * v.abs())
    return 4.0 * e / (1.0 + e) ** 2


def _softplus(v: Tensor) -> Tensor:
    """log(1 + e^v), exact to rounding: above the threshold, e^-v is below the dtype's epsilon."""
    return F.softplus(v, threshold=37.0 if v.dtype == torch.float64 else 20.0)


def _logsigmoid(v: Tensor) -> Tensor:
    return -_softplus(-v)


def _xlogx(u: Tensor) -> Tensor:
    return torch.xlogy(u, u)


def log_lambertw_exp(z: Tensor) -> Tensor:
    """y = log W(e^z), the solution of y + e^y = z (principal branch), by Newton's method.

    Newton on the convex increasing h(y) = y + e^y - z converges monotonically from the start
    below, so a fixed number of steps reaches machine precision for z in [-1e4, 1e4].
    """
    start_large = torch.log(torch.clamp(z, min=1.0) - torch.log(torch.clamp(z, min=1.0)) + 1.0)
    y = torch.where(z > 1.0, start_large, z - torch.exp(torch.clamp(z, max=1.0)))
    for _ in range(8):
        ey = torch.exp(y)
        y = y - (y + ey - z) / (1.0 + ey)
    return y


def _jeffreys_conjugate(t: Tensor) -> Tensor:
    """f*(t) = W + 1/W + t - 2 with W = W(e^(1-t)), written as e^-y - 1 - y with y = log W.

    The two forms are equal because y + W = 1 - t; the second never subtracts the large W from
    -t (the first cancels catastrophically for t <= -1e6 in fp32, t <= -1e15 in fp64).
    """
    y = log_lambertw_exp(1.0 - t)
    return torch.expm1(-y) - y


def _identity_terms(v: Tensor) -> tuple[Tensor, float]:
    return v.sum(), 1.0


def _exp_terms(k: float, shift: float, a: float) -> Terms:
    """Terms of a e^(k v + shift): sum a (sum e), derivative a k e."""

    def terms(v: Tensor) -> tuple[Tensor, Tensor]:
        e = torch.mul(v, k).add_(shift).exp_()
        return e.sum() * a, e.mul_(a * k)

    return terms


def _expm1_terms(k: float, a: float) -> Terms:
    """Terms of a (e^(k v) - 1): a (sum of expm1), derivative a k e^(k v).

    expm1, not e^(k v) - 1 summed apart: for small |k v| (the alpha family near a = 0 or 1)
    the difference of two large sums would lose every digit.
    """

    def terms(v: Tensor) -> tuple[Tensor, Tensor]:
        m = torch.mul(v, k).expm1_()
        total = m.sum() * a
        return total, m.add_(1.0).mul_(a * k)

    return terms


def _softplus_terms(sign: float, a: float, b: float) -> Terms:
    """Terms of a softplus(sign v) + b: derivative a sign sigmoid(sign v)."""

    def terms(v: Tensor) -> tuple[Tensor, Tensor]:
        x = v if sign > 0 else torch.neg(v)
        total = _softplus(x).sum() * a + b * v.numel()
        slope = torch.sigmoid(x) if sign > 0 else x.sigmoid_()
        return total, slope.mul_(a * sign)

    return terms


def _tv_terms(v: Tensor) -> tuple[Tensor, Tensor]:
    return 0.5 * torch.tanh(v).sum(), _sech2(v).mul_(0.5)


def _pearson_conjugate_terms(v: Tensor) -> tuple[Tensor, Tensor]:
    return torch.dot(v, v) / 4.0 + v.sum(), torch.mul(v, 0.5).add_(1.0)


def _reverse_kl_conjugate_terms(v: Tensor) -> tuple[Tensor, float]:
    return v.sum() - v.numel(), 1.0


def _jeffreys_conjugate_terms(v: Tensor) -> tuple[Tensor, Tensor]:
    y = log_lambertw_exp(1.0 - v)
    m = torch.expm1(-y)
    total = (m - y).sum()
    return total, m.add_(1.0)  # d f*/dv = 1/W = e^-y


def _fixed(**kwargs: object) -> FDivergence:
    name = kwargs["name"]
    return FDivergence(family=name, **kwargs)  # type: ignore[arg-type]


_FIXED: tuple[FDivergence, ...] = (
    _fixed(
        name="kl",
        description="Kullback-Leibler KL(P||Q); with this table the bound is NWJ",
        aliases=("forward_kl", "kullback_leibler", "kld"),
        f=lambda u: _xlogx(u),
        conjugate=lambda t: torch.exp(t - 1.0),
        activation=lambda v: v,
        activation_grad=lambda v: torch.ones_like(v),
        conjugate_activation=lambda v: torch.exp(v - 1.0),
        conjugate_activation_grad=lambda v: torch.exp(v - 1.0),
        optimal_critic=lambda r: r + 1.0,
        value_range=(0.0, math.inf),
        f_text="u log u",
        g_text="v",
        conjugate_activation_text="exp(v - 1)",
        activation_terms=_identity_terms,
        conjugate_activation_terms=_exp_terms(1.0, -1.0, 1.0),
    ),
    _fixed(
        name="reverse_kl",
        description="reverse Kullback-Leibler KL(Q||P); mode seeking when Q is the model",
        aliases=("rkl", "reverse_kullback_leibler", "backward_kl"),
        f=lambda u: -torch.log(u),
        conjugate=lambda t: torch.where(t < 0, -1.0 - torch.log(-t.clamp(max=0.0)), _inf_like(t)),
        activation=lambda v: -torch.exp(-v),
        activation_grad=lambda v: torch.exp(-v),
        conjugate_activation=lambda v: v - 1.0,
        conjugate_activation_grad=lambda v: torch.ones_like(v),
        optimal_critic=lambda r: r,
        value_range=(0.0, math.inf),
        f_text="-log u",
        g_text="-exp(-v)",
        conjugate_activation_text="v - 1",
        activation_terms=_exp_terms(-1.0, 0.0, -1.0),
        conjugate_activation_terms=_reverse_kl_conjugate_terms,
    ),
    _fixed(
        name="pearson",
        description="Pearson chi-squared, integral of (p - q)^2 / q",
        aliases=("chi2", "pearson_chi2", "chi_squared", "chisq"),
        f=lambda u: (u - 1.0) ** 2,
        conjugate=lambda t: t * t / 4.0 + t,
        activation=lambda v: v,
        activation_grad=lambda v: torch.ones_like(v),
        conjugate_activation=lambda v: v * v / 4.0 + v,
        conjugate_activation_grad=lambda v: v / 2.0 + 1.0,
        optimal_critic=lambda r: 2.0 * torch.expm1(r),
        value_range=(0.0, math.inf),
        f_text="(u - 1)^2",
        g_text="v",
        conjugate_activation_text="v^2/4 + v",
        activation_terms=_identity_terms,
        conjugate_activation_terms=_pearson_conjugate_terms,
    ),
    _fixed(
        name="neyman",
        description="Neyman chi-squared, integral of (p - q)^2 / p",
        aliases=("neyman_chi2", "reverse_chi2"),
        f=lambda u: (1.0 - u) ** 2 / u,
        conjugate=lambda t: torch.where(
            t < 1, 2.0 - 2.0 * torch.sqrt((1.0 - t).clamp(min=0.0)), _inf_like(t)
        ),
        activation=lambda v: -torch.expm1(-v),
        activation_grad=lambda v: torch.exp(-v),
        conjugate_activation=lambda v: -2.0 * torch.expm1(-v / 2.0),
        conjugate_activation_grad=lambda v: torch.exp(-v / 2.0),
        optimal_critic=lambda r: 2.0 * r,
        value_range=(0.0, math.inf),
        f_text="(1 - u)^2 / u",
        g_text="1 - exp(-v)",
        conjugate_activation_text="2 - 2 exp(-v/2)",
        activation_terms=_expm1_terms(-1.0, -1.0),
        conjugate_activation_terms=_expm1_terms(-0.5, -2.0),
    ),
    _fixed(
        name="hellinger",
        description="squared Hellinger, integral of (sqrt p - sqrt q)^2 = 2(1 - Bhattacharyya)",
        aliases=("squared_hellinger", "hellinger2", "hellinger_squared"),
        f=lambda u: (torch.sqrt(u) - 1.0) ** 2,
        conjugate=lambda t: torch.where(t < 1, t / (1.0 - t), _inf_like(t)),
        activation=lambda v: -torch.expm1(-v),
        activation_grad=lambda v: torch.exp(-v),
        conjugate_activation=lambda v: torch.expm1(v),
        conjugate_activation_grad=lambda v: torch.exp(v),
        optimal_critic=lambda r: r / 2.0,
        value_range=(0.0, 2.0),
        f_text="(sqrt u - 1)^2",
        g_text="1 - exp(-v)",
        conjugate_activation_text="exp(v) - 1",
        activation_terms=_expm1_terms(-1.0, -1.0),
        conjugate_activation_terms=_expm1_terms(1.0, 1.0),
    ),
    _fixed(
        name="js",
        description="Jensen-Shannon divergence (the standard JSD, in [0, log 2])",
        aliases=("jsd", "jensen_shannon", "jensen_shannon_divergence"),
        f=lambda u: 0.5 * (_xlogx(u) - (u + 1.0) * torch.log((u + 1.0) / 2.0)),
        conjugate=lambda t: torch.where(
            t < LOG2 / 2.0,
            -0.5 * torch.log((2.0 - torch.exp(2.0 * t)).clamp(min=0.0)),
            _inf_like(t),
        ),
        activation=lambda v: 0.5 * (LOG2 + _logsigmoid(v)),
        activation_grad=lambda v: 0.5 * torch.sigmoid(-v),
        conjugate_activation=lambda v: 0.5 * (_softplus(v) - LOG2),
        conjugate_activation_grad=lambda v: 0.5 * torch.sigmoid(v),
        optimal_critic=lambda r: r,
        value_range=(0.0, LOG2),
        f_text="1/2 [u log u - (u + 1) log((u + 1)/2)]",
        g_text="1/2 (log 2 + logsigmoid(v))",
        conjugate_activation_text="1/2 (softplus(v) - log 2)",
        activation_terms=_softplus_terms(-1.0, -0.5, 0.5 * LOG2),
        conjugate_activation_terms=_softplus_terms(1.0, 0.5, -0.5 * LOG2),
    ),
    _fixed(
        name="gan",
        description="original GAN objective V(G, D), D = sigmoid(v); max over D is 2 JSD - log 4",
        aliases=("original_gan", "standard_gan", "vanilla_gan"),
        f=lambda u: _xlogx(u) - (u + 1.0) * torch.log1p(u),
        conjugate=lambda t: torch.where(
            t < 0, -torch.log(-torch.expm1(t.clamp(max=0.0))), _inf_like(t)
        ),
        activation=lambda v: _logsigmoid(v),
        activation_grad=lambda v: torch.sigmoid(-v),
        conjugate_activation=lambda v: _softplus(v),
        conjugate_activation_grad=lambda v: torch.sigmoid(v),
        optimal_critic=lambda r: r,
        value_range=(-2.0 * LOG2, 0.0),
        f_text="u log u - (u + 1) log(u + 1)",
        g_text="logsigmoid(v)",
        conjugate_activation_text="softplus(v)",
        activation_terms=_softplus_terms(-1.0, -1.0, 0.0),
        conjugate_activation_terms=_softplus_terms(1.0, 1.0, 0.0),
    ),
    _fixed(
        name="tv",
        description="total variation distance, sup over events of |P(A) - Q(A)|, in [0, 1]",
        aliases=("total_variation", "total_variation_distance"),
        f=lambda u: 0.5 * (u - 1.0).abs(),
        conjugate=lambda t: torch.where(t.abs() <= 0.5, t, _inf_like(t)),
        activation=lambda v: 0.5 * torch.tanh(v),
        activation_grad=lambda v: 0.5 * _sech2(v),
        conjugate_activation=lambda v: 0.5 * torch.tanh(v),
        conjugate_activation_grad=lambda v: 0.5 * _sech2(v),
        optimal_critic=lambda r: torch.where(r == 0, 0.0, torch.sign(r) * math.inf),
        value_range=(0.0, 1.0),
        f_text="1/2 |u - 1|",
        g_text="1/2 tanh(v)",
        conjugate_activation_text="1/2 tanh(v)",
        activation_terms=_tv_terms,
        conjugate_activation_terms=_tv_terms,
    ),
    _fixed(
        name="jeffreys",
        description="Jeffreys divergence KL(P||Q) + KL(Q||P); conjugate through Lambert W",
        aliases=("symmetric_kl", "j_divergence", "jeffrey"),
        f=lambda u: (u - 1.0) * torch.log(u),
        conjugate=_jeffreys_conjugate,
        activation=lambda v: v,
        activation_grad=lambda v: torch.ones_like(v),
        conjugate_activation=_jeffreys_conjugate,
        conjugate_activation_grad=lambda v: torch.exp(-log_lambertw_exp(1.0 - v)),
        optimal_critic=lambda r: r + 1.0 - torch.exp(-r),
        value_range=(0.0, math.inf),
        f_text="(u - 1) log u",
        g_text="v",
        conjugate_activation_text="W(e^(1-v)) + 1/W(e^(1-v)) + v - 2",
        activation_terms=_identity_terms,
        conjugate_activation_terms=_jeffreys_conjugate_terms,
    ),
)

#: The alpha family refuses |a| or |a - 1| below this: dividing by a tiny a (or a - 1) in fp32
#: underflows (NaN from finite input near 1e-38), and there the divergence equals its limit
#: (reverse KL, KL) to O(a), far below fp32 resolution.
ALPHA_GAP = 1e-12


def _shortest(a: float) -> str:
    """``a`` in the shortest text that reads back as the same float (2.0 -> '2')."""
    text = repr(a)
    return text[:-2] if text.endswith(".0") else text


_ALPHA_PATTERN = re.compile(r"^alpha[(_:=]?\s*([-+0-9.eE]+)\s*\)?$")


def alpha(a: float) -> FDivergence:
    """The alpha-divergence, generator f(u) = (u^a - 1 - a(u - 1)) / (a(a - 1)), a not in {0, 1}.

    D = (integral p^a q^(1-a) - 1) / (a(a - 1)). a = 2 is half of Pearson chi2, a = -1 half of
    Neyman chi2, a = 1/2 twice squared Hellinger; a -> 1 gives KL, a -> 0 reverse KL. The
    activation g(v) = f'(e^v) makes the optimal critic v* = log p/q and f*(g(v)) = (e^(av) - 1)/a.
    """
    if isinstance(a, bool) or not isinstance(a, numbers.Real):
        raise TypeError(f"alpha must be a real number, got {type(a).__name__}")
    a = float(a)
    if not math.isfinite(a) or a in (0.0, 1.0):
        raise ValueError(
            f"alpha must be a finite real number other than 0 and 1 (got {_shortest(a)}); "
            "use 'reverse_kl' for the a -> 0 limit and 'kl' for a -> 1"
        )
    for edge, limit in ((0.0, "reverse_kl"), (1.0, "kl")):
        if abs(a - edge) < ALPHA_GAP:
            raise ValueError(
                f"alpha {_shortest(a)} is within {ALPHA_GAP:g} of {edge:g}, where the alpha forms "
                f"divide by almost 0; use {limit!r}, which it equals to O({ALPHA_GAP:g})"
            )
    b = a - 1.0
    value_range = (0.0, 1.0 / (a * (1.0 - a))) if 0.0 < a < 1.0 else (0.0, math.inf)

    def conjugate(t: Tensor) -> Tensor:
        s = 1.0 + b * t
        inside = (torch.pow(s.clamp(min=0.0), a / b) - 1.0) / a
        outside = torch.full_like(t, -1.0 / a) if b > 0 else _inf_like(t)
        return torch.where(s > 0, inside, outside)

    return FDivergence(
        name=f"alpha({_shortest(a)})",
        family="alpha",
        description=(
            f"alpha-divergence with a = {_shortest(a)}, (integral p^a q^(1-a) - 1) / (a(a - 1))"
        ),
        aliases=(),
        f=lambda u: (torch.pow(u, a) - 1.0 - a * (u - 1.0)) / (a * b),
        conjugate=conjugate,
        activation=lambda v: torch.expm1(b * v) / b,
        activation_grad=lambda v: torch.exp(b * v),
        conjugate_activation=lambda v: torch.expm1(a * v) / a,
        conjugate_activation_grad=lambda v: torch.exp(a * v),
        optimal_critic=lambda r: r,
        value_range=value_range,
        f_text="(u^a - 1 - a(u - 1)) / (a(a - 1))",
        g_text="(exp((a - 1) v) - 1) / (a - 1)",
        conjugate_activation_text="(exp(a v) - 1) / a",
        activation_terms=_expm1_terms(b, 1.0 / b),
        conjugate_activation_terms=_expm1_terms(a, 1.0 / a),
        alpha=a,
    )


_BY_KEY: dict[str, FDivergence] = {}
for _record in _FIXED:
    for _key in (_record.name, *_record.aliases):
        _BY_KEY[_key] = _record


def names() -> list[str]:
    """Canonical names of the registered divergences; the alpha family is listed as 'alpha(a)'."""
    return [record.name for record in _FIXED] + ["alpha(a)"]


def registered() -> tuple[FDivergence, ...]:
    """The records of the fixed (parameter-free) divergences, in table order."""
    return _FIXED


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def get(name: str | FDivergence) -> FDivergence:
    """The record for ``name`` (canonical name or alias, case and '-'/'_' insensitive).

    The alpha family is spelled ``alpha(2)``, ``alpha(0.5)``, ``alpha(-1)``. An unknown name
    raises ``ValueError`` naming the closest known one and listing all.
    """
    if isinstance(name, FDivergence):
        return name
    if not isinstance(name, str):
        raise TypeError(f"divergence must be a name (str), got {type(name).__name__}")
    key = _normalise(name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    match = _ALPHA_PATTERN.match(name.strip().lower().replace(" ", ""))
    if match:
        try:
            a = float(match.group(1))
        except ValueError:
            pass
        else:
            return alpha(a)
    if key == "alpha":
        raise ValueError("the alpha family needs its parameter, e.g. 'alpha(2)' or 'alpha(0.5)'")
    known = [*sorted(_BY_KEY), "alpha(a)"]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"divergence {name!r} is unknown; {hint}known: {', '.join(names())}")
