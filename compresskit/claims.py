"""Claims are code: a sentence that states what the run measured is printed from the numbers or checked against them.

Two ways to tie a sentence to a run:

- **worded by the run** (``compare``, ``within``): the sentence is printed, and its wording (better, worse, no
  difference, within or beyond a tolerance) is chosen by the numbers, so the opposite outcome prints the opposite
  sentence;
- **checked** (``check``): a sentence written in markdown is followed by a cell ``check(holds, "the sentence")``.
  When the run agrees it prints a one-line confirmation. When it does not, a strict run (CI: nbval and
  ``jupyter nbconvert --execute`` under the test suite, which sets ``COMPRESSKIT_STRICT_CLAIMS=1``) fails the chapter
  with ``ClaimError``; a learner's run shows a visible warning instead of a traceback, so the chapter still runs.

Check cells carry the tag ``claim-check`` (collapsed in JupyterLab, left out of the lecture view).

A check also says how far the run is from contradicting it: ``margins``, one number per condition, each the slack
to its threshold as a fraction of the threshold (``above`` / ``below`` compute them; positive holds). With
``COMPRESSKIT_CLAIM_LOG`` naming a file, every check appends a JSON line (claim, holds, measured, margins) to it:
``benchmarks/claim_margins.py`` runs every chapter under several CPU kernels and thread counts that way and prints
each claim's smallest margin, so a threshold tuned on one processor shows up before it fails on another.
"""

from __future__ import annotations

import html
import json
import math
import os

import numpy as np
from IPython import get_ipython
from IPython.display import HTML, display

from compresskit.checks import check_number, checked

__all__ = ["STRICT_ENV", "LOG_ENV", "ClaimError", "strict", "above", "below", "check", "compare", "within"]

STRICT_ENV = "COMPRESSKIT_STRICT_CLAIMS"
LOG_ENV = "COMPRESSKIT_CLAIM_LOG"
"""Environment variable: a file to which every ``check`` appends one JSON line (``benchmarks/claim_margins.py``)."""


class ClaimError(AssertionError):
    """A sentence of the chapter that this run contradicts (raised only in strict runs)."""


def strict() -> bool:
    """Whether contradicted claims fail (``COMPRESSKIT_STRICT_CLAIMS=1``, set by the test suite)."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def _warn(text: str) -> None:
    if get_ipython() is None:  # outside a notebook: plain text
        print(f"WARNING: this run disagrees with the text above. {text}")
        return
    display(HTML(f'<div style="border-left: 4px solid #d9822b; padding: 4px 10px; background: #fff4e5">'
                 f"<b>This run disagrees with the text above.</b> {html.escape(text)}</div>"))


@checked
def above(value: float, bound: float) -> float:
    """The margin of ``value > bound`` (or ``>=``): ``(value - bound) / |bound|``, positive when it holds (an
    absolute difference when ``bound`` is 0)."""
    value, bound = _finite("value", value), _finite("bound", bound)
    return (value - bound) / abs(bound) if bound else value - bound


@checked
def below(value: float, bound: float) -> float:
    """The margin of ``value < bound`` (or ``<=``): ``(bound - value) / |bound|``, positive when it holds."""
    return above(-_finite("value", value), -_finite("bound", bound))


def _log(record: dict) -> None:
    path = os.environ.get(LOG_ENV, "")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def check(holds: bool, claim: str, *, measured: str = "", margins: dict[str, float] | None = None) -> bool:
    """Check the sentence ``claim`` (as the chapter states it) against the run: ``holds`` is what the run's numbers
    say, ``measured`` what they are (shown either way), ``margins`` how far each of its conditions is from its
    threshold (``above`` / ``below``; logged for ``benchmarks/claim_margins.py``). Returns ``holds``; a strict run
    raises ``ClaimError`` when it is False, any other run shows a warning."""
    if not isinstance(holds, (bool, np.bool_)):  # numpy's bool too
        raise TypeError(f"holds must be a bool (what the run's numbers say), got {type(holds).__name__} {holds!r}")
    holds = bool(holds)
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError(f"claim must be the sentence being checked, a non-empty str, got {claim!r:.60}")
    if not isinstance(measured, str):
        raise TypeError(f"measured must be a str (the run's numbers in words), got {type(measured).__name__} "
                        f"{measured!r:.60}")
    if margins is not None:
        if not isinstance(margins, dict) or not margins:
            raise TypeError(f"margins must be a non-empty dict {{condition: margin}}, got {margins!r}")
        margins = {str(name): _finite(f"margins[{name!r}]", value) for name, value in margins.items()}
    _log({"claim": claim, "holds": holds, "measured": measured, "margins": margins})
    detail = f" (measured: {measured})" if measured else ""
    if holds:
        print(f"checked against this run: {claim}{detail}")
        return True
    message = f"The claim \u201c{claim}\u201d does not hold in this run{detail}."
    if strict():
        raise ClaimError(message)
    _warn(message)
    return False


def _finite(name: str, value) -> float:
    check_number(name, value)
    return float(value)


@checked
def compare(a: float, b: float, *, names: tuple[str, str], lower_is_better: bool = True, spread: float = 0.0,
            unit: str = "", fmt: str = ".3f") -> str:
    """One sentence comparing two measured values, worded by them: ``"A beats B: 5.12 against 5.40"``, ``"B beats A
    ..."`` or ``"no measurable difference between A and B ..."`` when they are within ``spread`` of each other (for
    example the spread over seeds)."""
    a, b = _finite("a", a), _finite("b", b)
    check_number("spread", spread, 0.0)
    try:
        format(1.0, fmt)
    except ValueError:
        raise ValueError(f"fmt must be a format spec for a float such as '.3f', got {fmt!r}") from None
    first, second = names
    values = f"{a:{fmt}}{unit} against {b:{fmt}}{unit}"
    if abs(a - b) <= spread:
        return f"no measurable difference between {first} and {second} ({values}, spread {spread:{fmt}}{unit})"
    a_better = (a < b) if lower_is_better else (a > b)
    return f"{first} beats {second}: {values}" if a_better else f"{second} beats {first}: {b:{fmt}}{unit} against " \
        f"{a:{fmt}}{unit}"


@checked
def within(value: float, reference: float, tolerance: float, *, name: str, reference_name: str) -> tuple[bool, str]:
    """``(holds, sentence)``: whether ``value`` lies within ``tolerance`` (relative, e.g. 0.05 for 5 %) of
    ``reference``, and the sentence that says so or says by how much it misses."""
    value, reference = _finite("value", value), _finite("reference", reference)
    check_number("tolerance", tolerance, 0.0)
    gap = (value - reference) / abs(reference) if reference else math.inf
    holds = abs(gap) <= tolerance
    words = "within" if holds else "not within"
    return holds, f"{name} is {words} {tolerance:.0%} of {reference_name} ({value:.4g} against {reference:.4g}, " \
        f"{gap:+.1%})"
