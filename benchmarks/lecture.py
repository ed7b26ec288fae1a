"""Time from opening a chapter's lecture page to its first plot, cold and with the chapter pre-run (``--warm``).

    python benchmarks/lecture.py [chapters...]      # e.g. 02 06; default: all

For each chapter: a lecture server without warm kernels, the page opened once (cold: the chapter runs while the
page waits); then a server started with ``--warm NN``, given the chapter's cold time plus a margin to pre-run it, and
the page opened (warm). Target: warm under 5 s. Headless Chromium at 1280x720, like tests/browser/lecture_pages.py.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import table  # noqa: E402

from compresskit.widgets import MAIN_CLASS  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.lecture_pages import NOTEBOOKS, LectureServer  # noqa: E402


def first_plot_seconds(browser, server, notebook: str) -> float:
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        start = time.monotonic()
        page.goto(f"{server.url}/voila/render/{notebook}", wait_until="commit")
        page.wait_for_selector(f".{MAIN_CLASS} img", timeout=300_000)
        return time.monotonic() - start
    finally:
        page.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    wanted = sys.argv[1:] or [n[:2] for n in NOTEBOOKS]
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for chapter in wanted:
            notebook = next(n for n in NOTEBOOKS if n.startswith(chapter))
            with tempfile.TemporaryDirectory() as base:
                server = LectureServer(Path(base))
                try:
                    cold = first_plot_seconds(browser, server, notebook)
                finally:
                    server.stop()
            with tempfile.TemporaryDirectory() as base:
                server = LectureServer(Path(base), warm=(chapter,))
                try:
                    time.sleep(cold * 1.3 + 5)  # the waiting kernel runs the chapter meanwhile
                    warm = first_plot_seconds(browser, server, notebook)
                finally:
                    server.stop()
            rows.append([notebook, f"{cold:.1f}", f"{warm:.1f}", "yes" if warm < 5 else "NO"])
            print(rows[-1], flush=True)
        browser.close()
    table(["chapter", "cold: open -> first plot (s)", "warm (--warm, pre-run) (s)", "warm < 5 s"], rows,
          "Lecture view, headless Chromium at 1280x720, one thread per kernel")


if __name__ == "__main__":
    main()
