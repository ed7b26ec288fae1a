"""One way to build an interactive panel, so every chapter's panels look and behave the same.

A panel is controls (ipywidgets sliders, toggles) plus an ``update(**values) -> Figure`` function. It

- draws once at creation, *outside* any widget, so an error fails the cell (and nbval) instead of hiding
  inside the output area; the figure is displayed, so a headless run still renders the plot;
- redraws into its output area on every control change (a slider with ``continuous_update=False`` only on
  release, for updates slower than ~50 ms);
- is callable: ``panel(sparsity=0.5)`` runs the same update the slider runs and returns the figure, which
  is how tests and benchmarks call and time every slider.

Slider positions are discrete, so a panel keeps the image of every position it drew (``CACHE_POSITIONS`` of them,
forgotten whenever a cell runs, since the cell may change what the update reads) and, right after showing a new one,
draws the next position in the direction the slider moved, while the learner looks at the plot: stepping through
a slider then costs sending an image, not drawing it. Updates slower than ``PREFETCH_MS`` (trainings) are not drawn
ahead, so as not to hold up a move in the other direction for long.

A full collection of Python's cyclic garbage collector takes ~0.25 s in a notebook process with torch loaded, and
one falls into a slider move every so often; panels defer it until the new plot has been shown.

The chapter's main panel carries the CSS class ``MAIN_CLASS`` (and its first control ``MAIN_CONTROL_CLASS``);
the browser test finds the panel by it, moves that control and checks that the plot changed.
"""

from __future__ import annotations

import base64
import gc
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython import get_ipython
from IPython.display import display
from matplotlib.figure import Figure

from compresskit import claims
from compresskit.checks import check_bool, check_number, checked
from compresskit.legible import fit_titles, problems
from compresskit.plots import png, projector, projector_on

__all__ = ["MAIN_CLASS", "MAIN_CONTROL_CLASS", "CACHE_POSITIONS", "PREFETCH_MS", "collect_later", "slider",
           "choice_slider", "Panel", "panel"]

MAIN_CLASS = "ck-main-panel"
MAIN_CONTROL_CLASS = "ck-main-control"
CACHE_POSITIONS = 256
"""Images a panel keeps, one per slider position (least recently shown dropped first; ~50 KB each)."""
PREFETCH_MS = 1500.0
"""A panel draws the next slider position ahead only when its update takes less than this. Moving back never waits
(the position just left is kept); a move made while the next position is being drawn ahead waits at most this long,
and is then shown at once if it was the one drawn. The chapters' slowest drawn panels take 0.5-0.8 s in the browser:
below this limit, they are drawn ahead too. Updates that train (seconds) are not."""


