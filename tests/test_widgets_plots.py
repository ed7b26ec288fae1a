import base64

import matplotlib

matplotlib.use("Agg")
import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from compresskit import legible, plots, widgets  # noqa: E402
from compresskit.exercises import check  # noqa: E402
from compresskit.metrics import Record  # noqa: E402


@pytest.fixture(autouse=True)
def _learner_run(monkeypatch):
    """Panels here run as in a learner's notebook (drawn once, not checked for readability in both styles); tests
    of the strict checks turn them on themselves."""
    monkeypatch.setenv("COMPRESSKIT_STRICT_CLAIMS", "0")


def _records():
    return [Record("a", 0.9, 100, 50, 2048, 10, group="x"), Record("b", 0.95, 200, 200, 8192, 20, group="y")]


def test_accuracy_vs_size_labels_axes_and_legend():
    fig = plots.accuracy_vs_size(_records(), highlight=-1)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "KB" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"x", "y", "current"}
    xs = sorted(x for line in ax.get_lines()[:2] for x in line.get_xdata())
    assert xs == [2.0, 8.0]  # kilobytes
    plt.close(fig)
    with pytest.raises(ValueError, match="records must hold at least one Record"):
        plots.accuracy_vs_size([])


def test_digit_grid_and_bars():
    fig = plots.digit_grid(torch.rand(12, 1, 8, 8), torch.arange(12), n=12, cols=6)
    assert sum(ax.get_title() != "" for ax in fig.axes) == 12
    plt.close(fig)
    fig = plots.bars(["a", "b"], {"s1": [1, 2], "s2": [3, 4]}, ylabel="bytes")
    assert len(fig.axes[0].patches) == 4
    plt.close(fig)


def test_errorbars_draws_means_spreads_and_styles():
    series = {"a, labels": ([1, 4], [90.0, 95.0], [1.0, 0.5]), "a, distilled": ([1, 4], [91.0, 96.0], [2.0, 0.2])}
    fig = plots.errorbars(series, xlabel="size (KB)", ylabel="accuracy (%)", logx=True,
                          styles={"a, distilled": {"color": "C0", "linestyle": "--"}})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "size (KB)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(series)
    lines = [c.lines[0] for c in ax.containers]
    assert [list(line.get_ydata()) for line in lines] == [[90.0, 95.0], [91.0, 96.0]]
    assert lines[1].get_linestyle() == "--"
    assert all(matplotlib.colors.same_color(line.get_color(), "C0") for line in lines)
    bars = ax.containers[1].lines[2][0].get_segments()  # the vertical error bars: mean -/+ spread
    assert [(seg[0][1], seg[1][1]) for seg in bars] == [(89.0, 93.0), (95.8, 96.2)]
    plt.close(fig)
    with pytest.raises(ValueError, match="styles names series that are not plotted"):
        plots.errorbars(series, xlabel="x", ylabel="y", styles={"b": {}})


def test_errorbars_draws_an_interval_where_one_is_given_and_a_reference_line_in_view():
    """A speed-up's confidence interval is not symmetric: (low, high) errors draw bars from low to high exactly;
    an interval that does not hold its value, or a malformed one, is refused by name; hline stays in view."""
    series = {"speed-up": ([1, 2], [1.5, 2.0], [(1.2, 1.8), (1.9, 2.6)]), "other": ([1, 2], [3.0, 3.5], [0.5, 0.1])}
    fig = plots.errorbars(series, xlabel="blocks removed", ylabel="speed-up (x)", hline=0.5, hline_label="same")
    ax = fig.axes[0]
    bars = ax.containers[0].lines[2][0].get_segments()
    assert [(float(seg[0][1]), float(seg[1][1])) for seg in bars] == pytest.approx([(1.2, 1.8), (1.9, 2.6)])
    bars = ax.containers[1].lines[2][0].get_segments()
    assert [(float(seg[0][1]), float(seg[1][1])) for seg in bars] == pytest.approx([(2.5, 3.5), (3.4, 3.6)])
    low, high = ax.get_ylim()
    assert low < 0.5 < high and "same" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    for errors, message in (([(1.6, 1.8), (1.9, 2.6)], "must hold its value 1.5"),
                            ([(1.2, 1.8, 2.0), (1.9, 2.6)], "a number or a \\(low, high\\) interval"),
                            ([(1.2, float("nan")), (1.9, 2.6)], "finite"), ([-0.1, 0.1], ">= 0")):
        with pytest.raises(ValueError, match=message):
            plots.errorbars({"a": ([1, 2], [1.5, 2.0], errors)}, xlabel="x", ylabel="y")
    plt.close("all")


