"""Automatic checks for the chapters' exercises.

An arithmetic exercise cell starts with ``answer = None``; ``check`` then says "not attempted" instead of failing,
so the chapter still runs top to bottom (and under nbval). A wrong answer raises ``AssertionError`` with a hint.

A coding exercise asks the learner to write the heart of a technique (``CODING`` lists them); ``check_code`` runs the
function on many cases against the package and names the classic mistake a wrong answer matches.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from compresskit.checks import check_fields, check_number, checked
from compresskit.exercise_cases import EXERCISES
from compresskit.lm_exercise_cases import LM_EXERCISES

__all__ = ["check", "CASE_SECONDS", "CodingExercise", "check_code", "CODING"]


@checked
def check(name: str, answer, expected, *, rel_tol: float = 1e-6, abs_tol: float = 0.0, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers with a tolerance, anything else with ``==``).

    Returns ``True`` when correct, ``False`` when not attempted (``answer is None``); raises when wrong.
    """
    check_number("rel_tol", rel_tol, 0.0)
    check_number("abs_tol", abs_tol, 0.0)
    if answer is None:
        print(f"[{name}] not attempted yet: replace `None` with your answer and run the cell again.")
        return False
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:  # a count computed with torch: its value
        answer = answer.item()
    if isinstance(expected, numbers.Real) and not isinstance(expected, bool):
        # numpy's integers and floats are numbers too (numbers.Real); a bool is not an answer to "how many"
        ok = isinstance(answer, numbers.Real) and not isinstance(answer, bool) and \
            math.isclose(answer, expected, rel_tol=rel_tol, abs_tol=abs_tol)
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

    def __post_init__(self):
        check_fields(self)


CASE_SECONDS = 5.0
"""A learner's function gets this long per case; longer is stopped with a message (an accidental loop over every
entry in Python, or an endless loop, would otherwise hang the chapter and nbval)."""


