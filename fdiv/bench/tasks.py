"""Divergence tasks: pairs (P, Q) with exactly known log densities, chosen to find failures.

An estimator is judged on data it was not tuned on. Besides Gaussian pairs the tasks cover heavy
tails (Student t on either side), mixtures (including a far, tiny component), a curved manifold
(the "banana"), bounded support (Betas, an unbounded density at the edges), large divergences
(mean shifts of KL 5 to 20, up to d = 50), high dimension (a ratio spread over 64
coordinates, a t against a Gaussian in d = 50), scale mismatch where Q is narrower
than P so that p/q is unbounded, a log-ratio that oscillates along one coordinate of ten, and
category labels (discrete).

``Task.truth(divergence)`` gives (value, stderr) in nats (TV and Hellinger: pure numbers): a
closed form (stderr 0) where one exists, else Monte Carlo with the exact log density ratio
r = log p - log q (module functions ``_mc_*``; each says which expectation it averages).
``TASKS`` holds the registry, ``get_task(name)`` looks one up. Densities and samplers are numpy,
float64; the small distribution classes below are the building blocks (also used by
``fdiv.bench.mi_tasks``).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import torch
from scipy.integrate import quad
from scipy.linalg import solve_triangular
from scipy.special import betaln, digamma, gammaln, logsumexp

from fdiv.divergences import gaussian as closed
from fdiv.divergences import student_t
from fdiv.divergences.registry import get as get_divergence

__all__ = [
    "DIVERGENCES",
    "TASKS",
    "Betas",
    "Categorical",
    "CurvedGaussian",
    "Distribution",
    "Gaussian",
    "Laplace",
    "LogNormal",
    "Mixture",
    "StudentT",
    "Task",
    "Wiggled",
    "check_points",
    "get_task",
    "lookup",
]

T = TypeVar("T")

_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK = 1 << 16  # rows per chunk when a density is evaluated on many points


class Distribution(Protocol):
    """What a task needs of P and Q."""

    @property
    def dim(self) -> int: ...

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def log_prob(self, x: np.ndarray) -> np.ndarray: ...


def check_points(x: np.ndarray, dim: int) -> np.ndarray:
    """x as a float64 (n, dim) array, or ValueError naming the shape problem."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (n, {dim}), got {x.shape}")
    return x


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")


def _cholesky(cov: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} is not positive definite") from None


@dataclass(frozen=True, eq=False)
class Gaussian:
    """N(mean, cov)."""

    mean: np.ndarray
    cov: np.ndarray
    chol: np.ndarray = field(init=False, repr=False)
    log_det: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mean = np.atleast_1d(np.asarray(self.mean, dtype=np.float64))
        cov = np.asarray(self.cov, dtype=np.float64)
        if cov.shape != (mean.size, mean.size):
            raise ValueError(f"cov must have shape {(mean.size, mean.size)}, got {cov.shape}")
        chol = _cholesky(cov, "cov")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "chol", chol)
        object.__setattr__(self, "log_det", 2.0 * float(np.log(np.diag(chol)).sum()))

    @classmethod
    def standard(cls, dim: int, var: float = 1.0) -> Gaussian:
        """N(0, var I)."""
        return cls(np.zeros(dim), var * np.eye(dim))

    @property
    def dim(self) -> int:
        return self.mean.size

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        return self.mean + rng.standard_normal((n, self.dim)) @ self.chol.T

    def mahalanobis_sq(self, x: np.ndarray) -> np.ndarray:
        """(x - mean)' cov^-1 (x - mean) per row."""
        z = solve_triangular(self.chol, (x - self.mean).T, lower=True)
        return np.square(z).sum(axis=0)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        return -0.5 * (self.dim * _LOG_2PI + self.log_det + self.mahalanobis_sq(x))


@dataclass(frozen=True, eq=False)
class StudentT:
    """Multivariate Student t with ``nu`` degrees of freedom, location and scale matrix of
    ``scale`` (a Gaussian); its covariance is nu / (nu - 2) scale.cov for nu > 2."""

    scale: Gaussian
    nu: float

    def __post_init__(self) -> None:
        if not self.nu > 0:
            raise ValueError(f"nu must be positive, got {self.nu}")

    @property
    def dim(self) -> int:
        return self.scale.dim

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        z = rng.standard_normal((n, self.dim)) @ self.scale.chol.T
        w = np.sqrt(rng.chisquare(self.nu, size=n) / self.nu)
        return self.scale.mean + z / w[:, None]

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        return student_t.log_density(
            self.scale.mahalanobis_sq(x), self.nu, self.dim, self.scale.log_det
        )

    def entropy(self) -> float:
        """Differential entropy in nats (closed form)."""
        nu, d = self.nu, self.dim
        return (
            0.5 * self.scale.log_det
            + 0.5 * d * math.log(nu * math.pi)
            + gammaln(nu / 2)
            - gammaln((nu + d) / 2)
            + 0.5 * (nu + d) * (digamma((nu + d) / 2) - digamma(nu / 2))
        )