def test_vlines_is_one_line_through_each_x():
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    line = plots.vlines(ax, torch.tensor([-0.5, 0.0, 0.25]), 0.7, 2e3, color="red", label="levels")
    assert ax.get_lines() == [line] and line.get_label() == "levels"
    x, y = line.get_xdata(), line.get_ydata()
    assert len(x) == 9
    assert list(x[0::3]) == list(x[1::3]) == [-0.5, 0.0, 0.25]  # each segment is vertical
    assert list(y[0::3]) == [0.7] * 3 and list(y[1::3]) == [2e3] * 3
    assert all(v != v for v in list(x[2::3]) + list(y[2::3]))  # NaN breaks between segments
    plt.close(fig)


def test_panel_draws_at_creation_is_callable_timed_and_marks_main():
    seen = []

    def update(k, flag):
        seen.append((k, flag))
        fig, ax = plt.subplots()
        ax.plot([0, k])
        return fig

    p = widgets.panel(update, main=True, k=widgets.slider(3, 1, 10, 1, "k"),
                      flag=ipywidgets.Checkbox(value=False, description="flag"))
    assert seen == [(3, False)]  # drawn once at creation
    fig = p(k=7)
    assert seen[-1] == (7, False) and p.last_ms is not None and p.last_ms >= 0
    plt.close(fig)
    p.controls["k"].value = 5  # what moving the slider does: the observer redraws (and draws 7 ahead)
    assert (5, False) in seen
    assert widgets.MAIN_CLASS in p.widget._dom_classes
    assert widgets.MAIN_CONTROL_CLASS in p.controls["k"]._dom_classes
    assert p.controls["k"].continuous_update is False
    with pytest.raises(TypeError, match="unknown control"):
        p(nope=1)


def test_slider_moves_hold_the_garbage_collector_until_the_plot_is_shown():
    import gc

    states = []

    def update(k):
        states.append(gc.isenabled())
        return plt.subplots()[0]

    assert gc.isenabled()
    p = widgets.panel(update, k=widgets.slider(1, 0, 5, 1, "k"))
    p.render(k=2)
    p.controls["k"].value = 4  # the observer's redraw
    assert states == [False, False, False] and gc.isenabled()  # off while computing, back on after
    gc.disable()
    try:
        p.render(k=3)
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()

    def broken(k):
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError):
        with widgets.collect_later():
            broken(1)
    assert gc.isenabled()  # restored after an error too


def test_broken_update_fails_at_creation():
    def update(k):
        raise RuntimeError("broken panel")

    with pytest.raises(RuntimeError, match="broken panel"):
        widgets.panel(update, k=widgets.slider(1, 0, 2, 1, "k"))


def test_slider_kinds():
    assert isinstance(widgets.slider(1, 0, 5, 1, "n"), ipywidgets.IntSlider)
    assert isinstance(widgets.slider(0.5, 0.0, 1.0, 0.01, "s"), ipywidgets.FloatSlider)


def test_exercise_check():
    assert check("t", None, 3) is False
    assert check("t", 3.0000001, 3) is True
    assert check("t", "abc", "abc") is True
    with pytest.raises(AssertionError, match="Hint: think"):
        check("t", 4, 3, hint="think")


