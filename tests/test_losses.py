"""The public losses (torch backend): closed-form gradients against autograd of the naive
composition and finite differences, the seed identities, overflow behaviour, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fdiv
from fdiv.divergences import registry
from fdiv.divergences.registry import alpha, get

ALL = [*registry.registered(), *(alpha(a) for a in (-1.0, 0.5, 2.0, 3.0))]
IDS = [d.name for d in ALL]
F64 = torch.float64


def _logits(n: int, seed: int, scale: float = 1.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=gen, dtype=F64) * scale).requires_grad_()


def _naive_critic_loss(div: registry.FDivergence, v_p: torch.Tensor, v_q: torch.Tensor):
    """-(mean g(v_p) - mean f*(g(v_q))) through the separate conjugate: autograd's gradient."""
    return -(div.activation(v_p).mean() - div.conjugate(div.activation(v_q)).mean())


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_critic_gradient_matches_autograd_of_the_naive_composition(div) -> None:
    v_p, v_q = _logits(13, 0), _logits(29, 1)
    grad_out = torch.tensor(-2.5, dtype=F64)
    loss = fdiv.critic_loss(v_p, v_q, div)
    naive = _naive_critic_loss(div, v_p, v_q)
    torch.testing.assert_close(loss, naive, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(loss, (v_p, v_q), grad_out)
    want = torch.autograd.grad(naive, (v_p, v_q), grad_out)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("div", ALL, ids=IDS)
@pytest.mark.parametrize("mode", ["nonsaturating", "minimax"])
def test_generator_gradient_matches_autograd(div, mode: str) -> None:
    v_q = _logits(17, 2)
    loss = fdiv.generator_loss(v_q, div, mode=mode)
    g = div.activation(v_q)
    naive = -(g if mode == "nonsaturating" else div.conjugate(g)).mean()
    torch.testing.assert_close(loss, naive, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(loss, v_q, torch.tensor(0.7, dtype=F64))[0]
    want = torch.autograd.grad(naive, v_q, torch.tensor(0.7, dtype=F64))[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_gradcheck_all_losses(div) -> None:
    v_p, v_q = _logits(5, 3, 1.0), _logits(8, 4, 1.0)
    assert torch.autograd.gradcheck(lambda a, b: fdiv.critic_loss(a, b, div), (v_p, v_q))
    assert torch.autograd.gradcheck(
        lambda a, b: fdiv.critic_loss(a, b, div, reduction="sum"), (v_p, v_q)
    )
    for mode in ("nonsaturating", "minimax"):
        assert torch.autograd.gradcheck(lambda b, m=mode: fdiv.generator_loss(b, div, m), (v_q,))


def test_dv_and_smile_bounds_against_autograd() -> None:
    v_p, v_q = _logits(11, 5, 3.0), _logits(23, 6, 3.0)
    for clip, fn in ((None, fdiv.dv_bound), (2.0, lambda a, b: fdiv.smile_bound(a, b, clip=2.0))):
        got = fn(v_p, v_q)
        x_q = v_q if clip is None else v_q.clamp(-clip, clip)
        naive = v_p.mean() - (torch.logsumexp(x_q, 0) - math.log(v_q.numel()))
        torch.testing.assert_close(got, naive, rtol=1e-12, atol=1e-12)
        g = torch.autograd.grad(got, (v_p, v_q), torch.tensor(1.3, dtype=F64))
        w = torch.autograd.grad(naive, (v_p, v_q), torch.tensor(1.3, dtype=F64))
        for a, b in zip(g, w, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert torch.autograd.gradcheck(fn, (v_p, v_q))


@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
def test_gradient_penalty_against_autograd_including_zero_rows(kind: str) -> None:
    gen = torch.Generator().manual_seed(7)
    grads = torch.randn(6, 3, 2, generator=gen, dtype=F64)
    grads[2] = 0.0
    grads.requires_grad_()
    got = fdiv.gradient_penalty(grads, kind=kind, weight=3.0)
    norms = grads.flatten(1).norm(dim=1)
    naive = 3.0 * ((norms - 1) ** 2).mean() if kind == "wgan-gp" else 1.5 * (norms**2).mean()
    torch.testing.assert_close(got, naive, rtol=1e-12, atol=1e-12)
    (g,) = torch.autograd.grad(got, grads, torch.tensor(0.5, dtype=F64))
    expected = grads.detach().clone()
    if kind == "wgan-gp":
        n = norms.detach().clamp(min=1e-300)[:, None, None]
        expected = 2 * 3.0 / 6 * (n - 1) / n * expected
        expected[2] = 0.0  # subgradient 0 at g = 0
    else:
        expected = 3.0 / 6 * expected
    torch.testing.assert_close(g, 0.5 * expected, rtol=1e-12, atol=1e-14)


def test_gradient_penalty_double_backprop_reaches_critic_weights() -> None:
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    critic.double()
    x = torch.randn(10, 2, dtype=F64, requires_grad=True)
    (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    # the input gradient does not depend on the last bias
    params = [critic[0].weight, critic[0].bias, critic[2].weight]
    ours = torch.autograd.grad(fdiv.gradient_penalty(grads, weight=10.0), params, retain_graph=True)
    naive_penalty = 10.0 * ((grads.norm(dim=1) - 1) ** 2).mean()
    want = torch.autograd.grad(naive_penalty, params)
    for a, b in zip(ours, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_seed_identities_for_the_gan_objective() -> None:
    # D = sigmoid(v): the gan bound is E_P log D + E_Q log(1 - D); at the optimal v = r it is
    # 2 * (the js bound at its optimal critic) - log 4, sample by sample.
    gen = torch.Generator().manual_seed(8)
    p = torch.distributions.Normal(0.0, 1.0)
    q = torch.distributions.Normal(0.7, 1.3)
    x_p = torch.randn(4000, generator=gen, dtype=F64)
    x_q = 0.7 + 1.3 * torch.randn(4000, generator=gen, dtype=F64)
    r_p, r_q = p.log_prob(x_p) - q.log_prob(x_p), p.log_prob(x_q) - q.log_prob(x_q)
    gan, js = get("gan"), get("js")
    bound_gan = fdiv.variational_bound(gan.optimal_critic(r_p), gan.optimal_critic(r_q), "gan")
    bound_js = fdiv.variational_bound(js.optimal_critic(r_p), js.optimal_critic(r_q), "js")
    torch.testing.assert_close(bound_gan, 2 * bound_js - math.log(4.0), rtol=0, atol=1e-12)
    d_p, d_q = torch.sigmoid(r_p), torch.sigmoid(r_q)
    v_explicit = torch.log(d_p).mean() + torch.log1p(-d_q).mean()
    torch.testing.assert_close(bound_gan, v_explicit, rtol=1e-12, atol=1e-12)
    # D*(x) = p / (p + q), from the densities themselves
    dens_p, dens_q = p.log_prob(x_q).exp(), q.log_prob(x_q).exp()
    torch.testing.assert_close(d_q, dens_p / (dens_p + dens_q), rtol=1e-12, atol=1e-15)
    # the non-saturating generator loss is mean -log D(G(z))
    v_q = torch.linspace(-30.0, 30.0, 101, dtype=F64)
    ns = fdiv.generator_loss(v_q, "gan", mode="nonsaturating")
    torch.testing.assert_close(ns, (-torch.log(torch.sigmoid(v_q))).mean(), rtol=1e-12, atol=0)
    # and the minimax generator loss is mean log(1 - D(G(z)))
    mm = fdiv.generator_loss(v_q, "gan", mode="minimax")
    torch.testing.assert_close(mm, torch.log(torch.sigmoid(-v_q)).mean(), rtol=1e-12, atol=0)


# Divergences whose terms stay finite for any finite logit (in fp32).
BOUNDED = {"js", "gan", "tv", "pearson"}
# Where g is unbounded above (alpha, a > 1) or f*(g) unbounded below (neyman, alpha with a < 0)
# the empirical bound itself is unbounded above, so the critic loss can reach -inf; everywhere
# else an overflow makes it +inf.
LOSS_CAN_BE_MINUS_INF = {"neyman", "alpha(-1)", "alpha(2)", "alpha(3)"}


@pytest.mark.parametrize("div", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_finite_logits_never_give_nan(div, dtype: torch.dtype) -> None:
    extremes = torch.tensor([-1e4, -200.0, -89.0, -80.0, 0.0, 80.0, 89.0, 200.0, 1e4])
    for v_p, v_q in (
        (extremes, extremes.flip(0)),
        (extremes[:4], extremes[-4:]),
        (extremes[-4:], extremes[:4]),
    ):
        a = v_p.to(dtype).requires_grad_()
        b = v_q.to(dtype).requires_grad_()
        loss = fdiv.critic_loss(a, b, div)
        gen_losses = [fdiv.generator_loss(b, div, mode=m) for m in ("nonsaturating", "minimax")]
        loss.backward()
        for value in (loss, *gen_losses, a.grad, b.grad):
            assert not bool(torch.isnan(value).any()), (div.name, value)
            if div.name in BOUNDED and dtype == torch.float32:
                assert bool(torch.isfinite(value).all()), (div.name, value)
        if div.name not in LOSS_CAN_BE_MINUS_INF:
            assert float(loss.detach()) > -math.inf


def test_same_sign_overflow_of_both_terms_gives_plus_inf() -> None:
    # neyman: v_p -> -inf sends E_P[g] to -inf and v_q -> -inf sends E_Q[f*(g)] to -inf.
    loss = fdiv.critic_loss(torch.tensor([-1e4]), torch.tensor([-1e4]), "neyman")
    assert float(loss) == math.inf


def test_half_precision_inputs_compute_in_fp32_and_return_input_dtype() -> None:
    v_p = torch.linspace(-3, 3, 50, dtype=torch.float16).requires_grad_()
    v_q = torch.linspace(-2, 4, 30, dtype=torch.float16).requires_grad_()
    loss = fdiv.critic_loss(v_p, v_q, "kl")
    assert loss.dtype == torch.float32
    loss.backward()
    assert v_p.grad.dtype == torch.float16 and v_q.grad.dtype == torch.float16
    exact = fdiv.critic_loss(v_p.detach().double(), v_q.detach().double(), "kl")
    torch.testing.assert_close(loss.double(), exact, rtol=1e-6, atol=1e-6)


def test_shapes_n_by_one_and_module_form() -> None:
    v_p, v_q = torch.randn(9, 1), torch.randn(4, 1)
    module = fdiv.FDivergenceLoss("jsd")
    assert "js" in repr(module)
    torch.testing.assert_close(module(v_p, v_q), fdiv.critic_loss(v_p[:, 0], v_q[:, 0], "js"))
    total = fdiv.critic_loss(v_p, v_q, "kl", reduction="sum")
    kl = get("kl")
    torch.testing.assert_close(total, -(v_p.sum() - kl.conjugate_activation(v_q).sum()))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: fdiv.critic_loss(torch.zeros(3), torch.zeros(3), "jsdd"),
            ValueError,
            "did you mean",
        ),
        (lambda: fdiv.critic_loss(torch.zeros(0), torch.zeros(3)), ValueError, "v_p is empty"),
        (
            lambda: fdiv.critic_loss(torch.zeros(3), torch.zeros(3, device="meta")),
            ValueError,
            "one device",
        ),
        (
            lambda: fdiv.critic_loss(torch.zeros(3), torch.zeros(3, dtype=F64)),
            ValueError,
            "one dtype",
        ),
        (
            lambda: fdiv.critic_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3)),
            TypeError,
            "floating-point",
        ),
        (lambda: fdiv.critic_loss([1.0], torch.zeros(3)), TypeError, "torch.Tensor"),
        (lambda: fdiv.critic_loss(torch.zeros(3, 2), torch.zeros(3)), ValueError, r"\(N,\)"),
        (
            lambda: fdiv.critic_loss(torch.zeros(3), torch.zeros(3), "alpha(1)"),
            ValueError,
            "other than 0 and 1",
        ),
        (
            lambda: fdiv.critic_loss(torch.zeros(3), torch.zeros(3), reduction="none"),
            ValueError,
            "reduction 'none'",
        ),
        (
            lambda: fdiv.critic_loss(torch.zeros(3), torch.zeros(3), backend="cuda"),
            ValueError,
            "backend 'cuda'",
        ),
        (
            lambda: fdiv.generator_loss(torch.zeros(3), mode="saturating"),
            ValueError,
            "mode 'saturating'",
        ),
        (lambda: fdiv.smile_bound(torch.zeros(3), torch.zeros(3), clip=0.0), ValueError, "clip"),
        (lambda: fdiv.gradient_penalty(torch.zeros(3, 2), kind="l2"), ValueError, "kind 'l2'"),
        (lambda: fdiv.gradient_penalty(torch.zeros(3, 2), weight=-1.0), ValueError, "weight"),
        (lambda: fdiv.gradient_penalty(torch.zeros(0, 2)), ValueError, "B >= 1"),
        (
            lambda: fdiv.gradient_penalty(torch.zeros(3, 2, dtype=torch.int32)),
            TypeError,
            "floating-point",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


finite_logits = st.lists(
    st.floats(min_value=-12.0, max_value=12.0, allow_nan=False), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(v_p=finite_logits, v_q=finite_logits, index=st.integers(0, len(ALL) - 1))
def test_property_loss_equals_the_naive_composition(v_p, v_q, index: int) -> None:
    # For any moderate logits the fused closed forms agree with conjugate(activation(v)) in fp64.
    # The naive side cancels: hellinger's t / (1 - t) with t = 1 - e^-v loses e^v * 2^-53 relative,
    # 2e-11 at |v| = 12, so rtol 1e-9 has room; at |v| = 18 it would not.
    div = ALL[index]
    a, b = torch.tensor(v_p, dtype=F64), torch.tensor(v_q, dtype=F64)
    torch.testing.assert_close(
        fdiv.critic_loss(a, b, div), _naive_critic_loss(div, a, b), rtol=1e-9, atol=1e-9
    )


# Closed forms of (g(v), f*(g(v))) for two rows of the DESIGN table, in fp64.
TERM_CLOSED_FORMS = {
    "kl": (lambda v: v, lambda v: torch.exp(v - 1.0)),
    "gan": (lambda v: -torch.nn.functional.softplus(-v), torch.nn.functional.softplus),
}


@pytest.mark.parametrize("name", sorted(TERM_CLOSED_FORMS))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.float16], ids=str)
def test_critic_loss_return_terms(name: str, reduction: str, dtype: torch.dtype) -> None:
    """(loss, E_P[g], E_Q[f*(g)]) (sums for "sum"): detached, in the compute dtype, equal to the
    closed forms (fp64: rtol 1e-12; fp32 sums of <= 29 fp32 terms: rtol 1e-6 of the mass)."""
    v_p, v_q = (
        _logits(n, seed).detach().to(dtype).requires_grad_() for n, seed in ((13, 9), (29, 10))
    )
    loss, term_p, term_q = fdiv.critic_loss(v_p, v_q, name, reduction, return_terms=True)
    cdt = F64 if dtype == F64 else torch.float32
    assert loss.dtype == term_p.dtype == term_q.dtype == cdt
    assert loss.requires_grad and not term_p.requires_grad and not term_q.requires_grad
    assert torch.equal(loss, fdiv.critic_loss(v_p, v_q, name, reduction))
    assert torch.equal(loss, term_q - term_p)
    g, conj = TERM_CLOSED_FORMS[name]
    reduce = torch.mean if reduction == "mean" else torch.sum
    for got, terms in ((term_p, g(v_p.detach().double())), (term_q, conj(v_q.detach().double()))):
        rtol = 1e-12 if dtype == F64 else 1e-6
        assert abs(got.item() - reduce(terms).item()) <= rtol * reduce(terms.abs()).item()
    (grad_p,) = torch.autograd.grad(loss, v_p)
    assert grad_p.dtype == dtype


def test_choice_names_are_defined_once_and_checked() -> None:
    from fdiv import losses
    from fdiv.kernels import reference

    assert losses.REDUCTIONS is reference.REDUCTIONS == ("mean", "sum")
    assert losses.GENERATOR_MODES is reference.GENERATOR_MODES == ("nonsaturating", "minimax")
    assert losses.PENALTIES is reference.PENALTIES == ("wgan-gp", "r1")
    with pytest.raises(ValueError, match="known: nonsaturating, minimax"):
        fdiv.generator_loss(torch.zeros(3), mode="max")
    with pytest.raises(ValueError, match="known: mean, sum"):
        fdiv.FDivergenceLoss(reduction="none")
