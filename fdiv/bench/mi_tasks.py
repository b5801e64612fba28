"""Mutual-information tasks: pairs (X, Y) with known I(X; Y) in nats and exact pointwise MI.

``MITask.sample(n, rng) -> (x (n, dx), y (n, dy))``, ``mi()`` -> (value, stderr) (closed form,
stderr 0, or Monte Carlo), ``pmi(x, y) = log p(x, y) - log p(x) - log p(y)`` row by row (the
optimal critic: InfoNCE with it is the best any critic reaches at a batch size, see
``optimal_infonce``). Families: Gaussians with per-coordinate correlation (dense and sparse),
the same under invertible maps of X and of Y (MI unchanged, pmi evaluated in the latent
coordinates), multivariate Student t (dependence through a shared scale even when uncorrelated),
uniform additive noise (bounded support; pmi is -inf off the support) and a shared discrete
cluster (MI by Monte Carlo). ``MI_TASKS`` holds the registry, ``get_mi_task(name)`` looks up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri
from scipy.stats import ortho_group

from fdiv.bench.tasks import Gaussian, StudentT, check_points, lookup

__all__ = [
    "ASINH",
    "CUBE",
    "MI_TASKS",
    "NORMAL_CDF",
    "WARP",
    "Clusters",
    "GaussianPairs",
    "MITask",
    "Map",
    "StudentTPairs",
    "Transformed",
    "UniformNoise",
    "get_mi_task",
    "optimal_infonce",
]

_CHUNK = 1 << 16


class _Joint(Protocol):
    dx: int
    dy: int

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def exact_mi(self) -> float | None: ...


@dataclass(frozen=True, eq=False)
class MITask:
    """A joint law of (X, Y) with ``dx``, ``dy`` dimensions and known mutual information."""

    name: str
    family: str
    description: str
    joint: _Joint
    dx: int = field(init=False)
    dy: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dx", self.joint.dx)
        object.__setattr__(self, "dy", self.joint.dy)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n joint draws: x (n, dx) and y (n, dy), float64."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        return self.joint.sample(int(n), rng)

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Pointwise MI log p(x, y) / (p(x) p(y)) in nats for the rows (x_i, y_i); (n,)."""
        x, y = check_points(x, self.dx), check_points(y, self.dy)
        if len(x) != len(y):
            raise ValueError(f"x and y must have as many rows, got {len(x)} and {len(y)}")
        return self.joint.pmi(x, y)

    def pmi_matrix(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """pmi(x_i, y_j) for all pairs: (len(x), len(y)), the optimal critic's score matrix."""
        x, y = check_points(x, self.dx), check_points(y, self.dy)
        rows = self.pmi(np.repeat(x, len(y), axis=0), np.tile(y, (len(x), 1)))
        return rows.reshape(len(x), len(y))

    def mi(self, n: int = 10**6, seed: int = 0, method: str = "auto") -> tuple[float, float]:
        """(I(X; Y), stderr) in nats: the closed form (stderr 0) where known and ``method`` is
        "auto", else the Monte Carlo mean of pmi over n joint draws. Cached."""
        if method not in ("auto", "mc"):
            raise ValueError(f"method must be 'auto' or 'mc', got {method!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer >= 2 for a standard error, got {n!r}")
        return _mi(self, n, seed, method)


@functools.cache
def _mi(task: MITask, n: int, seed: int, method: str) -> tuple[float, float]:
    exact = task.joint.exact_mi()
    if method == "auto" and exact is not None:
        return exact, 0.0
    rng = np.random.default_rng(seed)
    sizes = [_CHUNK] * (n // _CHUNK) + ([n % _CHUNK] if n % _CHUNK else [])
    v = np.concatenate([task.pmi(*task.sample(m, rng)) for m in sizes])
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n))


def optimal_infonce(
    task: MITask, batch_size: int, n_batches: int = 200, seed: int = 0
) -> tuple[float, float]:
    """InfoNCE with the optimal critic pmi: mean_i [S_ii - logsumexp_j S_ij] + log B, in nats,
    averaged over ``n_batches`` independent batches; (value, stderr over batches). It is below
    both I(X; Y) and log B: the ceiling of any critic at this batch size."""
    if batch_size < 2 or n_batches < 2:
        raise ValueError(f"batch_size and n_batches must be >= 2, got {batch_size}, {n_batches}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_batches):
        s = task.pmi_matrix(*task.sample(batch_size, rng))
        values.append(np.mean(np.diag(s) - logsumexp(s, axis=1)) + math.log(batch_size))
    v = np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n_batches))


