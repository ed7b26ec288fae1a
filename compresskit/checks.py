"""Argument checks shared by every module: one place that says what a valid argument is.

Each check raises ``TypeError`` for the wrong kind of value and ``ValueError`` for a value out of range, with a
message naming the argument, the value and what is allowed. Nothing is clamped, nothing non-finite passes.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

__all__ = ["INT_LIMIT", "checked", "check_bool", "check_int", "check_seed", "check_number", "check_fraction",
           "check_choice", "check_text", "check_sizes", "check_path", "check_fractions", "check_named", "check_module",
           "check_tensor", "check_batch", "check_finite", "check_items", "check_fields", "available_cores",
           "check_threads", "dataset_tensors"]

INT_LIMIT = 2**63 - 1  # no count, size or index beyond int64 (what torch and numpy hold): 2**70 steps is a mistake
_SEED_LIMIT = 2**64 - 1  # what torch.Generator.manual_seed accepts (non-negative); data.MAX_SEED shows it


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-d {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, nn.Module):
        return type(value).__name__
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def check_bool(name: str, value) -> None:
    """A real ``bool``: ``inplace="no"`` or ``1`` is a TypeError, never a truthy surprise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {_kind(value)}")


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> None:
    """An ``int`` (not a bool) in ``[low, high]``; never beyond int64 (``INT_LIMIT``) unless ``high`` says so."""
    allowed = _range_text(low, high, False, False)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):  # numpy's ints too
        raise TypeError(f"{name} must be an int{allowed}, got {_kind(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be{allowed}, got {value}")
    if (high is None and value > INT_LIMIT) or (low is None and value < -INT_LIMIT - 1):
        raise ValueError(f"{name} must be{allowed} within int64 (at most 2**63 - 1 in size), got {value}")


def _bound(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"  # integers exactly (a seed's 2**64 - 1)


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {_bound(low)}"
    if low is None:
        return f" {'<' if high_open else '<='} {_bound(high)}"
    return f" in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"


def check_number(name: str, value, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
    """A finite real number (int or float, not a bool, not NaN or inf) in the given range."""
    allowed = _range_text(low, high, low_open, high_open)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):  # numpy's floats too
        raise TypeError(f"{name} must be a float{allowed}, got {_kind(value)}")
    bounded = low is not None and high is not None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite float{allowed}, got {value!r}")
    if (low is not None and (value <= low if low_open else value < low)) or \
            (high is not None and (value >= high if high_open else value > high)):
        raise ValueError(f"{name} must be {allowed.strip() if bounded else 'a finite float' + allowed}, got {value!r}")


def check_seed(value, name: str = "seed") -> None:
    """A random seed: an int from 0 to 2**64 - 1 (what ``torch.Generator.manual_seed`` takes)."""
    check_int(name, value, 0, _SEED_LIMIT)


def check_fraction(name: str, value, *, high_open: bool = False) -> None:
    """A number in [0, 1] (or [0, 1) with ``high_open``)."""
    check_number(name, value, 0.0, 1.0, high_open=high_open)


def check_choice(name: str, value, choices: Sequence) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_text(name: str, value, *, empty: bool = True) -> None:
    """A ``str`` (a title, a label, a name); ``empty=False`` refuses ``""``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {_kind(value)}")
    if not empty and not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def check_sizes(name: str, value, length: int | None = None, *, low: int = 1) -> tuple[int, ...]:
    """A tuple (or list) of ints >= ``low`` (sizes: widths, channels, a shape), of ``length`` items when given;
    returns it as a tuple. A bare int is refused: ``hidden=300`` is not ``hidden=(300,)``."""
    if not isinstance(value, (tuple, list)):
        shape = {None: "a tuple of ints", 2: "a pair (tuple) of ints"}.get(length, f"a tuple of {length} ints")
        raise TypeError(f"{name} must be {shape}, got {_kind(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must hold {length} int(s), got {len(value)}: {value!r}")
    if length is None and not value:
        raise ValueError(f"{name} must hold at least one int, got an empty {type(value).__name__} {value!r}")
    for i, v in enumerate(value):
        check_int(f"{name}[{i}]", v, low)
    return tuple(value)


def check_path(name: str, value) -> None:
    """A file or folder path: a non-empty ``str`` or an ``os.PathLike``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {_kind(value)}")
    if not os.fspath(value).strip():
        raise ValueError(f"{name} must be a path, got an empty string {os.fspath(value)!r}")


def check_fractions(name: str, values, *, empty: bool = False, high_open: bool = False) -> list[float]:
    """A list or tuple of numbers in [0, 1] (or [0, 1)); returns it as a list. Refuses an empty one unless told."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of fractions in [0, 1], got {_kind(values)}")
    if not values and not empty:
        raise ValueError(f"{name} must hold at least one fraction, got an empty {type(values).__name__}")
    for i, v in enumerate(values):
        check_fraction(f"{name}[{i}]", v, high_open=high_open)
    return list(values)


def check_named(name: str, value, kind: type | tuple[type, ...], *, empty: bool = False,
                keys: Sequence[str] | None = None) -> dict:
    """A dict from names (strings) to values of ``kind``; ``keys`` lists the names allowed. Refuses an empty one
    unless told. Returns it."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict from names to {_type_text(kind)}, got {_kind(value)}")
    if not value and not empty:
        raise ValueError(f"{name} must name at least one item, got an empty dict {{}}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}'s keys must be strings, got {_kind(key)}")
        if keys is not None and key not in keys:
            raise ValueError(f"{name} names {key!r}, which is not one of {tuple(keys)}")
        if not isinstance(item, kind) or isinstance(item, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                                else (kind,)):
            raise TypeError(f"{name}[{key!r}] must be {_type_text(kind)}, got {_kind(item)}")
    return value


