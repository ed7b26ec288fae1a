"""The lecture view's pieces that need no server: which cells a lecture shows, its configuration, the projector
style. tests/browser/test_lecture_a.py and _b.py open every chapter's lecture page in Chromium."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest

from compresskit import lecture, plots

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapters_tags_keep_the_lecture_consistent(path):
    cells = json.loads(path.read_text())["cells"]
    for i, cell in enumerate(cells):
        text, tags = "".join(cell["source"]), cell["metadata"].get("tags", [])
        unknown = set(tags) - {"solution", "exercise", "lecture-skip", "claim-check"}
        assert not unknown, f"{path.name}, cell {i}: unknown tags {unknown} (see the README's contributing section)"
        if "Worked solution" in text or cell["metadata"].get("jupyter", {}).get("source_hidden") \
                and "claim-check" not in tags:
            assert not lecture.in_lecture(cell), f"{path.name}, cell {i}: a solution in the lecture view"
        if "answer = None" in text or "raise NotImplementedError" in text or text.startswith("**Exercise"):
            assert "exercise" in tags, f"{path.name}, cell {i}: an exercise in the lecture view"
        if "main=True" in text:
            assert lecture.in_lecture(cell), f"{path.name}, cell {i}: the main panel must be in the lecture"
        if "claim-check" in tags:  # left out of lectures anywhere in a chapter: so it may define nothing
            tree = ast.parse(text)
            assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign,
                                                                    ast.FunctionDef, ast.Import, ast.ImportFrom))], \
                f"{path.name}, cell {i}: a claim check may only check, not define names"
            assert "claims.check(" in text and cell["metadata"].get("jupyter", {}).get("source_hidden"), \
                f"{path.name}, cell {i}: a claim check calls claims.check and is collapsed"
    cells = [c for c in cells if "claim-check" not in c["metadata"].get("tags", [])]
    shown = [c for c in cells if lecture.in_lecture(c)]
    assert shown[0]["cell_type"] == "markdown" and shown[0]["source"][0].startswith("# Chapter")
    # once a lecture leaves a cell out, everything after it is out too: no later lecture cell can need a name that
    # only a skipped cell defines (exercises and solutions close each chapter)
    first_out = next(i for i, c in enumerate(cells) if not lecture.in_lecture(c))
    assert all(not lecture.in_lecture(c) for c in cells[first_out:]), f"{path.name}: lecture cells after a skipped one"


def test_lecture_cells_leaves_the_notebook_alone():
    nb = nbformat.read(NOTEBOOKS[1], as_version=4)
    before = len(nb.cells)
    shown = lecture.lecture_cells(nb)
    assert len(nb.cells) == before > len(shown.cells) > 0
    assert all(lecture.in_lecture(c) for c in shown.cells)


def test_voila_config_warms_at_most_one_kernel_per_core(monkeypatch):
    config = lecture.voila_config(["02"])
    assert config.VoilaConfiguration.strip_sources is True and config.VoilaConfiguration.preheat_kernel is True
    assert config.VoilaKernelManager.kernel_pools_config == {"default": {"pool_size": 0},
                                                             "02_structured_pruning.ipynb": {"pool_size": 1}}
    assert "preheat_kernel" not in lecture.voila_config([]).VoilaConfiguration
    monkeypatch.setattr(lecture, "available_cores", lambda: 2)
    with pytest.raises(ValueError, match="at most 2 chapter"):  # refused before any kernel starts
        lecture.voila_config(["01", "02", "03"])
    with pytest.raises(ValueError, match="chapter must be one of 00, 01"):
        lecture.chapter_path("42")
    with pytest.raises(TypeError, match="chapter must be a string"):
        lecture.chapter_path(2)
    assert lecture.chapter_path("2").name == "02_structured_pruning.ipynb"


def test_projector_style_makes_fonts_and_lines_larger_and_comes_back():
    try:
        plots.projector(True)
        assert matplotlib.rcParams["font.size"] == pytest.approx(13 * plots.PROJECTOR_SCALE)
        fig = plots.curves({"a": ([0, 1], [0, 1])}, xlabel="x (unit)", ylabel="y (unit)")
        assert fig.axes[0].lines[0].get_linewidth() == pytest.approx(2 * plots.PROJECTOR_SCALE)
        matplotlib.pyplot.close(fig)
    finally:
        plots.projector(False)
    assert matplotlib.rcParams["font.size"] == 13 and matplotlib.rcParams["lines.linewidth"] == 2
    fig = plots.curves({"a": ([0, 1], [0, 1])}, xlabel="x (unit)", ylabel="y (unit)")
    assert fig.axes[0].lines[0].get_linewidth() == 2
    matplotlib.pyplot.close(fig)
    with pytest.raises(TypeError, match="on must be a bool"):
        plots.projector(1)


def test_the_environment_variable_turns_the_projector_style_on_at_import():
    code = "import matplotlib; from compresskit import plots; print(matplotlib.rcParams['font.size'])"
    env = {**os.environ, plots.PROJECTOR_ENV: "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert float(out) == pytest.approx(13 * plots.PROJECTOR_SCALE)


def test_the_lecture_notebooks_are_the_chapters_without_their_skipped_cells(tmp_path):
    written = lecture.write_lecture_notebooks(tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for original, copy in zip(NOTEBOOKS, written):
        kept = [c for c in json.loads(original.read_text())["cells"] if lecture.in_lecture(c)]
        cells = nbformat.read(copy, as_version=4).cells
        assert cells[0]["source"] == lecture.LECTURE_SETUP and cells[0]["metadata"]["tags"] == ["lecture-setup"]
        assert [c["source"] for c in cells[1:]] == ["".join(c["source"]) for c in kept]
        nbformat.validate(nbformat.read(copy, as_version=4))


def test_the_lecture_setup_quiets_progress_bars_and_styles_the_controls():
    namespace = {}
    import tqdm.auto

    original = tqdm.auto.tqdm
    try:
        exec(lecture.LECTURE_SETUP, namespace)  # noqa: S102 (the package's own cell)
        bar = tqdm.auto.tqdm(range(3), disable=False)  # a chapter asking for a bar explicitly gets none
        assert bar.disable and list(bar) == [0, 1, 2]
    finally:
        tqdm.auto.tqdm = original
    assert "noUi-handle" in lecture.LECTURE_SETUP and "font-size: 20px" in lecture.LECTURE_SETUP


def test_cache_notices_are_for_the_notebook_not_the_lecture_page(monkeypatch, capsys):
    from compresskit import cache, data, train

    split = data.load_digits()
    train.fit_baseline("mlp", split.train, progress=False)  # trained (or loaded) once
    capsys.readouterr()
    train.fit_baseline("mlp", split.train, progress=True)
    assert ("trained before" in capsys.readouterr().out) == (cache.cache_dir() is not None)  # in a notebook: shown
    monkeypatch.setenv(lecture.LECTURE_ENV, "1")
    train.fit_baseline("mlp", split.train, progress=True)
    assert "trained before" not in capsys.readouterr().out
