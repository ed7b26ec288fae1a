"""The coding exercises (compresskit.exercises.CODING): every chapter from 01 has one or two; each checker accepts
the worked solution stored in the chapter (the hidden cell, run here as the chapter runs it), rejects each classic
wrong answer and names it, and treats the untouched stub as "not attempted" so the chapter still runs."""

import json
from pathlib import Path

import pytest
import torch

from compresskit import exercises
from compresskit.exercises import CODING, check_code

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTERS = sorted(p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if p.name[:2] != "00")  # chapter 00:
# arithmetic exercises only


def _cells(chapter):
    path = next(NOTEBOOKS.glob(f"{chapter}_*.ipynb"))
    return json.loads(path.read_text())["cells"]


def _tagged(chapter, tag):
    return [c for c in _cells(chapter) if tag in c["metadata"].get("tags", [])]


def _run(cell) -> dict:
    namespace = {"torch": torch, "check_code": check_code}
    exec(compile("".join(cell["source"]), "<cell>", "exec"), namespace)  # noqa: S102 (the chapter's own cell)
    return namespace


def _function(name, namespace):
    fn_name = CODING[name].signature.split("(")[0]
    return namespace[fn_name]


def test_every_chapter_from_01_has_a_coding_exercise():
    assert sorted({name[:2] for name in CODING}) == CHAPTERS


@pytest.mark.parametrize("name", sorted(CODING))
def test_the_chapters_worked_solution_passes_its_checker(name, capsys):
    solutions = [c for c in _tagged(name[:2], "solution") if f'check_code("{name}"' in "".join(c["source"])]
    assert len(solutions) == 1, f"chapter {name[:2]}: expected one solution cell for {name}"
    assert check_code(name, _function(name, _run(solutions[0]))) is True
    assert "correct on all" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CODING))
def test_the_untouched_stub_is_not_attempted_and_does_not_fail(name, capsys):
    stubs = [c for c in _tagged(name[:2], "exercise") if f'check_code("{name}"' in "".join(c["source"])]
    assert len(stubs) == 1 and "raise NotImplementedError" in "".join(stubs[0]["source"])
    _run(stubs[0])  # the cell as nbval runs it: no exception
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("name, mistake", [(n, m) for n, ex in CODING.items() for m in ex.mistakes])
def test_each_classic_mistake_is_rejected_and_named(name, mistake):
    wrong, why = CODING[name].mistakes[mistake]
    with pytest.raises(AssertionError) as error:
        check_code(name, wrong)
    message = str(error.value)
    assert f"classic mistake '{mistake}'" in message and why in message and "case" in message


def test_a_wrong_answer_shows_the_input_that_exposes_it():
    def off_by_one(w, sparsity):
        return exercises.CODING["01-code"].solve(w=w, sparsity=min(1.0, sparsity + 0.05))

    with pytest.raises(AssertionError, match=r"\[01-code\] case 1 of 6 differs \(random 5x7, half: w=tensor of shape"):
        check_code("01-code", off_by_one)

    def crashes(v, t):
        raise ValueError("oops")

    with pytest.raises(AssertionError, match="raised ValueError: oops. Hint: sign"):
        check_code("03-code", crashes)


def test_a_function_that_changes_its_input_model_is_caught():
    def in_place(x, h, cell):
        new = CODING["07-code"].solve(x=x, h=h, cell=cell)
        with torch.no_grad():
            cell.bias_hh.zero_()  # "used up" the bias: the caller's layer changes
        return new

    with pytest.raises(AssertionError, match="changed the cell it was given"):
        check_code("07-code", in_place)


def test_check_code_refuses_bad_arguments(capsys):
    with pytest.raises(ValueError, match="name must be one of"):
        check_code("99-code", lambda: None)
    with pytest.raises(TypeError, match="fn must be a function"):
        check_code("03-code", 3)
    assert check_code("03-code", None) is False
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("chapter", ["00", *CHAPTERS])
def test_solutions_are_hidden_when_the_chapter_opens(chapter):
    """Every worked solution is closed when a chapter opens: its explanation inside a closed <details> (one click
    opens it; JupyterLab does not collapse rendered markdown by metadata), its code cell collapsed by
    ``jupyter.source_hidden``; all of them tagged ``solution``, and nothing else hidden."""
    cells = _cells(chapter)
    explained = 0
    for i, cell in enumerate(cells):
        text = "".join(cell["source"])
        hidden = cell["metadata"].get("jupyter", {}).get("source_hidden", False)
        tagged = "solution" in cell["metadata"].get("tags", [])
        if cell["cell_type"] == "markdown" and ("<summary><b>Worked solution" in text or text.startswith("*Worked")):
            explained += 1
            assert tagged and text.startswith("<details><summary>") and text.rstrip().endswith("</details>") \
                and "<details open" not in text, f"chapter {chapter}, cell {i}: a worked solution in plain view"
            after = cells[i + 1]
            assert after["cell_type"] == "code" and "solution" in after["metadata"].get("tags", []), \
                f"chapter {chapter}, cell {i + 1}: the solution's code cell is not tagged"
        if "claim-check" in cell["metadata"].get("tags", []):
            assert hidden, f"chapter {chapter}, cell {i}: a claim check is collapsed"
        elif cell["cell_type"] == "code":
            assert tagged == hidden, f"chapter {chapter}, cell {i}: 'solution' tag and hidden source must go together"
        else:
            assert not hidden, f"chapter {chapter}, cell {i}: hide markdown in <details>, not by metadata"
        if "exercise" in cell["metadata"].get("tags", []):
            assert not hidden, f"chapter {chapter}, cell {i}: the exercise itself must be visible"
    assert explained >= 2, f"chapter {chapter}: expected worked solutions"