@contextmanager
def collect_later() -> Iterator[None]:
    """Hold Python's cyclic garbage collector off inside the block; it runs at the next allocation after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@checked
def slider(value, low, high, step, description: str, *, fmt: str | None = None, continuous: bool = False):
    """A float or int slider with a wide label; ``continuous_update`` off unless asked (slow updates). ``value``
    must lie in ``[low, high]`` and ``step`` be > 0: ipywidgets would silently clamp the value instead."""
    for name, v in (("value", value), ("low", low), ("high", high), ("step", step)):
        check_number(name, v)
    if not low < high:
        raise ValueError(f"low must be below high, got low={low!r}, high={high!r}")
    if not low <= value <= high:
        raise ValueError(f"value must be in [{low}, {high}], got {value!r}")
    if not 0 < step <= high - low:
        raise ValueError(f"step must be in (0, {high - low}] (high - low), got {step!r}")
    check_bool("continuous", continuous)
    if fmt:
        try:
            format(1.5, fmt)
        except ValueError:
            raise ValueError(f"fmt must be a number format such as '.2f', got {fmt!r}") from None
    cls = widgets.IntSlider if all(isinstance(v, int) for v in (value, low, high, step)) else widgets.FloatSlider
    kw = {"readout_format": fmt} if fmt else {}
    return cls(value=value, min=low, max=high, step=step, description=description, continuous_update=continuous,
               style={"description_width": "initial"}, layout=widgets.Layout(width="460px"), **kw)


@checked
def choice_slider(value, options, description: str):
    """A slider over a few given values (``widgets.SelectionSlider``), laid out like ``slider``, updated on release:
    for settings that are precomputed once per option (widths trained, bit widths quantized). ``value`` must be one
    of the ``options``, which must be distinct."""
    if isinstance(options, (str, bytes)) or not isinstance(options, (tuple, list)) or not options:
        raise TypeError(f"options must be a non-empty tuple or list of values, got {options!r}")
    if len(set(options)) != len(options):
        raise ValueError(f"options must be distinct, got {options!r}")
    if value not in options:
        raise ValueError(f"value must be one of the options {list(options)}, got {value!r}")
    return widgets.SelectionSlider(options=list(options), value=value, description=description,
                                   continuous_update=False, style={"description_width": "initial"},
                                   layout=widgets.Layout(width="460px"))


class Panel:
    """Controls + output area + the update that links them. Display it by leaving it last in a cell."""

    @checked
    def __init__(self, update: Callable[..., Figure], controls: dict[str, widgets.ValueWidget], *,
                 main: bool = False, title: str = "", cache: bool = True):
        if not callable(update):
            raise TypeError(f"update must be a function (**values) -> matplotlib Figure, got {type(update).__name__}")
        if not controls:
            raise ValueError("controls is empty: a panel needs at least one control")
        for name, control in controls.items():
            if not isinstance(control, widgets.ValueWidget):
                raise TypeError(f"control {name!r} must be an ipywidgets value widget (e.g. widgets.slider(...)), got "
                                f"{type(control).__name__}")
        check_bool("main", main)
        check_bool("cache", cache)
        self._images: OrderedDict | None = OrderedDict() if cache else None
        shell = get_ipython()  # None in a plain Python process (tests, benchmarks)
        if shell is not None and cache:  # a cell that runs may change what the update reads: draw afresh
            mine = weakref.ref(self)  # the shell's event list does not keep a replaced panel (and its images) alive
            shell.events.register("pre_run_cell", lambda *args: mine() and mine().forget())
        self.update = update
        self.title = title
        self.controls = controls
        self.output = widgets.Output()
        self.last_ms: float | None = None
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.widget = widgets.VBox(header + [widgets.HBox(list(controls.values())), self.output])
        if main:
            self.widget.add_class(MAIN_CLASS)
            next(iter(controls.values())).add_class(MAIN_CONTROL_CLASS)
        self._first = self._image(self.values())  # raises here, in the cell, if the update is broken
        if claims.strict():  # the test suite executes each chapter once: check the other style here too
            self.check_style(not projector_on())
        for control in controls.values():
            control.observe(self._redraw, names="value")

    def values(self) -> dict:
        return {name: c.value for name, c in self.controls.items()}

    def __call__(self, **values) -> Figure:
        """Run the update with the controls' values, overridden by ``values``; returns the figure, timed."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise TypeError(f"unknown control(s) {sorted(unknown)}; this panel has {sorted(self.controls)}")
        start = time.perf_counter()
        fig = self.update(**{**self.values(), **values})
        if not isinstance(fig, Figure):
            raise TypeError(f"the panel's update must return a matplotlib Figure, got {type(fig).__name__} (did it "
                            "forget `return fig`?)")
        fit_titles(fig)  # a title that grew with the values (a verdict, projector fonts) stays on the canvas
        if claims.strict():  # the test suite: a panel hard to read (past its canvas, tiny text, ticks) fails
            self._refuse_unreadable(fig)
        self.last_ms = (time.perf_counter() - start) * 1e3
        return fig

    def _refuse_unreadable(self, fig: Figure) -> None:
        found = problems(fig)
        if found:
            plt.close(fig)
            raise ValueError(f"panel {self.title!r} is hard to read in {'projector' if projector_on() else 'screen'} "
                             f"style: {'; '.join(found)}")

    def check_style(self, projector_style: bool) -> None:
        """Draw the panel's current state in the screen (False) or projector (True) style and raise ``ValueError``
        if it draws past its canvas, has text below the style's floor (``plots.MIN_POINTS``) or overlapping tick
        labels. Strict runs (the test suite) check each panel's first state in the other style too, so one
        execution of a chapter checks both styles."""
        check_bool("projector_style", projector_style)
        was = projector_on()
        try:
            projector(projector_style)
            fig = self.update(**self.values())
            fit_titles(fig)
            self._refuse_unreadable(fig)
            plt.close(fig)
        finally:
            projector(was)

    def render(self, **values) -> bytes:
        """What a slider move costs the learner: the update plus drawing the PNG the browser shows; timed in
        ``last_ms``. Benchmarks call this."""
        with collect_later():
            start = time.perf_counter()
            fig = self(**values)
            image = png(fig)
            plt.close(fig)
            self.last_ms = (time.perf_counter() - start) * 1e3
        return image

    def _show(self, image: bytes) -> None:
        """Put the image in the output area by setting the Output widget's ``outputs`` (one comm message), not by
        capturing a ``display`` inside ``with self.output`` after ``clear_output(wait=True)``: that capture routes
        the image through the kernel's output hooks and the client's output-widget bookkeeping, and under
        ``jupyter nbconvert --execute`` (nbclient) it left the cell's execute reply unread until the cell timeout,
        forever without one (reproduced on a loaded 2-core machine: 3 runs of 8 of chapter 01 stalled 60 s)."""
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(image).decode("ascii"),
                                         "text/plain": "<panel plot>"}},)

    def forget(self, *args) -> None:
        """Drop the images of positions drawn so far (IPython calls this before every cell runs)."""
        if self._images is not None:
            self._images.clear()

    @staticmethod
    def _key(values: dict) -> tuple:
        # a float position reached by the browser (0.52 + 0.01) or computed here (0.52 + 0.0100...01) is one key
        return tuple((k, float(f"{v:.12g}") if isinstance(v, float) else v) for k, v in sorted(values.items()))

    def _image(self, values: dict) -> bytes:
        """The image at ``values``: kept from before, or drawn (and kept)."""
        key = self._key(values)
        if self._images is not None and key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        image = self.render(**values)
        if self._images is not None:
            self._images[key] = image
            while len(self._images) > CACHE_POSITIONS:
                self._images.popitem(last=False)
        return image

    def _ahead(self, change) -> dict | None:
        """The values one more step in the direction ``change`` moved a slider, if still in its range."""
        control = getattr(change, "owner", None) if change is not None else None
        names = [n for n, c in self.controls.items() if c is control]
        if not names:
            return None
        if isinstance(control, widgets.SelectionSlider):  # discrete options: one more in the same direction
            options = [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in control.options]
            if change.old not in options or change.new not in options:
                return None
            at = 2 * options.index(change.new) - options.index(change.old)
            return {**self.values(), names[0]: options[at]} if at != options.index(change.new) and \
                0 <= at < len(options) else None
        if isinstance(control, widgets.FloatLogSlider):  # a step multiplies: the same factor again
            if not change.old or change.new == change.old:
                return None
            ahead = float(f"{change.new * change.new / change.old:.12g}")
            low, high = control.base ** control.min, control.base ** control.max
            return {**self.values(), names[0]: ahead} if low <= ahead <= high else None
        if not isinstance(control, (widgets.IntSlider, widgets.FloatSlider)):
            return None
        step = change.new - change.old
        ahead = change.new + step
        if not step or not control.min <= ahead <= control.max:
            return None
        if isinstance(control, widgets.FloatSlider):
            ahead = float(f"{ahead:.12g}")
        return {**self.values(), names[0]: ahead}

    def _redraw(self, change=None) -> None:
        # the garbage collector waits until the image is on its way; a failure shows its traceback in the output area
        with collect_later():
            try:
                image = self._image(self.values())
            except Exception:
                import traceback

                self.output.outputs = ({"output_type": "stream", "name": "stderr",
                                        "text": "Traceback (most recent call last):\n" + traceback.format_exc()},)
                return
            self._show(image)
            ahead = self._ahead(change) if self._images is not None else None
            if ahead is not None and self.last_ms is not None and self.last_ms < PREFETCH_MS:
                try:  # drawn while the learner looks at the plot just shown; a failure shows on that move
                    self._image(ahead)
                except Exception:  # noqa: S110
                    pass

    def _ipython_display_(self) -> None:
        """The live panel, and beside it in the same output a static image of its first state: JupyterLab shows the
        widget (its renderer ranks first), while a page without the widget's state (a code host, ``nbconvert --to
        html`` of a stored notebook) shows the plot instead of the widget's bare repr ``VBox(children=...)``."""
        bundle = self.widget._repr_mimebundle_()
        first = self._first if self._first is not None else self._image(self.values())
        bundle["image/png"] = base64.b64encode(first).decode("ascii")
        display(bundle, raw=True)
        if self._first is not None:
            self._show(self._first)
            self._first = None


@checked
def panel(update: Callable[..., Figure], *, main: bool = False, title: str = "", cache: bool = True,
          **controls) -> Panel:
    """Build a panel: ``panel(show, main=True, sparsity=slider(0.5, 0, 0.99, 0.01, "sparsity"))``. ``cache=False``
    for an update that is not a function of its controls alone (it reads something that changes between moves)."""
    return Panel(update, controls, main=main, title=title, cache=cache)

