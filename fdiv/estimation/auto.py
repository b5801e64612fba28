"""``method="auto"``: which estimator runs, and why (the reason is recorded in the Estimate).

The rule, from measured numbers (benchmarks/results/REPORT.md, 10,000 a side unless named):

0. Discrete samples whose frequency tables resolve both distributions (every value repeats,
   :mod:`fdiv.estimation.counts`): the jackknifed plug-in over the tables, for every divergence
   but tv (``COUNTS_REASON``). The critics only approximate a ratio that the tables give
   exactly: 20 categories in one column, 5,000 a side, kl 0.657: the critics 0.511 [0.358,
   0.663] in 158 s and, on a second seed, 0.389 [0.340, 0.437], missed with no warning; the
   tables 0.655 [0.610, 0.705] and 0.656 [0.611, 0.707] at once (200 seeds: 190-193 intervals
   of 200 held it).
1. Not kl: only the variational f-dual bounds estimate other divergences.
2. kl: the cross-fitted variational DV estimate, in every dimension. kNN is not chosen: from
   d = 5 on it is biased (Student-t d = 5 0.70 for 1.27, banana d = 10 0.15 for 0.375,
   correlated d = 10 3.69 for 4.15), and in one dimension, where it once looked best (the
   issue's KL 5: kNN 5.04, the old DV 6.76), the suite's six 1-D tasks (Student-t 3 dof,
   lognormal, arcsine, a bimodal mixture, mean shifts of 1 and 5 nats; 10 seeds each) gave kNN
   a median |log(estimate/truth)| of 0.095 and intervals (per-point noise only) that held the
   truth in 30 of 60 runs (KL 5: 4.28, 0 of 10), against 0.040 and 58 of 60 for this rule
   (KL 5: 4.93, 9 of 10); on the Student-t kNN returned 0.087 for 0.195 with no warning.
   kNN stays available as ``method="knn"``. Up to five dimensions (``KNN_CHECK_DIM``, where it
   costs under a second at 20,000 rows a side) it checks the variational value below LARGE_KL:
   where kNN's value lies above the variational interval (and kNN does not warn itself) the
   interval reaches up to kNN's, warned. On the ring of 16 Gaussians against one Gaussian
   (d = 2, 1.295 nats) the critics are 8% low with narrow intervals (1.19 [1.15, 1.27], 1 of 10
   seeds covered at N = 10,000) while kNN gives 1.32-1.34: stretched, 10 of 10; on 8 modes on
   a circle in 3-D (0.924 nats) 2,000 rows a side leave the critics 15-25% low (0.70-0.82, 4 of
   10 intervals held it) while kNN gives 0.92-1.01: stretched on 8 seeds, 10 of 10. Only above:
   a too smooth critic is low (DV is a lower bound at any critic), and kNN's own bias is low
   from d = 3 on (2,000 a side, d = 3: a narrower Gaussian Q 0.16-0.19 for 0.46, arcsine
   against uniform 0.47-0.52 for 0.73, a 5-nat shift 3.6). Replayed on the suite's recorded
   runs (kNN on the same samples), a two-sided check fired on 102 runs from d = 3 to 5 and
   gained one covered run beyond the ring's; in one and two dimensions its downward stretches
   (12 runs) gained none. The upward one fires on 13 runs from d = 3 to 5 (the ring's 8 and 5
   of the 5-D lognormal's, already covered).
3. When the variational estimate (or DV's value, where the plug-in stands in for it) exceeds
   LARGE_KL nats the telescoping estimator replaces it
   (one density ratio fails past a few nats: dv at d = 20, KL 10 gave 11.0, 8.8, 13.6 over three
   seeds while correlated d = 10, KL 4.15, was within 5%; telescoping: 10.19 and 19.77 for KL
   10 and 20 at d = 20, 10 seeds each), unless it falls below half the variational value or
   above its interval (``fdiv.estimation.estimate._large``): its quadratic links see nothing
   of pairs with equal means and covariances (Student-t vs Gaussian 1.27 nats: -0.01; the bent
   Gaussian 1.10: 0.00), which is also why it never runs below LARGE_KL, and it does not run
   on heavy tails (Mardia's kurtosis above 1.25 times a Gaussian's: a t with 5 dof shifted by
   13.7 nats, d = 20, gave telescoping 10.3 and the variational value 13.8; with P the heavy
   side that value's upper end opens). On the correlated
   Gaussian (KL 4.15, d = 10) it would do better than the variational estimate (4.20 vs 3.82
   over 4 and 10 seeds) but on the Betas worse (1.70 vs 1.96 for 1.97): one task in the band
   from 3 to 5 nats is too little to lower the threshold on.
"""

from __future__ import annotations

from fdiv.divergences.registry import FDivergence

__all__ = ["COUNTS_REASON", "LARGE_KL", "choose_method"]

LARGE_KL = 5.0
COUNTS_REASON = (
    "discrete samples: every value repeats, so the frequency tables give the ratio (plug-in, "
    "jackknifed)"
)


def choose_method(method: str, div: FDivergence, explicit: bool) -> tuple[str, str]:
    """(method, reason) for ``method`` ("auto" or a named method).

    ``explicit``: the caller named a bound or passed a critic, which asks for the variational
    estimate. The large-KL switch to telescoping happens after the variational estimate.
    """
    if method != "auto":
        return method, f"method={method!r} was requested"
    if div.family != "kl":
        return "variational", f"only the variational bounds estimate {div.name}"
    if explicit:
        return "variational", "a bound or critic was given"
    return "variational", (
        f"kl: cross-fitted variational DV; telescoping replaces it above {LARGE_KL:g} nats"
    )