def _spills(fig) -> bool:
    """Whether anything the figure draws (titles, labels, legends, tick labels in view) reaches outside its canvas."""
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    return drawn.x0 < 0 or drawn.y0 < 0 or drawn.x1 > width or drawn.y1 > height


@pytest.mark.parametrize("projector", (False, True))
def test_perplexity_vs_size_with_its_sample_stays_inside_the_canvas(projector):
    plots.projector(projector)
    try:
        series = {"groups of 32": ([3e5, 2e5, 1.5e5], [4.1, 4.3, 9.0]), "whole row": ([2.8e5, 1.8e5, 1.3e5],
                                                                                      [4.2, 5.0, 30.0])}
        sample = "    def __init__(self, name):\n" + "x" * 200 + "\n" * 30
        fig = plots.perplexity_vs_size(series, baseline=4.0, highlight=(2e5, 4.3), sample=sample, ymax=8.0,
                                       title="RTN 3 bits, groups of 32: perplexity 4.300, 195 KB")
        ax = fig.axes[0]
        assert ax.get_xscale() == "log" and "perplexity" in ax.get_ylabel() and "KB" in ax.get_xlabel()
        assert ax.get_ylim()[1] == 8.0  # a broken setting is drawn at the top edge, not squashing the others
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["groups of 32", "whole row", "float32", "current"]
        box = fig.axes[1].texts[0].get_text()
        assert box.startswith("    def __init__") and all(len(line) <= 44 for line in box.split("\n"))
        assert box.count("\n") < 14
        assert not _spills(fig)
        plt.close(fig)
        names = [f"b{i}.{n}" for i in range(4) for n in ("q", "k", "v", "proj", "fc", "out")]
        fig, (ax,) = plots.figure(1, width=10, height=5.6, fit=True)  # chapter 09's 24 rotated layer names
        plots.bars(names, {"2 bits": [0.1] * 24}, ylabel="perplexity change", title="One layer at a time", ax=ax)
        ax.tick_params(axis="x", labelrotation=90)
        assert not _spills(fig)
        plt.close("all")
    finally:
        plots.projector(False)
    with pytest.raises(ValueError, match="series must name at least one item"):
        plots.perplexity_vs_size({}, baseline=1.0)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((5, 0, 1, 0.1, "x"), {}, ValueError, r"value must be in \[0, 1\], got 5"),
    ((0.5, 0, 1, 0, "x"), {}, ValueError, r"step must be in \(0, 1\]"),
    ((0.5, 0, 1, -0.1, "x"), {}, ValueError, "step must be in"),
    ((0.5, 1, 0, 0.1, "x"), {}, ValueError, "low must be below high"),
    ((None, 0, 1, 0.1, "x"), {}, TypeError, "value must be a float"),
    ((0.5, 0, 1, 0.1, "x"), {"continuous": "yes"}, TypeError, "continuous must be a bool"),
])
def test_slider_refuses_values_ipywidgets_would_clamp(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        widgets.slider(*args, **kwargs)


def test_a_choice_slider_offers_its_options_in_order_and_steps_through_them():
    seen = []

    def update(width):
        seen.append(width)
        return plt.subplots()[0]

    control = widgets.choice_slider(32, (4, 8, 32, 512), "hidden units")
    assert isinstance(control, ipywidgets.SelectionSlider) and list(control.options) == [4, 8, 32, 512]
    assert control.value == 32 and not control.continuous_update
    p = widgets.panel(update, width=control)
    control.value = 8  # one option to the left: 4 is drawn ahead
    assert seen == [32, 8, 4] and p.values() == {"width": 8}


@pytest.mark.parametrize("args, error, match", [
    ((3, (4, 8), "w"), ValueError, r"value must be one of the options \[4, 8\], got 3"),
    ((4, (4, 4, 8), "w"), ValueError, "options must be distinct"),
    ((4, (), "w"), TypeError, "options must be a non-empty tuple or list"),
    ((4, "48", "w"), TypeError, "options must be a non-empty tuple or list"),
    ((4, None, "w"), TypeError, "options must be a non-empty tuple or list"),
])
def test_a_choice_slider_refuses_a_value_not_offered(args, error, match):
    with pytest.raises(error, match=match):
        widgets.choice_slider(*args)


def test_panel_refuses_bad_updates_and_controls():
    x = widgets.slider(0.5, 0.0, 1.0, 0.1, "x")
    with pytest.raises(TypeError, match="update must be a function"):
        widgets.panel(None, x=x)
    with pytest.raises(TypeError, match=r"the panel's update must return a matplotlib Figure, got NoneType"):
        widgets.panel(lambda x: None, x=x)
    with pytest.raises(TypeError, match="control 'x' must be an ipywidgets value widget"):
        widgets.panel(lambda x: plt.figure(), x=[0.1, 0.2])


def test_plots_refuse_bad_inputs_naming_them():
    images, labels = torch.rand(4, 1, 8, 8), torch.arange(4)
    with pytest.raises(ValueError, match=r"cols must be >= 1, got 0"):
        plots.digit_grid(images, labels, n=4, cols=0)
    with pytest.raises(ValueError, match=r"labels must be a 1-d tensor of at least n=4 labels, got shape \(2,\)"):
        plots.digit_grid(images, labels[:2], n=4)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure, got NoneType"):
        plots.png(None)
    with pytest.raises(ValueError, match=r"w is empty"):
        plots.weight_histogram(torch.empty(0))
    with pytest.raises(ValueError, match=r"kept must be a mask of w's shape \(6, 8\), got \(3,\)"):
        plots.weight_histogram(torch.randn(6, 8), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="records must hold at least one Record"):
        plots.accuracy_vs_size([])


def test_a_panel_keeps_the_positions_it_drew_and_draws_the_next_one_ahead(monkeypatch):
    seen = []

    def update(k, flag):
        seen.append((k, flag))
        fig, ax = plt.subplots()
        ax.plot([0, k])
        return fig

    p = widgets.panel(update, k=widgets.slider(3, 1, 10, 2, "k"), flag=ipywidgets.Checkbox(value=False))
    shown = []
    monkeypatch.setattr(p, "_show", shown.append)
    p.controls["k"].value = 5  # a step of 2: 5 is drawn and shown, then 7 drawn ahead
    assert seen[1:] == [(5, False), (7, False)] and len(shown) == 1
    p.controls["k"].value = 7  # drawn already: shown at once; 9 ahead
    assert seen[3:] == [(9, False)] and shown[-1] == p._images[p._key({"k": 7, "flag": False})]
    p.controls["k"].value = 5  # back: kept; 3 ahead was drawn at creation
    assert len(seen) == 4 and len(shown) == 3
    p.controls["flag"].value = True  # another control: drawn, and no slider step to follow
    assert seen[4:] == [(5, True)]
    p.forget()  # as before every cell: drawn again
    p.controls["flag"].value = False
    assert seen[5:] == [(5, False)]
    assert p._ahead(None) is None
    monkeypatch.setattr(widgets, "PREFETCH_MS", 0.0)  # an update slower than the limit is not drawn ahead
    p.controls["k"].value = 3
    assert seen[6:] == [(3, False)]


def test_a_panel_without_cache_draws_every_move_and_nothing_ahead():
    seen = []

    def update(k):
        seen.append(k)
        return plt.subplots()[0]

    p = widgets.panel(update, cache=False, k=widgets.slider(3, 1, 10, 1, "k"))
    p.controls["k"].value = 4
    p.controls["k"].value = 3
    assert seen == [3, 4, 3] and p._images is None
    with pytest.raises(TypeError, match="cache must be a bool"):
        widgets.panel(update, cache="no", k=widgets.slider(3, 1, 10, 1, "k"))


def test_a_selection_slider_is_drawn_ahead_along_its_options():
    seen = []

    def update(bits):
        seen.append(bits)
        return plt.subplots()[0]

    p = widgets.panel(update, bits=ipywidgets.SelectionSlider(options=(8, 4, 3, 2), value=4))
    p.controls["bits"].value = 3  # one option to the right: 2 is drawn ahead
    assert seen == [4, 3, 2]
    p.controls["bits"].value = 2  # kept; nothing beyond the last option
    assert seen == [4, 3, 2]
    p.controls["bits"].value = 8  # a jump of three options: nothing that far ahead
    assert seen == [4, 3, 2, 8]


def test_a_log_slider_is_drawn_ahead_by_the_same_factor():
    seen = []

    def update(kb):
        seen.append(round(kb, 6))
        return plt.subplots()[0]

    p = widgets.panel(update, kb=ipywidgets.FloatLogSlider(value=10, base=10, min=0, max=2, step=0.5))
    p.controls["kb"].value = 10**1.5  # one step up: 10**2 drawn ahead, then the end of the range
    assert seen == [10, round(10**1.5, 6), 100]
    p.controls["kb"].value = 100
    assert seen == [10, round(10**1.5, 6), 100]


@pytest.mark.parametrize("projector", (False, True))
def test_titles_too_long_for_the_canvas_shrink_until_they_fit(projector):
    plots.projector(projector)
    try:
        fig, (left, right) = plots.figure(2)
        left.plot([0, 1])
        right.plot([0, 1])
        right.set_title("vs unpruned: blocks undecided, 1.09x (1.04-1.16), neurons 1.23x faster (1.10-1.35)")
        size = right.title.get_fontsize()
        assert legible.overflow(fig) is not None  # the long title reaches past the right edge
        legible.fit_titles(fig)
        assert right.title.get_fontsize() < size and legible.overflow(fig) is None
        kept = left.title.get_fontsize()
        left.set_title("short")
        legible.fit_titles(fig)
        assert left.title.get_fontsize() == kept  # a title that fits is left alone
        plt.close(fig)
    finally:
        plots.projector(False)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        legible.fit_titles(None)


def test_a_panel_that_draws_past_its_canvas_fails_in_strict_runs(monkeypatch):
    def update(k):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, k], label="a legend placed outside the figure")
        ax.legend(loc="center left", bbox_to_anchor=(1.5, 0.5))
        return fig

    monkeypatch.setenv("COMPRESSKIT_STRICT_CLAIMS", "1")
    with pytest.raises(ValueError, match=r"panel 'spills' is hard to read in screen style: draws past its canvas "
                                         r"\(\{'right': "):
        widgets.panel(update, title="spills", k=widgets.slider(1, 0, 2, 1, "k"))


