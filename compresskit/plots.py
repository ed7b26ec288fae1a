"""Plots a learner wants to look at: labelled axes with units, legends, big enough for a projector.

Every function returns the ``Figure`` it drew (so panels can display it and tests can inspect it) and
accepts an ``ax`` to draw into an existing figure instead.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import matplotlib

STANDARD = {"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 14, "legend.fontsize": 12, "xtick.labelsize": 13,
            "ytick.labelsize": 13, "lines.linewidth": 2.0, "lines.markersize": 6.0, "axes.linewidth": 0.8,
            "grid.linewidth": 0.8}
"""The workbook's style on a laptop screen."""
PROJECTOR_SCALE = 1.45
"""How much larger ``projector()`` makes fonts, lines and markers: read from the back of a room at 1280x720."""
PROJECTOR_ENV = "COMPRESSKIT_PROJECTOR"
"""Set to 1 (as the lecture view does) and every plot starts in projector style."""
_scale = [1.0]

matplotlib.rcParams.update(
    {**STANDARD, "figure.dpi": 90,
     # titles at a fixed height above the axes: matplotlib otherwise measures every tick label on each draw to lift
     # titles over top-side labels, which no plot here has (~6 % of a two-axes slider redraw, measured)
     "axes.titley": 1.0}
)
import matplotlib.pyplot as plt  # after the rcParams above
import numpy as np
import torch
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from compresskit.checks import (
    check_bool,
    check_int,
    check_items,
    check_number,
    check_tensor,
    checked,
)
from compresskit.metrics import Record
from compresskit.plotdata import check_points, check_series, error_bars

__all__ = ["STANDARD", "PROJECTOR_SCALE", "PROJECTOR_ENV", "projector", "projector_on", "FIGSIZE", "COLORS",
           "MIN_POINTS", "min_points", "accuracy_vs_size", "label_points", "digit_grid", "bars", "vlines", "png",
           "figure", "weight_histogram", "pixel_map", "curves", "errorbars", "dodged", "pareto", "sample_box",
           "perplexity_vs_size", "plot_beside_text", "plain_log"]


@checked
def projector(on: bool = True) -> None:
    """Switch every plot drawn from now on to projector style (``on=True``: fonts, lines and markers
    ``PROJECTOR_SCALE`` times larger) or back to the screen style. The lecture view turns it on through the
    ``COMPRESSKIT_PROJECTOR=1`` environment variable, read when this module is imported."""
    check_bool("on", on)
    _scale[0] = PROJECTOR_SCALE if on else 1.0
    matplotlib.rcParams.update({k: v * _scale[0] for k, v in STANDARD.items()})


def projector_on() -> bool:
    """Whether plots are drawn in projector style now."""
    return _scale[0] != 1.0


MIN_POINTS = {"screen": 8.0, "projector": 11.0}
"""The smallest font size (points) any text of a plot may have: 8 pt on a laptop screen, 11 pt in projector style.
``fit_titles`` never shrinks a text below it and ``problems`` reports any text drawn smaller."""


def min_points() -> float:
    """The text floor of the current style (``MIN_POINTS``)."""
    return MIN_POINTS["projector" if projector_on() else "screen"]


def _z(size: float) -> float:
    """A line width, marker or font size in the current style."""
    return size * _scale[0]


FIGSIZE = (9, 5.2)
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def plain_log(axis) -> None:
    """Put ``axis`` (an axes' ``xaxis`` or ``yaxis``) on a log scale with plain-number labels (1, 10, 100) and minor
    ticks at 2x and 5x, labelled only on short axes.

    Matplotlib's default mathtext labels and dense minor ticks cost most of a redraw (measured: ~60 % of a
    three-panel slider update); plain labels also read better from the back of a room.
    """
    if not isinstance(axis, Axis) or axis.axes is None:
        raise TypeError(f"axis must be a matplotlib axis (ax.xaxis or ax.yaxis), got {type(axis).__name__}")
    (axis.axes.set_xscale if axis.axis_name == "x" else axis.axes.set_yscale)("log")
    axis.set_major_locator(ticker.LogLocator(base=10))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))

    def minor(v, _):  # label 2x and 5x only on short axes, where major labels alone would be too few
        low, high = axis.get_view_interval()
        return f"{v:g}" if low > 0 and high / low <= 100 else ""

    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def _axes(ax, figsize=FIGSIZE):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


