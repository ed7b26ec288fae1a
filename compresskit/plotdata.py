"""What the plots are given, checked and shaped before anything is drawn (``compresskit.plots`` draws it).

- ``check_series``: named series of lists of one length, their values finite numbers (x may name categories);
- ``check_points``: recipes to place on a plot of accuracy against bytes or milliseconds (``pipeline.Point``);
- ``error_bars``: matplotlib's ``yerr`` rows from symmetric errors or from ``(low, high)`` intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from compresskit.checks import check_int, check_items, check_named, check_number, check_text, checked

__all__ = ["check_series", "check_points", "error_bars"]


@checked
def check_series(series: dict, parts: int, length: int | None = None) -> None:
    """``{name: (xs, ys[, errors])}`` (or ``{name: values}`` with ``parts=1``): at least one, of lists of one length
    (``length`` if given), the values finite numbers; xs may be category names, errors are ``error_bars``'."""
    check_int("parts", parts, 1, 3)
    if length is not None:
        check_int("length", length, 1)
    check_named("series", series, (tuple, list) if parts > 1 else (tuple, list, torch.Tensor))
    for name, value in series.items():
        columns = value if parts > 1 else (value,)
        if len(columns) != parts:
            raise ValueError(f"series[{name!r}] must hold {parts} lists (x, y{', errors' if parts == 3 else ''}), got "
                             f"{len(columns)}")
        sizes = {len(c) for c in columns}
        if len(sizes) != 1 or (length is not None and sizes != {length}):
            raise ValueError(f"series[{name!r}] must hold lists of one length{f' ({length})' if length else ''}, got "
                             f"lengths {sorted(sizes)}")
        for c in columns[1:2] if parts == 3 else columns[1:] if parts > 1 else columns:
            for v in c:
                check_number(f"series[{name!r}]", float(v) if isinstance(v, torch.Tensor) else v)


@checked
def check_points(name: str, points, *, empty: bool = True) -> None:
    """Recipes (``pipeline.Point``, or anything with a name, a group, an accuracy, a byte count and a latency);
    ``empty=False`` refuses an empty list."""
    check_text("name", name)
    for i, p in enumerate(check_items(name, points, object, empty=empty)):
        if not all(hasattr(p, a) for a in ("name", "group", "accuracy", "bytes", "latency_ms")):
            raise TypeError(f"{name}[{i}] must be a pipeline.Point, got {type(p).__name__} {p!r:.40}")


@checked
def error_bars(name: str, ys: Sequence[float], errors: Sequence) -> list[list[float]]:
    """matplotlib's ``yerr`` rows ``[below, above]`` for the values ``ys`` of series ``name``: an error that is a
    number draws y - error to y + error; a ``(low, high)`` interval, which must hold its y, draws low to high."""
    check_text("name", name)
    if len(ys) != len(errors) or not ys:
        raise ValueError(f"ys and errors of series[{name!r}] must be non-empty and of one length, got ys={ys!r:.60} "
                         f"and errors={errors!r:.60}")
    below, above = [], []
    for i, (y, e) in enumerate(zip(ys, errors)):
        where = f"series[{name!r}] error {i}"
        check_number(f"series[{name!r}] value {i}", y)
        if isinstance(e, (tuple, list)):
            if len(e) != 2:
                raise ValueError(f"{where} must be a number or a (low, high) interval, got {e!r}")
            for v in e:
                check_number(where, v)
            low, high = float(e[0]), float(e[1])
            if not low <= float(y) <= high:
                raise ValueError(f"{where}: the interval ({low:g}, {high:g}) must hold its value {float(y):g}")
            below.append(float(y) - low)
            above.append(high - float(y))
        else:
            check_number(where, e, 0)
            below.append(float(e))
            above.append(float(e))
    return [below, above]
