"""The GAN suite's tables: mode coverage on the toy sets against the published results and the
targets, and the digits table (Frechet distance in classifier features, held-out JS).

Cells are mean ± standard deviation over seeds (the sample standard deviation; the mean alone for
one seed), with the worst seed in brackets where a target applies to every seed.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fdiv.bench.results import Entry

__all__ = [
    "DIGITS_HEADER",
    "PUBLISHED",
    "TARGETS",
    "TOY_HEADER",
    "digits_rows",
    "meets_target",
    "toy_rows",
]

#: Published results of the mode-coverage protocol: (model, modes, high quality %, reverse KL);
#: None where the source gives no number. PacGAN: Lin et al. 2018, the best packing degree.
#: WGAN-GP: the mode counts quoted in issue 12 for the same protocol.
PUBLISHED: dict[str, list[tuple[str, float, float | None, float | None]]] = {
    "grid25": [("PacGAN4", 24.8, 93.6, 0.04), ("WGAN-GP", 24.2, None, None)],
    "ring8": [("PacGAN2", 7.9, 95.6, 0.07), ("WGAN-GP", 6.8, None, None)],
}

#: The targets a run meets on every seed: all modes, high quality % at least, reverse KL at most.
TARGETS: dict[str, tuple[float, float]] = {"grid25": (95.0, 0.02), "ring8": (97.0, 0.02)}

TOY_HEADER = [
    "data",
    "objective",
    "seeds",
    "modes [worst]",
    "high quality % [worst]",
    "reverse KL [worst]",
    "seeds on target",
    "mean s",
]
DIGITS_HEADER = [
    "objective",
    "seeds",
    "Frechet distance",
    "floor (training images)",
    "held-out JS (nats) [its se]",
    "classes covered",
    "class KL (nats)",
    "mean s",
]


def _spread(values: Sequence[float], digits: int) -> str:
    """``mean ± sd`` (sample sd over seeds), or the value alone for one seed."""
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def meets_target(run: dict[str, Any]) -> bool:
    """Whether one toy run captured every mode with the high quality and reverse KL targets."""
    if "error" in run or run["data"] not in TARGETS:
        return False
    quality, reverse_kl = TARGETS[run["data"]]
    return (
        run["modes_captured"] == run["modes"]
        and run["high_quality"] >= quality
        and run["reverse_kl"] <= reverse_kl
    )


def _groups(entries: Sequence[Entry], toy: bool) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The runs per (data, objective) in order of appearance; toy sets or the digits."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        f = e.figures
        if "data" in f and (f["data"] != "digits") == toy:
            groups[f["data"], f["divergence"]].append(f)
    return groups


def _seeds(runs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    ok = [r for r in runs if "error" not in r]
    stopped = len(runs) - len(ok)
    return ok, f"{len(runs)}" + (f" ({stopped} stopped)" if stopped else "")


def toy_rows(entries: Sequence[Entry]) -> list[list[str]]:
    """One row per (toy data, objective), then the published rows of each data set."""
    groups = _groups(entries, toy=True)
    rows = []
    for data, divergence in sorted(groups, key=lambda key: key[0]):
        runs = groups[data, divergence]
        ok, seeds = _seeds(runs)
        seconds = f"{statistics.mean(r['seconds'] for r in runs):.0f}"
        on_target = f"{sum(meets_target(r) for r in runs)}/{len(runs)}"
        if not ok:
            rows.append([data, divergence, seeds, "-", "-", "-", on_target, seconds])
            continue
        modes = [r["modes_captured"] for r in ok]
        quality = [r["high_quality"] for r in ok]
        rkl = [r["reverse_kl"] for r in ok]
        rows.append(
            [
                data,
                divergence,
                seeds,
                f"{_spread(modes, 1)}/{ok[0]['modes']} [{min(modes)}]",
                f"{_spread(quality, 1)} [{min(quality):.1f}]",
                f"{_spread(rkl, 3)} [{max(rkl):.3f}]",
                on_target,
                seconds,
            ]
        )
    for data in sorted({d for d, _ in groups} & PUBLISHED.keys()):
        for model, *published in PUBLISHED[data]:
            cells = ["-" if value is None else f"{value}" for value in published]
            rows.append([data, f"{model} (published)", "-", *cells, "-", "-"])
    rows.sort(key=lambda row: row[0])  # stable: each dataset's runs, then its published rows
    return rows


def digits_rows(entries: Sequence[Entry]) -> list[list[str]]:
    """One row per objective trained on the digits."""
    groups = _groups(entries, toy=False)
    rows = []
    for _, divergence in groups:
        runs = groups["digits", divergence]
        ok, seeds = _seeds(runs)
        seconds = f"{statistics.mean(r['seconds'] for r in runs):.0f}"
        if not ok:
            rows.append([divergence, seeds, *["-"] * 5, seconds])
            continue
        js = [r["heldout_js"] for r in ok]
        se = statistics.mean(r["heldout_js_stderr"] for r in ok)
        rows.append(
            [
                divergence,
                seeds,
                _spread([r["frechet"] for r in ok], 2),
                f"{ok[0]['frechet_floor']:.2f}",
                f"{_spread(js, 3)} [{se:.2f}]" if all(math.isfinite(v) for v in js) else "-",
                _spread([r["classes_covered"] for r in ok], 1),
                _spread([r["class_kl"] for r in ok], 3),
                seconds,
            ]
        )
    return rows