# ---------------------------------------------------------------------------------------------
# Joint laws


@dataclass(frozen=True, eq=False)
class GaussianPairs:
    """Standard X and Y in d dimensions; (x_i, y_i) correlated by rho_i, parametrised by the
    per-coordinate MI m_i >= 0 (1 - rho_i^2 = exp(-2 m_i), exact even at 10 nats)."""

    coord_mi: np.ndarray
    dx: int = field(init=False)
    dy: int = field(init=False)

    def __post_init__(self) -> None:
        m = np.atleast_1d(np.asarray(self.coord_mi, dtype=np.float64))
        if m.ndim != 1 or not (m >= 0).all():
            raise ValueError("coord_mi must be a vector of non-negative values (nats)")
        object.__setattr__(self, "coord_mi", m)
        object.__setattr__(self, "dx", m.size)
        object.__setattr__(self, "dy", m.size)

    @property
    def rho(self) -> np.ndarray:
        return np.sqrt(-np.expm1(-2.0 * self.coord_mi))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, self.dx))
        noise = rng.standard_normal((n, self.dx))
        return x, self.rho * x + np.exp(-self.coord_mi) * noise

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rho, one_minus = self.rho, np.exp(-2.0 * self.coord_mi)
        quad = (rho**2 * (x * x + y * y) - 2.0 * rho * x * y) / (2.0 * one_minus)
        return (self.coord_mi - quad).sum(axis=1)

    def exact_mi(self) -> float:
        return float(self.coord_mi.sum())


@dataclass(frozen=True)
class Map:
    """An invertible map applied row-wise: ``forward`` and ``inverse`` on (n, d) arrays."""

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]


def _warp_inverse(y: np.ndarray) -> np.ndarray:
    """Inverse of x + tanh(x) / 2: the fixed point of x = y - tanh(x) / 2 (contraction 1/2)."""
    x = y.copy()
    for _ in range(64):
        x = y - 0.5 * np.tanh(x)
    return x


def _orthogonal(d: int, seed: int) -> Map:
    r = ortho_group.rvs(d, random_state=seed) if d > 1 else np.array([[-1.0]])
    return Map("rotation", lambda x: x @ r.T, lambda y: y @ r)


def _permutation(d: int, seed: int) -> Map:
    perm = np.random.default_rng(seed).permutation(d)
    return Map("permutation", lambda x: x[:, perm], lambda y: y[:, np.argsort(perm)])


CUBE = Map("cube", lambda x: x**3, np.cbrt)
ASINH = Map("asinh", np.arcsinh, np.sinh)
WARP = Map("warp", lambda x: x + 0.5 * np.tanh(x), _warp_inverse)
NORMAL_CDF = Map("cdf", ndtr, ndtri)


@dataclass(frozen=True, eq=False)
class Transformed:
    """(f(X), g(Y)) for invertible f, g: MI and pmi are those of the latent pair (the
    Jacobians of f and g cancel in log p(x, y) - log p(x) - log p(y))."""

    base: _Joint
    fx: Map
    fy: Map

    @property
    def dx(self) -> int:
        return self.base.dx

    @property
    def dy(self) -> int:
        return self.base.dy

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.base.sample(n, rng)
        return self.fx.forward(x), self.fy.forward(y)

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.base.pmi(self.fx.inverse(x), self.fy.inverse(y))

    def exact_mi(self) -> float | None:
        return self.base.exact_mi()


