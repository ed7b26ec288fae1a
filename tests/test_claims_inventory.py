"""The sentences a learner reads that state a measured outcome, chapter by chapter: each must be printed from the run,
worded by it, or followed by a claim check (``compresskit.claims``). This test lists, per chapter, the markdown
sentences with comparative or quantitative words that no claim-check cell follows and that do not defer to the run's
output, a benchmark or a publication. Each one left must be in ``REVIEWED``: read, and found not to state an outcome
of the run (a definition, the arithmetic of a format, an example of a verdict's wording, a general fact), with the
reason. A new sentence of that kind fails the test until it is checked, printed, or reviewed; a reviewed sentence
that is no longer in its chapter fails it too, so the list cannot go stale. Run it with ``-s`` to read the lists."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# words that make a sentence a statement about what the run measured
MEASURED = re.compile(r"\b(faster|slower|beats?|better|worse|within \d|more than|less than|fewer|smaller than|"
                      r"larger than|loses?|recovers?|outperforms?|no measurable difference|\d+(\.\d+)? ?%|"
                      r"\d+(\.\d+)?x|keeps? (its|their|the) accuracy|breaks? (it|the)|falls? off|gains?|wins?|"
                      r"helps?|hurts?|repairs?|costs? accuracy|only costs|drop)\b", re.IGNORECASE)
# sentences that talk about the run's output instead of stating it
# ("above" and "below" only as a pointer -- "the table below", "below:" -- not as in "3 bits and below break it")
DEFERS = re.compile(r"\b(printed|prints?|the verdicts?|'s verdicts?|this run|the run|measured|read (the|their)|"
                    r"shows?)\b"
                    r"|\b(above|below)\s*([:.,;)]|$)|\b(above|below) (says?|shows?|prints?|compares?|counts?|reads?)\b"
                    r"|et al\.|\b(19|20)\d\d\b"  # or a published result, cited
                    r"|`benchmarks/", re.IGNORECASE)  # or a benchmark's recorded result, with the script that prints it

# Sentences the regular expressions flag that were read and found not to state an outcome of the run: (the start of
# the sentence, why it needs no check). Everything else they flag must be checked or printed.
DEFINITION, ARITHMETIC, WORDING, GENERAL, BENCHMARK, PUBLISHED, EXPECTATION = (
    "a definition or what the chapter will do", "arithmetic of a format or a count, true by construction",
    "an example of how a verdict is worded, not a measurement", "a general fact about the method, not this run",
    "part of a paragraph that cites a benchmark script's recorded result", "a published result, cited",
    "what one expects before the run, which the next cell then tests and prints")
REVIEWED = {
    "00": [("Every later chapter compresses one of the models", DEFINITION),
           ("Today every parameter is a 32-bit", ARITHMETIC),
           ("Every later chapter asks", DEFINITION),
           ("One timing of each model cannot answer that", GENERAL),
           ('**"1.8x faster (1.6-2.0)"**', WORDING),
           ('**"no measurable difference (0.95-1.06)"**', WORDING),
           ('**"undecided, 1.14x (1.08-1.21)"**', WORDING)],
    "01": [("* **By sparsity**", DEFINITION),
           ("With layer scope every tensor loses the same share", DEFINITION),
           ("Either way, gradual pruning never asks", DEFINITION),
           ("Use `torch.no_grad()`, or better, masks.", GENERAL),
           ("The question this chapter keeps asking", DEFINITION),
           ("Past some sparsity, one-shot pruning falls off a cliff.", GENERAL)],
    "02": [("Chapter 01 zeroed single weights", GENERAL),
           ("* **Forgetting BatchNorm**", GENERAL),
           ("Unstructured pruning may choose any weight", EXPECTATION),
           ("In a plain chain of layers that breaks the network", GENERAL)],
    "03": [("The L1 penalty also shrinks the weights it keeps", GENERAL),
           ('**"L1 regularization" as `param.data += lam * param.grad`.**', GENERAL)],
    "04": [("Store each\nweight in 8, 4, 2, even 1 bit", ARITHMETIC),
           ("Why per-channel\nshould help", GENERAL)],
    "05": [("Keep those\ndirections and one big layer", GENERAL),
           ("*What is fitted*:", DEFINITION),
           ("It runs as four convolutions", ARITHMETIC),
           ("Fewer MACs only pay if", GENERAL)],
    "06": [("The students have the teacher's shape", DEFINITION),
           ("At 1.4 % it is a tie within a large spread", BENCHMARK),
           ("The MLPs lose more seeds than they win at every width", BENCHMARK),
           ("Overfitting is a reason to try it, not a guarantee", BENCHMARK),
           ("* **A teacher in training mode, or with gradients**", GENERAL),
           ("**Choosing the recipe on the seeds you report.**", BENCHMARK)],
    "07": [("Per *weight* the comparison changes", ARITHMETIC),
           ("GRU-32 does overfit, but its teacher", BENCHMARK),
           ("With chapter 06's LeNet teacher (99.4 %)", BENCHMARK),
           ("Small matrices\nleave little for int8 to win", GENERAL),
           ("Fewer MACs are a promise that only a kernel keeps.", GENERAL)],
    "08": [("The paper's table 2 reports", PUBLISHED),
           ("**Checking a published claim.**", PUBLISHED),
           ("The paper's reasoning:", PUBLISHED),
           ("**Counting parameters instead of bytes.**", ARITHMETIC),
           ("* **Forgetting the index and codebook overhead.**", ARITHMETIC),
           ("* **Huffman tables larger than what they save.**", GENERAL)],
    "09": [("Round-to-nearest (RTN) with one scale per row lets one large weight", ARITHMETIC),
           ("On other text it helps only as far as the calibration", GENERAL),
           ("GPTQ's gain is the part of RTN's rounding error", GENERAL),
           ("Two models can have the same perplexity while single predictions change", GENERAL)],
    "10": [("One expects the pattern to cost more than 50 % unstructured sparsity", EXPECTATION),
           ("But a layer computes", GENERAL)],
    "11": [("To run a matrix product in integers", GENERAL),
           ("Perplexity averages the loss over the test tokens", GENERAL),
           ("Per-token quantization gives each token", ARITHMETIC),
           ("each LayerNorm's weight and bias folded into the layers that read it", DEFINITION)],
    "12": [("The best such  is *not*", GENERAL),
           ("Our version: the fewest **bits per character**", DEFINITION)],
}


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


def _reviewed(chapter: str, sentence: str) -> bool:
    flat = " ".join(sentence.split())
    return any(flat.startswith(" ".join(start.replace("\\n", " ").split())) for start, _ in REVIEWED.get(chapter, []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_sentences_stating_a_measured_outcome_are_tied_to_the_run(path):
    chapter = path.name[:2]
    found = unchecked(path)
    open_ = [s for s in found if not _reviewed(chapter, s)]
    print(f"\n{path.name}: {len(found)} flagged sentence(s) without a check, {len(found) - len(open_)} reviewed as not "
          f"stating an outcome of the run, {len(open_)} stating one:")
    for s in open_:
        print(f"  - {' '.join(s.split())[:160]}")
    assert not open_, (
        f"{path.name}: {len(open_)} sentence(s) state a measured outcome with no claim check; print them from the run, "
        f"follow them with claims.check, or (if they state no outcome of the run) add them to REVIEWED with the "
        f"reason:\n" + "\n".join(open_))
    stale = [start for start, _ in REVIEWED.get(chapter, [])
             if not any(" ".join(s.split()).startswith(" ".join(start.replace("\\n", " ").split())) for s in found)]
    assert not stale, f"{path.name}: reviewed sentences no longer flagged in the chapter (remove them): {stale}"