@pytest.mark.parametrize("projector", (False, True))
def test_axis_labels_keep_their_size_when_they_fit(projector):
    """The labels of a two-axes figure are placed at draw time: measured before it (at the canvas' edge), they used
    to be shrunk to the 0.3 floor four times over, to 1 pt."""
    plots.projector(projector)
    try:
        fig, axes = plots.figure(2)
        for ax in axes:
            ax.plot([1, 2], [3, 4])
            ax.set_xlabel("file size (KB)")
            ax.set_ylabel("perplexity")
        size = axes[0].xaxis.label.get_fontsize()
        legible.fit_titles(fig)
        assert [(ax.xaxis.label.get_fontsize(), ax.yaxis.label.get_fontsize()) for ax in axes] == [(size, size)] * 2
        assert legible.problems(fig) == []
        plt.close(fig)
    finally:
        plots.projector(False)


@pytest.mark.parametrize("projector", (False, True))
def test_a_text_too_long_stops_at_the_floor_and_breaks_into_lines(projector):
    plots.projector(projector)
    try:
        fig, (ax,) = plots.figure(1)
        ax.plot([0, 1])
        ax.set_title("a verdict far too long for one line of this figure: blocks 1.09x (1.04-1.16), neurons 1.23x "
                     "faster (1.10-1.35) at batch 64, on 2 threads")
        ax.set_ylabel("perplexity (lower is better)" if projector else "a perplexity of the model (lower is better)")
        legible.fit_titles(fig)
        floor = plots.min_points()
        assert ax.title.get_fontsize() == pytest.approx(floor) and "\n" in ax.title.get_text()
        label = ax.yaxis.label  # shrunk toward its axis' length, never below the floor
        assert label.get_fontsize() == pytest.approx(floor) or label.get_window_extent().height <= 1.12 * ax.bbox.height
        assert label.get_fontsize() >= floor
        assert legible.problems(fig) == []
        plt.close(fig)
    finally:
        plots.projector(False)