@dataclass(frozen=True, eq=False)
class StudentTPairs:
    """(X, Y) jointly multivariate t (``nu`` degrees of freedom), each d-dimensional, scale
    [[I, rho I], [rho I, I]]. The marginals are t with the same nu, so
    I = H(X) + H(Y) - H(X, Y) in closed form: the Gaussian part -d/2 log(1 - rho^2) plus a term
    in lgamma/digamma of nu and d that stays > 0 at rho = 0 (the shared chi2 scale)."""

    d: int
    rho: float
    nu: float
    joint: StudentT = field(init=False, repr=False)
    marginal: StudentT = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not -1.0 < self.rho < 1.0:
            raise ValueError(f"rho must be in (-1, 1), got {self.rho}")
        eye = np.eye(self.d)
        scale = np.block([[eye, self.rho * eye], [self.rho * eye, eye]])
        object.__setattr__(self, "joint", StudentT(Gaussian(np.zeros(2 * self.d), scale), self.nu))
        object.__setattr__(self, "marginal", StudentT(Gaussian.standard(self.d), self.nu))

    @property
    def dx(self) -> int:
        return self.d

    @property
    def dy(self) -> int:
        return self.d

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        z = self.joint.sample(n, rng)
        return z[:, : self.d], z[:, self.d :]

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        joint = self.joint.log_prob(np.concatenate([x, y], axis=1))
        return joint - self.marginal.log_prob(x) - self.marginal.log_prob(y)

    def exact_mi(self) -> float:
        return 2.0 * self.marginal.entropy() - self.joint.entropy()


@dataclass(frozen=True, eq=False)
class UniformNoise:
    """X ~ U(0, 1)^d, Y = X + N with N ~ U(0, a)^d (a < 1), or Y = (X + N) mod 1 if ``wrap``.

    Per coordinate I = h(Y) - h(N): a/2 - log a (Y trapezoidal) or -log a (wrapped: Y uniform).
    pmi is -inf where y is off x's noise window: bounded support, a discontinuous critic.
    """

    d: int
    a: float
    wrap: bool

    def __post_init__(self) -> None:
        if not 0.0 < self.a < 1.0:
            raise ValueError(f"a must be in (0, 1), got {self.a}")

    @property
    def dx(self) -> int:
        return self.d

    @property
    def dy(self) -> int:
        return self.d

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(size=(n, self.d))
        y = x + self.a * rng.uniform(size=(n, self.d))
        return x, np.mod(y, 1.0) if self.wrap else y

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gap = np.mod(y - x, 1.0) if self.wrap else y - x
        inside = ((gap >= 0.0) & (gap <= self.a)).all(axis=1)
        log_cond = -self.d * math.log(self.a)
        if self.wrap:
            log_y = np.zeros(len(y))
        else:
            density = np.clip(np.minimum(np.minimum(y, self.a), 1.0 + self.a - y), 0.0, None)
            with np.errstate(divide="ignore"):
                log_y = np.log(density / self.a).sum(axis=1)
        return np.where(inside, log_cond - log_y, -np.inf)

    def exact_mi(self) -> float:
        per = -math.log(self.a) + (0.0 if self.wrap else 0.5 * self.a)
        return self.d * per


