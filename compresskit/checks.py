"""Argument checks shared by every module: one place that says what a valid argument is.

Each check raises ``TypeError`` for the wrong kind of value and ``ValueError`` for a value out of range, with a
message naming the argument, the value and what is allowed. Nothing is clamped, nothing non-finite passes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

__all__ = ["check_bool", "check_int", "check_number", "check_fraction", "check_choice", "check_module", "check_tensor",
           "check_finite", "available_cores", "check_threads", "dataset_tensors"]


def _kind(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (nn.Module, torch.Tensor)) \
        else type(value).__name__


def check_bool(name: str, value) -> None:
    """A real ``bool``: ``inplace="no"`` or ``1`` is a TypeError, never a truthy surprise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {_kind(value)}")


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> None:
    """An ``int`` (not a bool) in ``[low, high]``."""
    allowed = _range_text(low, high, False, False)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int{allowed}, got {_kind(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be{allowed}, got {value}")


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float{allowed}, got {_kind(value)}")
    bounded = low is not None and high is not None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite float{allowed}, got {value!r}")
    if (low is not None and (value <= low if low_open else value < low)) or \
            (high is not None and (value >= high if high_open else value > high)):
        raise ValueError(f"{name} must be {allowed.strip() if bounded else 'a finite float' + allowed}, got {value!r}")


def check_fraction(name: str, value, *, high_open: bool = False) -> None:
    """A number in [0, 1] (or [0, 1) with ``high_open``)."""
    check_number(name, value, 0.0, 1.0, high_open=high_open)


def check_choice(name: str, value, choices: Sequence) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


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


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Refuse NaN and inf: they would spread through every later step (a NaN weight rounds to code INT32_MIN)."""
    if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor.detach()).all()):
        bad = int((~torch.isfinite(tensor.detach())).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf) out of {tensor.numel()}; "
                         "fix or retrain the model before compressing or measuring it")


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
        raise TypeError(f"{name} must be a TensorDataset or a map-style Dataset, got {type(dataset).__name__}")
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
