"""Divergences between Gaussians in closed form (or exact-ratio Monte Carlo): the ground truth.

P = N(m0, S0), Q = N(m1, S1). Everything is float64. Log-based divergences (KL, Renyi, Jeffreys,
Jensen-Shannon, the GAN value) are in nats; chi2, Hellinger, alpha and TV are pure numbers.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from fdiv.divergences.registry import FDivergence

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_MATCH_RTOL = 1e-10  # relative tolerance for "cov is symmetric" and "covariances are equal"


@dataclass(frozen=True, eq=False)
class Gaussian:
    """N(mean, cov): mean (d,), cov (d, d) symmetric positive definite, both stored as float64.

    Lists or tensors of any float dtype are accepted and copied. ``scale_tril`` is the lower
    Cholesky factor of ``cov``. Equality is identity (tensors have no single truth value).
    """

    mean: torch.Tensor
    cov: torch.Tensor
    scale_tril: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mean = torch.as_tensor(self.mean, dtype=torch.float64).detach().clone()
        cov = torch.as_tensor(self.cov, dtype=torch.float64, device=mean.device).detach().clone()
        if mean.ndim != 1 or mean.numel() == 0:
            raise ValueError(f"mean must be a non-empty vector (d,), got shape {tuple(mean.shape)}")
        d = mean.numel()
        if cov.shape != (d, d):
            raise ValueError(
                f"cov must have shape ({d}, {d}) to match mean, got {tuple(cov.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
            raise ValueError("mean and cov must be finite")
        asymmetry = float((cov - cov.mT).abs().max())
        if asymmetry > _MATCH_RTOL * float(cov.abs().max()):
            raise ValueError(f"cov is not symmetric (max |cov - cov.T| = {asymmetry:.3g})")
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError("cov is not positive definite (its Cholesky factorisation failed)")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "scale_tril", chol)

    @classmethod
    def isotropic(cls, mean: Sequence[float] | torch.Tensor, var: float = 1.0) -> Gaussian:
        """N(mean, var * I)."""
        if not var > 0:
            raise ValueError(f"var must be positive, got {var}")
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        eye = torch.eye(mean_t.numel(), dtype=torch.float64, device=mean_t.device)
        return cls(mean_t, var * eye)

    @property
    def dim(self) -> int:
        """The dimension d."""
        return int(self.mean.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws, shape (n, d), float64."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        z = torch.randn(
            n, self.dim, generator=generator, dtype=torch.float64, device=self.mean.device
        )
        return self.mean + z @ self.scale_tril.mT

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (nats) at the rows of x (n, d); returns (n,) float64."""
        x = torch.as_tensor(x, dtype=torch.float64, device=self.mean.device)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        z = torch.linalg.solve_triangular(self.scale_tril, (x - self.mean).mT, upper=False)
        return -0.5 * (self.dim * _LOG_2PI + _log_det(self) + z.square().sum(0))


def _log_det(g: Gaussian) -> float:
    return 2.0 * float(g.scale_tril.diagonal().log().sum())


def _mahalanobis_sq(scale_tril: torch.Tensor, v: torch.Tensor) -> float:
    """v' S^-1 v for S = scale_tril scale_tril'."""
    z = torch.linalg.solve_triangular(scale_tril, v.unsqueeze(-1), upper=False)
    return float(z.square().sum())


def _check_pair(p: Gaussian, q: Gaussian) -> None:
    if p.dim != q.dim:
        raise ValueError(f"p and q must have the same dimension, got p: {p.dim} and q: {q.dim}")


def _expm1(x: float) -> float:
    try:
        return math.expm1(x)
    except OverflowError:
        return math.inf


def _log_chernoff(p: Gaussian, q: Gaussian, alpha: float) -> float:
    """log of the integral of p^alpha q^(1-alpha); math.inf where it diverges."""
    _check_pair(p, q)
    s_alpha = alpha * q.cov + (1.0 - alpha) * p.cov
    chol, info = torch.linalg.cholesky_ex(s_alpha)
    if int(info) != 0:
        return math.inf
    log_det_alpha = 2.0 * float(chol.diagonal().log().sum())
    quad = _mahalanobis_sq(chol, q.mean - p.mean)
    log_dets = log_det_alpha - (1.0 - alpha) * _log_det(p) - alpha * _log_det(q)
    return -0.5 * alpha * (1.0 - alpha) * quad - 0.5 * log_dets


