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
from matplotlib.patches import Rectangle

from compresskit.checks import check_int, check_number, checked
from compresskit.plots import min_points

__all__ = ["fit_titles", "overflow", "problems", "legend_below"]


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
    _place_legends(fig, renderer)
    return fig


_LEGEND_PLACES = ("best", "upper left", "upper right", "lower left", "lower right", "center left", "center right",
                 "upper center", "lower center", "center")


def _place_legends(fig: Figure, renderer) -> None:
    """An axes' legend that lies over data points or labels (``_covers``) is moved to the first of
    ``_LEGEND_PLACES`` inside its axes where it covers nothing, in its own columns, then in two (wider and flatter,
    if that fits the axes); where every place covers something, under its axes' x label, the figure growing by its
    height (``_grow_below``). A legend its author anchored elsewhere stays where it is."""
    under, frames = [], []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible() or legend._bbox_to_anchor is not None:
            continue
        if not any(_covers(legend, fig, renderer)):  # (inside its axes, the labels are not measured)
            continue
        frames = frames or [text for each in fig.axes for text in _frame_texts(each, renderer)]
        texts = legend.get_texts()
        entries = {"handles": legend.legend_handles, "labels": [t.get_text() for t in texts],
                   "fontsize": texts[0].get_fontsize()}
        for ncol in [legend._ncols] + ([2] if legend._ncols == 1 and len(texts) >= 3 else []):
            if ncol != legend._ncols:  # a legend's columns are fixed when it is made: make it again
                legend = ax.legend(ncol=ncol, **entries)
            if legend.get_window_extent(renderer).width > ax.bbox.width:
                continue
            if _free_place(legend, fig, renderer, frames):
                break
        else:  # under the axes, in two columns if they are no wider than the axes
            legend = ax.legend(ncol=2 if len(texts) >= 3 else 1, loc="upper center", **entries)
            if legend.get_window_extent(renderer).width > ax.bbox.width:
                legend = ax.legend(ncol=1, loc="upper center", **entries)
            under.append(legend)
    if under:  # each under its axes' x label, centred on the axes; the figure grows until the lowest fits
        gap = 0.06 * fig.dpi  # pixels between the x label and the legend, and below the legend
        for _ in range(3):
            for legend in under:
                box = legend.axes.get_position()
                legend.set_bbox_to_anchor(((box.x0 + box.x1) / 2, (_frame_bottom(legend.axes, renderer) - gap)
                                           / fig.bbox.height), transform=fig.transFigure)
            short = gap - min(legend.get_window_extent(renderer).y0 for legend in under)
            if short <= 0.5:
                break
            _grow_below(fig, short / fig.dpi)


def _free_place(legend, fig: Figure, renderer, frames: list) -> bool:
    """Move ``legend`` to the first of ``_LEGEND_PLACES`` where it covers nothing; False if there is none."""
    for place in _LEGEND_PLACES:
        legend.set_loc(place)
        if not any(_covers(legend, fig, renderer, frames)):
            return True
    return False


def _frame_bottom(ax, renderer) -> float:
    """The lowest pixel (from the figure's bottom) of an axes' frame, x tick labels and x label (the axis places its
    label for this measurement, as a draw would)."""
    axis = ax.xaxis.get_tightbbox(renderer)
    return min(ax.bbox.y0, axis.y0 if axis is not None else ax.bbox.y0)


def _grow_below(fig: Figure, extra: float) -> None:
    """Add ``extra`` inches at the bottom of ``fig``; every axes keeps its size and its place above."""
    width, height = fig.get_size_inches()
    places = [(ax, ax.get_position()) for ax in fig.axes]
    fig.set_size_inches(width, height + extra)
    for ax, box in places:
        ax.set_position([box.x0, (box.y0 * height + extra) / (height + extra), box.width,
                         box.height * height / (height + extra)])


