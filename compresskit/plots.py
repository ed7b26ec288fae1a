"""Plots a learner wants to look at: labelled axes with units, legends, big enough for a projector.

Every function returns the ``Figure`` it drew (so panels can display it and tests can inspect it) and
accepts an ``ax`` to draw into an existing figure instead.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.rcParams.update(
    {"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 14, "legend.fontsize": 12, "figure.dpi": 90}
)
import matplotlib.pyplot as plt  # noqa: E402  (after the rcParams above)
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from compresskit.metrics import Record  # noqa: E402

FIGSIZE = (9, 5.2)
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _axes(ax, figsize=FIGSIZE):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def accuracy_vs_size(
    records: Sequence[Record],
    *,
    highlight: int | None = None,
    ax=None,
    title: str = "Accuracy against real size",
    annotate: bool = True,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Test accuracy (%) against storage size (KB, log axis), one colour per ``Record.group``.

    Args:
        records: what ``metrics.measure`` returns.
        highlight: index of the record to ring in red (the one the slider just made; -1 for the last).
        annotate: write each record's name next to its point.
    """
    if len(records) == 0:
        raise ValueError("records is empty: nothing to plot")
    fig, ax = _axes(ax)
    groups = list(dict.fromkeys(r.group or "model" for r in records))
    for gi, group in enumerate(groups):
        pts = [r for r in records if (r.group or "model") == group]
        ax.plot([r.kb for r in pts], [100 * r.accuracy for r in pts], "o", ms=9, color=COLORS[gi % len(COLORS)],
                label=group, alpha=0.85)
    if annotate:
        for r in records:
            if r.name:
                ax.annotate(r.name, (r.kb, 100 * r.accuracy), textcoords="offset points", xytext=(6, 5), fontsize=11)
    if highlight is not None:
        r = records[highlight]
        ax.plot([r.kb], [100 * r.accuracy], "o", ms=18, mfc="none", mec="red", mew=2.5, label="current")
    ax.set_xscale("log")
    ax.set_xlabel("size on disk (KB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def digit_grid(images: torch.Tensor, labels: torch.Tensor, *, n: int = 20, cols: int = 10, title: str = "") -> Figure:
    """The first ``n`` images ``(N, 1, H, W)`` in a grid, each titled with its label."""
    if n < 1 or n > len(images):
        raise ValueError(f"n must be in [1, {len(images)}], got {n}")
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.25 * rows), layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(str(int(labels[i])), fontsize=12)
    if title:
        fig.suptitle(title)
    return fig


def bars(labels: Sequence[str], series: dict[str, Sequence[float]], *, ylabel: str, title: str = "", ax=None,
         log: bool = False) -> Figure:
    """Grouped bars: one group per label, one bar per series (e.g. params / saved bytes / storage bytes)."""
    fig, ax = _axes(ax)
    width = 0.8 / max(len(series), 1)
    for si, (name, values) in enumerate(series.items()):
        xs = [i + (si - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, values, width=width, label=name, color=COLORS[si % len(COLORS)])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return fig