@checked
def accuracy_vs_size(
    records: Sequence[Record],
    *,
    highlight: int | None = None,
    ax: Axes | None = None,
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
    records = check_items("records", records, Record, empty=False)
    if highlight is not None:
        check_int("highlight", highlight, -len(records), len(records) - 1)
    fig, ax = _axes(ax)
    groups = list(dict.fromkeys(r.group or "model" for r in records))
    for gi, group in enumerate(groups):
        pts = [r for r in records if (r.group or "model") == group]
        ax.plot([r.kb for r in pts], [100 * r.accuracy for r in pts], "o", ms=_z(9), color=COLORS[gi % len(COLORS)],
                label=group, alpha=0.85)
    if highlight is not None:
        r = records[highlight]
        ax.plot([r.kb], [100 * r.accuracy], "o", ms=_z(18), mfc="none", mec="red", mew=_z(2.5), label="current")
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_xlabel("size on disk (KB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if annotate:  # last: placed where the axes end up
        label_points(ax, [(r.name, r.kb, 100 * r.accuracy) for r in records if r.name], fontsize=_z(11))
    return fig


_OFFSETS = ((6, 5), (6, -14), (-6, 5), (-6, -14), (6, 16), (6, -26), (-6, 16), (-6, -26))  # points from the marker


@checked
def label_points(ax: Axes, labels: list[tuple[str, float, float]], *, fontsize: float, color: str = "black") -> list:
    """Write each ``(text, x, y)`` next to its point, trying a few places around the point (right or left, above or
    below) and taking the first that stays inside the axes and overlaps no label placed before it and no other
    labelled point; a label that fits nowhere is left out rather than written over another. Returns the annotations
    drawn."""
    check_number("fontsize", fontsize, 0.0, low_open=True)
    renderer = ax.figure.canvas.get_renderer()
    engine = ax.figure.get_layout_engine()
    if engine is not None:  # a constrained layout places the axes when drawing: place them now, to measure there
        ax.set_xlim(ax.get_xlim())  # and the limits as the points set them, before the labels are counted in
        ax.set_ylim(ax.get_ylim())
        engine.execute(ax.figure)
    ax.get_xlim(), ax.get_ylim()  # the limits autoscaled now: the points' pixels below depend on them
    placed, boxes = [], []
    r = 0.4 * fontsize * ax.figure.dpi / 72  # about a marker's radius in pixels: no label covers another's point
    marks = [Bbox.from_extents(px - r, py - r, px + r, py + r)
             for px, py in (ax.transData.transform((x, y)) for _, x, y in labels)]
    for i, (text, x, y) in enumerate(labels):
        for dx, dy in _OFFSETS:
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                               color=color, ha="left" if dx > 0 else "right")
            box = note.get_window_extent(renderer)
            inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1 and ax.bbox.y0 <= box.y0 and box.y1 <= ax.bbox.y1
            if inside and not any(box.overlaps(b) for b in boxes) and \
                    not any(box.overlaps(m) for j, m in enumerate(marks) if j != i):
                break
            note.remove()
        else:  # nowhere free: the label is left out (the point keeps its colour and the legend its group)
            continue
        placed.append(note)
        boxes.append(box)
    return placed


@checked
def digit_grid(images: torch.Tensor, labels: torch.Tensor, *, n: int = 20, cols: int = 10, title: str = "") -> Figure:
    """The first ``n`` images ``(N, 1, H, W)`` in a grid, each titled with its label."""
    check_tensor("images", images)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got shape {tuple(images.shape)}")
    check_int("n", n, 1, len(images))
    check_int("cols", cols, 1)
    if labels.dim() != 1 or len(labels) < n:
        raise ValueError(f"labels must be a 1-d tensor of at least n={n} labels, got shape {tuple(labels.shape)}")
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.25 * rows), layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(str(int(labels[i])), fontsize=_z(12))
    if title:
        fig.suptitle(title)
    return fig


