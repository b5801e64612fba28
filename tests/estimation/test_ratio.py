"""The fitted density ratio (fdiv.estimation.ratio) against a closed form, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdiv.estimation.ratio import fit_log_ratio


def test_log_ratio_of_a_mean_shift_matches_the_closed_form() -> None:
    # N(0, 1) against N(1, 1): log p/q = 1/2 - x. 4,000 rows a side: a logistic fit's log-ratio
    # has a standard error of about 0.03-0.04 nats two standard deviations out (measured: max
    # error 0.069 over [-1.5, 2.5], mean -0.008); 0.15 leaves room for the MLP's smoothing and
    # a 0.5 error (a wrong sign, a missing offset) fails
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(4000, 1)), rng.normal(size=(4000, 1)) + 1.0
    ratio = fit_log_ratio(p, q, steps=1000, seed=0)
    x = np.linspace(-1.5, 2.5, 41)[:, None]
    error = ratio(x).numpy() - (0.5 - x[:, 0])
    assert np.abs(error).max() < 0.15 and abs(error.mean()) < 0.05
    # the validation objective: 2 JS - log 4, JS(N(0,1), N(1,1)) = 0.1114 nats (quadrature);
    # about 800 validation rows a side give it a standard error near 0.015, 0.05 is over 3 of
    # them and a quarter of the gap to a critic that learnt nothing (-log 4)
    assert ratio.validation == pytest.approx(2 * 0.1114 - np.log(4), abs=0.05)
    assert ratio(torch.zeros(3, 1)).dtype == torch.float64  # tensors in, float64 out


@pytest.mark.parametrize(
    ("p", "q", "options", "error", "text"),
    [
        (np.zeros((100, 2)), np.zeros((100, 3)), {}, ValueError, "same dimension"),
        (np.zeros((30, 2)), np.zeros((100, 2)), {}, ValueError, "p has 30 samples"),
        (np.zeros((100, 2)), np.zeros((100, 2)), {"validation": 1.5}, ValueError, "validation"),
        (np.zeros((100, 2)), np.zeros((100, 2)), {"steps": 0}, ValueError, "steps"),
        (np.zeros((100, 2)), np.zeros((100, 2)), {"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_input_names_the_problem(p, q, options, error, text) -> None:
    with pytest.raises(error, match=text):
        fit_log_ratio(p, q, **options)
