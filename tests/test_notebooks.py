"""Notebook hygiene: stored clean, the conventions of DESIGN.md, the chapter structure."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _cells(path, kind):
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == kind]


def _text(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_baseline.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs_or_execution_counts(path):
    dirty = [i for i, c in enumerate(_cells(path, "code")) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_imports_compresskit_and_seeds(path):
    first = _text(_cells(path, "code")[0])
    assert "compresskit" in first and "set_seed(" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_structure(path):
    markdown = "\n".join(_text(c) for c in _cells(path, "markdown"))
    code = "\n".join(_text(c) for c in _cells(path, "code"))
    for heading in ("Learning goals", "Common mistakes", "Summary", "Exercises", "Worked solution"):
        assert heading.lower() in markdown.lower(), f"{path.name} lacks a '{heading}' part"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in markdown), f"{path.name} has no key terms in Chinese"
    assert "main=True" in code, f"{path.name} marks no main panel (panel(..., main=True)) for the browser test"
    assert "check(" in code, f"{path.name} has no automatically checked exercise"
