"""Every chapter's lecture page (python -m compresskit.lecture, Voilà) in headless Chromium at 1280x720, as a
lecturer uses it: the page renders with no code visible and no exercise or solution, and moving the main slider
changes the plot. PARALLEL chapters open at a time (one kernel per core, shared with the other pytest-xdist worker).

The chapters are split between two test files, each with a lecture server of its own, so that the two pytest-xdist
workers share the lecture pass instead of one worker running every chapter while the other runs out of work:
``test_lecture_a.py`` takes the chapters in FIRST_HALF, ``test_lecture_b.py`` every other one (a new chapter too).
Both halves start together on a cold training cache, so each chapter's trainings run in its lecture page and nbval
later loads them (compresskit.cache): the halves are balanced by each chapter's cost measured that way in CI (render
plus trainings, seconds on 2 cores: 06 ~85, 08 ~70, 10 ~50, 09 ~50, 03 ~45, 02 ~30, 07 ~27, 11 ~25 (no training),
01 ~21, 04 ~19, 05 ~18, 00 ~17; even and odd chapters took 414 s and 280 s; with 00, 03, 05, 06, 10 and 11 in the
first, CI measured 343 s for it and 307 s for the second, so 05 moved; chapter 12, ~50 s with its fine-tune, joined
the second half and 07 moved to the first)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from compresskit import claims
from compresskit.widgets import MAIN_CLASS, MAIN_CONTROL_CLASS

from ..kernels import PARALLEL  # chapters open at once: one kernel per core
from .conftest import ARTIFACTS, ROOT, STILL, _free_port, _leftover_processes, stop_server

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIRST_HALF = ("00", "03", "06", "07", "10", "11")  # about half of the pass's cost (see above)
RENDER_TIMEOUT_MS = 180_000


def marks(notebooks: list[str]) -> list:
    """A test file's marks: browser, and a timeout for its fixture, which opens every chapter of the file in the
    first test (the chapters' budget, not pytest's 600 s default)."""
    return [pytest.mark.browser, pytest.mark.timeout(120 + len(notebooks) * RENDER_TIMEOUT_MS // 1000 // PARALLEL)]

_CODE_VISIBLE = """() => document.querySelectorAll(
    '.jp-CodeCell .jp-InputArea, .cm-editor, .CodeMirror, .jp-InputPrompt').length"""
_TEXT = "() => document.body.innerText"
_PLOT_SHOWN = f"() => !!document.querySelector('.{MAIN_CLASS} img')"
_PLOT_SRC = f"() => {{ const img = document.querySelector('.{MAIN_CLASS} img'); return img ? img.src : null; }}"
_CONTROL_SIZES = f"""() => {{ const c = document.querySelector('.{MAIN_CONTROL_CLASS}');
    const label = c.querySelector('.widget-readout') || c.querySelector('.widget-label');
    return {{handle: c.querySelector('.noUi-handle').getBoundingClientRect().width,
             slider: c.getBoundingClientRect().width, font: parseFloat(getComputedStyle(label).fontSize)}}; }}"""
_PLOT_CHANGED = f"""(before) => {{ const img = document.querySelector('.{MAIN_CLASS} img');
    return !!(img && img.complete && img.src !== before); }}"""


class LectureServer:
    def __init__(self, base: Path, warm: tuple[str, ...] = ()):
        self.base, self.port = base, _free_port()
        warm = ("--warm", *warm) if warm else ()
        # as a lecturer runs it: not in the test suite's strict mode, whose per-panel readability checks in both plot
        # styles nbval has already made on the same chapters (compresskit.widgets)
        env = {k: v for k, v in os.environ.items() if k != claims.STRICT_ENV}
        env.update({"JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_CONFIG_DIR": str(base / "config"),
                    "JUPYTER_DATA_DIR": str(base / "data")})
        self.log = open(base / "voila.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compresskit.lecture", "--no-browser", f"--port={self.port}", *warm],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the lecture server exited with {self.proc.returncode}; see {base / 'voila.log'}")
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the lecture server did not answer within 60 s") from None
                time.sleep(0.3)

    def stop(self) -> None:
        stop_server(self.proc, self.log, self.base)


def lecture_fixture(notebooks: list[str]):
    """A module-scoped fixture that serves ``notebooks`` as lecture pages, opens and checks them PARALLEL at a time,
    and records each outcome in RESULTS for its test."""

    @pytest.fixture(scope="module")
    def lecture_pages(browser, tmp_path_factory, request):
        base = tmp_path_factory.mktemp("lecture")
        server = LectureServer(base)
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        context.add_init_script(STILL)
        # last chapter first: nbval runs the chapters first to last, so each chapter's trainings run once and the
        # other pass loads them (compresskit.cache)
        selected = [n for n in reversed(notebooks) if any(
            getattr(i, "callspec", None) and i.callspec.params.get("notebook") == n for i in request.session.items)]
        pages: dict[str, tuple] = {}
        try:
            for start in range(0, len(selected), PARALLEL):
                batch = selected[start:start + PARALLEL]
                opened = {}
                for notebook in batch:
                    page = context.new_page()
                    page.goto(f"{server.url}/voila/render/{notebook}", wait_until="commit")
                    opened[notebook] = (page, time.monotonic())
                for notebook, (page, started) in opened.items():
                    try:
                        page.wait_for_function(_PLOT_SHOWN, timeout=RENDER_TIMEOUT_MS, polling=500)
                        print(f"{notebook}: lecture page with its plot in {time.monotonic() - started:.0f} s")
                        pages[notebook] = (page, None)
                    except Exception as error:
                        pages[notebook] = (page, error)
                _check_batch(batch, pages)  # each batch checked and closed before the next starts its kernels
            yield pages
        finally:
            context.close()
            server.stop()
            left = _leftover_processes(str(base))
            assert not left, f"processes still running after the lecture server stopped: {left}"

    return lecture_pages


RESULTS: dict[str, str | None] = {}


def _check_batch(batch, pages) -> None:
    """Check the pages of one batch (then close them, which ends their kernels) and record the outcome."""
    for notebook in batch:
        page, error = pages[notebook]
        try:
            if error is not None:
                raise error
            assert page.evaluate(_CODE_VISIBLE) == 0, f"{notebook}: code is visible on the lecture page"
            text = page.evaluate(_TEXT)
            for hidden in ("Worked solution", "not attempted yet", "Traceback", "## Exercises", "trained before",
                           "it/s]"):  # no exercises, no cache notices, no progress bars
                assert hidden not in text, f"{notebook}: the lecture page shows {hidden!r}"
            assert "Summary" in text and "Learning goals" in text, f"{notebook}: the lecture lost its markdown"
            panel = page.locator(f".{MAIN_CLASS}")
            panel.scroll_into_view_if_needed()
            box = panel.bounding_box()
            assert box and box["width"] <= 1280, f"{notebook}: the main panel does not fit a 1280-pixel screen"
            before = page.evaluate(_PLOT_SRC)
            handle = page.locator(f".{MAIN_CONTROL_CLASS} .noUi-handle")
            assert handle.count() == 1, f"{notebook}: the main control is not a slider"
            sizes = page.evaluate(_CONTROL_SIZES)
            assert sizes["handle"] >= 24 and sizes["font"] >= 20 and sizes["slider"] >= 600, \
                f"{notebook}: the main slider is not sized for a projector: {sizes}"
            at_max = float(handle.get_attribute("aria-valuenow")) >= float(handle.get_attribute("aria-valuemax"))
            handle.focus()
            page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
            page.wait_for_function(_PLOT_CHANGED, arg=before, timeout=60_000, polling=250)
            RESULTS[notebook] = None
        except BaseException as failure:  # recorded; the test of that chapter reports it
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / f"lecture-{Path(notebook).stem}.png"), full_page=True)
            except Exception:
                pass
            RESULTS[notebook] = f"{type(failure).__name__}: {failure}"
        finally:
            page.close()


def check_recorded(notebook: str) -> None:
    """The test of one chapter: its page was opened and passed every check."""
    assert notebook in RESULTS, f"{notebook} was not opened"
    assert RESULTS[notebook] is None, RESULTS[notebook]
