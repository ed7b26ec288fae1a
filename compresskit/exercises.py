"""Automatic checks for the chapters' exercises.

An arithmetic exercise cell starts with ``answer = None``; ``check`` then says "not attempted" instead of failing,
so the chapter still runs top to bottom (and under nbval). A wrong answer raises ``AssertionError`` with a hint.

A coding exercise asks the learner to write the heart of a technique (``CODING`` lists them); ``check_code`` runs the
function on many cases against the package and names the classic mistake a wrong answer matches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from compresskit.exercise_cases import EXERCISES

__all__ = ["check", "CodingExercise", "check_code", "CODING"]


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


# ------------------------------------------------------------------------------------------ coding exercises
#
# A coding exercise asks for a function. ``check_code(name, fn)`` runs it on every case of the exercise (seeds,
# shapes, ties, zero ranges, extreme temperatures, ...), compares with the package's own implementation and stops at
# the first case that differs, showing that case. When the wrong result is exactly what a classic mistake produces
# (the source articles' mistakes among them), the message names the mistake. A stub that still raises
# ``NotImplementedError`` is "not attempted": the chapter keeps running.


@dataclass(frozen=True)
class CodingExercise:
    """What ``check_code`` needs: the cases (keyword arguments, with a ``"what"`` description), the package's
    answer, how to compare (``differs(got, expected, case)`` returns None or what is wrong), the classic mistakes as
    ``{name: (wrong implementation, explanation)}`` and a general hint."""

    signature: str
    cases: Callable[[], list[dict]]
    solve: Callable
    differs: Callable
    hint: str
    mistakes: dict = field(default_factory=dict)


def _arguments(case: dict) -> dict:
    """Fresh copies of a case's arguments: a learner's function that changes its input cannot change the case."""
    return {k: copy.deepcopy(v) for k, v in case.items() if k != "what"}


def _describe(case: dict) -> str:
    parts = []
    for k, v in case.items():
        if k == "what":
            continue
        if isinstance(v, torch.Tensor):
            text = f"tensor of shape {tuple(v.shape)}" if v.numel() > 12 else f"tensor({v.tolist()})"
        elif isinstance(v, nn.Module):
            text = repr(v).replace("\n", " ")
        else:
            text = repr(v)
        parts.append(f"{k}={text}")
    return f"{case.get('what', '')}: " + ", ".join(parts)


def _same(a, b) -> bool:
    """Exactly the same result (used to recognise a classic mistake)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-7)
    if isinstance(a, nn.Module) and isinstance(b, nn.Module):
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(_same(sa[k], sb[k]) for k in sa)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-5)
    return a == b


def check_code(name: str, fn) -> bool:
    """Run the learner's function for exercise ``name`` on all its cases against the package's answer.

    Returns ``True`` when every case agrees, ``False`` when not attempted (``fn`` is None or still raises
    ``NotImplementedError``); raises ``AssertionError`` at the first case that differs, with the case, what differs,
    and the classic mistake it matches when it matches one.
    """
    if name not in CODING:
        raise ValueError(f"name must be one of {sorted(CODING)}, got {name!r}")
    exercise = CODING[name]
    if fn is None:
        print(f"[{name}] not attempted yet: write {exercise.signature} and run the cell again.")
        return False
    if not callable(fn):
        raise TypeError(f"[{name}] expected a function {exercise.signature}, got {type(fn).__name__}")
    cases = exercise.cases()
    for i, case in enumerate(cases, 1):
        expected = exercise.solve(**_arguments(case))
        arguments = _arguments(case)
        try:
            got = fn(**arguments)
        except NotImplementedError:
            print(f"[{name}] not attempted yet: replace `raise NotImplementedError` with your code "
                  f"({exercise.signature}) and run the cell again.")
            return False
        except Exception as error:  # the learner's bug, reported with the case that shows it
            raise AssertionError(f"[{name}] case {i} of {len(cases)} ({_describe(case)}) raised "
                                 f"{type(error).__name__}: {error}. Hint: {exercise.hint}") from error
        problem = exercise.differs(got, expected, case)
        changed = [k for k, v in case.items() if isinstance(v, nn.Module) and not _same(arguments[k], v)]
        if problem is None and changed:
            problem = f"the function changed the {changed[0]} it was given (work on a copy)"
        if problem is not None:
            known = []
            for mistake, (wrong, why) in exercise.mistakes.items():
                try:
                    if _same(got, wrong(**_arguments(case))):
                        known.append(f"this is the classic mistake '{mistake}': {why}")
                except Exception:  # noqa: S112 (a mistake that cannot even run on this case is not this one)
                    continue
            raise AssertionError(f"[{name}] case {i} of {len(cases)} differs ({_describe(case)}): {problem}. "
                                 + (known[0] if known else f"Hint: {exercise.hint}"))
    print(f"[{name}] correct on all {len(cases)} cases ({', '.join(c['what'] for c in cases)}).")
    return True


CODING: dict[str, CodingExercise] = {name: CodingExercise(**fields) for name, fields in EXERCISES.items()}
"""The coding exercises of chapters 01-10, by name (their material is in ``compresskit.exercise_cases``)."""