@pytest.mark.parametrize("projector", (False, True))
def test_crowded_tick_labels_are_thinned_and_reported(projector):
    plots.projector(projector)
    try:
        fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
        ax.plot([2100, 2900], [1, 2])
        ax.set_xticks(range(2100, 2901, 50))  # 17 labels of four digits on 5 inches run into each other
        assert any("x tick labels overlap" in p for p in legible.problems(fig))
        legible.fit_titles(fig)
        assert legible.problems(fig) == []
        assert sum(bool(t.get_text()) for t in ax.get_xticklabels(minor=True) + ax.get_xticklabels()) >= 1
        plt.close(fig)
    finally:
        plots.projector(False)


@pytest.mark.parametrize("projector", (False, True))
def test_text_below_the_floor_is_reported_and_fails_a_strict_panel(monkeypatch, projector):
    def update(k):
        fig, (ax,) = plots.figure(1)
        ax.plot([0, k])
        ax.annotate("tiny", (0, 0), fontsize=7.5)  # under 8 pt on screen, and 11 pt in projector style
        return fig

    assert plots.MIN_POINTS == {"screen": 8.0, "projector": 11.0}
    plots.projector(projector)
    try:
        fig = update(1)
        assert legible.problems(fig) == [f"text below {plots.min_points():g} pt: 'tiny' at 7.5 pt"]
        plt.close(fig)
        monkeypatch.setenv("COMPRESSKIT_STRICT_CLAIMS", "1")
        with pytest.raises(ValueError, match=r"panel 'small' is hard to read in (screen|projector) style: text below"):
            widgets.panel(update, title="small", k=widgets.slider(1, 0, 2, 1, "k"))
    finally:
        plots.projector(False)


