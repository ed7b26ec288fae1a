"""Every chapter in a real JupyterLab in headless Chromium: run all cells, no errors, the main slider redraws the plot.

nbval only runs the kernel side; this test checks what a learner sees: that the panel renders, that moving its
main control (class ``ck-main-control``, see ``compresskit.widgets``) reaches the kernel, and that the plot in
the panel (class ``ck-main-panel``) is a different image afterwards. On failure a screenshot of the page is
saved under ``test-artifacts/browser/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compresskit.widgets import MAIN_CLASS, MAIN_CONTROL_CLASS

from ..kernels import PARALLEL  # chapters executing at once: one kernel per core
from .conftest import ARTIFACTS, ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
RUN_TIMEOUT_MS = 150_000  # one chapter, top to bottom, in a kernel started by the test
REDRAW_TIMEOUT_MS = 60_000

# the fixture runs every chapter in the first test: its budget is the chapters', not pytest's 600 s default
pytestmark = [pytest.mark.browser, pytest.mark.timeout(120 + len(NOTEBOOKS) * RUN_TIMEOUT_MS // 1000 // PARALLEL)]

_APP = "window.jupyterapp"
_NOTEBOOK = f"{_APP}.shell.currentWidget"
# false (not an error) until JupyterLab has loaded and exposed its app: a busy machine can take a while
_KERNEL_READY = f"""(path) => {{ if (!{_APP} || !{_APP}.shell) return false; const nb = {_NOTEBOOK};
    const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
    return !!(nb && nb.context && nb.context.path === path && kernel && kernel.status === 'idle'); }}"""
# finished: kernel idle and every code cell executed, or an error stopped "run all" (reported by the test)
_ALL_RAN = f"""() => {{ const nb = {_NOTEBOOK}; if (!nb || !nb.content) return false;
    const cells = nb.content.model.cells;
    if (nb.sessionContext.session.kernel.status !== 'idle') return false;
    let pending = false;
    for (let i = 0; i < cells.length; i++) {{ const c = cells.get(i); if (c.type !== 'code') continue;
        for (let j = 0; j < c.outputs.length; j++) if (c.outputs.get(j).type === 'error') return true;
        if (c.sharedModel.getSource().trim() && !c.executionCount) pending = true; }}
    return !pending; }}"""
_ERRORS = f"""() => {{ const cells = {_NOTEBOOK}.content.model.cells; const found = [];
    for (let i = 0; i < cells.length; i++) {{ const c = cells.get(i); if (c.type !== 'code') continue;
        for (let j = 0; j < c.outputs.length; j++) {{ const o = c.outputs.get(j).toJSON();
            if (o.output_type === 'error') found.push(`cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`); }} }}
    return found; }}"""
# per cell: is it a solution (tag), and is its input collapsed in the notebook JupyterLab opened
_SOLUTIONS = f"""() => {{ const nb = {_NOTEBOOK}; const found = [];
    nb.content.widgets.forEach((w, i) => {{ const tags = w.model.getMetadata('tags') || [];
        found.push({{index: i, solution: tags.includes('solution'), exercise: tags.includes('exercise'),
                     markdown: w.model.type === 'markdown',
                     hidden: w.model.type === 'markdown' ? !!w.node.querySelector('details:not([open])')
                                                        : w.inputHidden,
                     text: w.model.sharedModel.getSource(),
                     output: w.model.type === 'code' ? JSON.stringify(w.model.outputs.toJSON()) : ''}}); }});
    return found; }}"""
_PLOT_SRC = f"() => {{ const img = document.querySelector('.{MAIN_CLASS} img'); return img ? img.src : null; }}"
# 'changed' once a new image is in the panel; 'error' as soon as the panel shows a traceback (fail fast)
_PLOT_STATE = f"""(before) => {{ const panel = document.querySelector('.{MAIN_CLASS}');
    if (panel.innerText.includes('Traceback')) return 'error';
    const img = panel.querySelector('img');
    return (img && img.complete && img.src !== before) ? 'changed' : false; }}"""




def _screenshot_on_failure(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{Path(name).stem}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _open_and_run(context, notebook: str):
    page = context.new_page()
    # a workspace of its own, reset: JupyterLab would otherwise reopen another test's notebook too
    page.goto(f"{LAB_URL[0]}/lab/workspaces/ck-{Path(notebook).stem}/tree/{notebook}?reset&token={LAB_URL[1]}")
    page.wait_for_function(_KERNEL_READY, arg=notebook, timeout=90_000, polling=250)
    # not awaited: the command's promise resolves only when every cell has run, and the next tab should start now
    page.evaluate(f"() => {{ {_APP}.commands.execute('notebook:run-all-cells'); return true; }}")
    page.wait_for_timeout(500)
    return page


LAB_URL: list[str] = []


@pytest.fixture(scope="module")
def executed(lab, browser, request):
    """Every chapter opened in its own tab and run top to bottom, PARALLEL at a time.

    Returns {notebook: (page, error or None)}; the kernels stay up for the slider checks, which then shut them down.
    """
    LAB_URL[:] = [lab.url, lab.token]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    selected = {item.callspec.params["notebook"] for item in request.session.items
                if getattr(item, "callspec", None) and "notebook" in item.callspec.params}
    pending, running, done = [n for n in NOTEBOOKS if n in selected], {}, {}
    try:
        while pending or running:
            while pending and len(running) < PARALLEL:
                notebook = pending.pop(0)
                try:
                    running[notebook] = (_open_and_run(context, notebook), time.monotonic())
                except Exception as err:  # reported by that chapter's test
                    done[notebook] = (context.pages[-1] if context.pages else None, err)
            for notebook, (page, started) in list(running.items()):
                try:
                    finished = page.evaluate(_ALL_RAN)
                    error = None if finished or time.monotonic() - started < RUN_TIMEOUT_MS / 1e3 else \
                        TimeoutError(f"{notebook} did not finish within {RUN_TIMEOUT_MS / 1e3:.0f} s")
                except Exception as err:
                    finished, error = False, err
                if finished or error:
                    print(f"{notebook}: ran in {time.monotonic() - started:.0f} s" + (f" ({error})" if error else ""))
                    done[notebook] = (page, error)
                    del running[notebook]
            time.sleep(0.5)
        yield done
    finally:
        context.close()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_main_panel_redraws_in_jupyterlab(executed, notebook):
    page, error = executed[notebook]
    try:
        if error is not None:
            raise error
        page.bring_to_front()
        errors = page.evaluate(_ERRORS)
        assert not errors, f"{notebook}: cells raised in JupyterLab: {errors}"

        cells = page.evaluate(_SOLUTIONS)
        solutions = [c for c in cells if c["solution"]]
        assert solutions, f"{notebook}: no solution cells"
        shown = [c["index"] for c in solutions if not c["hidden"]]
        assert not shown, f"{notebook}: solution cells {shown} are open when the chapter opens (they must be collapsed)"
        stubs = [c for c in cells if c["exercise"] and "check_code(" in c["text"]]
        if notebook[:2] != "00":  # chapters 01-08 have a coding exercise: its untouched stub ran without breaking
            assert len(stubs) == 1 and "not attempted yet" in stubs[0]["output"], f"{notebook}: the stub cell"

        panels = page.locator(f".{MAIN_CLASS}")
        assert panels.count() == 1, f"{notebook}: expected one main panel (.{MAIN_CLASS}), found {panels.count()}"
        panels.scroll_into_view_if_needed()
        page.wait_for_function(f"() => !!document.querySelector('.{MAIN_CLASS} img')", timeout=30_000)
        before = page.evaluate(_PLOT_SRC)
        shot_before = panels.locator("img").first.screenshot()

        handle = page.locator(f".{MAIN_CONTROL_CLASS} .noUi-handle")
        assert handle.count() == 1, f"{notebook}: the main control (.{MAIN_CONTROL_CLASS}) is not a slider"
        readout = f"document.querySelector('.{MAIN_CONTROL_CLASS} .widget-readout').innerText"
        value_before = page.evaluate(f"() => {readout}")
        at_max = float(handle.get_attribute("aria-valuenow")) >= float(handle.get_attribute("aria-valuemax"))
        handle.focus()
        page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")  # one step, as a learner's keyboard would
        page.wait_for_function(f"(v) => {readout} !== v", arg=value_before, timeout=10_000, polling=100)

        state = page.wait_for_function(_PLOT_STATE, arg=before, timeout=REDRAW_TIMEOUT_MS, polling=250).json_value()
        assert state == "changed", f"{notebook}: the panel shows an error after the slider moved"
        page.wait_for_function(_KERNEL_READY, arg=notebook, timeout=REDRAW_TIMEOUT_MS, polling=250)
        assert panels.locator("img").first.screenshot() != shot_before, f"{notebook}: the plot looks the same"
        assert not page.evaluate(_ERRORS), f"{notebook}: errors after the slider moved"
    except BaseException:
        if page is not None:
            path = _screenshot_on_failure(page, notebook)
            print(f"screenshot of the failing page: {path}")
        raise
    finally:
        if page is not None:
            try:  # free the kernel (the server's shutdown would also stop it, later)
                page.evaluate(f"() => {_NOTEBOOK}.sessionContext.shutdown()")
            except Exception:
                pass
