"""Plots that can be read: every text at or above a floor (8 pt on screen, 11 pt in projector style), nothing past the
canvas, no tick labels or text labels run into each other.

``fit_titles`` runs on every panel update (cheap: text layout only, no full draw): it shrinks a title or axis label
that would leave the canvas or outgrow its axis, never below the floor, then breaks it into lines, and thins tick
labels that overlap. ``problems`` draws the figure and lists, in words, what is still hard to read; strict runs (the
test suite) fail a panel that has any, in the screen and in the projector style (``widgets.Panel.check_style``).
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from compresskit.checks import check_number, checked
from compresskit.plots import min_points

__all__ = ["fit_titles", "overflow", "problems"]


def _wrap_once(text) -> bool:
    """Break the longest line of a text at the space nearest its middle; False when it has no space left to break."""
    lines = text.get_text().split("\n")
    longest = max(range(len(lines)), key=lambda i: len(lines[i]))
    words = lines[longest]
    if " " not in words.strip():
        return False
    middle = len(words) / 2
    cut = min((i for i, ch in enumerate(words) if ch == " "), key=lambda i: abs(i - middle))
    lines[longest:longest + 1] = [words[:cut], words[cut + 1:]]
    text.set_text("\n".join(lines))
    return True


def _tick_labels(axis, renderer) -> list[list]:
    """The tick labels ``axis`` draws (major and minor, inside its view, with text) as ``(location, extent)`` in axis
    order, one list per side (bottom/left, top/right); computing them places the ticks as a draw would."""
    low, high = sorted(axis.get_view_interval())
    axis.get_majorticklabels()  # these place the ticks and set their texts, as a draw would
    axis.get_minorticklabels()
    sides = [[], []]
    for ticks in (axis.get_major_ticks(len(axis.get_majorticklocs())), axis.get_minor_ticks(
            len(axis.get_minorticklocs()))):
        for tick in ticks:
            if not low <= tick.get_loc() <= high:
                continue
            for side, label in zip(sides, (tick.label1, tick.label2)):
                if label.get_visible() and label.get_text().strip():
                    side.append((tick.get_loc(), label.get_window_extent(renderer)))
    return [sorted(side, key=lambda item: item[0]) for side in sides]


def _overlapping(boxes, x: bool, gap: float = 2.0) -> int:
    """How many neighbouring boxes (in the order they are drawn along the axis, which an inverted axis such as an
    image's reverses) overlap or come closer than ``gap`` pixels."""
    boxes = sorted(boxes, key=(lambda b: b.x0) if x else (lambda b: b.y0))
    return sum((b.x0 - a.x1 if x else b.y0 - a.y1) < gap for a, b in zip(boxes, boxes[1:]))


def _thin_ticks(axis, renderer) -> bool:
    """Labels of ``axis`` that run into each other are thinned: every other labelled minor tick goes first (a log axis
    labels its 2x and 5x ticks on a short range), then every other major tick (the ticks kept are fixed where they
    are). Returns whether anything changed."""
    x = axis.axis_name == "x"
    changed = False
    for _ in range(8):
        sides = _tick_labels(axis, renderer)
        if not any(_overlapping([box for _, box in side], x) for side in sides):
            return changed
        low, high = sorted(axis.get_view_interval())
        labelled = {loc for side in sides for loc, _ in side}
        minors = [v for v in axis.get_minorticklocs() if low <= v <= high and v in labelled]
        majors = [v for v in axis.get_majorticklocs() if low <= v <= high]
        if len(minors) > 1:
            axis.set_minor_locator(ticker.FixedLocator(minors[::2]))
        elif len(majors) > 2:
            axis.set_major_locator(ticker.FixedLocator(majors[::2]))
        elif minors:
            axis.set_minor_formatter(ticker.NullFormatter())
        else:
            return changed
        changed = True
    return changed


@checked
def fit_titles(fig: Figure, *, margin: float = 4.0) -> Figure:
    """Make every title and axis label fit the canvas without going below the text floor (``min_points``), and thin
    tick labels that run into each other. A text that would reach past the canvas (a verdict in a title, a long
    label in projector style) is shrunk, at most to the floor, then broken into lines at the floor. Titles are
    centred on their axes, so each may take twice the room between its centre and the nearer edge; an x axis label
    is only measured across and a y label only up (their other coordinate is placed at draw time, after the tick
    labels: measured before, they would sit at the canvas' edge). Only text layout is measured, no full draw: cheap
    enough for a slider's hot path. A constrained layout is computed here (again if a text changed) and then kept as
    it is: the figure's next draw does not lay it out once more (40-60 ms of a panel's update). Returns ``fig``."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__} {fig!r:.40}")
    check_number("margin", margin, 0.0)
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    engine = fig.get_layout_engine()
    if engine is not None:  # constrained layout places the axes when drawing: place them now, to measure there
        engine.execute(fig)
    floor = min_points()
    # (text, direction measured, half the length of its axis: an axis label longer than its axis reads as a
    # label of the neighbour)
    texts = [(t, "both", math.inf) for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title)]
    texts += [(ax.xaxis.label, "across", 0.5 * ax.bbox.width) for ax in fig.axes]
    texts += [(ax.yaxis.label, "up" if ax.yaxis.label.get_rotation() % 180 else "across", 0.5 * ax.bbox.height)
              for ax in fig.axes]
    texts += [(fig._suptitle, "both", math.inf)] if fig._suptitle is not None else []
    changed = False
    for text, direction, along in texts:
        if not text.get_visible() or not text.get_text().strip():
            continue
        for _ in range(10):  # text does not scale exactly with its font size (hinting): measure again
            box = text.get_window_extent(renderer)
            cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
            room_x, room_y = min(cx, width - cx) - margin, min(cy, height - cy) - margin
            across = room_x / (box.width / 2) if direction in ("both", "across") and box.width else 1.0
            up = room_y / (box.height / 2) if direction in ("both", "up") and box.height else 1.0
            length = box.height if direction == "up" else box.width
            fits_axis = along / (length / 2) if length else 1.0  # an axis label no longer than its axis
            factor = min(across, up, fits_axis)
            if factor >= 1.0:
                break
            size = text.get_fontsize()
            if size <= floor + 1e-6:  # at the floor: one more line if the text is too long for the canvas or axis
                if min(across if direction != "up" else up, fits_axis) >= 1.0 or not _wrap_once(text):
                    break
            else:
                text.set_fontsize(max(size * factor * 0.97, floor))
            changed = True
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            changed |= _thin_ticks(axis, renderer)
    if engine is not None:
        if changed:  # smaller texts need less room: place the axes for them
            engine.execute(fig)
        fig.set_layout_engine("none")  # the places just computed stay; a draw would compute them again
    return fig


def overflow(fig: Figure) -> dict | None:
    """How far (inches) everything the figure draws reaches past each edge of its canvas, or None when it all fits:
    a full draw, for tests and strict runs, not for a slider's hot path."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__} {fig!r:.40}")
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    past = {"left": -drawn.x0, "bottom": -drawn.y0, "right": drawn.x1 - width, "top": drawn.y1 - height}
    past = {edge: round(float(v), 2) for edge, v in past.items() if v > 0.01}
    return past or None


def _frame_texts(ax, renderer) -> list:
    """The extents of an axes' title, axis labels and tick labels as drawn (after a draw)."""
    boxes = [t.get_window_extent(renderer) for t in (ax.title, ax.xaxis.label, ax.yaxis.label)
             if t.get_visible() and t.get_text().strip()]
    return boxes + [box for axis in (ax.xaxis, ax.yaxis) for side in _tick_labels(axis, renderer) for _, box in side]


def problems(fig: Figure) -> list[str]:
    """What makes ``fig`` hard to read, in words (empty when nothing): anything drawn past the canvas
    (``overflow``), any visible text smaller than the current style's floor (``min_points``: titles, axis and tick
    labels, legends, annotations), tick labels of one axis that overlap, an axes' title and axis labels that
    overlap, labels written in a plot that overlap each other, a legend entry whose line shows no point in the axes,
    a horizontal reference line lying on the frame. A full draw: for tests and strict runs."""
    past = overflow(fig)  # draws the figure: every text below is placed as shown
    found = [f"draws past its canvas ({past}, inches)"] if past else []
    renderer = fig.canvas.get_renderer()
    floor = min_points()
    small = sorted({(round(t.get_fontsize(), 1), t.get_text().strip().replace("\n", " ")[:40])
                    for t in fig.findobj(matplotlib.text.Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < floor - 1e-6
                    and t.get_window_extent(renderer).overlaps(fig.bbox)})
    if small:
        found.append(f"text below {floor:g} pt: " + ", ".join(f"{text!r} at {size:g} pt" for size, text in small[:6]))
    for i, ax in enumerate(fig.axes):
        for axis in (ax.xaxis, ax.yaxis):
            if any(_overlapping([box for _, box in side], axis.axis_name == "x", gap=0.0)
                   for side in _tick_labels(axis, renderer)):
                found.append(f"axes {i}: {axis.axis_name} tick labels overlap")
        notes = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible() and t.get_text().strip()]
        if any(a.overlaps(b) for k, a in enumerate(notes) for b in notes[k + 1:]):
            found.append(f"axes {i}: text labels in the plot overlap")
        own = _frame_texts(ax, renderer)
        for j, other in enumerate(fig.axes[i + 1:], i + 1):  # an axes' texts over a neighbour's (a colour bar's)
            if any(a.overlaps(b) for a in own for b in _frame_texts(other, renderer)):
                found.append(f"axes {i} and {j}: their titles, axis or tick labels overlap")
        found += [f"axes {i}: {p}" for p in _unseen(ax)]
        named = {"title": ax.title, "x label": ax.xaxis.label, "y label": ax.yaxis.label}
        boxes = {n: t.get_window_extent(renderer) for n, t in named.items() if t.get_visible() and t.get_text().strip()}
        for a, b in (("title", "y label"), ("title", "x label"), ("x label", "y label")):
            if a in boxes and b in boxes and boxes[a].overlaps(boxes[b]):
                found.append(f"axes {i}: its {a} and {b} overlap")
    return found


def _unseen(ax) -> list[str]:
    """Lines a reader is told about but cannot see: a legend entry whose line has no point inside the axes' view,
    a horizontal reference line (``axhline``) on the top or bottom edge, hidden by the frame."""
    found = []
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    legend = ax.get_legend()
    shown = {t.get_text() for t in legend.get_texts()} if legend is not None else set()
    for line in ax.get_lines():
        label = line.get_label()
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if _is_hline(line, x, y):
            if min(abs(y[0] - y0), abs(y[0] - y1)) <= 0.005 * (y1 - y0):
                found.append(f"the reference line {label!r} at {y[0]:g} lies on the frame (widen the y limits)")
        elif label in shown and x.size and line.get_transform() == ax.transData and \
                not np.any((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)):  # (axvline's y is in axes units)
            found.append(f"the legend names {label!r}, whose line has no point inside the axes")
    return found


def _is_hline(line, x: np.ndarray, y: np.ndarray) -> bool:
    """A line from ``axhline`` (data ``x``, ``y``): x from 0 to 1 in axes coordinates (not data), at one data y."""
    return x.size == 2 and x.tolist() == [0.0, 1.0] and y.size == 2 and y[0] == y[1] and \
        line.get_transform() != line.axes.transData
