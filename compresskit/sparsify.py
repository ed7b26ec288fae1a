"""Sparsity through training (稀疏化): the L1 penalty, the proximal soft-threshold step, and L2 for contrast.

Three ways to push weights towards zero while training, on the prunable weights only (never biases):

- L1 penalty: loss + lam * sum |w|. Its (sub)gradient lam * sign(w) pushes every weight towards zero by the
  same amount per step, but plain gradient steps overshoot zero and oscillate around it: few weights end
  up *exactly* zero.
- Proximal L1 (ISTA): after each gradient step on the loss, w <- sign(w) * max(|w| - t, 0) with t = lr * lam.
  The soft threshold sets small weights to exactly zero: real sparsity, no rounding afterwards.
- L2 penalty (weight decay): loss + lam * sum w^2 shrinks weights in proportion to their size; it makes them
  small, never exactly zero.

References: Tibshirani, "Regression shrinkage and selection via the lasso" (1996); Parikh & Boyd,
"Proximal Algorithms" (2014), section 6.5.2 (soft thresholding).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from compresskit.cache import keyed
from compresskit.checks import check_choice, check_number, check_tensor, checked
from compresskit.layers import require_sites
from compresskit.train import train

__all__ = ["METHODS", "l1_penalty", "l2_penalty", "soft_threshold", "proximal_l1_step", "exact_zero_fraction",
           "train_sparse"]

METHODS = ("none", "l1", "l2", "proximal")


def _check_lam(lam, name: str = "lam") -> None:
    check_number(name, lam, 0)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The prunable weights as the next forward uses them (with autograd, so a penalty reaches weight_orig)."""
    return [s.effective() for s in require_sites(model)]


@checked
def l1_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """lam * sum |w| over the prunable weights: add it to the loss (its gradient is lam * sign(w))."""
    _check_lam(lam)
    return lam * sum(w.abs().sum() for w in _weights(model))


@checked
def l2_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """lam * sum w^2 over the prunable weights (gradient 2 lam w): shrinks, never zeroes."""
    _check_lam(lam)
    return lam * sum(w.pow(2).sum() for w in _weights(model))


@checked
def soft_threshold(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """The proximal operator of threshold * |w|: sign(w) * max(|w| - threshold, 0)."""
    check_tensor("w", w)
    _check_lam(threshold, "threshold")
    return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0)


@checked
@torch.no_grad()
def proximal_l1_step(model: nn.Module, threshold: float) -> None:
    """Soft-threshold every prunable weight in place (call after each optimizer step, t = lr * lam)."""
    _check_lam(threshold, "threshold")
    for site in require_sites(model):  # weight_orig under a mask: thresholding it keeps the mask's zeros too
        site.write(soft_threshold(site.stored, threshold))


@checked
def exact_zero_fraction(model: nn.Module) -> float:
    """Fraction of prunable weights that are exactly 0.0."""
    weights = _weights(model)
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total


@checked
def train_sparse(
    model: nn.Module,
    dataset: Dataset,
    *,
    method: str,
    lam: float,
    epochs: int,
    lr: float,
    optimizer: str = "sgd",
    **kwargs,
) -> list[float]:
    """Train ``model`` in place with one of ``METHODS`` ("none", "l1", "l2", "proximal") at strength ``lam``.

    ``"proximal"`` soft-thresholds the weights by ``lr * lam`` after every optimizer step. With SGD without momentum
    that is exactly the proximal-gradient (ISTA) step; ``train``'s SGD has momentum 0.9, and Adam scales each weight's
    step differently, so for both it is the common heuristic: exact zeros, but not the exact proximal step of the
    objective. Other keywords go to ``train``.
    """
    check_choice("method", method, METHODS)
    _check_lam(lam)
    check_number("lr", lr, 0, low_open=True)
    hooks = {  # keyed: what each hook does, so that the training cache can recognise a training that ran before
        "none": {},
        "l1": {"penalty": keyed(lambda m: l1_penalty(m, lam), "l1", lam)},
        "l2": {"penalty": keyed(lambda m: l2_penalty(m, lam), "l2", lam)},
        "proximal": {"after_step": keyed(lambda m: proximal_l1_step(m, lr * lam), "proximal", lr * lam)},
    }[method]
    return train(model, dataset, epochs=epochs, lr=lr, optimizer=optimizer, **hooks, **kwargs)