def test_a_strict_panel_checks_its_first_state_in_the_other_style_too(monkeypatch):
    """One execution of a chapter (screen style) also checks the projector style: text of 9 pt passes on screen
    and fails at a projector's 11 pt floor."""
    def update(k):
        fig, (ax,) = plots.figure(1)
        ax.plot([0, k])
        ax.annotate("nine points", (0, 0), fontsize=9)  # a literal size: not scaled for the projector
        return fig

    monkeypatch.setenv("COMPRESSKIT_STRICT_CLAIMS", "1")
    with pytest.raises(ValueError, match=r"hard to read in projector style: text below 11 pt"):
        widgets.panel(update, title="literal", k=widgets.slider(1, 0, 2, 1, "k"))
    assert not plots.projector_on()  # the style is restored
    monkeypatch.setenv("COMPRESSKIT_STRICT_CLAIMS", "0")
    widgets.panel(update, title="literal", k=widgets.slider(1, 0, 2, 1, "k"))  # a learner's run: not checked


def test_a_displayed_panel_carries_a_static_image_of_its_first_state(monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "display", lambda obj, **kw: shown.append((obj, kw)))

    def update(k):
        fig, ax = plt.subplots()
        ax.plot([0, k], [0, k])
        return fig

    p = widgets.panel(update, k=widgets.slider(3, 1, 10, 1, "k"))
    first = p._first
    p._ipython_display_()
    (bundle, kw), = shown
    assert kw == {"raw": True}
    assert set(bundle) == {"text/plain", "application/vnd.jupyter.widget-view+json", "image/png"}
    assert base64.b64decode(bundle["image/png"]) == first  # the same image the live panel shows first
    assert p.output.outputs[0]["data"]["image/png"] == bundle["image/png"]
    p._ipython_display_()  # shown again (a second display of the same panel): still with an image
    assert "image/png" in shown[-1][0]


