"""Knowledge distillation (知识蒸馏): a small student learns from a big teacher's softened outputs.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))  +  (1 - alpha) * CE(student, labels)

The temperature T > 1 softens both distributions so the teacher's small probabilities ("dark knowledge": which wrong
digits look alike) carry signal. The soft term's gradient scales as 1 / T^2, so it is multiplied by T^2 to keep its
weight against the hard term independent of T (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", 2015).

The other form matches logits directly: ``logit_loss`` = alpha * mean((z_s - z_t)^2) + (1 - alpha) * CE, with
centred logits; it is the high-temperature limit of the first (up to a factor 2) and needs no temperature.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from compresskit.cache import keyed
from compresskit.checks import (
    check_bool,
    check_choice,
    check_fields,
    check_fraction,
    check_int,
    check_module,
    check_number,
    check_seed,
    check_tensor,
    checked,
    dataset_tensors,
)
from compresskit.layers import device_of
from compresskit.train import evaluate, predict, set_seed, train

__all__ = ["soft_targets", "kd_loss", "LOSSES", "logit_loss", "distill", "Comparison", "labelled_fraction",
           "compare_with_labels"]


def _check(temperature, alpha) -> None:
    check_number("temperature", temperature, 0, low_open=True)
    check_fraction("alpha", alpha)


@checked
def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dimension."""
    _check(temperature, 0.0)
    check_tensor("logits", logits)
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have at least one class along its last dimension, got shape "
                         f"{tuple(logits.shape)}")
    return F.softmax(logits / temperature, dim=-1)


def _check_logits(student_logits, teacher_logits, labels) -> None:
    """(batch, classes) student and teacher logits of one shape, finite, and one valid class index per row."""
    check_tensor("student_logits", student_logits)
    check_tensor("teacher_logits", teacher_logits)
    check_tensor("labels", labels, floating=False)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got {labels.dtype} (float labels are probabilities: "
                        "use the teacher's logits for soft targets)")
    if student_logits.dim() != 2 or len(student_logits) == 0:
        raise ValueError(f"student_logits must be a non-empty batch (batch, classes), got shape "
                         f"{tuple(student_logits.shape)}")
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must be one class index per row ({student_logits.shape[0]}), got shape "
                         f"{tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= student_logits.shape[1]):
        raise ValueError(f"labels must be in [0, {student_logits.shape[1] - 1}], got values from {int(labels.min())} "
                         f"to {int(labels.max())}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"teacher_logits must have student_logits' shape (they differ in shape): student_logits "
                         f"{tuple(student_logits.shape)}, teacher_logits "
                         f"{tuple(teacher_logits.shape)}")


@checked
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(p_teacher || p_student) (batch mean) + (1 - alpha) * cross-entropy(student, labels).

    Computed from log-softmax on both sides (``F.kl_div(..., log_target=True)``), so it stays finite at any
    temperature > 0 and any finite logits: no probability is ever rounded to 0 and then logged.
    """
    _check(temperature, alpha)
    _check_logits(student_logits, teacher_logits, labels)
    return _kd(student_logits, _teacher_log_probs(teacher_logits, temperature), labels, temperature, alpha)


def _teacher_log_probs(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # in float64: at high T both distributions are nearly uniform and float32's KL cancels to a few 1e-8, which T^2
    # (e.g. 3600 at T = 60) would turn into a visibly negative "divergence"
    return F.log_softmax(teacher_logits.detach().double() / temperature, dim=-1)


def _kd(student_logits, teacher_log_probs, labels, temperature: float, alpha: float) -> torch.Tensor:
    """kd_loss without its checks, from the teacher's log-probabilities at T (``distill`` computes them once)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits.double() / t, dim=-1), teacher_log_probs,
                    reduction="batchmean", log_target=True).to(student_logits.dtype)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1 - alpha) * hard


LOSSES = ("softmax", "logits")


