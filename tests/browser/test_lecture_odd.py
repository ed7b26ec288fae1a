"""The lecture pages of the odd-numbered chapters (01, 03, 05, 07, 09, 11, ...):
see ``lecture_pages.py``; the even-numbered ones are in ``test_lecture_even.py``."""

from __future__ import annotations

import pytest

from .lecture_pages import NOTEBOOKS, check_recorded, lecture_fixture, marks

CHAPTERS = NOTEBOOKS[1::2]
pytestmark = marks(CHAPTERS)
lecture_pages = lecture_fixture(CHAPTERS)


@pytest.mark.parametrize("notebook", CHAPTERS)
def test_lecture_page_hides_code_and_its_slider_redraws(lecture_pages, notebook):
    check_recorded(notebook)
