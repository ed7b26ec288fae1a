"""Every chapter in a real JupyterLab in headless Chromium: run all cells, no errors, the main slider redraws the plot.

nbval only runs the kernel side; this test checks what a learner sees: that the panel renders, that moving its
main control (class ``ck-main-control``, see ``compresskit.widgets``) reaches the kernel, and that the plot in
the panel (class ``ck-main-panel``) is a different image afterwards. On failure a screenshot of the page is
saved under ``test-artifacts/browser/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compresskit.widgets import MAIN_CLASS, MAIN_CONTROL_CLASS

from .conftest import ARTIFACTS, ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
RUN_TIMEOUT_MS = 150_000  # one chapter, top to bottom, in a kernel started by the test
REDRAW_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser

_APP = "window.jupyterapp"
_NOTEBOOK = f"{_APP}.shell.currentWidget"
_KERNEL_READY = f"""(path) => {{ const nb = {_NOTEBOOK};
    return !!(nb && nb.context && nb.context.path === path && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel
              && nb.sessionContext.session.kernel.status === 'idle'); }}"""
_ALL_RAN = f"""() => {{ const nb = {_NOTEBOOK}; const cells = nb.content.model.cells;
    for (let i = 0; i < cells.length; i++) {{
        const c = cells.get(i); if (c.type === 'code' && c.sharedModel.getSource().trim() && !c.executionCount) return false; }}
    return nb.sessionContext.session.kernel.status === 'idle'; }}"""
_ERRORS = f"""() => {{ const cells = {_NOTEBOOK}.content.model.cells; const found = [];
    for (let i = 0; i < cells.length; i++) {{ const c = cells.get(i); if (c.type !== 'code') continue;
        for (let j = 0; j < c.outputs.length; j++) {{ const o = c.outputs.get(j).toJSON();
            if (o.output_type === 'error') found.push(`cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`); }} }}
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


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_main_panel_redraws_in_jupyterlab(lab, browser, notebook):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        # a workspace of its own, reset: JupyterLab would otherwise reopen the previous test's notebook too
        page.goto(f"{lab.url}/lab/workspaces/ck-{Path(notebook).stem}/tree/{notebook}?reset&token={lab.token}")
        page.wait_for_function(_KERNEL_READY, arg=notebook, timeout=90_000, polling=250)
        page.evaluate(f"() => {_APP}.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(_ALL_RAN, timeout=RUN_TIMEOUT_MS, polling=500)

        errors = page.evaluate(_ERRORS)
        assert not errors, f"{notebook}: cells raised in JupyterLab: {errors}"

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
        path = _screenshot_on_failure(page, notebook)
        print(f"screenshot of the failing page: {path}")
        raise
    finally:
        try:  # free the kernel for the next chapter (the server's shutdown would also stop it, later)
            page.evaluate(f"() => {_NOTEBOOK}.sessionContext.shutdown()")
        except Exception:
            pass
        context.close()
