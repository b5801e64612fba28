"""The registry's formulas against independent numbers: Fenchel conjugates by numerical sup,
f' by finite differences, Lambert W by scipy, names and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import torch

from fdiv.divergences import registry
from fdiv.divergences.registry import alpha, get, names

ALPHAS = (-1.0, 0.5, 2.0, 3.0)
ALL = [*registry.registered(), *(alpha(a) for a in ALPHAS)]
IDS = [d.name for d in ALL]


def _t(x: float | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_conjugate_is_the_numerical_fenchel_sup(div: registry.FDivergence) -> None:
    # f*(t) = sup_{u > 0} t u - f(u), maximised in log u with a bounded scalar search;
    # t ranges over g(v) for moderate v, where the sup is attained at u = e^{r}, |r| <= 2.
    for v in (-1.5, -0.3, 0.0, 0.7, 1.5):
        t = float(div.activation(_t(v)))

        def neg(log_u: float, t: float = t) -> float:
            u = _t(math.exp(log_u))
            return -(t * float(u) - float(div.f(u)))

        res = scipy.optimize.minimize_scalar(
            neg, bounds=(-12.0, 12.0), method="bounded", options={"xatol": 1e-12}
        )
        expected = -res.fun
        assert float(div.conjugate(_t(t))) == pytest.approx(expected, rel=1e-8, abs=1e-9)
        # the fused closed form equals the composition
        assert float(div.conjugate_activation(_t(v))) == pytest.approx(
            float(div.conjugate(_t(t))), rel=1e-12, abs=1e-12
        )


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_derivatives_match_central_differences(div: registry.FDivergence) -> None:
    v = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    h = 1e-6  # central differences: error O(h^2 f''') ~ 1e-12, rounding ~ 1e-16/h = 1e-10
    for fn, grad in (
        (div.activation, div.activation_grad),
        (div.conjugate_activation, div.conjugate_activation_grad),
    ):
        numeric = (fn(v + h) - fn(v - h)) / (2 * h)
        torch.testing.assert_close(grad(v), numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("div", [d for d in ALL if d.name != "tv"], ids=lambda d: d.name)
def test_optimal_critic_solves_g_of_v_equals_f_prime(div: registry.FDivergence) -> None:
    # The sup over T is attained at T = f'(p/q) = f'(e^r); check g(v*(r)) against f' by
    # central differences of f.
    r = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    u, h = torch.exp(r), 1e-6
    f_prime = (div.f(u + h) - div.f(u - h)) / (2 * h)
    torch.testing.assert_close(div.activation(div.optimal_critic(r)), f_prime, rtol=1e-7, atol=1e-8)


def test_tv_optimal_critic_saturates_the_activation() -> None:
    tv = get("tv")
    r = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        tv.activation(tv.optimal_critic(r)), torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)
    )


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_generator_at_one_is_the_lower_end_and_is_convex(div: registry.FDivergence) -> None:
    # D_f(P||P) = f(1): 0 for every divergence but gan, whose value V is -log 4 at P = Q.
    u = torch.linspace(0.05, 6.0, 200, dtype=torch.float64)
    at_one = float(div.f(torch.tensor(1.0, dtype=torch.float64)))
    assert at_one == pytest.approx(div.value_range[0], abs=1e-15)
    second = div.f(u[2:]) - 2 * div.f(u[1:-1]) + div.f(u[:-2])
    assert bool((second >= -1e-12).all())


def test_log_lambertw_exp_matches_scipy() -> None:
    z = np.array([-700.0, -30.0, -2.0, -0.5, 0.0, 0.3, 1.0, 2.5, 10.0, 200.0, 700.0])
    expected = np.log(scipy.special.lambertw(np.exp(z)).real)
    got = registry.log_lambertw_exp(_t(z)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


def test_log_lambertw_exp_extreme_arguments_stay_finite() -> None:
    z = torch.tensor([-1e4, -1e3, 1e3, 1e4])
    y = registry.log_lambertw_exp(z)
    assert bool(torch.isfinite(y).all())
    # y + e^y = z to fp32 precision
    torch.testing.assert_close(y + torch.exp(y), z, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("jsd", "js"),
        ("Jensen-Shannon", "js"),
        ("chi2", "pearson"),
        ("pearson_chi2", "pearson"),
        ("squared_hellinger", "hellinger"),
        ("total_variation", "tv"),
        ("rkl", "reverse_kl"),
        ("forward_kl", "kl"),
        ("KL", "kl"),
        ("symmetric-kl", "jeffreys"),
        ("alpha(2)", "alpha(2)"),
        ("alpha(-1)", "alpha(-1)"),
        ("alpha(0.5)", "alpha(0.5)"),
    ],
)
def test_aliases_resolve(alias: str, name: str) -> None:
    assert get(alias).name == name


def test_names_lists_every_family() -> None:
    assert names() == [
        "kl",
        "reverse_kl",
        "pearson",
        "neyman",
        "hellinger",
        "js",
        "gan",
        "tv",
        "jeffreys",
        "alpha(a)",
    ]


def test_records_are_immutable() -> None:
    with pytest.raises(AttributeError):
        get("kl").name = "other"  # type: ignore[misc]


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"'jensen' is unknown; did you mean 'jensen_shannon'\?"):
        get("jensen")
    with pytest.raises(ValueError, match="known: kl, reverse_kl, pearson"):
        get("zzzz")


@pytest.mark.parametrize("a", [0, 1, 0.0, 1.0, math.inf, math.nan])
def test_alpha_excludes_zero_one_and_non_finite(a: float) -> None:
    with pytest.raises(ValueError, match="other than 0 and 1"):
        alpha(a)


def test_alpha_rejects_non_numbers_and_missing_parameter() -> None:
    with pytest.raises(TypeError, match="alpha must be a real number"):
        alpha("2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs its parameter"):
        get("alpha")
    with pytest.raises(ValueError, match="other than 0 and 1"):
        get("alpha(1)")
    with pytest.raises(TypeError, match="must be a name"):
        get(3)  # type: ignore[arg-type]


def test_alpha_family_special_cases_match_named_divergences() -> None:
    u = torch.linspace(0.1, 5.0, 50, dtype=torch.float64)
    torch.testing.assert_close(alpha(2).f(u), get("pearson").f(u) / 2)
    torch.testing.assert_close(alpha(-1).f(u), get("neyman").f(u) / 2)
    torch.testing.assert_close(alpha(0.5).f(u), 2 * get("hellinger").f(u))


@pytest.mark.parametrize("div", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_terms_equal_the_elementwise_forms(div: registry.FDivergence, dtype) -> None:
    # The reference's fast path (sum, derivative in one pass) against the separate closed forms;
    # fp32 sums of 101 order-1 terms agree to ~1e-6 relative.
    v = torch.linspace(-6.0, 6.0, 101, dtype=dtype)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-6, "atol": 1e-5}
    for terms, value, grad in (
        (div.activation_terms, div.activation, div.activation_grad),
        (div.conjugate_activation_terms, div.conjugate_activation, div.conjugate_activation_grad),
    ):
        before = v.clone()
        total, slope = terms(v)
        assert torch.equal(v, before), "terms must not modify their input"
        torch.testing.assert_close(total, value(v).sum(), **tol)
        torch.testing.assert_close(torch.as_tensor(slope, dtype=dtype).expand(101), grad(v), **tol)


def _jeffreys_conjugate_exact(v: float) -> float:
    """W + 1/W + v - 2 with W = W(e^(1-v)) in 60-digit arithmetic (mpmath, independent)."""
    import mpmath

    with mpmath.workdps(60):
        w = mpmath.lambertw(mpmath.exp(1 - mpmath.mpf(v))).real
        return float(w + 1 / w + v - 2)


@pytest.mark.parametrize(
    ("dtype", "rtol"),
    # fp64: a few ulp. fp32: y = log W is found to ~eps absolute (|y| <= 47 here), the result
    # e^-y - 1 - y then carries ~2 ulp of |y|: 3e-7 relative.
    [(torch.float64, 1e-14), (torch.float32, 3e-7)],
    ids=["fp64", "fp32"],
)
def test_jeffreys_conjugate_is_accurate_for_very_negative_v(
    dtype: torch.dtype, rtol: float
) -> None:
    """Item 9: the old form W + 1/W + v - 2 cancelled (wrong sign at v = -1e8 in fp32)."""
    div = get("jeffreys")
    vs = [-1e20, -1e8, -1e6, -1e3, -1.0, 0.5, 5.0]
    v = torch.tensor(vs, dtype=dtype)
    exact = torch.tensor([_jeffreys_conjugate_exact(float(x)) for x in v], dtype=torch.float64)
    torch.testing.assert_close(div.conjugate_activation(v).double(), exact, rtol=rtol, atol=0)
    for i in range(len(vs)):  # the fused terms, one element at a time
        total, _ = div.conjugate_activation_terms(v[i : i + 1])
        torch.testing.assert_close(total.double(), exact[i], rtol=rtol, atol=0)


@pytest.mark.parametrize(("a", "limit"), [(5e-13, "reverse_kl"), (-1e-40, "reverse_kl"),
                                          (1 - 5e-13, "kl"), (1e-300, "reverse_kl")])  # fmt: skip
def test_alpha_within_the_gap_of_zero_or_one_is_refused(a: float, limit: str) -> None:
    """Item 9: |a| ~ 1e-38 gave NaN from finite input in fp32; such an a is its limit."""
    with pytest.raises(ValueError, match=f"use '{limit}'"):
        alpha(a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "a", [registry.ALPHA_GAP * 1.5, -registry.ALPHA_GAP * 1.5, 1e-9, 1 + 2e-12]
)
def test_alpha_near_zero_and_one_gives_the_right_finite_numbers(
    a: float, dtype: torch.dtype
) -> None:
    """Just outside the gap: never NaN from finite input (fp32/fp16/bf16, |v| up to 1e30 where
    the dtype holds it), and for moderate v the loss is the fp64 closed form. The forms are
    (e^(c v) - 1) / c (c = a, a - 1): summed as e^(c v) and -1/c apart they lost every digit."""
    from fdiv.kernels import reference

    div = alpha(a)
    big = 6e4 if dtype == torch.float16 else 1e30
    v = torch.tensor([-big, -1e3, -3.0, -0.5, 0.0, 0.25, 2.0, 1e3, big], dtype=dtype)
    loss, term_p, term_q = reference.critic_loss(v, v, div)
    assert not torch.isnan(torch.stack([loss, term_p, term_q])).any()
    moderate = torch.linspace(-2.0, 3.0, 11, dtype=dtype)  # mean 0.5: not 0 by symmetry
    x = moderate.double()
    exact_p = (torch.expm1((a - 1.0) * x) / (a - 1.0)).mean()
    exact_q = (torch.expm1(a * x) / a).mean()
    _, term_p, term_q = reference.critic_loss(moderate, moderate, div)
    # fp32 arithmetic on terms of size <= e^3: a few ulp of 20 (the inputs are exact in x)
    torch.testing.assert_close(term_p.double(), exact_p, rtol=0, atol=1e-5)
    torch.testing.assert_close(term_q.double(), exact_q, rtol=0, atol=1e-5)


def test_alpha_names_show_the_exact_parameter() -> None:
    """Item 10: alpha(1 + 1e-12) was shown as alpha(1); names read back to the same record."""
    near_one = alpha(1 + 1e-12)
    assert near_one.name == "alpha(1.000000000001)"
    assert get(near_one.name).alpha == 1 + 1e-12
    assert [alpha(a).name for a in (2, 0.5, -1.0, np.float32(3))] == [
        "alpha(2)", "alpha(0.5)", "alpha(-1)", "alpha(3)"
    ]  # fmt: skip
    with pytest.raises(TypeError, match="alpha must be a real number"):
        alpha(True)
