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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from compresskit import cache, data, encode, lecture, models
from compresskit.checks import (
    check_batch,
    check_bool,
    check_choice,
    check_fields,
    check_int,
    check_module,
    check_number,
    check_seed,
    checked,
    dataset_tensors,
)
from compresskit.layers import device_of, eval_mode, refresh_pruned

__all__ = ["OPTIMIZERS", "set_seed", "cross_entropy", "lm_loss", "History", "train", "predict", "evaluate", "Recipe",
           "RECIPES", "fit_baseline", "SHIPPED", "shipped_baseline"]

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@checked
def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a chapter gives the same numbers on every run."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_classes(labels: torch.Tensor, classes: int) -> None:
    """Class labels in 0..classes-1 for a model with ``classes`` outputs (a label beyond is a wrong dataset or model,
    which cross-entropy would report as a bare IndexError and accuracy would silently count as wrong)."""
    if not labels.is_floating_point() and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must be class indices in [0, {classes - 1}] for a model with {classes} outputs, got "
                         f"values from {int(labels.min())} to {int(labels.max())}")


@checked
def _check_pair(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """A batch of inputs and its targets, one per example."""
    check_module("model", model)
    check_batch("x", x)
    check_batch("y", y)
    if len(y) != len(x):
        raise ValueError(f"y must hold one target per example of x ({len(x)}), got shape {tuple(y.shape)}")


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default objective: mean cross-entropy of the model's logits."""
    _check_pair(model, x, y)
    logits = model(x)
    _check_classes(y, logits.shape[-1])
    return F.cross_entropy(logits, y)


@checked
def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A language model's objective: mean cross-entropy of the next token at every position (``x``, ``y``: (B, T))."""
    _check_pair(model, x, y)
    if x.shape != y.shape or x.is_floating_point():
        raise ValueError(f"x and y must be token ids of one shape (B, T), got x {x.dtype} {tuple(x.shape)} and y "
                         f"{tuple(y.shape)}")
    logits = model(x)
    _check_classes(y, logits.shape[-1])
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


cache.keyed(lm_loss, "lm_loss")


class History(list):
    """The mean training loss of each epoch (a list), and ``loaded_from``: the training cache's file it was loaded
    from, or None when the training ran."""

    @checked
    def __init__(self, losses: Sequence[float] = (), loaded_from: Path | None = None):
        for i, v in enumerate(losses):
            check_number(f"losses[{i}]", v)
        super().__init__(losses)
        self.loaded_from = loaded_from


@checked
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
) -> History:
    """Train ``model`` in place with minibatches; returns the mean loss of each epoch (a list).

    Args:
        epochs, lr, batch_size: the usual; all must be > 0.
        optimizer: ``"adam"`` or ``"sgd"`` (SGD with momentum 0.9).
        weight_decay: the optimizer's L2 decay (``>= 0``).
        objective, penalty, after_step: hooks, see the module docstring.
        seed: seeds the shuffling (a private generator, so training does not disturb the global RNG);
            ``None`` uses the global RNG.
        progress: show a tqdm.auto bar (``False`` for quiet runs, tests and benchmarks).

    A training that ran before on the same model, data, settings and hooks is loaded from the training cache instead
    (``compresskit.cache``: bit for bit the tensors this loop would leave; the returned losses' ``loaded_from`` names
    the file; ``COMPRESSKIT_CACHE=off`` always trains).
    """
    check_module("model", model)
    check_int("epochs", epochs, 1)
    check_number("lr", lr, 0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
    check_number("weight_decay", weight_decay, 0)
    check_bool("progress", progress)
    if seed is not None:
        check_seed(seed)
    for hook_name, hook in (("objective", objective), ("penalty", penalty), ("after_step", after_step)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{hook_name} must be callable or None, got {type(hook).__name__}")
    objective = objective or cross_entropy
    device = device_of(model)
    x_all, y_all = (t.to(device) for t in dataset_tensors(dataset))
    path = None
    if seed is not None and cache.cache_dir() is not None:  # the global generator's order cannot be in a key
        settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": optimizer,
                    "weight_decay": weight_decay, "seed": seed}
        hooks = {"objective": None if objective is cross_entropy else objective, "penalty": penalty,
                 "after_step": after_step}
        key = cache.training_key(model, (x_all, y_all), settings, hooks)
        path = key and cache.path_for(desc, key)
    if path is not None:
        history = cache.load(path, model)
        if history is not None:
            model.eval()
            refresh_pruned(model)
            return History(history, loaded_from=path)
        rng, structure = torch.get_rng_state(), cache.structure(model)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    # foreach: one multi-tensor update instead of a Python loop over parameters; bit-identical results on the CPU
    # (checked in tests/test_models_train.py), ~10 % faster for the workbook's small models
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True, **extra)
    n = len(x_all)
    history = History()
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = objective(model, x_all[idx], y_all[idx])
            if penalty is not None:
                loss = loss + penalty(model)
            if not torch.isfinite(loss):
                raise ValueError(f"the training loss became {loss.item()} (epoch {len(history) + 1}): the learning "
                                 f"rate lr={lr} is probably too large for this model")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(idx)
        history.append(total / n)
    opt.zero_grad(set_to_none=True)  # no gradients left behind: memory, and a loaded training is a run one
    model.eval()
    refresh_pruned(model)  # pruned weights as they are after the last step, not before it
    # stored only if the training depended on nothing but its key: the global generator (dropout draws from it) and
    # the modules' other attributes are as they were
    if path is not None and torch.equal(torch.get_rng_state(), rng) and cache.structure(model) == structure:
        cache.store(path, model, history)
    return history


