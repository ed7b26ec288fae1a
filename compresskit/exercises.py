"""Automatic checks for the chapters' exercises.

An exercise cell starts with ``answer = None``; ``check`` then says "not attempted" instead of failing, so the
chapter still runs top to bottom (and under nbval). A wrong answer raises ``AssertionError`` with a hint.
"""

from __future__ import annotations

import math


def check(name: str, answer, expected, *, rel_tol: float = 1e-6, abs_tol: float = 0.0, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers with a tolerance, anything else with ``==``).

    Returns ``True`` when correct, ``False`` when not attempted (``answer is None``); raises when wrong.
    """
    if answer is None:
        print(f"[{name}] not attempted yet: replace `None` with your answer and run the cell again.")
        return False
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        ok = isinstance(answer, (int, float)) and math.isclose(answer, expected, rel_tol=rel_tol, abs_tol=abs_tol)
    else:
        ok = answer == expected
    if not ok:
        raise AssertionError(f"[{name}] {answer!r} is not right." + (f" Hint: {hint}" if hint else ""))
    print(f"[{name}] correct: {answer!r}")
    return True
