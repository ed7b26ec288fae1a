"""A small notebook built like a chapter (first cell imports and seeds, a main panel, an exercise stub), for the tests
that check the machinery every chapter shares, in JupyterLab and under `jupyter nbconvert --execute`, without
executing the chapters themselves once more (CI executes each chapter twice: under nbval and as a lecture page)."""

from __future__ import annotations

from pathlib import Path

import nbformat

NAME = "probe_panel.ipynb"
CELLS = [
    "from compresskit import plots\nfrom compresskit.exercises import check\nfrom compresskit.train import set_seed\n"
    "from compresskit.widgets import panel, slider\n\nset_seed(0)",
    "def show(k):\n    fig, (ax,) = plots.figure(1)\n    ax.plot(range(k + 1), [v * v for v in range(k + 1)], 'o-')\n"
    "    ax.set(xlabel='k (steps)', ylabel='k squared', title=f'k = {k}')\n    return fig\n\n\n"
    "panel(show, main=True, title='probe', k=slider(3, 1, 10, 1, 'k'))",
    "answer = None\ncheck('probe-1', answer, 4.0)",
]


def write(folder: Path) -> Path:
    """Write the probe notebook into ``folder``; returns its path."""
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / NAME
    nbformat.write(book, path)
    return path