@checked
def legend_below(fig: Figure, handles: list | None = None, labels: list | None = None, *, ncol: int = 3,
                 gap: float = 0.08):
    """One legend for the whole figure, in ``ncol`` columns under its axes, instead of a legend inside each axes
    (which, in projector style, has nowhere to go that hides no point); fewer columns if they would be wider than
    the figure. The figure grows by the legend's height and the axes keep their size. ``handles`` and ``labels``:
    the legend's entries (default: every axes' labelled artists, each label once); the axes' own legends are
    removed. ``gap``: inches between the x labels and the legend. For figures with fixed margins
    (``plots.figure(fit=False)``). Returns the legend."""
    check_int("ncol", ncol, 1, 12)
    check_number("gap", gap, 0.0, 2.0)
    if fig.get_layout_engine() is not None:
        raise ValueError("legend_below needs fixed margins (plots.figure(fit=False)): a layout engine would move it")
    if handles is None:
        found = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                found.setdefault(label, handle)
        handles, labels = list(found.values()), list(found)
    if not isinstance(handles, list) or not all(isinstance(h, matplotlib.artist.Artist) for h in handles):
        raise TypeError(f"handles must be a list of matplotlib artists (lines, patches), got {handles!r:.60}")
    if not isinstance(labels, list) or not all(isinstance(t, str) and t for t in labels):
        raise TypeError(f"labels must be a list of non-empty strings, got {labels!r:.60}")
    if len(labels) != len(handles) or not handles:
        raise ValueError(f"handles and labels must be non-empty lists of one length, got {len(handles)} handles and "
                         f"{None if labels is None else len(labels)} labels")
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    renderer = fig.canvas.get_renderer()
    for columns in range(ncol, 0, -1):  # fewer columns while the legend is wider than the figure
        legend = fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False, bbox_to_anchor=(0.5, 0.0))
        if columns == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            break
        legend.remove()
    _grow_below(fig, legend.get_window_extent(renderer).height / fig.dpi + gap)
    return legend


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
    a horizontal reference line lying on the frame, a legend over labels or data points. A full draw: for tests and
    strict runs."""
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
        found += [f"axes {i}: {p}" for p in _covered(ax.get_legend(), fig, renderer)]
        named = {"title": ax.title, "x label": ax.xaxis.label, "y label": ax.yaxis.label}
        boxes = {n: t.get_window_extent(renderer) for n, t in named.items() if t.get_visible() and t.get_text().strip()}
        for a, b in (("title", "y label"), ("title", "x label"), ("x label", "y label")):
            if a in boxes and b in boxes and boxes[a].overlaps(boxes[b]):
                found.append(f"axes {i}: its {a} and {b} overlap")
    for legend in fig.legends:
        found += [f"the figure's {p[4:]}" for p in _covered(legend, fig, renderer)]
    return found


def _covered(legend, fig: Figure, renderer) -> list[str]:
    """What ``legend`` (an axes' or the figure's) lies over, in words (``_covers``)."""
    if legend is None or not legend.get_visible():
        return []
    labels, hidden = _covers(legend, fig, renderer)
    found = ["its legend covers a title, axis, tick or point label"] if labels else []
    if hidden:
        found.append("its legend covers data points (" + ", ".join(f"{n} of {k!r}" for k, n in hidden.items()) + ")")
    return found


def _covers(legend, fig: Figure, renderer, frames: list | None = None) -> tuple[bool, dict[str, int]]:
    """Whether ``legend`` lies over any axes' title, axis or tick labels or a label written in the plot, and how many
    data points of each line (by label) it hides: line vertices, scatter points and the tops of bars inside an axes'
    view. Reference lines (``axhline``, ``axvline``: not in data coordinates) do not count. ``frames``: the axes'
    label boxes, when the caller has measured them already (they do not move with a legend)."""
    box = legend.get_window_extent(renderer).padded(-2.0)  # a point grazing the edge is still seen
    inside = legend.axes is not None and legend.axes.bbox.x0 <= box.x0 and box.x1 <= legend.axes.bbox.x1 and \
        legend.axes.bbox.y0 <= box.y0 and box.y1 <= legend.axes.bbox.y1
    if inside:  # within its axes' frame no title, axis or tick label can lie (axes do not overlap): not measured
        labels = False
    else:
        if frames is None:  # every axes' title, axis and tick labels (measured once by a caller that moves legends)
            frames = [text for ax in fig.axes for text in _frame_texts(ax, renderer)]
        labels = any(box.overlaps(text) for text in frames)
    hidden: dict[str, int] = {}

    def count(ax, label: str, xy: np.ndarray) -> None:
        n = int(np.sum(_inside(box, xy) & _inside(ax.bbox, xy)))  # points clipped by the view are not drawn
        if n:
            hidden[label] = hidden.get(label, 0) + n

    for ax in fig.axes:
        for line in ax.get_lines():
            x, y = (np.asarray(v, dtype=float) for v in line.get_data())
            if x.size and line.get_visible() and line.get_transform() == ax.transData:
                label = line.get_label()
                count(ax, "unlabelled" if label.startswith("_") else label,
                      ax.transData.transform(np.column_stack([x, y])))
        tops = [(p.get_x() + p.get_width() / 2, p.get_y() + p.get_height()) for p in ax.patches
                if isinstance(p, Rectangle) and p.get_visible() and p.get_data_transform() == ax.transData]
        if tops:  # a bar's data point is the middle of its top edge
            count(ax, "bars", ax.transData.transform(np.asarray(tops, dtype=float)))
        notes = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible() and t.get_text().strip()]
        if any(box.overlaps(note) for note in notes):
            labels = True
        for collection in ax.collections:
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if collection.get_visible() and offsets.ndim == 2 and len(offsets) and \
                    collection.get_offset_transform() == ax.transData:
                count(ax, "points", ax.transData.transform(offsets))
    return labels, hidden


def _inside(bbox, xy: np.ndarray) -> np.ndarray:
    """Which display points ``xy`` (n x 2) lie inside ``bbox`` (edges included)."""
    return (xy[:, 0] >= bbox.x0) & (xy[:, 0] <= bbox.x1) & (xy[:, 1] >= bbox.y0) & (xy[:, 1] <= bbox.y1)


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