def _type_text(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def check_items(name: str, values, kind: type | tuple[type, ...], *, empty: bool = True) -> list:
    """A list (or tuple) whose every item is a ``kind`` (the points of a plot, the steps of a recipe); returns it as
    a list. ``empty=False`` refuses an empty one."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of {_type_text(kind)}, got {_kind(values)}")
    if not values and not empty:
        raise ValueError(f"{name} must hold at least one {_type_text(kind)}, got an empty {type(values).__name__}")
    for i, v in enumerate(values):
        if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, float)):
            raise TypeError(f"{name}[{i}] must be {_type_text(kind)}, got {_kind(v)}")
    return list(values)


def check_module(name: str, value) -> None:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {_kind(value)}")


def check_tensor(name: str, value, *, floating: bool = True, finite: bool = True) -> None:
    """A torch.Tensor (floating point unless told otherwise) whose values are all finite."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(value)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if finite and value.is_floating_point():
        check_finite(name, value)


def check_batch(name: str, x, *, batch_size: int | None = None) -> None:
    """A batch of inputs: a finite tensor with a first (batch) dimension holding at least one example; with
    ``batch_size``, also the size of the batches it is cut into (an int >= 1)."""
    check_tensor(name, x, floating=False)
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"{name} must be a batch (first dimension: examples) of at least one example, got "
                         f"{_kind(x)}")
    if batch_size is not None:
        check_int("batch_size", batch_size, 1)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Refuse NaN and inf: they would spread through every later step (a NaN weight rounds to code INT32_MIN)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(tensor)}")
    if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor.detach()).all()):
        bad = int((~torch.isfinite(tensor.detach())).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf) out of {tensor.numel()}; "
                         "fix or retrain the model before compressing or measuring it")


def check_fields(obj, **ranges) -> None:
    """Check a dataclass's fields by their annotations (``str``, ``int``, ``float``, ``bool``, ``bytes``, lists,
    dicts, tensors, modules; ``| None`` allows None), each in ``ranges[field] = (low, high)`` when given. Called from
    ``__post_init__``: a record built by hand with a wrong field is refused when made, not when plotted."""
    import dataclasses

    if not dataclasses.is_dataclass(obj):
        raise TypeError(f"obj must be a dataclass instance, got {_kind(obj)}")
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        annotation = str(field.type).replace(" ", "")
        if annotation.endswith("|None"):
            if value is None:
                continue
            annotation = annotation[:-len("|None")]
        low, high = ranges.get(field.name, (None, None))
        name = f"{type(obj).__name__}.{field.name}"
        if annotation == "str":
            check_text(name, value)
        elif annotation == "int":
            check_int(name, value, 0 if low is None else low, high)
        elif annotation == "float":
            check_number(name, value, low, high)
        elif annotation.startswith("tuple[int"):
            check_sizes(name, value, low=0) if value != () else None  # a shape: () for a 0-d tensor
        elif annotation in ("list[str]", "list[float]") or annotation.startswith("list[tuple"):
            check_items(name, value, {"list[str]": str, "list[float]": (int, float)}.get(annotation, tuple))
        elif annotation == "bool":
            check_bool(name, value)
        elif annotation == "bytes" and not isinstance(value, bytes):
            raise TypeError(f"{name} must be bytes, got {_kind(value)}")
        elif annotation.startswith(("list", "tuple")) and not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a {annotation}, got {_kind(value)}")
        elif annotation.startswith("dict") and not isinstance(value, dict):
            raise TypeError(f"{name} must be a {annotation}, got {_kind(value)}")
        elif annotation == "torch.Tensor":
            check_tensor(name, value, floating=False)
        elif annotation in ("Dataset", "TensorDataset") and not isinstance(value, _CLASSES[annotation]):
            raise TypeError(f"{name} must be a {annotation}, got {_kind(value)}")
        elif annotation in ("nn.Module", "nn.Sequential"):
            check_module(name, value)
        elif annotation.startswith("Callable") and not callable(value):
            raise TypeError(f"{name} must be callable, got {_kind(value)}")