@pytest.mark.parametrize("projector", (False, True))
def test_point_labels_stay_inside_the_axes_and_apart(projector):
    """Chapter 00's widths and 05's ranks sit close together: their names used to be written over each other."""
    plots.projector(projector)
    try:
        records = [Record(f"width {w}", 0.9 + 0.001 * i, 100, 50, 1024 * w, 10, group="mlp")
                   for i, w in enumerate((8, 9, 10, 11, 12))]
        fig = plots.accuracy_vs_size(records, highlight=-1)
        legible.fit_titles(fig)
        ax = fig.axes[0]
        boxes = [t.get_window_extent() for t in ax.texts]
        assert len(boxes) == 5 and not any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])
        assert all(ax.bbox.x0 <= b.x0 and b.x1 <= ax.bbox.x1 for b in boxes)
        assert legible.problems(fig) == []
        plt.close(fig)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ax.text(0.5, 0.5, "one label")
        ax.text(0.5, 0.5, "over another")
        assert "axes 0: text labels in the plot overlap" in legible.problems(fig)
        plt.close(fig)
    finally:
        plots.projector(False)


def test_texts_of_neighbouring_axes_that_overlap_are_reported():
    """A title running over the next axes' title, or a colour bar's tick label under a title, is hard to read even
    when every text fits the canvas."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(6, 3))
    fig.subplots_adjust(wspace=0.05)
    left.set_title("a title long enough to run over the next one")
    right.set_title("the next title")
    assert "axes 0 and 1: their titles, axis or tick labels overlap" in legible.problems(fig)
    plt.close(fig)
    for projector in (False, True):  # pixel_map's title clears its colour bar's top tick label in both styles
        plots.projector(projector)
        try:
            fig = plots.pixel_map(torch.arange(64.0).reshape(8, 8), title="theta = 0.050: accuracy 97.2 %",
                                  label="weights kept")
            legible.fit_titles(fig)
            assert legible.problems(fig) == []
            plt.close(fig)
        finally:
            plots.projector(False)


def test_problems_names_a_legend_entry_with_nothing_drawn_and_a_reference_line_on_the_frame():
    from compresskit import legible

    fig, (ax,) = plots.figure()
    ax.plot([1, 2, 3], [1, 2, 3], label="seen")
    ax.plot([10, 11], [10, 11], label="out of view")
    ax.axhline(4.0, label="float32")
    ax.axvline(2.5, label="budget")  # a vertical line: its y runs in axes units, it is in view
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 4)
    ax.set_xlabel("x (units)")
    ax.set_ylabel("y (units)")
    ax.legend()
    found = " | ".join(legible.problems(fig))
    assert "the legend names 'out of view', whose line has no point inside the axes" in found
    assert "the reference line 'float32' at 4 lies on the frame" in found
    assert "'seen'" not in found and "budget" not in found
    plt.close(fig)


def test_errorbars_dodges_series_at_one_x_and_draws_a_single_point_without_a_line():
    fig = plots.errorbars({"a": ([2.0], [90.0], [1.0]), "b": ([2.0], [91.0], [1.0])}, xlabel="size (KB)",
                          ylabel="accuracy (%)", logx=True, dodge=0.04)
    data_lines = [container.lines[0] for container in fig.axes[0].containers]  # (data line, caps, bars) each
    assert sorted(float(line.get_xdata()[0]) for line in data_lines) == pytest.approx([2.0 * 0.98, 2.0 * 1.02])
    assert plots.dodged([2.0], 0, 2, 0.04) == pytest.approx([1.96])
    assert all(line.get_linestyle() == "None" for line in data_lines)  # one point: its marker, no line
    plt.close(fig)


def test_problems_names_a_legend_over_points_and_fit_titles_moves_it_where_it_hides_none():
    from compresskit import legible

    for projector in (False, True):
        plots.projector(projector)
        try:
            fig, (ax,) = plots.figure()
            for i, name in enumerate("abcd"):
                ax.plot(range(10), [v * 0.3 * (i + 1) + 5 * (i % 2) for v in range(10)], "o-", label=name)
            ax.set(xlabel="x (units)", ylabel="y (units)")
            ax.legend(loc="center")
            found = legible.problems(fig)
            assert any("its legend covers data points (" in p for p in found), found
            legible.fit_titles(fig)
            assert legible.problems(fig) == []
            assert ax.get_legend().get_texts()[0].get_text() == "a"  # the same entries, moved
            plt.close(fig)
        finally:
            plots.projector(False)


def test_legend_below_serves_two_axes_without_covering_anything_in_both_styles():
    from matplotlib.lines import Line2D

    from compresskit import legible

    for projector in (False, True):
        plots.projector(projector)
        try:
            fig, axes = plots.figure(2)
            for ax in axes:
                ax.plot([1, 2, 3], [1, 3, 2], "o-", color="C3", label="blocks")
                ax.plot([1, 2, 3], [2, 1, 3], "o-", color="C0", label="neurons")
                ax.legend(loc="center")
                ax.set(xlabel="size (KB)", ylabel="accuracy (%)")
            size = [ax.bbox.height for ax in axes]
            height = fig.get_size_inches()[1]
            legend = legible.legend_below(fig, ncol=2)
            assert [t.get_text() for t in legend.get_texts()] == ["blocks", "neurons"]  # each label once
            assert all(ax.get_legend() is None for ax in axes)
            assert fig.get_size_inches()[1] > height
            assert [ax.bbox.height for ax in axes] == pytest.approx(size, rel=1e-6)  # the axes keep their size
            legible.fit_titles(fig)
            assert legible.problems(fig) == []
            plt.close(fig)
            fig, (ax,) = plots.figure()
            with pytest.raises(ValueError, match="handles and labels"):
                legible.legend_below(fig, [Line2D([], [])], ["a", "b"])
            plt.close(fig)
        finally:
            plots.projector(False)


def test_a_legend_with_no_free_place_in_its_axes_goes_under_them_and_the_figure_grows():
    from compresskit import legible

    for projector in (False, True):
        plots.projector(projector)
        try:
            fig, (ax, other) = plots.figure(2)
            rng = np.random.default_rng(0)
            for name in ("first series", "second series", "third", "fourth"):  # points everywhere
                ax.plot(np.linspace(0, 10, 40), rng.uniform(0, 10, 40), "o-", label=name)
            ax.set(xlabel="x (units)", ylabel="y (units)")
            ax.legend(loc="center")
            other.plot([0, 1], [0, 1], label="free")
            other.set(xlabel="x (units)", ylabel="y (units)")
            other.legend()
            height, size = fig.get_size_inches()[1], ax.bbox.height
            legible.fit_titles(fig)
            assert legible.problems(fig) == []
            assert fig.get_size_inches()[1] > height and ax.bbox.height == pytest.approx(size)
            assert ax.get_legend().get_window_extent().y1 < ax.bbox.y0  # under its axes
            assert other.get_legend().get_window_extent().y0 > other.bbox.y0  # the other stays inside
            plt.close(fig)
        finally:
            plots.projector(False)