@checked
def bars(labels: Sequence[str], series: dict[str, Sequence[float]], *, ylabel: str, title: str = "",
         ax: Axes | None = None, log: bool = False) -> Figure:
    """Grouped bars: one group per label, one bar per series (e.g. params / saved bytes / storage bytes)."""
    labels = check_items("labels", labels, str, empty=False)
    check_series(series, 1, len(labels))
    fig, ax = _axes(ax)
    width = 0.8 / max(len(series), 1)
    for si, (name, values) in enumerate(series.items()):
        xs = [i + (si - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, values, width=width, label=name, color=COLORS[si % len(COLORS)])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return fig


@checked
def vlines(ax: Axes, xs: Sequence[float], ymin: float, ymax: float, **style):
    """Vertical lines at ``xs`` from ``ymin`` to ``ymax`` as one NaN-separated ``Line2D``; returns it.

    Looks like ``ax.vlines`` but costs the same for 2 or 256 lines: ``ax.vlines`` makes one path per line and, on a
    log axis, transforms each to update the data limits (~12 ms for the 255 levels of 8 bits, in a slider's update).
    """
    given = xs
    try:
        xs = np.asarray(xs, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"xs must be a list of numbers, got {given!r:.60}") from None
    if not np.isfinite(xs).all():
        raise ValueError(f"xs must be finite numbers, got {given!r:.60}")
    x = np.repeat(xs, 3)
    x[2::3] = np.nan
    y = np.tile([ymin, ymax, np.nan], len(xs))
    (line,) = ax.plot(x, y, **style)
    return line


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, drawn once (no tight bounding box: IPython's default draws twice) and compressed
    lightly: what a panel sends to the browser on every slider move."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__} {fig!r:.40}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


@checked
def figure(ncols: int = 1, *, width: float = 6.0, height: float = 4.6, nrows: int = 1, fit: bool = False):
    """A figure with ``nrows x ncols`` axes (flattened list), sized for a projector. Fixed margins (fast to redraw)
    unless ``fit``: then matplotlib's constrained layout measures every label, for plots whose labels are long or
    rotated (slower to draw; for panels computed once)."""
    check_int("ncols", ncols, 1, 12)
    check_int("nrows", nrows, 1, 12)
    check_number("width", width, 0.0, 30.0, low_open=True)
    check_number("height", height, 0.0, 30.0, low_open=True)
    if fit:
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                                 layout="constrained")
        return fig, list(axes.flat)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    z = _scale[0]  # larger fonts (projector style) need wider margins for the tick and axis labels
    fig.subplots_adjust(left=0.11 * z, right=1 - 0.025 * z, bottom=0.14 * z, top=1 - 0.12 * z, wspace=0.3 * z,
                        hspace=0.45 * z)  # right: room for half a tick label at the x axis' end
    return fig, list(axes.flat)


@checked
def weight_histogram(w: torch.Tensor, kept: torch.Tensor | None = None, *, ax: Axes | None = None, bins: int = 80,
                     title: str = "Weight values", log: bool = True) -> Figure:
    """Histogram of a weight tensor; with a keep-mask, the removed weights in grey and the kept ones in colour."""
    check_tensor("w", w)
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape {tuple(w.shape)}): there is no histogram to draw")
    if kept is not None and (not isinstance(kept, torch.Tensor) or kept.shape != w.shape):
        raise ValueError(f"kept must be a mask of w's shape {tuple(w.shape)}, got "
                         f"{tuple(kept.shape) if isinstance(kept, torch.Tensor) else type(kept).__name__}")
    check_int("bins", bins, 1)
    fig, ax = _axes(ax)
    values = w.detach().flatten().cpu().numpy()
    edges = np.linspace(float(values.min()), float(values.max()) + 1e-12, bins + 1)
    # one filled step artist per series: 20x faster to draw than ax.hist's one patch per bin (slider hot path)
    if kept is None:
        ax.stairs(np.histogram(values, edges)[0], edges, fill=True, color=COLORS[0], label="weights")
    else:
        keep = kept.flatten().bool().cpu().numpy()
        ax.stairs(np.histogram(values[~keep], edges)[0], edges, fill=True, color="0.7",
                  label=f"removed ({(~keep).sum():,})")
        ax.stairs(np.histogram(values[keep], edges)[0], edges, fill=True, color=COLORS[0], alpha=0.9,
                  label=f"kept ({keep.sum():,})")
    if log:
        ax.set_yscale("log")
        plain_log(ax.yaxis)
        ax.set_ylim(0.7, ax.get_ylim()[1] * 8)  # headroom for the legend above the peak
    else:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count" + (" (log scale)" if log else ""))
    ax.set_title(title)
    ax.legend(loc="upper right")
    return fig


