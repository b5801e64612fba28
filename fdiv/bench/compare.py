"""The regression report: what got slower or less accurate from one results file to the next.

Benchmarks are matched by pytest's full name. With threshold t, a benchmark regressed when its
median time grew by more than a factor 1 + t; an accuracy case when |log(estimate/truth)| grew by
more than t (t = 0.1: about 10% more error); a GAN run when it stopped where it had finished, or
when the fraction of modes captured or of high-quality samples fell by more than t, or its
reverse KL rose by more than t nats; a digits run when its Frechet distance grew by more than a
factor 1 + t. Smaller changes are noise and are not reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from fdiv.bench.report import format_time
from fdiv.bench.results import Entry, Results, abs_log_error

__all__ = ["Regression", "compare", "describe"]


@dataclass(frozen=True)
class Regression:
    """One benchmark that got worse: its name, what got worse, and the old and new figures."""

    name: str
    what: str
    old: str
    new: str


def compare(old: Results, new: Results, threshold: float) -> tuple[list[Regression], int]:
    """The regressions from ``old`` to ``new`` and how many benchmarks both files hold."""
    if not (threshold >= 0 and math.isfinite(threshold)):
        raise ValueError(f"the threshold must be a non-negative fraction, got {threshold}")
    before = {e.name: e for e in old.entries}
    pairs = [(before[e.name], e) for e in new.entries if e.name in before]
    found = [r for a, b in pairs for r in _regressions(a, b, threshold)]
    return found, len(pairs)


def _regressions(old: Entry, new: Entry, t: float) -> Iterator[Regression]:
    if new.median > old.median * (1 + t):
        change = f"(+{100 * (new.median / old.median - 1):.0f}%)"
        yield Regression(
            new.name, "slower", format_time(old.median), f"{format_time(new.median)} {change}"
        )
    a, b = old.figures, new.figures
    if new.suite == "accuracy" and {"estimate", "truth"} <= a.keys() & b.keys():
        before, after = abs_log_error(a), abs_log_error(b)
        if after > before + t:
            yield Regression(
                new.name, "less accurate, |log(est/truth)|", f"{before:.3f}", f"{after:.3f}"
            )
    if new.suite == "gan" and "data" in a and "data" in b:
        if "error" in b:
            if "error" not in a:
                yield Regression(new.name, "stopped", "finished", str(b["error"])[:80])
            return
        if "error" in a:
            return
        if "frechet" in a and "frechet" in b and b["frechet"] > a["frechet"] * (1 + t):
            change = f"(+{100 * (b['frechet'] / a['frechet'] - 1):.0f}%)"
            yield Regression(
                new.name,
                "higher Frechet distance",
                f"{a['frechet']:.2f}",
                f"{b['frechet']:.2f} {change}",
            )
        if "modes" not in a or "modes" not in b:
            return
        checks = [
            ("fewer modes", a["modes_captured"] / a["modes"], b["modes_captured"] / b["modes"]),
            ("fewer high-quality samples", a["high_quality"] / 100, b["high_quality"] / 100),
        ]
        for what, x, y in checks:
            if y < x - t:
                yield Regression(new.name, what, f"{100 * x:.1f}%", f"{100 * y:.1f}%")
        if b["reverse_kl"] > a["reverse_kl"] + t:
            yield Regression(
                new.name, "higher reverse KL", f"{a['reverse_kl']:.3f}", f"{b['reverse_kl']:.3f}"
            )


def describe(old: Results, new: Results, threshold: float) -> tuple[str, int]:
    """The comparison as text for people, and the number of regressions."""
    found, count = compare(old, new, threshold)
    lines = [f"comparing {new.path} with {old.path} (threshold {threshold:g})"]
    if old.machine.id != new.machine.id:
        lines.append(
            f"note: measured on different machines ({old.machine.label} / {new.machine.label}): "
            "times are not comparable"
        )
    lines += [f"{r.what}: {r.name}: {r.old} -> {r.new}" for r in found]
    lines.append(
        f"{len(found)} regression{'s' if len(found) != 1 else ''} in {count} benchmarks "
        "present in both files"
    )
    return "\n".join(lines), len(found)
