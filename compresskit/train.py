"""Seeding, a small training loop with hooks for every later chapter, and evaluation.

The loop is deliberately plain: minibatch SGD/Adam over a ``TensorDataset`` held in memory (no DataLoader:
on 8x8 digits its per-batch overhead costs more than the model). Three hooks let chapters change the
objective without copying the loop:

- ``objective(model, x, y) -> loss``  replaces cross-entropy (distillation);
- ``penalty(model) -> scalar``        is added to the loss (L1 / L2 regularization);
- ``after_step(model)``               runs after every optimizer step (proximal soft-threshold).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from compresskit.models import refresh_pruned

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a chapter gives the same numbers on every run."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of a dataset, as two whole tensors."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1]
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a TensorDataset or a map-style Dataset, got {type(dataset).__name__}")
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.as_tensor(ys)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_positive(name: str, value, kind=(int, float)) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default objective: mean cross-entropy of the model's logits."""
    return F.cross_entropy(model(x), y)


def train(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    objective: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    seed: int | None = 0,
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    """Train ``model`` in place with minibatches; returns the mean loss of each epoch.

    Args:
        epochs, lr, batch_size: the usual; all must be > 0.
        optimizer: ``"adam"`` or ``"sgd"`` (SGD with momentum 0.9).
        weight_decay: the optimizer's L2 decay (``>= 0``).
        objective, penalty, after_step: hooks, see the module docstring.
        seed: seeds the shuffling (a private generator, so training does not disturb the global RNG);
            ``None`` uses the global RNG.
        progress: show a tqdm.auto bar (``False`` for quiet runs, tests and benchmarks).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_positive("epochs", epochs, int)
    _check_positive("lr", lr)
    _check_positive("batch_size", batch_size, int)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    objective = objective or cross_entropy
    device = _device(model)
    x_all, y_all = (t.to(device) for t in _tensors(dataset))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay, **extra)
    n = len(x_all)
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = objective(model, x_all[idx], y_all[idx])
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(idx)
        history.append(total / n)
    model.eval()
    refresh_pruned(model)  # pruned weights as they are after the last step, not before it
    return history


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on the whole dataset, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    x_all, _ = _tensors(dataset)
    device = _device(model)
    out = torch.cat([model(x_all[i : i + batch_size].to(device)) for i in range(0, len(x_all), batch_size)])
    model.train(was_training)
    return out


def evaluate(model: nn.Module, dataset: Dataset) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``dataset``."""
    _, y_all = _tensors(dataset)
    if len(y_all) == 0:
        raise ValueError("dataset is empty: accuracy is undefined")
    logits = predict(model, dataset)
    return (logits.argmax(dim=1).cpu() == y_all.cpu()).float().mean().item()
