"""The report's PNG plots: time vs N per backend, error vs dimension, generated GAN samples.

Each function draws one figure from a section's entries, titled with ``title`` (the machine and
date), and writes it atomically; it returns the path, or None where there is nothing to draw.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fdiv.bench.results import Entry, abs_log_error
from fdiv.gan.data import BUILTIN
from fdiv.io import write_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["accuracy_errors", "gan_samples", "kernel_times", "task_errors"]

MARKERS = ("o", "s", "^", "D", "v", "P")


def _figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global state; matplotlib is imported only when drawing)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def kernel_times(path: Path, entries: Sequence[Entry], title: str) -> Path | None:
    """Median time vs N on log axes, one panel per kernel, one line per backend."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    copy: list[tuple[int, float]] = []
    for e in sorted(entries, key=lambda e: e.figures["n"]):
        kernel, backend = e.figures["kernel"], e.figures["backend"]
        if kernel == "copy":
            copy.append((e.figures["n"], e.median))
        elif kernel != "launch":
            series[kernel][backend].append((e.figures["n"], e.median))
    if not series:
        return None
    fig = _figure(4.4 * len(series), 3.8)
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (kernel, backends) in zip(axes, sorted(series.items()), strict=True):
        for (backend, points), marker in zip(sorted(backends.items()), MARKERS, strict=False):
            ax.plot(*zip(*points, strict=True), marker=marker, label=backend, alpha=0.8)
        if copy:
            ax.plot(*zip(*copy, strict=True), "k--x", lw=1, label="copy (same bytes)")
        ax.set(yscale="log", title=f"{kernel} (forward + backward)", xlabel="N (elements per side)")
        ax.set_xscale("log", base=2)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("median time per call (s)")
    axes[0].legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 70), fontsize=9)
    return write_png(fig, path)


def accuracy_errors(path: Path, entries: Sequence[Entry], title: str) -> Path | None:
    """Mean |log(estimate/truth)| over seeds vs dimension, one panel per true KL."""
    cells: dict[float, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for e in entries:
        f = e.figures
        cells[round(float(f["truth"]), 6)][str(f["method"])][int(f["d"])].append(abs_log_error(f))
    if not cells:
        return None
    fig = _figure(4.2 * len(cells), 3.8)
    axes = fig.subplots(1, len(cells), squeeze=False, sharey=True)[0]
    for ax, (truth, methods) in zip(axes, sorted(cells.items()), strict=True):
        dims = sorted({d for by_d in methods.values() for d in by_d})
        not_finite = []
        for (method, by_d), marker in zip(methods.items(), MARKERS, strict=False):
            points = [(d, statistics.mean(v)) for d, v in sorted(by_d.items())]
            finite = [(d, v) for d, v in points if math.isfinite(v) and v > 0]
            not_finite += [f"{method} at d={d}" for d, v in points if not math.isfinite(v)]
            if finite:
                ax.plot(*zip(*finite, strict=True), marker=marker, mfc="none", label=method)
        ax.axhline(math.log(1.1), color="k", ls=":", lw=1, label="10% (log 1.1)")
        ax.set(yscale="log", title=f"true KL = {truth:g} nats", xlabel="dimension d", xticks=dims)
        ax.grid(True, alpha=0.3)
        if not_finite:
            note = "estimate <= 0 (not drawn): " + ", ".join(not_finite)
            ax.text(0.02, 0.02, note, transform=ax.transAxes, fontsize=7, va="bottom")
    axes[0].set_ylabel("mean |log(estimate / truth)| over seeds")
    axes[0].legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 70), fontsize=9)
    return write_png(fig, path)


def task_errors(path: Path, entries: Sequence[Entry], title: str) -> Path | None:
    """Worst |log(estimate/truth)| of each task's KL runs (all N and seeds), one marker per
    method; estimates <= 0 are drawn at the top edge."""
    worst: dict[str, dict[str, float]] = defaultdict(dict)
    for e in entries:
        f = e.figures
        if f["divergence"] != "kl":
            continue
        value = math.inf if f.get("abs_log_error") is None else float(f["abs_log_error"])
        worst[f["method"]][f["task"]] = max(value, worst[f["method"]].get(f["task"], 0.0))
    tasks = sorted({t for by_task in worst.values() for t in by_task})
    if not tasks:
        return None
    fig = _figure(7.5, 0.28 * len(tasks) + 1.6)
    ax = fig.subplots()
    top = 10.0
    for i, ((method, by_task), marker) in enumerate(
        zip(sorted(worst.items()), MARKERS, strict=False)
    ):
        points = [(min(max(v, 1e-4), top), tasks.index(t)) for t, v in by_task.items()]
        ax.scatter(*zip(*points, strict=True), marker=marker, fc="none", ec=f"C{i}", label=method)
    ax.axvline(math.log(1.1), color="k", ls=":", lw=1, label="10% (log 1.1)")
    ax.set(xscale="log", yticks=range(len(tasks)), yticklabels=tasks, xlim=(1e-4, top * 1.5))
    ax.set_xlabel("worst |log(estimate / truth)| over seeds and N (kl)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 80), fontsize=9)
    return write_png(fig, path)


def _mosaic(images: Sequence[Sequence[float]]) -> np.ndarray:
    """Flat 8x8 images tiled into a square grid, one blank pixel (value -1) between them."""
    side = math.ceil(math.sqrt(len(images)))
    grid = np.full((9 * side + 1, 9 * side + 1), -1.0)
    for i, image in enumerate(images):
        row, col = divmod(i, side)
        grid[1 + 9 * row : 9 + 9 * row, 1 + 9 * col : 9 + 9 * col] = np.reshape(image, (8, 8))
    return grid


def gan_samples(path: Path, entries: Sequence[Entry], title: str) -> Path | None:
    """Generated samples (first seed with samples) per dataset and objective: points over the
    modes, or a grid of images."""
    runs = {}
    for e in sorted(entries, key=lambda e: e.figures.get("seed", 0)):
        f = e.figures
        if f.get("samples"):
            runs.setdefault((f["data"], f["divergence"]), f)
    if not runs:
        return None
    datasets = sorted({d for d, _ in runs})
    objectives = list(dict.fromkeys(o for _, o in runs))
    fig = _figure(max(2.6 * len(objectives), 5.0), 2.7 * len(datasets) + 0.3)
    axes = fig.subplots(len(datasets), len(objectives), squeeze=False)
    for i, data in enumerate(datasets):
        modes = BUILTIN[data]().modes if data in BUILTIN else None
        for j, objective in enumerate(objectives):
            ax = axes[i][j]
            ax.set(xticks=[], yticks=[], aspect="equal")
            f = runs.get((data, objective))
            if f is None:
                ax.axis("off")
                continue
            if len(f["samples"][0]) == 64:  # 8x8 images
                ax.imshow(_mosaic(f["samples"]), cmap="gray_r", vmin=-1, vmax=1)
                ax.set_title(f"{data}, {objective}\nFrechet {f['frechet']:.2f}", fontsize=9)
                continue
            if modes is not None:
                ax.scatter(modes[:, 0], modes[:, 1], s=60, marker="o", fc="none", ec="tab:red")
            xs, ys = zip(*f["samples"], strict=True)
            ax.scatter(xs, ys, s=3, alpha=0.6, color="tab:blue")
            caught = f"{f['modes_captured']}/{f['modes']} modes" if "modes" in f else "stopped"
            ax.set_title(f"{data}, {objective}\n{caught}", fontsize=9)
    fig.suptitle(textwrap.fill(title, 70), fontsize=9)
    return write_png(fig, path)