@checked
def pixel_map(values: torch.Tensor, *, ax: Axes | None = None, title: str = "", label: str = "",
              vmax: float | None = None,
              fmt: str = "{:.0f}") -> Figure:
    """A small 2-d map (e.g. 8x8: one value per input pixel) as an image with each value written in its cell, and a
    colour bar labelled ``label``; readable from the back of a room, unlike a 300x64 speckle."""
    if vmax is not None:
        check_number("vmax", vmax, 0.0, low_open=True)
    try:
        fmt.format(1.0)
    except (ValueError, IndexError, KeyError):
        raise ValueError(f"fmt must format one number, as '{{:.0f}}', got {fmt!r}") from None
    if "{" not in fmt:
        raise ValueError(f"fmt must format one number, as '{{:.0f}}', got {fmt!r}")
    check_tensor("values", values, floating=False)
    fig, ax = _axes(ax)
    v = values.detach().float().cpu()
    if v.dim() != 2:
        raise ValueError(f"values must be a 2-d tensor, got shape {tuple(v.shape)}")
    high = float(v.max()) if vmax is None else vmax
    image = ax.imshow(v.numpy(), cmap="viridis", vmin=0, vmax=high if high > 0 else 1, interpolation="nearest")
    # numbers in the cells at a size the cells hold (a monospace digit is ~0.62 of the font size wide), and only when
    # that size reaches the style's floor: otherwise the colour and the colour bar carry the values
    box = ax.get_position()
    cell_pt = min(box.width * fig.get_figwidth() / v.shape[1], box.height * fig.get_figheight() / v.shape[0]) * 72
    digits = max(len(fmt.format(x)) for x in v.flatten().tolist())
    size = min(_z(9), 0.85 * cell_pt / (0.62 * digits))
    for (i, j), value in np.ndenumerate(v.numpy()) if size >= min_points() else ():
        dark = value < 0.6 * (high if high > 0 else 1)
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=size, color="white" if dark else "black")
    ax.set_xticks(range(v.shape[1]))
    ax.set_yticks(range(v.shape[0]))
    ax.set_xlabel("pixel column")
    ax.set_ylabel("pixel row")
    fig.colorbar(image, ax=ax, label=label, fraction=0.046, pad=0.04)
    ax.set_title(title, pad=_z(12))  # above the colour bar's top tick label, which reaches past the axes' top
    return fig


