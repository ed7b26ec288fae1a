"""The sentences a learner reads that state a measured outcome, chapter by chapter: each must be printed from the run,
worded by it, or followed by a claim check (``compresskit.claims``). This test lists, per chapter, the markdown
sentences with comparative or quantitative words that no claim-check cell follows, and fails when a chapter has more
of them than ``CEILING`` allows: the count can only go down. Run it with ``-s`` to read the list."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# words that make a sentence a statement about what the run measured
MEASURED = re.compile(r"\b(faster|slower|beats?|better|worse|within \d|more than|less than|fewer|smaller than|"
                      r"larger than|loses?|recovers?|outperforms?|no measurable difference|\d+(\.\d+)? ?%|"
                      r"\d+(\.\d+)?x)\b", re.IGNORECASE)
# sentences that talk about the run's output instead of stating it
DEFERS = re.compile(r"\b(printed|prints?|above|below|the verdicts?|this run|the run|measured|read the|shows?)\b"
                    r"|et al\.|\b(19|20)\d\d\b"  # or a published result, cited
                    r"|`benchmarks/", re.IGNORECASE)  # or a benchmark's recorded result, with the script that prints it

# Measured-outcome sentences without a check, per chapter, when this inventory was taken; lower these as chapters
# tie their sentences to their runs (a chapter may not rise above its ceiling).
CEILING = {"00": 2, "01": 12, "02": 2, "03": 1, "04": 2, "05": 4, "06": 11, "07": 7, "08": 7, "09": 0, "10": 3}


def _sentences(text: str) -> list[str]:
    text = re.sub(r"\$[^$]*\$", "", text)  # formulas
    text = re.sub(r"\|[^\n]*\|", "", text)  # tables (glossaries)
    text = re.sub(r"\*\*Learning goals\.\*\*.*?(?=\n\n|$)", "", text, flags=re.DOTALL)  # what the chapter will do
    text = re.sub(r"^#+ [^\n]*$", "", text, flags=re.MULTILINE)  # headings: questions and titles, not outcomes
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n\s*[*-] |\n\s*\d+\. ", text) if s.strip()]


def unchecked(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    found = []
    for i, cell in enumerate(cells):
        tags = cell["metadata"].get("tags", [])
        if cell["cell_type"] != "markdown" or {"solution", "exercise"} & set(tags):
            continue
        text = "".join(cell["source"])
        if "## References" in text or "## Glossary" in text:
            text = text.split("## Glossary")[0].split("## References")[0]
        checked = i + 1 < len(cells) and "claim-check" in cells[i + 1]["metadata"].get("tags", [])
        if checked:
            continue
        found += [s for s in _sentences(text) if MEASURED.search(s) and not DEFERS.search(s)]
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_sentences_stating_a_measured_outcome_are_tied_to_the_run(path):
    chapter = path.name[:2]
    found = unchecked(path)
    print(f"\n{path.name}: {len(found)} sentence(s) stating a measured outcome without a check:")
    for s in found:
        print(f"  - {s[:160]}")
    assert len(found) <= CEILING[chapter], (
        f"{path.name}: {len(found)} sentences state a measured outcome with no claim check (ceiling "
        f"{CEILING[chapter]}); print them from the run or follow them with claims.check:\n" + "\n".join(found))
