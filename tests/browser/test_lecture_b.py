"""The lecture pages of every chapter not in FIRST_HALF (see ``lecture_pages.py``); the others are in
``test_lecture_a.py``."""

from __future__ import annotations

import pytest

from .lecture_pages import FIRST_HALF, NOTEBOOKS, check_recorded, lecture_fixture, marks

CHAPTERS = [n for n in NOTEBOOKS if n[:2] not in FIRST_HALF]
pytestmark = marks(CHAPTERS)
lecture_pages = lecture_fixture(CHAPTERS)


@pytest.mark.parametrize("notebook", CHAPTERS)
def test_lecture_page_hides_code_and_its_slider_redraws(lecture_pages, notebook):
    check_recorded(notebook)