def log_density_ratio(x: torch.Tensor, p: Gaussian, q: Gaussian) -> torch.Tensor:
    """log p(x) - log q(x) in nats at the rows of x (n, d); returns (n,)."""
    _check_pair(p, q)
    return p.log_prob(x) - q.log_prob(x)


def kl(p: Gaussian, q: Gaussian) -> float:
    """KL(P||Q) in nats."""
    _check_pair(p, q)
    trace = float(
        torch.linalg.solve_triangular(q.scale_tril, p.scale_tril, upper=False).square().sum()
    )
    quad = _mahalanobis_sq(q.scale_tril, q.mean - p.mean)
    return 0.5 * (trace + quad - p.dim + _log_det(q) - _log_det(p))


def renyi(p: Gaussian, q: Gaussian, alpha: float) -> float:
    """Renyi divergence D_alpha(P||Q) = log(int p^alpha q^(1-alpha)) / (alpha - 1), in nats.

    alpha = 1 gives KL(P||Q). Where the integral diverges (alpha S1 + (1-alpha) S0 not positive
    definite) the value is math.inf for alpha > 1 and -math.inf for alpha < 0.
    """
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if alpha == 1:
        return kl(p, q)
    log_integral = _log_chernoff(p, q, alpha)
    if math.isinf(log_integral):
        return math.inf if alpha > 1 else -math.inf
    return log_integral / (alpha - 1.0)


def bhattacharyya_coefficient(p: Gaussian, q: Gaussian) -> float:
    """Integral of sqrt(p q), in [0, 1] (a pure number)."""
    return math.exp(_log_chernoff(p, q, 0.5))


def squared_hellinger(p: Gaussian, q: Gaussian) -> float:
    """Integral of (sqrt p - sqrt q)^2 = 2 (1 - BC), in [0, 2] (the f-GAN convention)."""
    return -2.0 * math.expm1(_log_chernoff(p, q, 0.5))


def pearson_chi2(p: Gaussian, q: Gaussian) -> float:
    """Pearson chi2(P||Q) = int p^2/q - 1 = exp(D_2) - 1; math.inf unless 2 S1 - S0 is PD."""
    return _expm1(_log_chernoff(p, q, 2.0))


def neyman_chi2(p: Gaussian, q: Gaussian) -> float:
    """Neyman chi2(P||Q) = int q^2/p - 1 = pearson_chi2(Q, P); math.inf unless 2 S0 - S1 is PD."""
    return pearson_chi2(q, p)


def alpha_divergence(p: Gaussian, q: Gaussian, alpha: float) -> float:
    """Alpha divergence (int p^alpha q^(1-alpha) - 1) / (alpha (alpha - 1)), a pure number.

    Its generator is f(u) = (u^alpha - 1 - alpha (u - 1)) / (alpha (alpha - 1)); alpha = 2 gives
    Pearson/2, alpha = -1 Neyman/2, alpha = 1/2 gives 2 * squared_hellinger. math.inf where the
    integral diverges; alpha in {0, 1} (the KL limits) is refused.
    """
    if alpha in (0, 1) or not math.isfinite(alpha):
        raise ValueError(
            f"alpha must be finite and not 0 or 1 (use kl for those limits), got {alpha}"
        )
    return _expm1(_log_chernoff(p, q, alpha)) / (alpha * (alpha - 1.0))


def jeffreys(p: Gaussian, q: Gaussian) -> float:
    """KL(P||Q) + KL(Q||P) in nats."""
    return kl(p, q) + kl(q, p)


def total_variation(p: Gaussian, q: Gaussian) -> float:
    """sup_A |P(A) - Q(A)| = 2 Phi(delta/2) - 1 for equal covariances (delta: Mahalanobis distance).

    A pure number in [0, 1]. Unequal covariances have no closed form and raise ValueError.
    """
    _check_pair(p, q)
    gap = float((p.cov - q.cov).abs().max())
    if gap > _MATCH_RTOL * max(float(p.cov.abs().max()), float(q.cov.abs().max())):
        raise ValueError(
            "total_variation has a closed form only for equal covariances; "
            f"p.cov and q.cov differ (max abs difference {gap:.3g})"
        )
    delta = math.sqrt(_mahalanobis_sq(p.scale_tril, q.mean - p.mean))
    return math.erf(delta / (2.0 * math.sqrt(2.0)))


