"""The mutual-information tasks: pmi against scipy densities, MI closed forms against Monte
Carlo, invariance under the maps, normalisation of exp(pmi) over the product of marginals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from fdiv.bench import mi_tasks as M

N_MC = 100_000  # joint draws per Monte Carlo check


def _scipy_pmi(task: M.MITask, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log p(x, y) - log p(x) - log p(y) from scipy.stats for the Gaussian and t families."""
    joint = task.joint
    if isinstance(joint, M.GaussianPairs):
        rho = joint.rho
        d = joint.dx
        cov = np.block([[np.eye(d), np.diag(rho)], [np.diag(rho), np.eye(d)]])
        log_joint = stats.multivariate_normal(np.zeros(2 * d), cov).logpdf(np.hstack([x, y]))
        return log_joint - stats.norm.logpdf(x).sum(1) - stats.norm.logpdf(y).sum(1)
    assert isinstance(joint, M.StudentTPairs)
    d, nu = joint.d, joint.nu
    cov = np.block([[np.eye(d), joint.rho * np.eye(d)], [joint.rho * np.eye(d), np.eye(d)]])
    log_joint = stats.multivariate_t(np.zeros(2 * d), cov, df=nu).logpdf(np.hstack([x, y]))
    marginal = stats.multivariate_t(np.zeros(d), np.eye(d), df=nu)
    return log_joint - marginal.logpdf(x) - marginal.logpdf(y)


REFERENCED = [
    name
    for name, task in M.MI_TASKS.items()
    if isinstance(task.joint, M.GaussianPairs | M.StudentTPairs)
]


@pytest.mark.parametrize("name", REFERENCED)
def test_pmi_matches_scipy(name: str) -> None:
    task = M.get_mi_task(name)
    x, y = task.sample(300, np.random.default_rng(0))
    # scipy factors the joint covariance, whose condition number is ~2 / (1 - rho^2) (2e-9 at
    # 10 nats in one pair): its rounding error grows by that factor, ours (1 - rho^2 = e^-2m) not
    rho = task.joint.rho
    rtol = 1e-9 + 1e-15 / float(np.min(1.0 - np.square(rho)))
    np.testing.assert_allclose(task.pmi(x, y), _scipy_pmi(task, x, y), rtol=rtol, atol=1e-8)


EXACT = [name for name, task in M.MI_TASKS.items() if task.joint.exact_mi() is not None]


@pytest.mark.parametrize("name", EXACT)
def test_mean_pmi_equals_closed_form_mi(name: str) -> None:
    """Monte Carlo E[pmi] against the closed form (for the t pairs: the entropy formula with
    lgamma/digamma, checked here against the densities). The wrapped uniform's pmi is constant."""
    task = M.get_mi_task(name)
    exact, zero = task.mi()
    value, stderr = task.mi(n=N_MC, seed=1, method="mc")
    assert zero == 0.0
    assert abs(value - exact) < 4 * stderr + 1e-9 * exact


def test_student_t_mi_closed_form_is_positive_when_uncorrelated() -> None:
    """At rho = 0 the Gaussian part vanishes; the shared chi2 scale leaves I > 0 (t_3, d = 5:
    0.2985 nats), confirmed by 400k draws."""
    task = M.get_mi_task("student-t3-d5-rho0")
    exact = task.mi()[0]
    value, stderr = task.mi(n=4 * N_MC, seed=2, method="mc")
    assert exact == pytest.approx(0.29854, abs=1e-5)
    assert abs(value - exact) < 4 * stderr


TRANSFORMED = [
    name
    for name, task in M.MI_TASKS.items()
    if isinstance(task.joint, M.Transformed) and isinstance(task.joint.base, M.GaussianPairs)
]


@pytest.mark.parametrize("name", TRANSFORMED)
def test_maps_leave_pmi_and_mi_unchanged(name: str) -> None:
    task = M.get_mi_task(name)
    base = task.joint.base
    xt, yt = task.sample(N_MC, np.random.default_rng(3))
    x, y = base.sample(N_MC, np.random.default_rng(3))  # the same latent draws
    assert not np.allclose(xt, x) and not np.allclose(yt, y)  # the maps do something
    np.testing.assert_allclose(task.joint.fx.inverse(xt), x, rtol=1e-7, atol=1e-9)
    pmi = task.pmi(xt, yt)
    np.testing.assert_allclose(pmi, base.pmi(x, y), rtol=1e-6, atol=1e-6)
    assert abs(pmi.mean() - base.exact_mi()) < 4 * pmi.std(ddof=1) / math.sqrt(N_MC)