@dataclass(frozen=True, eq=False)
class Mixture:
    """sum_k weights[k] components[k]; the weights are normalised."""

    weights: np.ndarray
    components: tuple[Distribution, ...]

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (len(self.components),) or not (w > 0).all():
            raise ValueError("weights must be positive, one per component")
        if len({c.dim for c in self.components}) != 1:
            raise ValueError("all components must have the same dimension")
        object.__setattr__(self, "weights", w / w.sum())

    @property
    def dim(self) -> int:
        return self.components[0].dim

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        counts = rng.multinomial(n, self.weights)
        parts = [c.sample(int(k), rng) for c, k in zip(self.components, counts, strict=True)]
        return rng.permutation(np.concatenate(parts))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        terms = np.stack(
            [np.log(w) + c.log_prob(x) for w, c in zip(self.weights, self.components, strict=True)]
        )
        return logsumexp(terms, axis=0)


@dataclass(frozen=True, eq=False)
class CurvedGaussian:
    """The "banana": z ~ N(0, I_dim) pushed through x_{2k+1} = z_{2k+1} + b (z_{2k}^2 - 1) for
    the first ``pairs`` coordinate pairs. The map is triangular with unit Jacobian, so
    log p(x) = log N(z(x); 0, I) exactly. Mean 0; Var(x_{2k+1}) = 1 + 2 b^2."""

    dim_: int
    b: float
    pairs: int

    def __post_init__(self) -> None:
        if not 1 <= self.pairs <= self.dim_ // 2:
            raise ValueError(f"pairs must be in [1, {self.dim_ // 2}], got {self.pairs}")

    @property
    def dim(self) -> int:
        return self.dim_

    def _bend(self, x: np.ndarray, sign: float) -> np.ndarray:
        out = x.copy()
        k = 2 * self.pairs
        out[:, 1:k:2] += sign * self.b * (np.square(x[:, 0:k:2]) - 1.0)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        return self._bend(rng.standard_normal((n, self.dim)), 1.0)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        z = self._bend(check_points(x, self.dim), -1.0)
        return -0.5 * (self.dim * _LOG_2PI + np.square(z).sum(axis=1))


@dataclass(frozen=True, eq=False)
class Wiggled:
    """N(0, I_dim) tilted by 1 + a sin(w x_1): density phi(x) (1 + a sin(w x_1)), normalised as
    the sine is odd (0 <= a < 1). Its log-ratio to N(0, I) oscillates with period 2 pi / w
    along the first coordinate. Sampled by rejection from N(0, I) (acceptance 1 / (1 + a))."""

    dim_: int
    a: float
    w: float

    def __post_init__(self) -> None:
        if self.dim_ < 1:
            raise ValueError(f"dim must be at least 1, got {self.dim_}")
        if not 0.0 <= self.a < 1.0:
            raise ValueError(f"a must be in [0, 1), got {self.a}")

    @property
    def dim(self) -> int:
        return self.dim_

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        rows, have = [np.empty((0, self.dim))], 0
        while have < n:
            x = rng.standard_normal((2 * (n - have) + 16, self.dim))
            keep = rng.random(len(x)) * (1.0 + self.a) < 1.0 + self.a * np.sin(self.w * x[:, 0])
            rows.append(x[keep])
            have += int(keep.sum())
        return np.concatenate(rows)[:n]

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        gauss = -0.5 * (self.dim * _LOG_2PI + np.square(x).sum(axis=1))
        return gauss + np.log1p(self.a * np.sin(self.w * x[:, 0]))

    def kl_to_standard(self) -> float:
        """KL to N(0, I_dim) in nats: E[(1 + a s) log(1 + a s)], s = sin(w z), z ~ N(0, 1), by
        adaptive quadrature over |z| <= 12 (the Gaussian mass beyond is 4e-33)."""

        def integrand(z: float) -> float:
            tilt = 1.0 + self.a * math.sin(self.w * z)
            return math.exp(-0.5 * z * z) * tilt * math.log(tilt)

        value, _ = quad(integrand, -12.0, 12.0, limit=1000, epsabs=1e-13, epsrel=1e-12)
        return value / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, eq=False)
