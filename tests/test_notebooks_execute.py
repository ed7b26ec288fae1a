"""The machinery every chapter shares, executed the way `jupyter nbconvert --execute` executes a notebook (nbclient),
with a cell timeout, so a cell that never returns fails instead of waiting forever; and the executed notebook
exported to HTML without the widgets' state, as a code host shows it.

Why this exists: panels used to draw into their output widget with `display` inside `with output:` after
`clear_output(wait=True)`; under nbclient on a loaded machine the cell's execute reply then went unread until the
cell timeout (forever by default). `compresskit.widgets.Panel` now sets the widget's outputs directly. The chapters
themselves run under nbval (every cell, strict claims, each panel checked for readability in the screen and the
projector style: `widgets.Panel.check_style`) and as lecture pages in the browser test; this test runs a probe
notebook built like a chapter (`tests/probe.py`) in both styles, which takes seconds, not the chapters once more."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from . import probe

CELL_TIMEOUT_S = 60


@pytest.fixture(scope="module", params=["screen", "projector"])
def executed(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"nbconvert-{request.param}")
    path = probe.write(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
         f"--ExecutePreprocessor.timeout={CELL_TIMEOUT_S}", str(path)],
        cwd=folder, capture_output=True, text=True, timeout=6 * CELL_TIMEOUT_S,
        env={**os.environ, "COMPRESSKIT_PROJECTOR": "1" if request.param == "projector" else "0"})
    return proc.returncode, proc.stderr[-3000:], path


def test_a_chapter_like_notebook_runs_under_nbconvert_execute_without_hanging(executed):
    returncode, stderr, path = executed
    assert returncode == 0, f"the probe notebook failed or stalled under nbconvert --execute:\n{stderr}"
    book = nbformat.read(path, as_version=4)
    assert all(cell.execution_count for cell in book.cells)
    assert "not attempted yet" in "".join(o.get("text", "") for o in book.cells[-1].outputs)


def test_a_static_copy_shows_each_panels_plot_not_the_widgets_repr(executed):
    """Exported to HTML without the widgets' state (as a code host shows a stored notebook), every panel's output is
    its first plot, not the text "VBox(children=...)"."""
    from nbconvert import HTMLExporter

    returncode, stderr, path = executed
    assert returncode == 0, stderr
    book = nbformat.read(path, as_version=4)
    book.metadata.pop("widgets", None)  # the state a code host does not have
    panels = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
              and o["data"]["text/plain"].startswith("VBox(")]
    assert panels, "no panel output found"
    assert all("image/png" in o["data"] for o in panels), "a panel left no static image"
    html, _ = HTMLExporter().from_notebook_node(book)
    assert "VBox(children" not in html
    assert html.count("data:image/png;base64,") >= len(panels)