@checked
def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str, title: str = "",
           ax: Axes | None = None, logx: bool = False, logy: bool = False, marker: str = "o",
           hline: float | None = None,
           hline_label: str = "") -> Figure:
    """Several named (x, y) lines on one axes, e.g. accuracy against sparsity per method."""
    check_series(series, 2)
    fig, ax = _axes(ax)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.plot(list(xs), list(ys), marker=marker, lw=_z(2), ms=_z(6), label=name, color=COLORS[i % len(COLORS)])
    _reference(ax, hline, hline_label, logy)
    return _finish(fig, ax, xlabel, ylabel, title, logx, logy)


def _reference(ax, hline: float | None, label: str, logy: bool) -> None:
    """A dashed horizontal reference line at ``hline`` (none for None), kept in view and off the frame."""
    if hline is None:
        return
    ax.axhline(hline, color="0.3", ls="--", lw=_z(1.5), label=label or None)
    low, high = ax.get_ylim()
    pad = 0.04 * (high - low)
    if not logy and not low + pad <= hline <= high - pad:
        ax.set_ylim(min(low, hline - pad), max(high, hline + pad))


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, logx: bool, logy: bool) -> Figure:
    """Labels, log axes with plain numbers, grid and legend: the common end of the line plots."""
    if logx:
        ax.set_xscale("log")
        plain_log(ax.xaxis)
    if logy:
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


@checked
def dodged(xs: Sequence[float], index: int, count: int, dodge: float) -> list[float]:
    """``xs`` of the ``index``-th of ``count`` series moved aside by the factor ``1 + dodge * (index - (count - 1) /
    2)`` (the same on a log axis at any x): draw a series' extra marks (a seed's crosses) at these x too."""
    check_int("count", count, 1)
    check_int("index", index, 0, count - 1)
    check_number("dodge", dodge, 0.0, 0.2)
    for i, x in enumerate(xs):
        check_number(f"xs[{i}]", x)
    return [float(x) * (1 + dodge * (index - (count - 1) / 2)) for x in xs]


@checked
def errorbars(series: dict[str, tuple[Sequence[float], Sequence[float], Sequence]], *, xlabel: str,
              ylabel: str, title: str = "", ax: Axes | None = None, logx: bool = False,
              styles: dict[str, dict] | None = None, dodge: float = 0.0, hline: float | None = None,
              hline_label: str = "") -> Figure:
    """Named (x, y, error) series drawn as lines with error bars, e.g. accuracy over seeds against size. Each error is
    a number (bars from y - error to y + error, e.g. a standard deviation) or an interval ``(low, high)`` that holds y
    (e.g. a speed-up's confidence interval, ``timing.SpeedComparison.interval``). ``hline``: a dashed reference line
    (labelled ``hline_label``), kept in view.

    ``styles`` maps a series' name to matplotlib keywords that override its defaults (e.g. the same ``color`` for
    one method and a ``linestyle`` per model family, so that pairs read at a glance); unknown names are an error.
    ``dodge`` moves the i-th of n series aside by the factor ``dodged`` gives, so that series measured at the same
    x do not hide each other's markers. A series of one point is drawn as its marker alone (its legend too).
    """
    check_number("dodge", dodge, 0.0, 0.2)
    check_series(series, 3)
    bars = {name: error_bars(name, ys, errors) for name, (_, ys, errors) in series.items()}
    styles = styles or {}
    unknown = set(styles) - set(series)
    if unknown:
        raise ValueError(f"styles names series that are not plotted: {sorted(unknown)}; series: {list(series)}")
    fig, ax = _axes(ax)
    for i, (name, (xs, means, _)) in enumerate(series.items()):
        kwargs = {"marker": "o", "lw": _z(2), "ms": _z(6), "capsize": _z(5), "color": COLORS[i % len(COLORS)],
                  **styles.get(name, {})}
        if len(xs) == 1:  # no line to draw: the legend must not show one
            kwargs["ls"] = "none"
            kwargs.pop("linestyle", None)
        ax.errorbar(dodged(xs, i, len(series), dodge), list(means), yerr=bars[name], label=name, **kwargs)
    _reference(ax, hline, hline_label, False)
    return _finish(fig, ax, xlabel, ylabel, title, logx, False)