class Betas:
    """Independent Beta(a_i, b_i) coordinates on the unit cube."""

    a: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        a, b = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (self.a, self.b))
        if a.shape != b.shape or a.ndim != 1 or not ((a > 0).all() and (b > 0).all()):
            raise ValueError("a and b must be positive vectors of the same length")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    @property
    def dim(self) -> int:
        return self.a.size

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        return rng.beta(self.a, self.b, size=(n, self.dim))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        inside = ((x > 0) & (x < 1)).all(axis=1)
        xc = np.clip(x, 1e-300, 1.0 - 1e-16)
        terms = (self.a - 1) * np.log(xc) + (self.b - 1) * np.log1p(-xc) - betaln(self.a, self.b)
        return np.where(inside, terms.sum(axis=1), -np.inf)

    def kl(self, other: Betas) -> float:
        """KL(self || other) in nats (closed form, summed over coordinates)."""
        a1, b1, a2, b2 = self.a, self.b, other.a, other.b
        per = (
            betaln(a2, b2)
            - betaln(a1, b1)
            + (a1 - a2) * digamma(a1)
            + (b1 - b2) * digamma(b1)
            + (a2 - a1 + b2 - b1) * digamma(a1 + b1)
        )
        return float(per.sum())


@dataclass(frozen=True, eq=False)
class Laplace:
    """Independent Laplace(0, scale) coordinates (variance 2 scale^2)."""

    dim_: int
    scale: float

    @property
    def dim(self) -> int:
        return self.dim_

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        return rng.laplace(0.0, self.scale, size=(n, self.dim))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        return -(np.abs(x).sum(axis=1) / self.scale) - self.dim * math.log(2.0 * self.scale)


@dataclass(frozen=True, eq=False)
class LogNormal:
    """exp(Z) coordinate-wise, Z ~ ``base`` (a Gaussian); support the positive orthant."""

    base: Gaussian

    @property
    def dim(self) -> int:
        return self.base.dim

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.exp(self.base.sample(n, rng))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, self.dim)
        inside = (x > 0).all(axis=1)
        log_x = np.log(np.where(x > 0, x, 1.0))
        return np.where(inside, self.base.log_prob(log_x) - log_x.sum(axis=1), -np.inf)


@dataclass(frozen=True, eq=False)
class Categorical:
    """One column of category labels 0, ..., K - 1 with probabilities ``probs``; log_prob is
    the log probability mass (-inf off the labels), so the divergences are sums over labels."""

    probs: np.ndarray

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs, dtype=np.float64)
        if probs.ndim != 1 or (probs < 0).any() or not math.isclose(probs.sum(), 1.0):
            raise ValueError("probs must be a 1-D array of non-negative numbers summing to 1")
        object.__setattr__(self, "probs", probs)

    @property
    def dim(self) -> int:
        return 1

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        _check_n(n)
        return rng.choice(self.probs.size, size=(n, 1), p=self.probs).astype(np.float64)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = check_points(x, 1)[:, 0]
        label = (x == np.round(x)) & (x >= 0) & (x < self.probs.size)
        with np.errstate(divide="ignore"):
            logs = np.log(self.probs)
        return np.where(label, logs[np.where(label, x, 0).astype(np.int64)], -np.inf)

    def divergence(self, other: Categorical, divergence: str) -> float:
        """sum_k q_k f(p_k / q_k) over the labels, in float64 (Q's labels must cover P's)."""
        div = get_divergence(divergence)
        if div.name == "reverse_kl":
            return other.divergence(self, "kl")
        q = torch.from_numpy(other.probs)
        return float((q * div.f(torch.from_numpy(self.probs) / q)).sum())


# ---------------------------------------------------------------------------------------------
# Tasks

DIVERGENCES: tuple[str, ...] = ("kl", "reverse_kl", "js", "hellinger", "tv", "pearson")
_LOG_2 = math.log(2.0)