class _TooSlow(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ``_TooSlow`` in the block after ``seconds`` (SIGALRM: the main thread of a POSIX process, where a kernel
    runs a cell; elsewhere the block runs without a limit). No thread or process is started."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):  # a tensor against anything else (an array)
        return False
    same = a == b
    return same if isinstance(same, bool) else False  # an elementwise comparison is no answer


def _unchanged(given, original) -> bool:
    """``given`` (what the learner's function received) still equals the case's ``original``, bit for bit."""
    if isinstance(original, torch.Tensor):
        return isinstance(given, torch.Tensor) and given.shape == original.shape and \
            given.dtype == original.dtype and torch.equal(given, original)
    if isinstance(original, nn.Module):
        a, b = given.state_dict(), original.state_dict()
        return a.keys() == b.keys() and all(_unchanged(a[k], b[k]) for k in a)
    if isinstance(original, dict):
        return given == original
    return True


class _Stopped(Exception):
    """The learner's function raised or ran too long on a case (the message says which)."""


def _call(name: str, fn, case: dict, where: str, hint: str):
    """``fn`` on fresh copies of ``case``'s arguments: (result, the arguments it was given)."""
    arguments = _arguments(case)
    try:
        with _time_limit(CASE_SECONDS):
            return fn(**arguments), arguments
    except NotImplementedError:
        raise
    except _TooSlow:
        raise _Stopped(f"[{name}] {where} ran longer than {CASE_SECONDS:g} s and was stopped: the cases are small, so "
                       f"this is a loop that does not end or a Python loop over every entry; use tensor operations. "
                       f"Hint: {hint}") from None
    except Exception as error:  # the learner's bug, reported with the case that shows it
        raise _Stopped(f"[{name}] {where} raised {type(error).__name__}: {error}. Hint: {hint}") from error


def _problem(exercise: CodingExercise, got, expected, case: dict, arguments: dict):
    """What is wrong with ``got`` on ``case`` (None when right); a result the comparison cannot even read (a wrong
    type or dtype, layers whose shapes do not multiply) is wrong like any other, never a crash of the checker."""
    try:
        problem = exercise.differs(got, expected, case)
    except Exception as error:  # noqa: BLE001 (whatever the learner returned)
        problem = f"its result could not be compared with the expected one ({type(error).__name__}: {error})"
    if problem is None:
        changed = [k for k, v in case.items() if k != "what" and not _unchanged(arguments[k], v)]
        if changed:
            problem = f"the function changed the {changed[0]} it was given (inputs must not change: work on a copy)"
    return problem


def _raises_like(exercise: CodingExercise, case: dict, error: BaseException | None) -> str | None:
    """The classic mistake whose implementation raises the same error (type and message) on ``case`` as the
    learner's function did, if one does (a Huffman heap without a tie-breaker compares a symbol with a subtree)."""
    if error is None:
        return None
    for mistake, (wrong, why) in exercise.mistakes.items():
        try:
            with _time_limit(CASE_SECONDS):
                wrong(**_arguments(case))
        except Exception as raised:  # noqa: BLE001 (the mistake's own failure is what is compared)
            if type(raised) is type(error) and str(raised) == str(error):
                return f"'{mistake}': {why}"
    return None


def _recognised(exercise: CodingExercise, results: list) -> str | None:
    """The classic mistake the learner's function matches on *every* case it ran on, if one does: a result that
    merely coincides with a mistake on the failing case is not named as that mistake."""
    for mistake, (wrong, why) in exercise.mistakes.items():
        matched = 0
        for case, got in results:
            try:
                with _time_limit(CASE_SECONDS):
                    same = _same(got, wrong(**_arguments(case)))
            except Exception:  # noqa: BLE001 (a mistake that cannot even run on this case says nothing)
                continue
            if not same:
                break
            matched += 1
        else:
            if matched:
                return f"this is the classic mistake '{mistake}': {why}"
    return None


@checked
def check_code(name: str, fn) -> bool:
    """Run the learner's function for exercise ``name`` on all its cases against the package's answer.

    Returns ``True`` when every case agrees, ``False`` when not attempted (``fn`` is None or still raises
    ``NotImplementedError``); raises ``AssertionError`` at the first case that differs, with the case, what differs,
    and the classic mistake it matches when it matches one on every case; a function that raises or runs longer
    than ``CASE_SECONDS`` on a case is stopped there with the case and a hint.
    """
    if name not in CODING:
        raise ValueError(f"name must be one of {sorted(CODING)}, got {name!r}")
    exercise = CODING[name]
    if fn is None:
        print(f"[{name}] not attempted yet: write {exercise.signature} and run the cell again.")
        return False
    if not callable(fn):
        raise TypeError(f"[{name}] fn must be a function {exercise.signature}, got {type(fn).__name__} {fn!r:.60}")
    cases = exercise.cases()
    results = []
    for i, case in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({_describe(case)})"
        try:
            got, arguments = _call(name, fn, case, where, exercise.hint)
        except NotImplementedError:
            print(f"[{name}] not attempted yet: replace `raise NotImplementedError` with your code "
                  f"({exercise.signature}) and run the cell again.")
            return False
        except _Stopped as stopped:
            known = _raises_like(exercise, case, stopped.__cause__)
            raise AssertionError(str(stopped) + (f" This is the classic mistake {known}" if known else "")) \
                from stopped.__cause__
        results.append((case, got))
        problem = _problem(exercise, got, exercise.solve(**_arguments(case)), case, arguments)
        if problem is not None:
            for later in cases[i:]:  # the rest too, so that a mistake is named only when it explains every case
                try:
                    results.append((later, _call(name, fn, later, "", exercise.hint)[0]))
                except (_Stopped, NotImplementedError):
                    continue
            known = _recognised(exercise, results)
            raise AssertionError(f"[{name}] case {i} of {len(cases)} differs ({_describe(case)}): {problem}. "
                                 + (known or f"Hint: {exercise.hint}"))
    print(f"[{name}] correct on all {len(cases)} cases ({', '.join(c['what'] for c in cases)}).")
    return True


CODING: dict[str, CodingExercise] = {name: CodingExercise(**fields)
                                     for name, fields in {**EXERCISES, **LM_EXERCISES}.items()}
"""The coding exercises of chapters 01-11, by name (their material is in ``compresskit.exercise_cases`` and, for the
language-model chapters' central methods, ``compresskit.lm_exercise_cases``)."""