@checked
@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on the whole dataset, in eval mode (the model's mode is restored)."""
    check_module("model", model)
    check_int("batch_size", batch_size, 1)
    x_all, _ = dataset_tensors(dataset)
    device = device_of(model)
    with eval_mode(model):  # every submodule's own mode comes back, even when the forward fails
        return torch.cat([model(x_all[i : i + batch_size].to(device)) for i in range(0, len(x_all), batch_size)])


@checked
def evaluate(model: nn.Module, dataset: Dataset) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``dataset``."""
    check_module("model", model)
    _, y_all = dataset_tensors(dataset)
    logits = predict(model, dataset)
    _check_classes(y_all, logits.shape[-1])
    return (logits.argmax(dim=1).cpu() == y_all.cpu()).float().mean().item()


# ------------------------------------------------------------------------------------------------ baselines


@dataclass(frozen=True)
class Recipe:
    """How a baseline is made: the model, its epochs and learning rate (Adam), batch size and objective."""

    make: Callable[[], nn.Module]
    epochs: int
    lr: float
    batch_size: int = 64
    objective: Callable | None = None  # None: cross-entropy of the class

    def __post_init__(self):
        check_fields(self, epochs=(1, None), batch_size=(1, None))
        check_number("Recipe.lr", self.lr, 0.0, low_open=True)


RECIPES: dict[str, Recipe] = {
    "mlp": Recipe(models.mlp, 30, 1e-3),  # LeNet-300-100
    "wide": Recipe(lambda: models.mlp(hidden=(1024, 1024)), 8, 1e-3),  # wide enough for latency to show
    "lenet": Recipe(models.lenet, 20, 3e-3),
    "gru": Recipe(lambda: models.rnn_classifier("gru"), 30, 3e-3),
    "lstm": Recipe(lambda: models.rnn_classifier("lstm"), 30, 3e-3),
    "resmlp": Recipe(models.residual_mlp, 30, 1e-3),  # 8 residual blocks: depth that can be pruned (chapter 02)
    # the character language model of chapters 09-10, on data.windows(data.load_text().train, 128); about 25 min on
    # 2 cores, so the trained model ships in data/ (data/make_transformer.py, shipped_baseline)
    "transformer": Recipe(models.transformer_lm, 8, 2e-3, batch_size=32, objective=lm_loss),
}
"""The workbook's baselines, shared by the chapters, the tests and the benchmarks."""


@checked
def fit_baseline(name: str, dataset: Dataset, *, seed: int = 0, progress: bool = True) -> nn.Module:
    """The baseline ``name`` (a key of ``RECIPES``) trained on ``dataset`` for ``seed``: ``set_seed(seed)``, build,
    train with the recipe's epochs and learning rate (minibatch order from the same seed). Deterministic.

    A baseline trained once comes from the training cache the next time (``compresskit.cache``): the same weights bit
    for bit, the random generators left as training leaves them (training draws only from its own seeded generator).
    """
    check_choice("name", name, tuple(RECIPES))
    check_bool("progress", progress)
    recipe = RECIPES[name]
    set_seed(seed)
    model = recipe.make()
    history = train(model, dataset, epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size,
                    objective=recipe.objective, seed=seed, progress=progress, desc=name)
    if progress and history.loaded_from is not None and not lecture.running():  # a notice for the notebook's user
        print(f"{name} (seed {seed}): trained before with this recipe and data, loaded from "
              f"{history.loaded_from.parent} ({cache.ENV}=off trains again)")
    return model


SHIPPED: dict[str, tuple[str, str]] = {
    "transformer": ("transformer.ckpk", "073e7eab5df53ff3a15598727e929f2d545417c6840c5dbf11ed8b48b1c45a0c"),
}
"""Baselines too slow to train in a chapter, shipped in ``data/`` as ``encode.pack`` files: ``{name: (file, SHA-256)}``
(``data/make_transformer.py`` trains and writes the transformer with ``fit_baseline``)."""


@checked
def shipped_baseline(name: str) -> nn.Module:
    """The trained baseline ``name`` (a key of ``SHIPPED``) read from ``data/``, checksum verified, in eval mode: the
    same weights bit for bit as ``fit_baseline(name, ...)`` with its recipe gives on the machine that made the file."""
    check_choice("name", name, tuple(SHIPPED))
    file, sha256 = SHIPPED[name]
    path = data.verified_file(None, file, sha256, what=f"trained {name}", script=f"make_{name}.py",
                              needs="about 25 minutes on 2 cores")
    return encode.unpack(path.read_bytes(), like=RECIPES[name].make()).eval()