def js_monte_carlo(
    p: Gaussian, q: Gaussian, n: int = 1_000_000, seed: int = 0
) -> tuple[float, float]:
    """Jensen-Shannon divergence in nats (in [0, log 2]) and its Monte Carlo standard error.

    Uses n draws from each of P and Q and the exact log density ratio r = log p/q:
    JSD = 1/2 E_P[log 2 - softplus(-r)] + 1/2 E_Q[log 2 - softplus(r)].
    """
    _check_pair(p, q)
    if n < 2:
        raise ValueError(f"n must be at least 2 for a standard error, got {n}")
    generator = torch.Generator(device=p.mean.device).manual_seed(seed)
    x_p = p.sample(n, generator)
    x_q = q.sample(n, generator)
    zero = torch.zeros((), dtype=torch.float64, device=p.mean.device)
    on_p = _LOG_2 - torch.logaddexp(zero, -log_density_ratio(x_p, p, q))
    on_q = _LOG_2 - torch.logaddexp(zero, log_density_ratio(x_q, p, q))
    value = 0.5 * (float(on_p.mean()) + float(on_q.mean()))
    stderr = 0.5 * math.sqrt((float(on_p.var()) + float(on_q.var())) / n)
    return value, stderr


def gan_monte_carlo(
    p: Gaussian, q: Gaussian, n: int = 1_000_000, seed: int = 0
) -> tuple[float, float]:
    """Optimal original-GAN value max_D V = 2 JSD - log 4 in nats, and its standard error."""
    jsd, stderr = js_monte_carlo(p, q, n=n, seed=seed)
    return 2.0 * jsd - 2.0 * _LOG_2, 2.0 * stderr


def _reverse_kl(p: Gaussian, q: Gaussian) -> float:
    return kl(q, p)


_CLOSED_FORMS: dict[str, Callable[[Gaussian, Gaussian], float]] = {
    "kl": kl,
    "reverse_kl": _reverse_kl,
    "pearson": pearson_chi2,
    "neyman": neyman_chi2,
    "hellinger": squared_hellinger,
    "tv": total_variation,
    "jeffreys": jeffreys,
}
_MONTE_CARLO: dict[str, Callable[..., tuple[float, float]]] = {
    "js": js_monte_carlo,
    "gan": gan_monte_carlo,
}
KNOWN_GROUND_TRUTHS: tuple[str, ...] = (*_CLOSED_FORMS, *_MONTE_CARLO, "alpha")


def ground_truth(
    name: str,
    p: Gaussian,
    q: Gaussian,
    *,
    alpha: float | None = None,
    n: int = 1_000_000,
    seed: int = 0,
) -> tuple[float, float]:
    """(value, stderr) of divergence ``name`` between P and Q, in the units of that divergence.

    stderr is 0.0 for closed forms; "js" and "gan" use n Monte Carlo draws from each of P and Q.
    "alpha" needs alpha=...; alpha is ignored by the other names.
    """
    if name == "alpha":
        if alpha is None:
            raise ValueError("ground_truth('alpha', ...) needs alpha=...")
        return alpha_divergence(p, q, alpha), 0.0
    if name in _CLOSED_FORMS:
        return _CLOSED_FORMS[name](p, q), 0.0
    if name in _MONTE_CARLO:
        return _MONTE_CARLO[name](p, q, n=n, seed=seed)
    close = difflib.get_close_matches(name, KNOWN_GROUND_TRUTHS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(
        f"divergence {name!r} has no Gaussian ground truth; {hint}"
        f"known: {', '.join(KNOWN_GROUND_TRUTHS)}"
    )


def optimal_bound(
    div: FDivergence, p: Gaussian, q: Gaussian, n: int = 1_000_000, seed: int = 0
) -> tuple[float, float]:
    """The f-dual bound at the optimal critic v*(log p/q) on n draws of each, and its stderr.

    E_P[g(v*)] - E_Q[f*(g(v*))] equals D_f(P||Q) in expectation: a check of the registry's
    closed forms against the ground truths above. Units are those of the divergence.
    """
    _check_pair(p, q)
    generator = torch.Generator(device=p.mean.device).manual_seed(seed)
    x_p, x_q = p.sample(n, generator), q.sample(n, generator)
    on_p = div.activation(div.optimal_critic(log_density_ratio(x_p, p, q)))
    on_q = div.conjugate_activation(div.optimal_critic(log_density_ratio(x_q, p, q)))
    value = float(on_p.mean()) - float(on_q.mean())
    stderr = math.sqrt((float(on_p.var()) + float(on_q.var())) / n)
    return value, stderr