@dataclass(frozen=True, eq=False)
class Clusters:
    """A shared cluster label k (uniform on K): X ~ N(mu_k, s^2 I), Y ~ N(nu_k, s^2 I) with
    means on circles (Y's in another order). I <= log K; no closed form (Monte Carlo)."""

    k: int
    radius: float
    noise: float

    def _means(self, order: np.ndarray) -> np.ndarray:
        angles = 2.0 * math.pi * order / self.k
        return self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    @property
    def dx(self) -> int:
        return 2

    @property
    def dy(self) -> int:
        return 2

    @property
    def mean_x(self) -> np.ndarray:
        return self._means(np.arange(self.k))

    @property
    def mean_y(self) -> np.ndarray:
        return self._means(np.random.default_rng(self.k).permutation(self.k))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        label = rng.integers(self.k, size=n)
        x = self.mean_x[label] + self.noise * rng.standard_normal((n, 2))
        y = self.mean_y[label] + self.noise * rng.standard_normal((n, 2))
        return x, y

    def _log_kernels(self, x: np.ndarray, means: np.ndarray) -> np.ndarray:
        """log N(x; mu_k, s^2 I) up to a constant shared by all k: (n, K)."""
        return -np.square(x[:, None, :] - means[None]).sum(axis=2) / (2.0 * self.noise**2)

    def pmi(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        kx, ky = self._log_kernels(x, self.mean_x), self._log_kernels(y, self.mean_y)
        # p(x, y) = mean_k N_x N_y; p(x) = mean_k N_x; the Gaussian constants cancel
        return (
            logsumexp(kx + ky, axis=1)
            - logsumexp(kx, axis=1)
            - logsumexp(ky, axis=1)
            + math.log(self.k)
        )

    def exact_mi(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# The registry


def _dense(d: int, mi: float) -> GaussianPairs:
    return GaussianPairs(np.full(d, mi / d))


def _sparse(d: int, mi: float, active: int, seed: int = 0) -> GaussianPairs:
    m = np.zeros(d)
    m[np.random.default_rng(seed).choice(d, size=active, replace=False)] = mi / active
    return GaussianPairs(m)


def _build() -> dict[str, MITask]:
    tasks = []
    for d in (1, 5, 25):
        for mi in (0.1, 1.0, 5.0, 10.0):
            tasks.append(
                MITask(
                    f"gauss-dense-d{d}-mi{mi:g}",
                    "gaussian",
                    f"d = {d} coordinate pairs, each with {mi / d:.4g} nats (rho = "
                    f"{math.sqrt(-math.expm1(-2 * mi / d)):.6g})",
                    _dense(d, mi),
                )
            )
    for mi in (1.0, 10.0):
        tasks.append(
            MITask(
                f"gauss-sparse-d25-mi{mi:g}",
                "gaussian",
                f"25 + 25 coordinates, 5 correlated pairs at random positions with {mi / 5:g} "
                "nats each, Y's coordinates permuted: 20 distractors on each side",
                Transformed(_sparse(25, mi, 5), _permutation(25, 1), _permutation(25, 2)),
            )
        )
    base = _dense(5, 5.0)
    maps = [
        (CUBE, CUBE),
        (ASINH, ASINH),
        (_orthogonal(5, 1), _orthogonal(5, 2)),
        (WARP, WARP),
        (NORMAL_CDF, NORMAL_CDF),
        (CUBE, NORMAL_CDF),
    ]
    for fx, fy in maps:
        suffix = fx.name if fx.name == fy.name else f"{fx.name}-{fy.name}"
        tasks.append(
            MITask(
                f"gauss-d5-mi5-{suffix}",
                "transformed",
                f"gauss-dense-d5-mi5 with X -> {fx.name}(X), Y -> {fy.name}(Y): MI unchanged",
                Transformed(base, fx, fy),
            )
        )
    for nu, rho in ((1.0, 0.8), (3.0, 0.8), (5.0, 0.8), (3.0, 0.0)):
        tasks.append(
            MITask(
                f"student-t{nu:g}-d5-rho{rho:g}",
                "heavy-tail",
                f"(X, Y) jointly t_{nu:g} in 5 + 5 dimensions, per-pair scale correlation {rho:g}"
                + (": uncorrelated but dependent through the shared scale" if rho == 0 else ""),
                StudentTPairs(5, rho, nu),
            )
        )
    tasks += [
        MITask(
            "uniform-additive-d2-a0.1",
            "bounded",
            "X ~ U(0,1)^2, Y = X + U(0, 0.1)^2: I = 2 (a/2 - log a)",
            UniformNoise(2, 0.1, wrap=False),
        ),
        MITask(
            "uniform-wrap-d3-a0.2",
            "bounded",
            "X ~ U(0,1)^3, Y = (X + U(0, 0.2)^3) mod 1: Y is uniform, I = -3 log a; the "
            "dependence crosses the wrap-around",
            UniformNoise(3, 0.2, wrap=True),
        ),
        MITask(
            "clusters8-d2",
            "mixture",
            "a shared label among 8: X and Y near points on a radius-3 circle (noise 0.5), "
            "Y's points in a shuffled order; I < log 8 (Monte Carlo)",
            Clusters(8, 3.0, 0.5),
        ),
    ]
    return {task.name: task for task in tasks}


MI_TASKS: dict[str, MITask] = _build()


def get_mi_task(name: str) -> MITask:
    """The registered MI task ``name``; ValueError naming the closest one and listing all."""
    return lookup(MI_TASKS, name, "MI task")
