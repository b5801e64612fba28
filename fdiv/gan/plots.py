"""PNG plots of a run: generated samples over the data, image grids, loss and metric curves.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend change) and
written atomically into the run directory: ``samples.png`` and ``curves.png``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fdiv.gan.data import Dataset
from fdiv.gan.models import generate
from fdiv.io import write_png

__all__ = ["plot_curves", "plot_image_grid", "plot_run", "plot_samples", "plot_samples_2d"]

_TRAIN_PANELS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("critic loss and penalty", ("critic_loss", "penalty"), False),
    ("bound terms E_P[g(v)], E_Q[f*(g(v))]", ("bound_p", "bound_q"), False),
    ("generator loss", ("generator_loss",), False),
    ("gradient norms", ("grad_norm_d", "grad_norm_g"), True),
)
_EVAL_LABELS = {
    "modes_captured": "modes captured",
    "high_quality": "high-quality samples (%)",
    "reverse_kl": "reverse KL to uniform over modes (nats)",
    "classes_covered": "digit classes covered",
    "class_kl": "class KL to uniform (nats)",
}


def _figure(rows: int, cols: int, size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _density_panel(
    ax: Any,
    real: Tensor,
    fake: Tensor,
    modes: Tensor | None,
    radius: float | None,
    bounds: tuple[float, float, float, float],
    size: float,
) -> int:
    """One view: the data's density (2-D histogram, log shading) under the generated points.

    Modes are marked with + and, given ``radius``, a circle of that radius. Returns the number
    of generated points outside the view.
    """
    from matplotlib.patches import Circle

    x0, x1, y0, y1 = bounds
    hist, _ = torch.histogramdd(real, bins=[160, 160], range=list(bounds))
    density = torch.log1p(hist).T.numpy()
    ax.imshow(
        np.ma.masked_equal(density, 0.0),  # empty bins stay white
        origin="lower",
        extent=bounds,
        cmap="Oranges",
        interpolation="nearest",
        aspect="equal",
    )
    ax.scatter(fake[:, 0], fake[:, 1], s=size, color="tab:blue", alpha=0.5, lw=0, label="generated")
    if modes is not None:
        ax.scatter(modes[:, 0], modes[:, 1], marker="+", s=25, lw=0.8, color="black", label="modes")
        for mode in modes.tolist() if radius is not None else []:
            ax.add_patch(Circle(mode, radius, fill=False, lw=0.6, ls="--", color="black"))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    inside = (fake[:, 0] >= x0) & (fake[:, 0] <= x1) & (fake[:, 1] >= y0) & (fake[:, 1] <= y1)
    return int((~inside).sum())


def plot_samples_2d(
    path: Path,
    real: Tensor,
    fake: Tensor,
    modes: Tensor | None,
    title: str,
    mode_std: float | None = None,
) -> Path:
    """Generated points (blue) over the data's density (orange), modes marked with +.

    With ``mode_std``, each mode gets its high-quality circle (radius 3 std) and a second panel
    zooms on the mode nearest the first generated sample, where the widths can be compared.
    """
    real, fake = real[:, :2].double(), fake[:, :2].double()
    low, high = real.min(0).values, real.max(0).values
    centre, half = (low + high) / 2, 0.575 * float((high - low).max())
    full = (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)
    radius = None if mode_std is None else 3.0 * mode_std
    zoom = modes is not None and radius is not None
    fig, axes = _figure(1, 2 if zoom else 1, (10.5 if zoom else 5.5, 5.5))
    outside = _density_panel(axes[0, 0], real, fake, modes, radius, tuple(map(float, full)), 3.0)
    note = f", {outside} outside the view" if outside else ""
    axes[0, 0].set_title(f"{title}: {len(fake)} generated samples{note}", fontsize=10)
    axes[0, 0].legend(loc="upper right", fontsize=8, markerscale=3)
    if zoom:
        modes = modes.double()
        mode = modes[torch.cdist(fake[:1], modes).argmin()]
        w = 4.0 * radius
        window = (float(mode[0]) - w, float(mode[0]) + w, float(mode[1]) - w, float(mode[1]) + w)
        _density_panel(axes[0, 1], real, fake, modes, radius, window, 12.0)
        axes[0, 1].set_title(
            f"zoom on one mode; dashed: 3 std = {radius:g} (high quality)", fontsize=10
        )
    return write_png(fig, path)


def plot_image_grid(path: Path, images: Tensor, shape: tuple[int, int, int], title: str) -> Path:
    """A 10 x 10 grid of generated images (values in [-1, 1], grey scale)."""
    n = min(100, len(images))
    cols = 10
    rows = math.ceil(n / cols)
    fig, axes = _figure(rows, cols, (cols * 0.6, rows * 0.6 + 0.4))
    pictures = images[:n].reshape(n, *shape)[:, 0].cpu()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pictures[i].numpy(), cmap="Greys", vmin=-1.0, vmax=1.0)
    fig.suptitle(title, fontsize=10)
    return write_png(fig, path)


def _is_estimate(key: str) -> bool:
    return key.startswith("heldout_") and not key.endswith("_stderr")


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(
    path: Path, metrics: list[dict[str, Any]], evaluations: list[dict[str, Any]]
) -> Path:
    """Training curves (losses, bound terms, gradient norms) and the evaluation metrics."""
    first = evaluations[0] if evaluations else {}
    eval_keys = [k for k in first if k in _EVAL_LABELS or _is_estimate(k)]
    panels = len(_TRAIN_PANELS) + len(eval_keys)
    cols = 4
    fig, axes = _figure(math.ceil(panels / cols), cols, (4 * cols, 3 * math.ceil(panels / cols)))
    flat = list(axes.flat)
    steps = [r["step"] for r in metrics]
    for ax, (label, keys, log_scale) in zip(flat, _TRAIN_PANELS, strict=False):
        for key in keys:
            if metrics and key in metrics[0]:
                ax.plot(steps, [r[key] for r in metrics], lw=0.8, label=key)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        if log_scale:
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax, key in zip(flat[len(_TRAIN_PANELS) :], eval_keys, strict=False):
        xs = [r["step"] for r in evaluations]
        ax.plot(xs, [r[key] for r in evaluations], marker="o")
        if _is_estimate(key):
            low = [r[key] - 1.96 * r.get(f"{key}_stderr", 0.0) for r in evaluations]
            high = [r[key] + 1.96 * r.get(f"{key}_stderr", 0.0) for r in evaluations]
            ax.fill_between(xs, low, high, alpha=0.2)
        ax.set_title(_EVAL_LABELS.get(key, f"held-out {key[8:]} (nats)"), fontsize=10)
        ax.set_xlabel("step")
    for ax in flat[panels:]:
        ax.axis("off")
    return write_png(fig, path)


def plot_samples(
    path: Path, fake: Tensor, dataset: Dataset, seed: int = 0, label: str | None = None
) -> Path:
    """``fake`` samples of ``dataset``: an image grid, or a 2-D scatter over held-out data;
    ``label`` (e.g. "refined") goes into the title."""
    fake = fake.cpu()
    title = dataset.name if label is None else f"{dataset.name} ({label})"
    if dataset.image is not None:
        return plot_image_grid(path, fake, dataset.image, f"{title}: generated samples")
    real = dataset.heldout(50_000, torch.Generator().manual_seed(seed))
    return plot_samples_2d(path, real, fake, dataset.modes, title, dataset.mode_std)


def plot_run(run_dir: Path, generator: nn.Module, dataset: Dataset, seed: int = 0) -> list[Path]:
    """``samples.png`` (2-D scatter or image grid) and ``curves.png`` for the run in ``run_dir``."""
    run_dir = Path(run_dir)
    samples = plot_samples(run_dir / "samples.png", generate(generator, 2500, seed), dataset, seed)
    curves = plot_curves(
        run_dir / "curves.png",
        _records(run_dir / "metrics.jsonl"),
        _records(run_dir / "eval.jsonl"),
    )
    return [samples, curves]
