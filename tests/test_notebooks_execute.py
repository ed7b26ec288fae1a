"""Every chapter executed the way `jupyter nbconvert --execute` executes it (nbclient), with a cell timeout, so a
cell that never returns fails CI instead of waiting forever. Chapters run PARALLEL at a time (one kernel per core,
shared with the other pytest-xdist worker: `kernels.py`), each in its own `jupyter nbconvert` process, on copies in
a temporary folder (the repository stays clean).

Why this exists: panels used to draw into their output widget with `display` inside `with output:` after
`clear_output(wait=True)`; under nbclient on a loaded machine the cell's execute reply then went unread until the
cell timeout (forever by default). `compresskit.widgets.Panel` now sets the widget's outputs directly.

The chapters run here in projector style (the lecture view's): with the suite's strict mode, every panel then checks
that nothing it draws reaches past its canvas (``plots.overflow``), as nbval checks it in the screen style."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .kernels import PARALLEL

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120  # the slowest cell of any chapter takes about 35 s
CHAPTER_TIMEOUT_S = 180  # the slowest chapter takes about a minute
# the fixture runs every chapter in the first test: its budget is the chapters', not pytest's 600 s default
pytestmark = pytest.mark.timeout(120 + len(NOTEBOOKS) * CHAPTER_TIMEOUT_S // PARALLEL)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nbconvert")

    def run(name: str):
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
             f"--ExecutePreprocessor.timeout={CELL_TIMEOUT_S}", "--output-dir", str(folder),
             str(ROOT / "notebooks" / name)],
            cwd=folder, capture_output=True, text=True, timeout=CHAPTER_TIMEOUT_S,
            # projector style here (nbval runs the screen style): a panel drawing past its canvas in either fails
            env={**os.environ, "COMPRESSKIT_PROJECTOR": "1"})
        return proc.returncode, proc.stderr[-3000:], time.monotonic() - start, folder / name

    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(zip(NOTEBOOKS, pool.map(run, NOTEBOOKS)))


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_chapter_runs_under_nbconvert_execute_without_hanging(executed, notebook):
    returncode, stderr, seconds, _ = executed[notebook]
    assert returncode == 0, f"{notebook} failed or stalled under nbconvert --execute ({seconds:.0f} s):\n{stderr}"


@pytest.mark.parametrize("notebook", [n for n in NOTEBOOKS if n.startswith(("01", "09"))])
def test_a_static_copy_shows_each_panels_plot_not_the_widgets_repr(executed, notebook):
    """Exported to HTML without the widgets' state (as a code host shows a stored notebook), every panel's output is
    its first plot, not the text "VBox(children=...)"."""
    import nbformat
    from nbconvert import HTMLExporter

    returncode, stderr, _, path = executed[notebook]
    assert returncode == 0, stderr
    book = nbformat.read(path, as_version=4)
    book.metadata.pop("widgets", None)  # the state a code host does not have
    panels = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
              and o["data"]["text/plain"].startswith("VBox(")]
    assert panels, f"{notebook}: no panel output found"
    assert all("image/png" in o["data"] for o in panels), f"{notebook}: a panel left no static image"
    html, _ = HTMLExporter().from_notebook_node(book)
    assert "VBox(children" not in html
    assert html.count("data:image/png;base64,") >= len(panels)
