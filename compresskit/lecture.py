"""The lecture view: every chapter served as a page of markdown and live panels, code hidden, plots in projector style.

    python -m compresskit.lecture                 # all chapters at http://localhost:8866
    python -m compresskit.lecture --warm 02       # ... and chapter 02 pre-run in a waiting kernel: opens in seconds

Voilà serves the notebooks: it runs each chapter in a kernel of its own, shows the markdown and every cell's output but
no code (``strip_sources``), and keeps the kernel alive behind the sliders. Cells tagged ``solution``, ``exercise`` or
``lecture-skip`` are left out (``LECTURE_SKIP_TAGS``): the server serves copies of the chapters without them, in a
temporary folder removed when it stops. ``COMPRESSKIT_PROJECTOR=1`` switches
``compresskit.plots`` to large fonts and thick lines. ``--warm`` pre-heats one kernel for the chapter(s) a lecture
is about to show (one per chapter, never more than the machine's cores): Voilà runs the chapter ahead of the request
and hands the finished page over when it is opened.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from compresskit.checks import available_cores, checked

__all__ = ["LECTURE_SKIP_TAGS", "LECTURE_ENV", "LECTURE_SETUP", "NOTEBOOKS", "DEFAULT_PORT", "running", "in_lecture",
           "lecture_cells", "chapter_path", "write_lecture_notebooks", "voila_config", "main"]

LECTURE_SKIP_TAGS = ("solution", "exercise", "lecture-skip", "claim-check")
"""Cells with any of these tags are not part of a lecture (worked solutions, exercises, long tables, set-up noise, the
checks that tie a chapter's sentences to its run)."""
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
DEFAULT_PORT = 8866
LECTURE_ENV = "COMPRESSKIT_LECTURE"
"""Set to 1 by the lecture server (kernels inherit it): notices meant for someone running the notebook, such as
"trained before ... loaded from the cache", are not printed on a lecture page."""
LECTURE_SETUP = '''\
import tqdm.auto
from IPython.display import HTML, display


class _QuietBar(tqdm.auto.tqdm):  # progress bars are for someone waiting at a notebook, not for a lecture page
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "disable": True})


tqdm.auto.tqdm = _QuietBar
display(HTML("""<style>
.widget-hslider, .widget-dropdown, .widget-toggle-buttons { width: 720px !important; }
.widget-hbox { flex-wrap: wrap !important; }  /* two long sliders: one under the other, inside 1280 pixels */
.widget-hslider .widget-label, .widget-readout, .widget-dropdown .widget-label, .widget-toggle-buttons .widget-label,
.widget-toggle-button, .widget-dropdown select, .widget-html-content { font-size: 20px !important; }
.widget-hslider .widget-label, .widget-readout { line-height: 32px !important; height: 32px !important; }
.widget-hslider .noUi-handle { width: 26px !important; height: 26px !important; top: -10px !important; }
.widget-toggle-button { height: 36px !important; }
</style>"""))
'''
"""The first cell of every lecture copy (no visible output): finished progress bars stay off the page, and the
controls are sized for a projector (slider length, handle, label and readout font)."""


def running() -> bool:
    """Whether this process runs a lecture page (the lecture server sets ``LECTURE_ENV``)."""
    return os.environ.get(LECTURE_ENV) == "1"


def in_lecture(cell) -> bool:
    """Whether a notebook cell is shown (and run) in the lecture view."""
    if not isinstance(cell, dict):
        raise TypeError(f"cell must be a notebook cell (a dict, as nbformat reads it), got {type(cell).__name__} "
                        f"{cell!r:.40}")
    return not set(cell.get("metadata", {}).get("tags", [])) & set(LECTURE_SKIP_TAGS)


def lecture_cells(notebook):
    """The notebook without the cells a lecture leaves out (a copy; the file is not changed)."""
    import copy

    if not isinstance(getattr(notebook, "cells", None), list):
        raise TypeError(f"notebook must be a notebook as nbformat.read returns it, got {type(notebook).__name__} "
                        f"{notebook!r:.40}")
    lecture = copy.deepcopy(notebook)
    lecture.cells = [c for c in lecture.cells if in_lecture(c)]
    return lecture


@checked
def chapter_path(chapter: str) -> Path:
    """``"02"`` (or ``"2"``, or a file name) -> the chapter's notebook; refuses anything else by name."""
    if not isinstance(chapter, str):
        raise TypeError(f"chapter must be a string such as '02', got {type(chapter).__name__}")
    if not chapter.strip():
        raise ValueError(f"chapter must name a chapter such as '02', got {chapter!r}")
    matches = sorted(NOTEBOOKS.glob(f"{chapter.zfill(2)}_*.ipynb")) or sorted(NOTEBOOKS.glob(chapter))
    if len(matches) != 1:
        known = ", ".join(p.name[:2] for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
        raise ValueError(f"chapter must be one of {known}, got {chapter!r}")
    return matches[0]


@checked
def write_lecture_notebooks(folder: str | os.PathLike) -> list[Path]:
    """Every chapter, with only its lecture cells, written to ``folder`` (the repository's notebooks are not
    touched): what the lecture server serves. Voilà's per-request hook cannot be combined with pre-heated kernels,
    so the cells are left out of the files instead."""
    import nbformat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        lecture = lecture_cells(nbformat.read(path, as_version=4))
        setup = nbformat.v4.new_code_cell(LECTURE_SETUP, metadata={"tags": ["lecture-setup"]})
        lecture.cells.insert(0, setup)
        nbformat.write(lecture, folder / path.name)
        written.append(folder / path.name)
    return written


@checked
def voila_config(warm: list[str] = ()):
    """The traitlets ``Config`` of the lecture server: sources stripped, lecture cells only, one pre-heated kernel per
    chapter in ``warm`` and none for the others."""
    from traitlets.config import Config

    for i, c in enumerate(warm):
        if not isinstance(c, str):
            raise TypeError(f"warm[{i}] must be a chapter such as '02', got {type(c).__name__} {c!r}")
    warm = [chapter_path(c).name for c in warm]
    if len(warm) > available_cores():
        raise ValueError(f"warm may name at most {available_cores()} chapter(s) (one waiting kernel per core of this "
                         f"machine), got {len(warm)}: {warm}")
    c = Config()
    c.VoilaConfiguration.strip_sources = True
    c.VoilaConfiguration.show_tracebacks = True
    if warm:
        c.VoilaConfiguration.preheat_kernel = True
        c.VoilaKernelManager.kernel_pools_config = {"default": {"pool_size": 0},
                                                    **{name: {"pool_size": 1} for name in warm}}
        c.VoilaKernelManager.fill_delay = 0.0
    return c


@checked
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m compresskit.lecture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the lecture server (default 8866)")
    parser.add_argument("--warm", nargs="*", default=[], metavar="CHAPTER",
                        help="chapters (e.g. 02 06) to pre-run in a waiting kernel, at most one per CPU core")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args = parser.parse_args(argv)
    from voila.app import Voila

    config = voila_config(args.warm)
    os.environ["COMPRESSKIT_PROJECTOR"] = "1"  # kernels inherit it: every plot in projector style
    os.environ[LECTURE_ENV] = "1"  # ... and no notices meant for someone running the notebook
    with tempfile.TemporaryDirectory(prefix="compresskit-lecture-") as folder:
        write_lecture_notebooks(folder)
        app = Voila(config=config)
        app.initialize([f"--port={args.port}", *(["--no-browser"] if args.no_browser else []), folder])
        app.start()


if __name__ == "__main__":
    main()