_CLASSES = {"nn.Module": nn.Module, "nn.Sequential": nn.Sequential, "nn.Linear": nn.Linear, "nn.Conv2d": nn.Conv2d,
            "torch.Tensor": torch.Tensor, "Dataset": Dataset, "TensorDataset": TensorDataset, "bytes": bytes,
            "torch.dtype": torch.dtype}


def _rule(annotation, names: dict | None = None) -> Callable | None:
    """The check an annotation implies (kind and finiteness; ranges stay with each function), or None. ``names``
    (the function's globals) resolves a class named in the annotation (``Reader``, ``Setting``, ``Path``)."""
    text = annotation.replace(" ", "") if isinstance(annotation, str) else ""
    optional = text.endswith("|None")
    core = text[:-len("|None")] if optional else text
    if core == "bool":
        rule = check_bool
    elif core == "int":
        rule = check_int
    elif core == "float":
        rule = check_number
    elif core == "str":
        rule = check_text
    elif core == "str|os.PathLike":
        rule = check_path
    elif core == "torch.Tensor":  # its kind; finiteness where the function reads values (check_tensor): a hot loop
        def rule(name, value):      # would pay for the scan twice
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {_kind(value)}")
    elif core in ("nn.Module", "nn.Sequential"):  # which modules a function takes, it says itself
        rule = check_module
    elif core.startswith("tuple[int,...]"):
        rule = check_sizes
    elif core.startswith("tuple[int,int]"):
        def rule(name, value):
            check_sizes(name, value, 2)
    elif core == "tuple[float,float]":
        def rule(name, value):
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(f"{name} must be a pair (tuple) of numbers, got {_kind(value)}")
            for i, v in enumerate(value):
                check_number(f"{name}[{i}]", v)
    elif core == "tuple[str,...]":
        def rule(name, value):
            check_items(name, value, str)
    elif core == "list[tuple[str,float,float]]":
        def rule(name, value):
            for i, item in enumerate(check_items(name, value, (tuple, list))):
                if len(item) != 3 or not isinstance(item[0], str):
                    raise TypeError(f"{name}[{i}] must be a (text, x, y) triple, got {_kind(item)}")
                check_number(f"{name}[{i}] x", item[1])
                check_number(f"{name}[{i}] y", item[2])
    elif core == "tuple[str,str]":
        def rule(name, value):
            if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, str) for v in value)):
                raise TypeError(f"{name} must be a pair of strings, got {_kind(value)}")
    elif core.startswith("Callable"):
        def rule(name, value):
            if not callable(value):
                raise TypeError(f"{name} must be a function, got {_kind(value)}")
    elif core == "dict" or core.startswith("dict["):
        def rule(name, value):
            if not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict, got {_kind(value)}")
    elif core.startswith(("Sequence[", "list[", "Iterable[")):
        inner = core[core.index("[") + 1:-1]
        of = {"int": " of ints", "float": " of floats", "str": " of strings"}.get(inner, "")

        def rule(name, value):
            if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
                raise TypeError(f"{name} must be a list{of}, got {_kind(value)}")
    elif inspect.isclass(kind := _CLASSES.get(core) or _resolve(core, names or {})):

        def rule(name, value):
            if not isinstance(value, kind):
                raise TypeError(f"{name} must be {_article(core)}, got {_kind(value)}")
    else:
        return None
    if not optional:
        return rule

    def maybe(name, value):
        if value is not None:
            rule(name, value)
    return maybe