@dataclass(frozen=True, eq=False)
class Task:
    """A pair (P, Q) in ``dim`` dimensions with exact log densities.

    ``family`` tags the kind of difficulty (heavy-tail, mixture, curved, bounded, gaussian,
    large, scale). ``exact`` holds closed-form values (divergence name, value) beyond the
    Gaussian closed forms, which are found automatically for Gaussian (and log-normal) pairs.
    ``pearson_finite``: True where chi2(P||Q) is finite (Monte Carlo of E_P[p/q] is unbiased,
    though its variance can be huge: closed forms come first), False where it is infinite, None
    where it is finite but beyond Monte Carlo (said in the description). Equality is identity
    (tasks are registry singletons).
    """

    name: str
    family: str
    description: str
    p: Distribution
    q: Distribution
    exact: tuple[tuple[str, float], ...] = ()
    pearson_finite: bool | None = None
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        if self.p.dim != self.q.dim:
            raise ValueError(f"p and q dimensions differ: {self.p.dim} and {self.q.dim}")
        object.__setattr__(self, "dim", self.p.dim)

    def sample_p(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws of P, float64 (n, dim)."""
        return self.p.sample(n, rng)

    def sample_q(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws of Q, float64 (n, dim)."""
        return self.q.sample(n, rng)

    def log_p(self, x: np.ndarray) -> np.ndarray:
        """log p(x) in nats at the rows of x (n, dim); -inf outside P's support."""
        return self.p.log_prob(x)

    def log_q(self, x: np.ndarray) -> np.ndarray:
        """log q(x) in nats at the rows of x (n, dim); -inf outside Q's support."""
        return self.q.log_prob(x)

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        """r(x) = log p(x) - log q(x) in nats."""
        return self.log_p(x) - self.log_q(x)

    def closed_form(self, divergence: str) -> float | None:
        """The exact value of ``divergence`` where a closed form is known, else None."""
        name = _canonical(divergence)
        exact = dict(self.exact)
        if name in exact:
            return exact[name]
        pair = _gaussian_pair(self)
        if pair is None or name == "js":
            return None
        try:
            return closed.ground_truth(name, *pair)[0]
        except ValueError:  # tv between Gaussians with unequal covariances
            return None

    def truth(
        self, divergence: str = "kl", n: int = 10**6, seed: int = 0, method: str = "auto"
    ) -> tuple[float, float]:
        """(value, stderr) of D(P||Q): nats for kl, reverse_kl, js; pure numbers otherwise.

        ``method="auto"``: the closed form (stderr 0) where one exists, else Monte Carlo with
        n draws per side; ``"mc"``: always Monte Carlo. Pearson chi2 is (inf, 0) where it is
        infinite and raises ValueError where it is beyond Monte Carlo (``pearson_finite``).
        Results are cached per (task, divergence, n, seed, method).
        """
        if method not in ("auto", "mc"):
            raise ValueError(f"method must be 'auto' or 'mc', got {method!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer >= 2 for a standard error, got {n!r}")
        return _truth(self, _canonical(divergence), n, seed, method)

    def sample_value(self, divergence: str, x_p: np.ndarray, x_q: np.ndarray) -> float:
        """D(P||Q) as the exact log-ratio gives it on these rows, by the Monte Carlo truth's own
        formulas (kl: the mean of r over ``x_p``; reverse_kl: of -r over ``x_q``; pearson: the
        mean of e^r over ``x_p``, minus 1; js, hellinger, tv: the mixture integrand over both).
        What an estimator that knew p/q would report from this sample: its distance from the
        truth is the sample's own error, which no estimator that averages over the rows avoids
        (a t with 3 dof, d = 5, 10,000 rows: from 1.22 to 5.46 over 10 seeds for 1.27)."""
        name = _canonical(divergence)
        r_p, r_q = self.log_ratio(x_p), self.log_ratio(x_q)
        if name == "kl":
            return float(r_p.mean())
        if name == "reverse_kl":
            return float(-r_q.mean())
        if name == "pearson":
            return math.expm1(float(logsumexp(r_p)) - math.log(r_p.size))
        integrand = _MIXTURE_INTEGRANDS[name]
        return 0.5 * (float(integrand(np.abs(r_p)).mean()) + float(integrand(np.abs(r_q)).mean()))


def _canonical(divergence: str) -> str:
    name = get_divergence(divergence).name
    if name not in DIVERGENCES:
        raise ValueError(
            f"divergence {divergence!r} has no task ground truth; known: {', '.join(DIVERGENCES)}"
        )
    return name


def _gaussian_pair(task: Task) -> tuple[closed.Gaussian, closed.Gaussian] | None:
    """The Gaussian pair whose f-divergences equal the task's (f-divergences are invariant
    under one bijection applied to both sides, here the coordinate-wise exp), or None."""
    p, q = task.p, task.q
    if isinstance(p, LogNormal) and isinstance(q, LogNormal):
        p, q = p.base, q.base
    if isinstance(p, Gaussian) and isinstance(q, Gaussian):
        return tuple(
            closed.Gaussian(torch.from_numpy(g.mean), torch.from_numpy(g.cov)) for g in (p, q)
        )
    return None


def _draw(dist: Distribution, n: int, rng: np.random.Generator, fn: Callable) -> np.ndarray:
    """fn evaluated on n draws of dist, in chunks (memory stays ~_CHUNK * dim)."""
    sizes = [_CHUNK] * (n // _CHUNK) + ([n % _CHUNK] if n % _CHUNK else [])
    return np.concatenate([fn(dist.sample(m, rng)) for m in sizes])


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def _js_mixture(a: np.ndarray) -> np.ndarray:
    """log 2 - [softplus(r) - r sigmoid(r)] as a function of a = |r| (the expression is even)."""
    e = np.exp(-a)
    tail = np.where(np.isinf(a), 0.0, a * e / (1.0 + e))
    return _LOG_2 - np.log1p(e) - tail


def _hellinger_mixture(a: np.ndarray) -> np.ndarray:
    """2 (1 - sech(r / 2)) as a function of a = |r|."""
    e = np.exp(-0.5 * a)
    return 2.0 - 4.0 * e / (1.0 + e * e)


def _tv_mixture(a: np.ndarray) -> np.ndarray:
    """|tanh(r / 2)| as a function of a = |r|."""
    return -np.expm1(-a) / (1.0 + np.exp(-a))


# D_f = E_M[2 f(p/q) / (1 + p/q)] with M = (P + Q) / 2 (the same integral as E_Q[f(p/q)],
# importance-weighted to the mixture): the integrand is bounded, so P-mass where q is tiny costs
# no variance. Sampled stratified: n draws from each of P and Q.
_MIXTURE_INTEGRANDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "js": _js_mixture,
    "hellinger": _hellinger_mixture,
    "tv": _tv_mixture,
}


@functools.cache
def _truth(task: Task, name: str, n: int, seed: int, method: str) -> tuple[float, float]:
    if method == "auto":
        value = task.closed_form(name)
        if value is not None:
            return value, 0.0
    rng = np.random.default_rng(seed)
    if name == "kl":  # E_P[r]
        return _mean_se(_draw(task.p, n, rng, task.log_ratio))
    if name == "reverse_kl":  # E_Q[-r]
        return _mean_se(-_draw(task.q, n, rng, task.log_ratio))
    if name == "pearson":  # E_P[p/q] - 1, shifted by max r against overflow
        if task.pearson_finite is None:
            raise ValueError(f"pearson chi2 of task {task.name!r} is beyond Monte Carlo")
        if not task.pearson_finite:
            if method == "mc":
                raise ValueError(f"pearson chi2 of task {task.name!r} is infinite")
            return math.inf, 0.0
        r = _draw(task.p, n, rng, task.log_ratio)
        shift = float(r.max())
        mean, se = _mean_se(np.exp(r - shift))
        return math.exp(shift) * mean - 1.0, math.exp(shift) * se
    integrand = _MIXTURE_INTEGRANDS[name]
    on_p = _draw(task.p, n, rng, lambda x: integrand(np.abs(task.log_ratio(x))))
    on_q = _draw(task.q, n, rng, lambda x: integrand(np.abs(task.log_ratio(x))))
    value = 0.5 * (float(on_p.mean()) + float(on_q.mean()))
    stderr = 0.5 * math.sqrt((float(on_p.var(ddof=1)) + float(on_q.var(ddof=1))) / n)
    return value, stderr


# ---------------------------------------------------------------------------------------------
# The registry


def _equicorrelated(dim: int, rho: float, var: float = 1.0) -> np.ndarray:
    return var * ((1.0 - rho) * np.eye(dim) + rho * np.ones((dim, dim)))


def _student_vs_gaussian(nu: float, dim: int = 5) -> Task:
    scale = Gaussian(np.zeros(dim), _equicorrelated(dim, 0.5))
    t = StudentT(scale, nu)
    gauss = Gaussian(np.zeros(dim), nu / (nu - 2.0) * scale.cov)
    # KL(t || N with the t's covariance) = -H(t) + H(N): E_t[-log q] is the Gaussian entropy
    kl = -t.entropy() + 0.5 * (dim * math.log(2.0 * math.pi * math.e) + gauss.log_det)
    return Task(
        f"student-t{nu:g}-vs-gauss-d{dim}",
        "heavy-tail",
        f"multivariate t (nu={nu:g}, equicorrelated scale rho=0.5) vs the Gaussian with its "
        "covariance; log p/q grows like log|x|^2 against |x|^2, so E_P[(log p/q)^2] is infinite "
        "for nu <= 4 (Monte Carlo of KL has infinite variance; the closed form is used)",
        t,
        gauss,
        exact=(("kl", kl),),
        pearson_finite=False,
    )


def _gaussian_vs_student(nu: float = 3.0, dim: int = 5) -> Task:
    scale = Gaussian(np.zeros(dim), _equicorrelated(dim, 0.5))
    return Task(
        f"gauss-vs-student-t{nu:g}-d{dim}",
        "heavy-tail",
        f"Gaussian P vs heavy-tailed Q (multivariate t, nu={nu:g}) with the same covariance: "
        "Q puts samples where p is ~0 (log p/q -> -inf on Q's tail)",
        Gaussian(np.zeros(dim), nu / (nu - 2.0) * scale.cov),
        StudentT(scale, nu),
        pearson_finite=True,
    )


def _four_means(dim: int, a: float, angle: float = 0.0) -> list[np.ndarray]:
    out = []
    for k in range(4):
        m = np.zeros(dim)
        m[0], m[1] = a * math.cos(angle + k * math.pi / 2), a * math.sin(angle + k * math.pi / 2)
        out.append(m)
    return out


def _mixture(means: list[np.ndarray], weights: list[float], var: float = 1.0) -> Mixture:
    dim = means[0].size
    return Mixture(np.array(weights), tuple(Gaussian(m, var * np.eye(dim)) for m in means))


_MIX_A = 2.85  # component distance from the origin: KL to the moment-matched Gaussian ~0.35


def _mixture_vs_gaussian(dim: int = 5) -> Task:
    cov = np.eye(dim)
    cov[0, 0] = cov[1, 1] = 1.0 + _MIX_A**2 / 2
    return Task(
        f"mixture4-vs-gauss-d{dim}",
        "mixture",
        f"4 unit Gaussians at distance {_MIX_A} on two axes vs the moment-matched Gaussian",
        _mixture(_four_means(dim, _MIX_A), [1, 1, 1, 1]),
        Gaussian(np.zeros(dim), cov),
        pearson_finite=True,
    )


def _mixture_vs_mixture(dim: int = 5) -> Task:
    return Task(
        f"mixture4-vs-mixture4-d{dim}",
        "mixture",
        "4-component mixture vs the same layout rotated by 30 degrees with unequal weights "
        "(0.4, 0.3, 0.2, 0.1): overlapping but misaligned modes",
        _mixture(_four_means(dim, _MIX_A), [1, 1, 1, 1]),
        _mixture(_four_means(dim, _MIX_A, math.pi / 6), [0.4, 0.3, 0.2, 0.1]),
        pearson_finite=True,
    )


def _far_tiny_component(dim: int = 5, far: float = 8.0, weight: float = 0.01) -> Task:
    means = [np.zeros(dim), far * np.eye(dim)[0]]
    return Task(
        f"far-tiny-component-d{dim}",
        "mixture",
        f"P = N(0, I) with a {weight:g} component at distance {far:g} vs Q = N(0, I): about "
        f"{weight * 10_000:g} of 10^4 P samples carry most of the KL (log p/q ~ far^2/2 there); "
        "Pearson chi2 is finite (~weight^2 exp(far^2)) but beyond Monte Carlo",
        _mixture(means, [1.0 - weight, weight]),
        Gaussian.standard(dim),
    )


def _banana(dim: int = 10) -> Task:
    b, pairs = math.sqrt(0.075), dim // 2
    return Task(
        f"banana-d{dim}",
        "curved",
        f"N(0, I) bent in all {pairs} coordinate pairs (x_odd += b (x_even^2 - 1), b^2 = "
        "0.075, unit Jacobian) vs N(0, I): KL = pairs b^2 = 0.375",
        CurvedGaussian(dim, b, pairs),
        Gaussian.standard(dim),
        exact=(("kl", pairs * b * b),),
        pearson_finite=False,
    )


def _banana_strong(dim: int = 10, b: float = 2.0) -> Task:
    cov = np.eye(dim)
    cov[1, 1] = 1.0 + 2.0 * b * b
    return Task(
        f"banana-strong-d{dim}",
        "curved",
        f"one strongly bent pair (b = {b:g}) plus {dim - 2} independent N(0,1) coordinates vs "
        "the moment-matched Gaussian: KL = log(1 + 2 b^2) / 2 (entropies; unit Jacobian)",
        CurvedGaussian(dim, b, 1),
        Gaussian(np.zeros(dim), cov),
        exact=(("kl", 0.5 * math.log1p(2.0 * b * b)),),
        pearson_finite=False,
    )


def _ring(components: int = 16, radius: float = 3.0, sd: float = 0.3, dim: int = 2) -> Mixture:
    """``components`` Gaussians (sd ``sd``) on a circle in the first two coordinates."""
    angles = 2.0 * math.pi * np.arange(components) / components
    plane = np.eye(dim)[:2]
    means = [radius * np.array([math.cos(a), math.sin(a)]) @ plane for a in angles]
    return _mixture(means, [1.0 / components] * components, sd * sd)


def _ring_gaussian(radius: float = 3.0, sd: float = 0.3, dim: int = 2) -> Gaussian:
    """The Gaussian with the ring's moments (mean 0, variance radius^2 / 2 + sd^2 per axis of
    the circle's plane, sd^2 across it)."""
    var = np.full(dim, sd * sd)
    var[:2] += radius * radius / 2.0
    return Gaussian(np.zeros(dim), np.diag(var))


def _ring_vs_gaussian() -> Task:
    return Task(
        "ring16-vs-gauss-d2",
        "curved",
        "16 narrow Gaussians (sd 0.3) on a circle of radius 3, a noisy curved manifold, vs the "
        "Gaussian of its moments: log p/q has 16 sharp ridges",
        _ring(),
        _ring_gaussian(),
        pearson_finite=True,
    )


def _ring8_vs_gaussian() -> Task:
    return Task(
        "ring8-vs-gauss-d3",
        "curved",
        "8 Gaussians (sd 0.5) on a circle of radius 3 in 3-D vs the Gaussian of its moments: "
        "sharp modes that a critic resolves only with long training (2,000 steps: 15% low)",
        _ring(8, 3.0, 0.5, 3),
        _ring_gaussian(3.0, 0.5, 3),
        pearson_finite=True,
    )


def _gaussian_vs_ring() -> Task:
    return Task(
        "gauss-vs-ring16-d2",
        "large",
        "the ring's moment-matched Gaussian vs the ring of 16 narrow Gaussians: P puts mass "
        "inside the ring and between its modes, where q is tiny (KL ~ 10, a density chasm in 2-D)",
        _ring_gaussian(),
        _ring(),
        pearson_finite=False,
    )


def _cauchy_shift(dim: int = 5, shift: float = 2.0) -> Task:
    mean = np.zeros(dim)
    mean[0] = shift
    return Task(
        f"cauchy-shift-d{dim}",
        "heavy-tail",
        f"multivariate Cauchy (t, nu = 1) at {shift:g} e_1 vs at 0: no mean or variance (a "
        "sample's standard deviation follows its largest rows); log p/q is bounded",
        StudentT(Gaussian(mean, np.eye(dim)), 1.0),
        StudentT(Gaussian.standard(dim), 1.0),
        pearson_finite=True,
    )


def _betas() -> Task:
    p = Betas([2.0, 0.8, 5.0, 1.5, 3.0], [5.0, 0.8, 2.0, 1.5, 1.0])
    q = Betas([3.0, 1.2, 4.0, 1.0, 2.0], [4.0, 1.5, 3.0, 2.0, 2.0])
    return Task(
        "beta-vs-beta-d5",
        "bounded",
        "products of Betas on the unit cube (skewed, U-shaped and flat coordinates); densities "
        "vanish or blow up at the faces; Pearson is infinite (2 b_p - b_q = 0 in the last one)",
        p,
        q,
        exact=(("kl", p.kl(q)),),
        pearson_finite=False,
    )


def _arcsine_vs_uniform(dim: int = 5) -> Task:
    p, q = Betas(np.full(dim, 0.5), np.full(dim, 0.5)), Betas(np.ones(dim), np.ones(dim))
    return Task(
        f"arcsine-vs-uniform-d{dim}",
        "bounded",
        "Beta(1/2, 1/2)^d (density unbounded at the faces) vs the uniform cube: "
        "KL = -d h(arcsine) = d log(4 / pi)",
        p,
        q,
        exact=(("kl", p.kl(q)),),
        pearson_finite=False,
    )


def _correlated(dim: int, rho: float) -> Task:
    p, q = Gaussian(np.zeros(dim), _equicorrelated(dim, rho)), Gaussian.standard(dim)
    kl = -0.5 * p.log_det  # (tr(S) - d - log|S|) / 2 with unit diagonal
    return Task(
        f"gauss-corr{rho:g}-d{dim}",
        "gaussian",
        f"equicorrelated N(0, (1 - rho) I + rho 11') with rho = {rho:g} vs N(0, I): KL = {kl:.3f}",
        p,
        q,
        pearson_finite=bool(np.linalg.eigvalsh(2.0 * q.cov - p.cov).min() > 0),
    )


def _mean_shift(kl: float, dim: int) -> Task:
    shift = math.sqrt(2.0 * kl / dim)
    return Task(
        f"shift-kl{kl:g}-d{dim}",
        "large",
        f"N(mu, I) vs N(0, I) with mu = {shift:.4g} (1, ..., 1): KL = |mu|^2 / 2 = {kl:g}; "
        "the partition term E_Q[p/q] lives in Q's far tail",
        Gaussian(np.full(dim, shift), np.eye(dim)),
        Gaussian.standard(dim),
        pearson_finite=True,
    )


def _laplace_vs_gaussian(dim: int = 5) -> Task:
    # per coordinate: -h(Laplace(b)) + E[-log N(0, 2 b^2)] = -1 - log 2b + 1/2 + log 2b + log(pi)/2
    return Task(
        f"laplace-vs-gauss-d{dim}",
        "heavy-tail",
        "product Laplace(0, 1) vs the Gaussian with the same variance (2): a kink at 0 and "
        "exponential tails; KL = d (log(pi) - 1) / 2",
        Laplace(dim, 1.0),
        Gaussian.standard(dim, 2.0),
        exact=(("kl", dim * 0.5 * (math.log(math.pi) - 1.0)),),
        pearson_finite=False,
    )


def _lognormal(dim: int = 5) -> Task:
    return Task(
        f"lognormal-d{dim}",
        "heavy-tail",
        "exp of N(0, I) vs exp of N(0.3, 1.3^2 I): right-skewed, heavy right tail, bounded "
        "below; every f-divergence equals the Gaussian one (one bijection on both sides)",
        LogNormal(Gaussian.standard(dim)),
        LogNormal(Gaussian(np.full(dim, 0.3), 1.69 * np.eye(dim))),
        pearson_finite=True,
    )


def _wiggle(dim: int = 10, w: float = 8.0, a: float = 0.9) -> Task:
    p = Wiggled(dim, a, w)
    return Task(
        f"wiggle{w:g}-d{dim}",
        "oscillating",
        f"N(0, I) tilted by 1 + {a:g} sin({w:g} x_1) vs N(0, I): the log-ratio oscillates "
        f"(period {2 * math.pi / w:.2g}) along one of {dim} coordinates, which a smooth critic "
        "rounds off",
        p,
        Gaussian.standard(dim),
        exact=(("kl", p.kl_to_standard()),),
        pearson_finite=True,
    )


def _binomial_vs_uniform(labels: int = 20, prob: float = 0.3) -> Task:
    k = np.arange(labels)
    binomial = np.exp(
        gammaln(labels) - gammaln(k + 1) - gammaln(labels - k)
        + k * math.log(prob) + (labels - 1 - k) * math.log1p(-prob)
    )  # fmt: skip
    p, q = Categorical(binomial / binomial.sum()), Categorical(np.full(labels, 1.0 / labels))
    return Task(
        f"binomial-vs-uniform{labels}-d1",
        "discrete",
        f"category labels: Binomial({labels - 1}, {prob:g}) vs uniform over the {labels} labels; "
        "exact sums over the labels; Q's rare labels (P's top ones, mass down to 1e-10) make "
        "reverse_kl large",
        p,
        q,
        exact=tuple((name, p.divergence(q, name)) for name in DIVERGENCES),
        pearson_finite=True,
    )


def _narrow_q(dim: int = 5, var: float = 0.5) -> Task:
    return Task(
        f"narrow-q-d{dim}",
        "scale",
        f"N(0, I) vs N(0, {var:g} I): Q narrower than P, so p/q is unbounded in the tails; "
        "Pearson chi2 is infinite",
        Gaussian.standard(dim),
        Gaussian.standard(dim, var),
        pearson_finite=False,
    )


def _wide_q(dim: int = 64, sd: float = 1.08) -> Task:
    return Task(
        f"wide-q-d{dim}",
        "high-dim",
        f"N(0, I) vs N(0, {sd:g}^2 I), d = {dim}: a ratio spread thinly over every coordinate "
        "(each holds 1/d of the KL), which a network on a few thousand rows does not find",
        Gaussian.standard(dim),
        Gaussian.standard(dim, sd * sd),
        pearson_finite=True,
    )


def _one_d_shift(kl: float = 5.0) -> Task:
    shift = math.sqrt(2.0 * kl)
    return Task(
        f"shift-kl{kl:g}-d1",
        "large",
        f"N({shift:.4g}, 1) vs N(0, 1): KL = {kl:g} in one dimension (little overlap)",
        Gaussian([shift], [[1.0]]),
        Gaussian.standard(1),
        pearson_finite=True,
    )


def _bimodal_vs_gaussian(dim: int = 1, a: float = 2.0) -> Task:
    return Task(
        f"bimodal-vs-gauss-d{dim}",
        "mixture",
        f"two unit Gaussians at +-{a:g} vs the moment-matched Gaussian N(0, 1 + {a:g}^2)",
        _mixture([np.full(dim, a), np.full(dim, -a)], [1, 1]),
        Gaussian.standard(dim, 1.0 + a * a),
        pearson_finite=True,
    )


def _build() -> dict[str, Task]:
    one_d = [  # one dimension: where kNN once looked best
        _student_vs_gaussian(3.0, 1),
        _lognormal(1),
        _arcsine_vs_uniform(1),
        _bimodal_vs_gaussian(1),
        _one_d_shift(1.0),
    ]
    tasks = [
        *(_student_vs_gaussian(nu) for nu in (3.0, 5.0, 10.0)),
        _gaussian_vs_student(),
        _mixture_vs_gaussian(),
        _mixture_vs_mixture(),
        _far_tiny_component(),
        _banana(),
        _banana_strong(),
        _ring_vs_gaussian(),
        _ring8_vs_gaussian(),
        _gaussian_vs_ring(),
        _cauchy_shift(),
        _betas(),
        _arcsine_vs_uniform(),
        _correlated(10, 0.68),
        _correlated(10, 0.08),
        *(_mean_shift(kl, dim) for dim in (20, 50) for kl in (10.0, 20.0)),
        _one_d_shift(),
        _laplace_vs_gaussian(),
        _lognormal(),
        _narrow_q(),
        _wiggle(),
        _binomial_vs_uniform(),
        _wide_q(),
        _student_vs_gaussian(10.0, 50),
        *one_d,
    ]
    return {task.name: task for task in tasks}


TASKS: dict[str, Task] = _build()


def get_task(name: str) -> Task:
    """The registered task ``name``; ValueError naming the closest one and listing all."""
    return lookup(TASKS, name, "task")


def lookup(registry: dict[str, T], name: str, what: str) -> T:
    """``registry[name]``, or a ValueError naming the closest ``what`` and listing all."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(str(name), registry, n=1, cutoff=0.4)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"{what} {name!r} is unknown; {hint}known: {', '.join(registry)}")