# E over P_X x P_Y of exp(pmi) = 1: the joint density is normalised against the marginals.
# The variance is chi2(P_XY || P_X P_Y), below 2 on these low-MI tasks.
@pytest.mark.parametrize(
    "name",
    ["gauss-dense-d1-mi0.1", "gauss-dense-d5-mi0.1", "gauss-d5-mi5-cube", "student-t3-d5-rho0"],
)
def test_exp_pmi_averages_to_one_over_the_product(name: str) -> None:
    task = M.get_mi_task(name)
    if name == "gauss-d5-mi5-cube":  # 5 nats is too much for this check: use the same maps at 0.1
        task = M.MITask(
            "low", "test", "", M.Transformed(M.GaussianPairs(np.full(5, 0.02)), M.CUBE, M.CUBE)
        )
    rng = np.random.default_rng(4)
    x, _ = task.sample(N_MC, rng)
    _, y = task.sample(N_MC, rng)  # independent: a draw of the product of marginals
    w = np.exp(task.pmi(x, y))
    assert abs(w.mean() - 1.0) < 4 * w.std(ddof=1) / math.sqrt(N_MC)


def _trapezoid(v: float, a: float) -> float:
    """Density of U(0, 1) + U(0, a) at v (a < 1)."""
    return max(0.0, min(v, a, 1.0 + a - v)) / a


def test_uniform_additive_densities() -> None:
    """p_Y integrates to 1, and p(y | x) = exp(pmi) p(y) integrates to 1 over y for a fixed x
    (its window, 0.1 wide per coordinate); off the window pmi is -inf."""
    task = M.get_mi_task("uniform-additive-d2-a0.1")
    x = np.array([[0.03, 0.5]])

    def conditional(y1: float, y0: float) -> float:
        pmi = task.pmi(x, np.array([[y0, y1]]))[0]
        return math.exp(pmi) * _trapezoid(y0, 0.1) * _trapezoid(y1, 0.1)

    total, _ = integrate.dblquad(conditional, 0.03, 0.13, 0.5, 0.6, epsabs=1e-11, epsrel=1e-11)
    assert abs(total - 1.0) < 1e-8
    p_y, _ = integrate.quad(_trapezoid, 0.0, 1.1, args=(0.1,), points=[0.1, 1.0])
    assert p_y == pytest.approx(1.0, abs=1e-12)
    assert task.pmi(x, np.array([[0.02, 0.55]]))[0] == -math.inf  # below x's window


def test_clusters_mi_is_below_log_k() -> None:
    task = M.get_mi_task("clusters8-d2")
    value, stderr = task.mi(n=N_MC, seed=5)
    assert 0.0 < stderr < 0.01
    assert 1.5 < value < math.log(8) - 4 * stderr  # overlapping clusters lose part of log 8


def test_optimal_infonce_is_capped_by_log_b_and_mi() -> None:
    low = M.get_mi_task("gauss-dense-d5-mi1")
    value, stderr = M.optimal_infonce(low, batch_size=256, n_batches=20)
    # InfoNCE with the true pmi sits below I = 1 by ~ (e^I - 1) / B ~ 0.007 at B = 256
    assert 1.0 - 0.05 < value < 1.0 + 4 * stderr
    high = M.get_mi_task("gauss-dense-d5-mi10")
    value, stderr = M.optimal_infonce(high, batch_size=64, n_batches=20)
    assert math.log(64) - 0.1 < value <= math.log(64)  # capped at log B, far below 10 nats


def test_pmi_matrix_diagonal_is_pmi() -> None:
    task = M.get_mi_task("student-t5-d5-rho0.8")
    x, y = task.sample(7, np.random.default_rng(6))
    s = task.pmi_matrix(x, y)
    assert s.shape == (7, 7)
    np.testing.assert_allclose(np.diag(s), task.pmi(x, y), rtol=1e-12)
    np.testing.assert_allclose(s[2, 5], task.pmi(x[2:3], y[5:6])[0], rtol=1e-12)


def test_registry_and_errors() -> None:
    families = {task.family for task in M.MI_TASKS.values()}
    assert families == {"gaussian", "transformed", "heavy-tail", "bounded", "mixture"}
    with pytest.raises(ValueError, match="did you mean 'clusters8-d2'"):
        M.get_mi_task("cluster8-d2")
    task = M.get_mi_task("gauss-dense-d5-mi1")
    with pytest.raises(ValueError, match="as many rows"):
        task.pmi(np.zeros((3, 5)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        task.pmi(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="method"):
        task.mi(method="closed")
    with pytest.raises(ValueError, match="non-negative"):
        task.sample(-2, np.random.default_rng(0))