@checked
def logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, alpha: float,
               centre: bool = True) -> torch.Tensor:
    """Logit matching (Ba & Caruana 2014): alpha * mean((z_s - z_t)^2) + (1 - alpha) * cross-entropy(student, labels).

    The mean runs over images and classes (``F.mse_loss``). With ``centre`` (the default) each row of both logits
    has its mean subtracted first: a softmax ignores a constant added to all of a row's logits, so the teacher's
    constant carries no knowledge and the student should not be made to copy it. In Hinton's high-temperature limit
    the soft term of ``kd_loss`` becomes half of this term (for centred logits),
    ``T^2 * KL -> mean((z_s - z_t)^2) / 2``, and so do their gradients.
    """
    check_fraction("alpha", alpha)
    check_bool("centre", centre)
    _check_logits(student_logits, teacher_logits, labels)
    s, t = student_logits, teacher_logits.detach()
    if centre:
        s, t = s - s.mean(dim=-1, keepdim=True), t - t.mean(dim=-1, keepdim=True)
    return alpha * F.mse_loss(s, t) + (1 - alpha) * F.cross_entropy(student_logits, labels)


def _objective(loss: str, temperature, alpha):
    """``(prepare, per_batch)`` for ``distill``: ``prepare(teacher_logits)`` runs once over the whole dataset's
    logits (the teacher's log-probabilities at T, or its centred logits), ``per_batch(student_logits, prepared_rows,
    labels)`` is ``kd_loss`` / ``logit_loss`` on a minibatch, the same numbers without re-checking and re-deriving
    the teacher's side at every step."""
    check_choice("loss", loss, LOSSES)
    if loss == "softmax":
        if temperature is None:
            raise ValueError("temperature is required with loss='softmax' (Hinton's softened softmax), e.g. 4.0")
        _check(temperature, alpha)
        return (lambda t: _teacher_log_probs(t, temperature),
                lambda s, t, y: _kd(s, t, y, temperature, alpha))
    if temperature is not None:
        raise ValueError(f"loss='logits' matches logits directly and takes no temperature, got temperature="
                         f"{temperature!r}; pass temperature=None")
    check_fraction("alpha", alpha)
    return lambda t: t, lambda s, t, y: logit_loss(s, t, y, alpha=alpha)


@checked
def distill(student: nn.Module, teacher: nn.Module, dataset: Dataset, *, temperature: float | None = None,
            alpha: float, epochs: int, lr: float = 1e-3, loss: str = "softmax", **train_kwargs) -> list[float]:
    """Train ``student`` in place against a frozen teacher; returns the per-epoch losses. ``loss="softmax"``:
    ``kd_loss`` at ``temperature``; ``loss="logits"``: ``logit_loss`` (squared error of centred logits, no
    temperature).

    The teacher runs once over the dataset, in eval mode under ``torch.no_grad()`` (no dropout or BatchNorm updates,
    no gradients), and the student learns from those logits. A frozen teacher gives the same logits for an image at
    every epoch and the training loop does no augmentation, so this is the loss of asking the teacher batch by batch,
    at a fraction of the cost. The teacher's own mode is restored and its weights are never touched.
    """
    prepare, per_batch = _objective(loss, temperature, alpha)
    check_module("student", student)
    check_module("teacher", teacher)
    inputs, labels = dataset_tensors(dataset)  # read once: the teacher and the loop both use these tensors
    rows = TensorDataset(inputs, torch.arange(len(labels)))  # the "label" the loop hands over is the row number
    teacher_logits = predict(teacher, rows)  # eval mode and no_grad inside; the teacher's mode is restored
    if teacher_logits.shape[0] != len(labels):
        raise ValueError(f"the teacher gave {teacher_logits.shape[0]} rows of logits for {len(labels)} images")
    check_tensor("the teacher's logits", teacher_logits)
    device = device_of(student)
    teacher_side, labels = prepare(teacher_logits.to(device)), labels.to(device)

    def objective(model, x, row):
        return per_batch(model(x), teacher_side[row], labels[row])

    keyed(objective, "distill", loss, temperature, alpha, teacher_side, labels)  # what it does, for the cache
    return train(student, rows, epochs=epochs, lr=lr, objective=objective, desc="distill", **train_kwargs)


