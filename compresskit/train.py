"""Seeding, a small training loop with hooks for every later chapter, and evaluation.

The loop is deliberately plain: minibatch SGD/Adam over a ``TensorDataset`` held in memory (no DataLoader:
on 8x8 digits its per-batch overhead costs more than the model). Three hooks let chapters change the
objective without copying the loop:

- ``objective(model, x, y) -> loss``  replaces cross-entropy (distillation);
- ``penalty(model) -> scalar``        is added to the loss (L1 / L2 regularization);
- ``after_step(model)``               runs after every optimizer step (proximal soft-threshold).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from compresskit import models
from compresskit.checks import check_bool, check_choice, check_int, check_module, check_number
from compresskit.layers import refresh_pruned

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a chapter gives the same numbers on every run."""
    check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _tensors(dataset: Dataset, name: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
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
    if not x.is_floating_point():
        raise TypeError(f"{name}'s inputs must be floating point, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}'s inputs hold non-finite values (NaN or inf)")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}'s labels must be integer class indices, got {y.dtype}")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"{name}'s labels must be one per input ({len(x)}), got shape {tuple(y.shape)}")
    if int(y.min()) < 0:
        raise ValueError(f"{name}'s labels must be >= 0, got {int(y.min())}")
    return x, y


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


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
    check_module("model", model)
    check_int("epochs", epochs, 1)
    check_number("lr", lr, 0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
    check_number("weight_decay", weight_decay, 0)
    check_bool("progress", progress)
    if seed is not None:
        check_int("seed", seed)
    for hook_name, hook in (("objective", objective), ("penalty", penalty), ("after_step", after_step)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{hook_name} must be callable or None, got {type(hook).__name__}")
    objective = objective or cross_entropy
    device = _device(model)
    x_all, y_all = (t.to(device) for t in _tensors(dataset))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    # foreach: one multi-tensor update instead of a Python loop over parameters; bit-identical results on the CPU
    # (checked in tests/test_models_train.py), ~10 % faster for the workbook's small models
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True, **extra)
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
    model.eval()
    refresh_pruned(model)  # pruned weights as they are after the last step, not before it
    return history


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on the whole dataset, in eval mode (the model's mode is restored)."""
    check_module("model", model)
    check_int("batch_size", batch_size, 1)
    x_all, _ = _tensors(dataset)
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x_all[i : i + batch_size].to(device)) for i in range(0, len(x_all), batch_size)])
    finally:  # the model's mode comes back even when its forward fails
        model.train(was_training)


def evaluate(model: nn.Module, dataset: Dataset) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``dataset``."""
    check_module("model", model)
    _, y_all = _tensors(dataset)
    logits = predict(model, dataset)
    return (logits.argmax(dim=1).cpu() == y_all.cpu()).float().mean().item()


# ------------------------------------------------------------------------------------------------ baselines


@dataclass(frozen=True)
class Recipe:
    """How a baseline is made: the model, its epochs and learning rate (Adam, batch 64)."""

    make: Callable[[], nn.Module]
    epochs: int
    lr: float


RECIPES: dict[str, Recipe] = {
    "mlp": Recipe(models.mlp, 30, 1e-3),  # LeNet-300-100
    "wide": Recipe(lambda: models.mlp(hidden=(1024, 1024)), 8, 1e-3),  # wide enough for latency to show
    "lenet": Recipe(models.lenet, 20, 3e-3),
    "gru": Recipe(lambda: models.rnn_classifier("gru"), 30, 3e-3),
    "lstm": Recipe(lambda: models.rnn_classifier("lstm"), 30, 3e-3),
    "resmlp": Recipe(models.residual_mlp, 30, 1e-3),  # 8 residual blocks: depth that can be pruned (chapter 02)
}
"""The workbook's baselines, shared by the chapters, the tests and the benchmarks."""


CACHE_ENV = "COMPRESSKIT_CACHE"
"""Environment variable: the folder of the baseline cache, or ``off``; default ``~/.cache/compresskit``."""


def baseline_cache_dir() -> Path | None:
    """Where ``fit_baseline`` keeps trained baselines: ``$COMPRESSKIT_CACHE``, else ``$XDG_CACHE_HOME/compresskit``
    (``~/.cache/compresskit``); None when ``COMPRESSKIT_CACHE=off``. Read at every call."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compresskit"


@functools.lru_cache(maxsize=1)
def _package_digest() -> bytes:
    """Hash of the package's own source: a changed training loop or model never reuses an old baseline."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.digest()


def _baseline_key(name: str, recipe: Recipe, model: nn.Module, dataset: Dataset, seed: int) -> str:
    """Everything the trained weights depend on: recipe, architecture and initial weights, data, seed, the package's
    source, torch's version, its thread count and the CPU's vector unit (float sums may differ across them)."""
    h = hashlib.sha256(_package_digest())
    h.update(repr((name, recipe.epochs, recipe.lr, seed, torch.__version__, torch.get_num_threads(),
                   torch.backends.cpu.get_cpu_capability(), repr(model))).encode())
    tensors = [v for _, v in sorted(model.state_dict().items())] + list(_tensors(dataset))
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def fit_baseline(name: str, dataset: Dataset, *, seed: int = 0, progress: bool = True) -> nn.Module:
    """The baseline ``name`` (a key of ``RECIPES``) trained on ``dataset`` for ``seed``: ``set_seed(seed)``, build,
    train with the recipe's epochs and learning rate (minibatch order from the same seed). Deterministic.

    A baseline trained once is kept in the baseline cache (``baseline_cache_dir``) under a key of everything its
    weights depend on (``_baseline_key``), and loaded instead of retrained: the same weights bit for bit, the random
    generators left as training leaves them (training draws only from its own seeded generator). A file that cannot
    be read is retrained and rewritten; ``COMPRESSKIT_CACHE=off`` always retrains.
    """
    check_choice("name", name, tuple(RECIPES))
    check_bool("progress", progress)
    recipe = RECIPES[name]
    set_seed(seed)
    model = recipe.make()
    folder = baseline_cache_dir()
    path = folder and folder / f"{name}-seed{seed}-{_baseline_key(name, recipe, model, dataset, seed)}.pt"
    if path is not None and path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            model.load_state_dict(saved["state"])
            model.train(saved["training"])
            if progress:
                print(f"{name} (seed {seed}): trained before with this recipe and data, loaded from {folder} "
                      f"({CACHE_ENV}=off retrains)")
            return model
        except Exception:  # a damaged or foreign file: train again below and replace it
            set_seed(seed)
            model = recipe.make()
    train(model, dataset, epochs=recipe.epochs, lr=recipe.lr, seed=seed, progress=progress, desc=name)
    if path is not None:
        _save_atomically({"state": model.state_dict(), "training": model.training}, path)
    return model


def _save_atomically(obj, path: Path) -> None:
    """Write to a temporary file beside ``path``, then rename: a reader (another kernel) never sees half a file.
    A folder that cannot be written only costs the cache, with a warning."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", suffix=".pt", delete=False) as f:
            temporary = f.name
            torch.save(obj, f)
        os.replace(temporary, path)
    except OSError as err:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        warnings.warn(f"compresskit: the baseline cache {path.parent} cannot be written ({err}); set {CACHE_ENV} "
                      f"to a writable folder, or to off", stacklevel=3)
