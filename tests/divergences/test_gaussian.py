"""Gaussian ground truths against independent numbers: quadrature, scipy Monte Carlo, identities."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from fdiv.divergences.gaussian import (
    Gaussian,
    alpha_divergence,
    bhattacharyya_coefficient,
    gan_monte_carlo,
    ground_truth,
    jeffreys,
    js_monte_carlo,
    kl,
    log_density_ratio,
    neyman_chi2,
    pearson_chi2,
    renyi,
    squared_hellinger,
    total_variation,
)

# Adaptive quadrature of these smooth, Gaussian-tailed integrands reaches ~1e-10 absolute / 1e-12
# relative error (we ask for epsrel=1e-12), so rel=1e-7 leaves a wide margin while still catching
# any formula slip (those show up at the 1e-2 level).
QUAD_REL = 1e-7
QUAD_ABS = 1e-10

# 1-D pairs (mean_p, sd_p, mean_q, sd_q) with unequal variances. Pair 0 keeps alpha S_q +
# (1 - alpha) S_p > 0 for alpha in [-2, 3]; pair 1 has S_p > S_q (finite only up to alpha ~ 2.45).
PAIRS_1D = [(0.3, 1.0, -0.4, 1.2), (0.5, 1.3, 0.0, 1.0)]


def _quad(fn) -> float:
    value, _ = integrate.quad(fn, -np.inf, np.inf, epsabs=1e-14, epsrel=1e-12, limit=400)
    return value


def _gaussian_1d(mean: float, sd: float) -> Gaussian:
    return Gaussian([mean], [[sd**2]])


def _logpdfs(pair):
    mp, sp, mq, sq = pair
    return (lambda x: stats.norm.logpdf(x, mp, sp)), (lambda x: stats.norm.logpdf(x, mq, sq))


def _chernoff_quad(pair, a: float) -> float:
    """Integral of p^a q^(1-a) by quadrature."""
    lp, lq = _logpdfs(pair)
    return _quad(lambda x: np.exp(a * lp(x) + (1 - a) * lq(x)))


def _pq(pair) -> tuple[Gaussian, Gaussian]:
    mp, sp, mq, sq = pair
    return _gaussian_1d(mp, sp), _gaussian_1d(mq, sq)


# ---------------------------------------------------------------- the Gaussian class itself


def test_log_prob_matches_scipy_and_samples_have_the_right_moments():
    cov = torch.tensor([[2.0, 0.3, -0.4], [0.3, 1.0, 0.2], [-0.4, 0.2, 0.5]])
    g = Gaussian(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float32), cov)
    assert g.mean.dtype == g.cov.dtype == torch.float64
    assert g.dim == 3
    x = g.sample(200_000, torch.Generator().manual_seed(1))
    assert x.shape == (200_000, 3) and x.dtype == torch.float64
    ref = stats.multivariate_normal(g.mean.numpy(), g.cov.numpy()).logpdf(x[:1000].numpy())
    np.testing.assert_allclose(g.log_prob(x[:1000]).numpy(), ref, rtol=1e-12)
    # sample moments: standard errors are ~ sqrt(var/n) ~ 3e-3, so 0.02 is > 5 standard errors
    np.testing.assert_allclose(x.mean(0).numpy(), g.mean.numpy(), atol=0.02)
    np.testing.assert_allclose(torch.cov(x.T).numpy(), g.cov.numpy(), atol=0.03)


def test_isotropic():
    g = Gaussian.isotropic([1.0, 2.0], var=3.0)
    assert torch.equal(g.cov, 3.0 * torch.eye(2, dtype=torch.float64))
    assert torch.equal(g.mean, torch.tensor([1.0, 2.0], dtype=torch.float64))


# ---------------------------------------------------------------- 1-D against quadrature


@pytest.mark.parametrize("pair", PAIRS_1D)
def test_kl_and_jeffreys_match_quadrature(pair):
    lp, lq = _logpdfs(pair)
    p, q = _pq(pair)
    kl_pq = _quad(lambda x: np.exp(lp(x)) * (lp(x) - lq(x)))
    kl_qp = _quad(lambda x: np.exp(lq(x)) * (lq(x) - lp(x)))
    assert kl(p, q) == pytest.approx(kl_pq, rel=QUAD_REL)
    assert kl(q, p) == pytest.approx(kl_qp, rel=QUAD_REL)
    jeff = _quad(lambda x: (np.exp(lp(x)) - np.exp(lq(x))) * (lp(x) - lq(x)))
    assert jeffreys(p, q) == pytest.approx(jeff, rel=QUAD_REL)


@pytest.mark.parametrize(
    ("pair", "alpha"),
    [(PAIRS_1D[0], a) for a in (-2.0, -1.0, -0.5, 0.3, 0.5, 0.9, 1.5, 2.0, 3.0)]
    + [(PAIRS_1D[1], a) for a in (-1.0, 0.5, 2.0, 2.4)],
)
def test_renyi_matches_quadrature(pair, alpha):
    p, q = _pq(pair)
    expected = math.log(_chernoff_quad(pair, alpha)) / (alpha - 1)
    assert renyi(p, q, alpha) == pytest.approx(expected, rel=QUAD_REL, abs=QUAD_ABS)


@pytest.mark.parametrize("pair", PAIRS_1D)
def test_bhattacharyya_and_hellinger_match_quadrature(pair):
    lp, lq = _logpdfs(pair)
    p, q = _pq(pair)
    bc = _quad(lambda x: np.exp(0.5 * (lp(x) + lq(x))))
    hellinger = _quad(lambda x: (np.exp(0.5 * lp(x)) - np.exp(0.5 * lq(x))) ** 2)
    assert bhattacharyya_coefficient(p, q) == pytest.approx(bc, rel=QUAD_REL)
    assert squared_hellinger(p, q) == pytest.approx(hellinger, rel=QUAD_REL, abs=QUAD_ABS)


@pytest.mark.parametrize("pair", PAIRS_1D)
def test_chi2_matches_quadrature(pair):
    lp, lq = _logpdfs(pair)
    p, q = _pq(pair)
    # (a - b)^2 / b written as (a / sqrt b - sqrt b)^2: no 0 * inf in the tails
    pearson = _quad(lambda x: (np.exp(lp(x) - 0.5 * lq(x)) - np.exp(0.5 * lq(x))) ** 2)
    neyman = _quad(lambda x: (np.exp(lq(x) - 0.5 * lp(x)) - np.exp(0.5 * lp(x))) ** 2)
    assert pearson_chi2(p, q) == pytest.approx(pearson, rel=QUAD_REL)
    assert neyman_chi2(p, q) == pytest.approx(neyman, rel=QUAD_REL)


@pytest.mark.parametrize("alpha", [-1.0, 0.5, 2.0, 3.0])
def test_alpha_divergence_matches_quadrature_of_its_generator(alpha):
    pair = PAIRS_1D[0]
    lp, lq = _logpdfs(pair)
    p, q = _pq(pair)

    def q_times_f_of_ratio(x):  # q f(p/q) with f(u) = (u^a - 1 - a(u - 1)) / (a(a - 1))
        pa_q1a = np.exp(alpha * lp(x) + (1 - alpha) * lq(x))
        return (pa_q1a - np.exp(lq(x)) - alpha * (np.exp(lp(x)) - np.exp(lq(x)))) / (
            alpha * (alpha - 1)
        )

    expected = _quad(q_times_f_of_ratio)
    assert alpha_divergence(p, q, alpha) == pytest.approx(expected, rel=QUAD_REL)


def test_total_variation_matches_quadrature():
    mp, mq, sd = 0.3, -0.6, 1.1
    p, q = _gaussian_1d(mp, sd), _gaussian_1d(mq, sd)
    mid = 0.5 * (mp + mq)  # the densities cross here: split the kink out of the integrand
    expected, _ = integrate.quad(
        lambda x: 0.5 * abs(stats.norm.pdf(x, mp, sd) - stats.norm.pdf(x, mq, sd)),
        -40.0,
        40.0,
        points=[mid],
        epsabs=1e-14,
        epsrel=1e-12,
        limit=400,
    )
    assert total_variation(p, q) == pytest.approx(expected, rel=QUAD_REL)
    assert total_variation(q, p) == pytest.approx(expected, rel=QUAD_REL)


# ---------------------------------------------------------------- d = 3 against scipy Monte Carlo

_L = np.array([[1.0, 0.0, 0.0], [0.3, 1.1, 0.0], [-0.2, 0.4, 0.9]])
# S_p = L diag(lam) L', S_q = L L': int p^a q^(1-a) is finite iff a + (1 - a) lam > 0 for every
# generalised eigenvalue lam. With lam in (0.8, 1) that holds for a in (-4, inf), so every Monte
# Carlo estimate below has finite variance (and finite 4th moment, so its stderr is reliable).
_COV_P = _L @ np.diag([0.85, 0.9, 0.95]) @ _L.T
_COV_Q = _L @ _L.T
_MEAN_P = np.array([0.2, -0.1, 0.3])
_MEAN_Q = np.array([-0.3, 0.2, 0.1])
_N_MC = 200_000


@pytest.fixture(scope="module")
def mv():
    """(p, q, log p - log q at draws from P, the same at draws from Q), all from scipy."""
    rng = np.random.default_rng(12345)
    sp_p = stats.multivariate_normal(_MEAN_P, _COV_P)
    sp_q = stats.multivariate_normal(_MEAN_Q, _COV_Q)
    x_p = sp_p.rvs(_N_MC, random_state=rng)
    x_q = sp_q.rvs(_N_MC, random_state=rng)
    r_p = sp_p.logpdf(x_p) - sp_q.logpdf(x_p)
    r_q = sp_p.logpdf(x_q) - sp_q.logpdf(x_q)
    p = Gaussian(torch.from_numpy(_MEAN_P), torch.from_numpy(_COV_P))
    q = Gaussian(torch.from_numpy(_MEAN_Q), torch.from_numpy(_COV_Q))
    return p, q, r_p, r_q


def _within_4_stderr(value: float, draws: np.ndarray) -> None:
    stderr = draws.std(ddof=1) / math.sqrt(draws.size)
    assert abs(value - draws.mean()) < 4 * stderr, (value, draws.mean(), stderr)


def test_mv_log_density_ratio_matches_scipy(mv):
    p, q, _, _ = mv
    x = torch.from_numpy(stats.multivariate_normal(_MEAN_P, _COV_P).rvs(100, random_state=7))
    ref = stats.multivariate_normal(_MEAN_P, _COV_P).logpdf(x.numpy())
    ref = ref - stats.multivariate_normal(_MEAN_Q, _COV_Q).logpdf(x.numpy())
    np.testing.assert_allclose(log_density_ratio(x, p, q).numpy(), ref, rtol=1e-10, atol=1e-12)


def test_mv_kl_against_monte_carlo(mv):
    p, q, r_p, r_q = mv
    _within_4_stderr(kl(p, q), r_p)
    _within_4_stderr(kl(q, p), -r_q)


def test_mv_density_ratio_moments_against_monte_carlo(mv):
    p, q, r_p, r_q = mv
    _within_4_stderr(bhattacharyya_coefficient(p, q), np.exp(-0.5 * r_p))  # E_P sqrt(q/p)
    _within_4_stderr(pearson_chi2(p, q), np.expm1(r_p))  # E_P[p/q] - 1
    _within_4_stderr(neyman_chi2(p, q), np.expm1(-r_q))  # E_Q[q/p] - 1
    _within_4_stderr(math.exp(2 * renyi(p, q, 3.0)), np.exp(2 * r_p))  # E_P (p/q)^2
    _within_4_stderr(math.exp(-1.5 * renyi(p, q, -0.5)), np.exp(-0.5 * r_q))  # E_Q (p/q)^-0.5


# ---------------------------------------------------------------- identities


@pytest.fixture(params=["1d", "3d"])
def pair(request, mv):
    if request.param == "1d":
        return _pq(PAIRS_1D[0])
    return mv[0], mv[1]


def test_alpha_divergence_special_cases(pair):
    p, q = pair
    assert alpha_divergence(p, q, 0.5) == pytest.approx(2 * squared_hellinger(p, q), rel=1e-12)
    assert squared_hellinger(p, q) == pytest.approx(
        2 * (1 - bhattacharyya_coefficient(p, q)), rel=1e-12
    )
    assert alpha_divergence(p, q, 2.0) == pytest.approx(pearson_chi2(p, q) / 2, rel=1e-12)
    assert alpha_divergence(p, q, -1.0) == pytest.approx(neyman_chi2(p, q) / 2, rel=1e-12)
    assert pearson_chi2(p, q) == pytest.approx(math.expm1(renyi(p, q, 2.0)), rel=1e-12)
    assert jeffreys(p, q) == pytest.approx(kl(p, q) + kl(q, p), rel=1e-14)


def test_renyi_tends_to_kl_and_is_nondecreasing(pair):
    p, q = pair
    assert renyi(p, q, 1.0) == kl(p, q)
    # D_a = KL + O(a - 1): with |a - 1| = 1e-6 the gap is ~1e-6 * KL'', far inside rel=1e-4
    assert renyi(p, q, 1 - 1e-6) == pytest.approx(kl(p, q), rel=1e-4)
    assert renyi(p, q, 1 + 1e-6) == pytest.approx(kl(p, q), rel=1e-4)
    values = [renyi(p, q, a) for a in (-0.5, 0.25, 0.5, 0.9, 1.0, 1.1, 1.5, 2.0)]
    assert values == sorted(values)
    assert values[0] <= 0 <= values[1]
    # the limits of the alpha divergence at a -> 1 and a -> 0 are KL(P||Q) and KL(Q||P)
    assert alpha_divergence(p, q, 1 + 1e-6) == pytest.approx(kl(p, q), rel=1e-4)
    assert alpha_divergence(p, q, 1e-6) == pytest.approx(kl(q, p), rel=1e-4)


def test_everything_vanishes_for_equal_distributions():
    p = Gaussian(torch.from_numpy(_MEAN_P), torch.from_numpy(_COV_P))
    q = Gaussian(_MEAN_P.tolist(), _COV_P.tolist())
    assert kl(p, q) == pytest.approx(0.0, abs=1e-12)
    assert jeffreys(p, q) == pytest.approx(0.0, abs=1e-12)
    for a in (-1.0, 0.5, 2.0, 3.0):
        assert renyi(p, q, a) == pytest.approx(0.0, abs=1e-12)
        assert alpha_divergence(p, q, a) == pytest.approx(0.0, abs=1e-12)
    assert bhattacharyya_coefficient(p, q) == pytest.approx(1.0, abs=1e-12)
    assert squared_hellinger(p, q) == pytest.approx(0.0, abs=1e-12)
    assert pearson_chi2(p, q) == pytest.approx(0.0, abs=1e-12)
    assert neyman_chi2(p, q) == pytest.approx(0.0, abs=1e-12)
    assert total_variation(p, q) == 0.0
    jsd, stderr = js_monte_carlo(p, q, n=1000)
    assert jsd == pytest.approx(0.0, abs=1e-12) and stderr == pytest.approx(0.0, abs=1e-12)
    gan, _ = gan_monte_carlo(p, q, n=1000)
    assert gan == pytest.approx(-math.log(4), abs=1e-12)


# ---------------------------------------------------------------- divergent integrals


def test_infinite_where_the_integral_diverges():
    wide, narrow = _gaussian_1d(0.0, 2.0), _gaussian_1d(0.5, 1.0)  # 2 S_q - S_p = -2 < 0
    assert pearson_chi2(wide, narrow) == math.inf
    assert renyi(wide, narrow, 2.0) == math.inf
    assert alpha_divergence(wide, narrow, 2.0) == math.inf
    assert neyman_chi2(narrow, wide) == math.inf
    assert alpha_divergence(narrow, wide, -1.0) == math.inf
    # negative orders: 1/(a - 1) < 0 times a divergent log-integral
    assert renyi(narrow, wide, -1.0) == -math.inf
    # finite on the other side
    assert math.isfinite(neyman_chi2(wide, narrow))
    # the boundary 2 S_q = S_p is already divergent (int p^2/q has a flat integrand there)
    assert pearson_chi2(_gaussian_1d(0.0, math.sqrt(2.0)), _gaussian_1d(0.0, 1.0)) == math.inf
    # d = 3 with one bad direction
    p = Gaussian(torch.zeros(3), torch.diag(torch.tensor([1.0, 1.0, 3.0])))
    q = Gaussian.isotropic([0.0, 0.0, 0.0])
    assert pearson_chi2(p, q) == math.inf
    assert renyi(p, q, 1.6) == math.inf  # a S_q + (1 - a) S_p = 3 - 2a < 0 along the last axis
    assert math.isfinite(renyi(p, q, 1.4))


# ---------------------------------------------------------------- Jensen-Shannon and GAN


def test_js_monte_carlo_matches_quadrature_and_its_stderr_is_right():
    pair = PAIRS_1D[1]
    lp, lq = _logpdfs(pair)
    p, q = _pq(pair)

    def log2_ratio_to_mixture(la, lb):  # log(2a / (a + b))
        return math.log(2) + la - np.logaddexp(la, lb)

    def moments(la, lb):
        first = _quad(lambda x: np.exp(la(x)) * log2_ratio_to_mixture(la(x), lb(x)))
        second = _quad(lambda x: np.exp(la(x)) * log2_ratio_to_mixture(la(x), lb(x)) ** 2)
        return first, second - first**2

    mean_p, var_p = moments(lp, lq)
    mean_q, var_q = moments(lq, lp)
    jsd = 0.5 * (mean_p + mean_q)
    n = 200_000
    stderr_exact = 0.5 * math.sqrt((var_p + var_q) / n)
    value, stderr = js_monte_carlo(p, q, n=n, seed=3)
    assert abs(value - jsd) < 4 * stderr_exact
    # the estimated standard error is a sample std over 4e5 draws: within a few % of the truth
    assert stderr == pytest.approx(stderr_exact, rel=0.05)


def test_jsd_range_and_gan_identity():
    close = (_gaussian_1d(0.0, 1.0), _gaussian_1d(0.3, 1.1))
    far = (Gaussian.isotropic([0.0, 0.0]), Gaussian.isotropic([40.0, 0.0], var=2.0))
    for p, q in (close, far):
        jsd, stderr = js_monte_carlo(p, q, n=20_000, seed=5)
        assert 0.0 <= jsd <= math.log(2)
        gan, gan_stderr = gan_monte_carlo(p, q, n=20_000, seed=5)
        assert gan == pytest.approx(2 * jsd - math.log(4), rel=1e-14, abs=1e-14)
        assert gan_stderr == pytest.approx(2 * stderr, rel=1e-14)
    assert js_monte_carlo(*far, n=1000)[0] == pytest.approx(math.log(2), abs=1e-12)


# ---------------------------------------------------------------- ground_truth


def test_ground_truth_dispatch(pair):
    p, q = pair
    closed = {
        "kl": kl(p, q),
        "reverse_kl": kl(q, p),
        "pearson": pearson_chi2(p, q),
        "neyman": neyman_chi2(p, q),
        "hellinger": squared_hellinger(p, q),
        "jeffreys": jeffreys(p, q),
    }
    for name, value in closed.items():
        assert ground_truth(name, p, q) == (value, 0.0)
    assert ground_truth("alpha", p, q, alpha=3.0) == (alpha_divergence(p, q, 3.0), 0.0)
    assert ground_truth("js", p, q, n=1000, seed=2) == js_monte_carlo(p, q, n=1000, seed=2)
    assert ground_truth("gan", p, q, n=1000, seed=2) == gan_monte_carlo(p, q, n=1000, seed=2)
    same_cov = _gaussian_1d(0.0, 1.0), _gaussian_1d(1.0, 1.0)
    assert ground_truth("tv", *same_cov) == (total_variation(*same_cov), 0.0)


# ---------------------------------------------------------------- bad input


def test_bad_covariances_are_refused():
    with pytest.raises(ValueError, match="not positive definite"):
        Gaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="not symmetric"):
        Gaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"cov must have shape \(2, 2\)"):
        Gaussian([0.0, 0.0], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="finite"):
        Gaussian([0.0, math.nan], [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="var must be positive"):
        Gaussian.isotropic([0.0], var=0.0)


def test_dimension_mismatch_is_refused():
    p, q = Gaussian.isotropic([0.0, 0.0]), Gaussian.isotropic([0.0, 0.0, 0.0])
    for fn in (kl, jeffreys, pearson_chi2, squared_hellinger, total_variation, js_monte_carlo):
        with pytest.raises(ValueError, match="same dimension, got p: 2 and q: 3"):
            fn(p, q)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        p.log_prob(torch.zeros(4, 3))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_divergence_refuses_0_and_1(alpha):
    p, q = _pq(PAIRS_1D[0])
    with pytest.raises(ValueError, match="alpha must be finite and not 0 or 1"):
        alpha_divergence(p, q, alpha)


def test_ground_truth_refuses_unknown_names_and_missing_alpha():
    p, q = _pq(PAIRS_1D[0])
    with pytest.raises(ValueError, match=r"'jsd'.*did you mean 'js'.*known: kl, reverse_kl"):
        ground_truth("jsd", p, q)
    with pytest.raises(ValueError, match=r"needs alpha="):
        ground_truth("alpha", p, q)


def test_total_variation_refuses_unequal_covariances():
    p, q = _pq(PAIRS_1D[0])
    with pytest.raises(ValueError, match="only for equal covariances"):
        total_variation(p, q)
    with pytest.raises(ValueError, match="only for equal covariances"):
        ground_truth("tv", p, q)