@dataclass
class Comparison:
    """One student design trained per seed from labels only and by distillation; accuracies in percent."""

    labels_only: list[tuple[float, float]]  # (train %, test %) per seed
    distilled: list[tuple[float, float]]  # (train %, test %) per seed, same seeds in the same order
    student: nn.Module  # the last distilled student

    def __post_init__(self):
        check_fields(self)
        for arm in ("labels_only", "distilled"):
            runs = getattr(self, arm)
            if not runs:
                raise ValueError(f"Comparison.{arm} must hold one (train %, test %) pair per seed, got an empty list")
            for i, run in enumerate(runs):
                if not isinstance(run, (tuple, list)) or len(run) != 2:
                    raise TypeError(f"Comparison.{arm}[{i}] must be a (train %, test %) pair, got {run!r}")
                for value in run:
                    check_number(f"Comparison.{arm}[{i}]", value, 0.0, 100.0)

    @property
    def gaps(self) -> list[float]:
        """Test accuracy distilled - labels only, per seed, in points."""
        return [d[1] - p[1] for p, d in zip(self.labels_only, self.distilled)]

    def _runs(self, arm: str) -> list[tuple[float, float]]:
        runs = {"labels only": self.labels_only, "distilled": self.distilled}
        if arm not in runs:
            raise ValueError(f"arm must be one of {tuple(runs)}, got {arm!r}")
        return runs[arm]

    def overfit(self, arm: str) -> float:
        """Mean over seeds of train - test accuracy (points) of ``arm``: ``"labels only"`` or ``"distilled"``."""
        return statistics.mean(train_acc - test_acc for train_acc, test_acc in self._runs(arm))

    def train_accuracy(self, arm: str) -> float:
        """Mean over seeds of the training accuracy (percent) of ``arm``: ``"labels only"`` or ``"distilled"``."""
        return statistics.mean(train_acc for train_acc, _ in self._runs(arm))


@checked
def labelled_fraction(dataset: Dataset, fraction: float, seed: int) -> TensorDataset:
    """A random ``fraction`` of ``dataset`` (``int(n * fraction)`` images, at least one), drawn for ``seed``: the
    labels a learner has when labels are scarce."""
    check_number("fraction", fraction, 0.0, 1.0, low_open=True)  # no labels at all is no training set
    check_seed(seed)
    inputs, labels = dataset_tensors(dataset)
    keep = max(1, int(len(labels) * fraction))
    subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:keep]
    return TensorDataset(inputs[subset], labels[subset])


@checked
def compare_with_labels(make_student: Callable[[], nn.Module], teacher: nn.Module, dataset: Dataset, test: Dataset,
                        *, seeds: Sequence[int], temperature: float | None = None, alpha: float, epochs: int,
                        lr: float = 1e-3, fraction: float = 1.0, loss: str = "softmax",
                        **train_kwargs) -> Comparison:
    """Does distillation beat the labels for this student? The fair experiment, per seed: ``set_seed(seed)`` then
    ``make_student()`` for each arm (the same initial weights), the same epochs, learning rate and minibatch order;
    only the loss differs. With ``fraction < 1`` both arms see the same random part of ``dataset`` for each seed
    (``labelled_fraction``; the teacher saw it all). Returns every seed's train and test accuracy of both arms (train
    accuracy on what the arm trained on). ``loss`` and ``temperature`` as for ``distill``.
    """
    _objective(loss, temperature, alpha)  # refuse a bad loss / temperature before any training
    check_module("teacher", teacher)
    if isinstance(make_student, nn.Module) or not callable(make_student):
        raise TypeError(f"make_student must be a function that builds a new student (e.g. lambda: models.lenet(...)), "
                        f"got {type(make_student).__name__}: each seed and arm needs its own fresh student")
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise TypeError(f"seeds must be a list of ints, got {type(seeds).__name__}")
    seeds = list(seeds)
    for seed in seeds:
        check_int("seeds[i]", seed, 0, 2**64 - 1)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must hold at least 2 different seeds (a spread needs two runs), got {seeds!r}")
    check_fraction("fraction", fraction)
    dataset_tensors(test, "test")
    labels_only, distilled = [], []
    for seed in seeds:
        seen = dataset if fraction == 1 else labelled_fraction(dataset, fraction, seed)
        for runs in (labels_only, distilled):
            set_seed(seed)
            student = make_student()
            if not isinstance(student, nn.Module):
                raise TypeError(f"make_student must return an nn.Module, got {type(student).__name__}")
            if runs is labels_only:
                train(student, seen, epochs=epochs, lr=lr, seed=seed, **train_kwargs)
            else:
                distill(student, teacher, seen, temperature=temperature, alpha=alpha, epochs=epochs, lr=lr,
                        loss=loss, seed=seed, **train_kwargs)
            runs.append((100 * evaluate(student, seen), 100 * evaluate(student, test)))
    return Comparison(labels_only, distilled, student)