@checked
def pareto(points, *, cost: str = "bytes", front=None, highlight=None, budget: float | None = None,
           ax: Axes | None = None, title: str = "") -> Figure:
    """Recipes (``pipeline.Point``) as test accuracy (%) against file size (KB) or latency (ms), both on log axes,
    one colour per family; the Pareto front as a line; ``highlight`` ringed in red; ``budget`` (bytes) as a dashed
    vertical line. The legend sits outside the axes, so it covers no point."""
    if cost not in ("bytes", "latency_ms"):
        raise ValueError(f"cost must be 'bytes' or 'latency_ms' (as in pipeline.pareto_front), got {cost!r}")
    check_points("points", points, empty=False)
    if front is not None:
        check_points("front", front)
    if highlight is not None:
        check_points("highlight", [highlight])
    if budget is not None:
        check_number("budget", budget, 0.0, low_open=True)
    if ax is None:  # fixed margins (constrained layout measures the outside legend on every draw: slider hot path)
        fig, ax = plt.subplots(figsize=(11, 5.6))
        z = _scale[0]  # projector fonts: wider margins for the y label and the legend beside the axes
        fig.subplots_adjust(left=0.08 * z, right=1 - 0.26 * z, bottom=0.12 * z, top=1 - 0.2 * z)
    else:
        fig = ax.figure
    value = (lambda p: p.bytes / 1024) if cost == "bytes" else (lambda p: p.latency_ms)
    groups = list(dict.fromkeys(p.group for p in points))
    for i, group in enumerate(groups):
        mine = [p for p in points if p.group == group]
        ax.plot([value(p) for p in mine], [100 * p.accuracy for p in mine], "o", ms=_z(9),
                color=COLORS[i % len(COLORS)], label=group)
    if front:
        ax.plot([value(p) for p in front], [100 * p.accuracy for p in front], "-", color="0.35", lw=_z(1.5),
                label="Pareto front", zorder=0)
        # the front's recipes by name; the others are in the printed table
        label_points(ax, [(p.name, value(p), 100 * p.accuracy) for p in front], fontsize=_z(10), color="0.25")
    if highlight is not None:
        ax.plot([value(highlight)], [100 * highlight.accuracy], "o", ms=_z(20), mfc="none", mec="red", mew=_z(2.5),
                label="chosen")
    if budget is not None:
        ax.axvline(budget / 1024, color="red", ls="--", lw=_z(1.5), label="byte budget")
    ax.set_xscale("log")
    # a fixed 1-2-5 ladder of plain labels and no minor ticks: a tenth of the tick artists of the default log axis
    # (the ticks were half of a slider move's redraw)
    values = [value(p) for p in points] + ([budget / 1024] if budget is not None and cost == "bytes" else [])
    low, high = min(values) / 1.6, max(values) * 1.6
    subs = (1, 2, 5) if high / low > 20 else (1, 1.5, 2, 3, 4, 5, 6, 8)
    ladder = [m * 10**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in subs]
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(ticker.FixedLocator([v for v in ladder if low <= v <= high]))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("file size (KB, log scale)" if cost == "bytes" else "latency (ms per batch, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


@checked
def sample_box(ax: Axes, text: str, *, title: str = "sample text", width: int = 44, lines: int = 14) -> None:
    """Generated text in a monospace box filling ``ax`` (no ticks): at most ``lines`` lines of ``width`` characters,
    fewer when the axes cannot hold them at the current style's font size, longer lines cut with "~", so the text
    never leaves the axes whatever the style."""
    check_int("width", width, 1)
    check_int("lines", lines, 1)
    size = _z(10.5)
    fig = ax.figure
    box = ax.get_position()
    height_pt, width_pt = box.height * fig.get_figheight() * 72, box.width * fig.get_figwidth() * 72
    lines = max(1, min(lines, int(0.9 * height_pt / (1.2 * size))))  # monospace: a line is ~1.2 font sizes high,
    width = max(8, min(width, int(0.95 * width_pt / (0.6 * size))))  # a character ~0.6 of one wide
    shown = [line if len(line) <= width else line[: width - 1] + "~" for line in text.rstrip().split("\n")]
    ax.text(0.02, 0.98, "\n".join(shown[:lines]), family="monospace", fontsize=size, va="top", ha="left",
            transform=ax.transAxes, clip_on=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)


@checked
def plot_beside_text(*, width: float = 5.6, height: float = 4.8, share: float = 0.6) -> tuple[Figure, list[Axes]]:
    """A figure of two panels, ``width`` x ``height`` inches each: a plot on the left taking ``share`` of their width
    and an axes for ``sample_box`` on the right (44 characters a line need less room than a plot)."""
    check_number("share", share, 0.2, 0.8)
    fig, axes = figure(2, width=width, height=height)
    left, right = axes[0].get_position(), axes[1].get_position()
    gap = right.x0 - left.x1
    split = left.x0 + (right.x1 - left.x0 - gap) * share
    axes[0].set_position([left.x0, left.y0, split - left.x0, left.height])
    axes[1].set_position([split + gap, right.y0, right.x1 - split - gap, right.height])
    return fig, list(axes)


@checked
def perplexity_vs_size(series: dict[str, tuple[Sequence[float], Sequence[float]]], *, baseline: float,
                       highlight: tuple[float, float] | None = None, sample: str | None = None, ax: Axes | None = None,
                       title: str = "", ymax: float | None = None) -> Figure:
    """Perplexity against file size (KB, log axis): one line per named series of ``(bytes, perplexity)``, float32's
    perplexity as a dashed line, ``highlight`` (bytes, perplexity) ringed in red. With ``sample``, the generated text
    of the highlighted model sits in a box to the right (``sample_box``). Perplexities above ``ymax`` are drawn at
    the top edge as open triangles, so a broken setting does not squash the others."""
    check_series(series, 2)
    check_number("baseline", baseline, 0.0, low_open=True)
    if ymax is not None:
        check_number("ymax", ymax, 0.0, low_open=True)
    if ax is None:
        if sample is None:
            fig, axes = figure(1, width=6.4, height=4.8)
        else:
            fig, axes = plot_beside_text()
        ax = axes[0]
    else:
        fig, axes = ax.figure, [ax]
    top = ymax if ymax is not None else max(max(ys) for _, ys in series.values()) * 1.05
    for i, (name, (xs, ys)) in enumerate(series.items()):
        kb = [x / 1024 for x in xs]
        clipped = [min(y, top) for y in ys]
        ax.plot(kb, clipped, "-o", lw=_z(2), ms=_z(6), color=COLORS[i % len(COLORS)], label=name)
        over = [(k, top) for k, y in zip(kb, ys) if y > top]
        if over:
            ax.plot(*zip(*over), "^", ms=_z(10), mfc="none", color=COLORS[i % len(COLORS)])
    ax.axhline(baseline, color="0.3", ls="--", lw=_z(1.5), label="float32")
    if highlight is not None:
        ax.plot([highlight[0] / 1024], [min(highlight[1], top)], "o", ms=_z(16), mfc="none", mec="red", mew=_z(2.5),
                label="current")
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_ylim(baseline * 0.97, top)
    ax.set_xlabel("file size (KB, log scale)")
    ax.set_ylabel("perplexity (lower is better)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=_z(10))
    if sample is not None:
        sample_box(axes[1], sample)
    return fig


if os.environ.get(PROJECTOR_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
    projector(True)