def _check_mask(name: str, value) -> None:
    """A keep-mask: None, or a tensor of 0s and 1s (bool or numeric; 1: kept)."""
    if value is None:
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of 0s and 1s (1: kept), got {_kind(value)}")
    if value.dtype != torch.bool and not bool(((value == 0) | (value == 1)).all()):
        raise ValueError(f"{name} must hold only 0s and 1s (1: kept), got other values in {_kind(value)}")


def _article(core: str) -> str:
    return {"bytes": "bytes", "Figure": "a matplotlib Figure", "Path": "a pathlib.Path"}.get(
        core, ("an " if core[0] in "AEIOUaeioun" else "a ") + core)


def _resolve(dotted: str, names: dict):
    """The object a (dotted) name in an annotation means in ``names``, or None."""
    if not re.fullmatch(r"[A-Za-z_][\w.]*", dotted):
        return None
    first, *rest = dotted.split(".")
    value = names.get(first)
    for part in rest:
        value = getattr(value, part, None)
    return value


def checked(fn: Callable) -> Callable:
    """Check every argument of ``fn`` against its annotation before the call (``int``, ``float``, ``bool``, ``str``,
    paths, modules, tensors, datasets, tuples of sizes, callables, dicts, sequences; ``| None`` allows None; a
    ``seed`` as ``check_seed``, a ``mask`` of 0s and 1s): the kind of each argument is refused by name in one place,
    each function keeps checking its ranges, shapes and (where it reads values) finiteness itself."""
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {_kind(fn)}")
    signature = inspect.signature(fn)
    rules = []  # (name, check, position when given positionally; None when keyword-only)
    position = 0
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            position = None if p.kind is p.VAR_POSITIONAL else position
            continue
        at = position if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and position is not None else None
        if position is not None and at is not None:
            position += 1
        if p.name == "seed" and p.annotation == "int":
            rules.append((p.name, lambda name, value: check_seed(value, name), at))
        elif p.name == "mask" and p.annotation == "torch.Tensor | None":  # 0s and 1s
            rules.append((p.name, _check_mask, at))
        elif rule := _rule(p.annotation, fn.__globals__):
            rules.append((p.name, rule, at))

    @functools.wraps(fn)
    def call(*args, **kwargs):  # no Signature.bind: a few microseconds less on every call of a training loop
        for name, rule, at in rules:
            if at is not None and at < len(args):
                rule(name, args[at])
            elif name in kwargs:
                rule(name, kwargs[name])
        return fn(*args, **kwargs)
    return call


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(threads) -> None:
    """A thread count from 1 to the machine's cores: more only slows timings down, and an absurd count starts that
    many OS threads and can take the machine (and the learner's kernel) down."""
    check_int("threads", threads, 1, available_cores())


def dataset_tensors(dataset: Dataset, name: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of a dataset, as two whole tensors; refuses an empty dataset, non-finite inputs and labels
    that are not non-negative integers, naming the dataset."""
    if isinstance(dataset, TensorDataset):
        if len(dataset.tensors) != 2:
            raise ValueError(f"{name} must hold (inputs, labels), got {len(dataset.tensors)} tensors")
        x, y = dataset.tensors
    elif isinstance(dataset, Dataset) and hasattr(dataset, "__len__"):
        if len(dataset) == 0:
            raise ValueError(f"{name} is empty")
        xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
        x, y = torch.stack(xs), torch.as_tensor(ys)
    else:
        raise TypeError(f"{name} must be a TensorDataset or a map-style Dataset, got {_kind(dataset)}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}'s labels must be integer class indices, got {y.dtype}")
    if x.dtype == torch.int64 and y.shape == x.shape and x.dim() == 2:  # token windows (data.windows): next tokens
        if int(x.min()) < 0:
            raise ValueError(f"{name}'s token ids must be >= 0, got {int(x.min())}")
    elif not x.is_floating_point():
        raise TypeError(f"{name}'s inputs must be floating point (or int64 token windows with a next token per "
                        f"position), got {x.dtype}")
    elif not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}'s inputs hold non-finite values (NaN or inf)")
    elif y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"{name}'s labels must be one per input ({len(x)}), got shape {tuple(y.shape)}")
    if int(y.min()) < 0:
        raise ValueError(f"{name}'s labels must be >= 0, got {int(y.min())}")
    return x, y
