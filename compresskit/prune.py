"""Pruning (剪枝): unstructured magnitude pruning, sensitivity and schedules.

Unstructured pruning follows torch.nn.utils.prune's split: a *score* (|w|), a *mask* computed from the scores,
and *applying* the mask. Masks are applied with ``torch.nn.utils.prune.custom_from_mask``, so a pruned module
holds ``weight_orig`` and ``weight_mask`` and zeros stay zero through fine-tuning until ``finalize``.

Structured pruning (neurons, filters, recurrent units) builds a smaller dense model instead; it lives in
``compresskit.structured``.

References: Han et al., "Learning both Weights and Connections for Efficient Neural Networks" (NeurIPS 2015);
Zhu & Gupta, "To prune, or not to prune" (2017).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import Dataset

from compresskit.checks import (
    check_batch,
    check_bool,
    check_choice,
    check_fields,
    check_fraction,
    check_fractions,
    check_int,
    check_module,
    check_number,
    check_tensor,
    checked,
    dataset_tensors,
)
from compresskit.data import calibration_windows, check_ids
from compresskit.layers import (
    copy_model,
    effective_weight,
    eval_mode,
    inputs_of,
    require_sites,
    sites,
    transformer_linears,
    unique_sites,
)
from compresskit.train import evaluate, train

__all__ = ["SCOPES", "prunable", "magnitude_mask", "magnitude_prune", "freeze_zeros", "finalize", "is_pruned",
           "LayerSparsity", "SparsityReport", "sparsity_report", "sensitivity_scan", "cubic_schedule",
           "iterative_prune", "LM_METHODS", "wanda_scores", "row_mask", "nm_mask", "input_norms", "prune_lm"]

SCOPES = ("layer", "global")


# ------------------------------------------------------------------------------------------------ targets


@checked
def prunable(model: nn.Module, tensors: str | Sequence[str] | None = None) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, module, tensor name) of every prunable weight, in model order (``layers.sites``).

    Linear / Conv1d / Conv2d ``weight``; RNN / GRU / LSTM ``weight_ih_l*`` and ``weight_hh_l*``. Never biases.
    ``tensors``: keep only those whose qualified name contains one of these strings (e.g. ``"weight_hh"``, or
    ``"hh."`` for an ``UnrolledRNN``); naming nothing that exists is a ``ValueError``.
    """
    return [(s.name, s.module, s.tensor) for s in sites(model, tensors)]


# ------------------------------------------------------------------------------------------------ masks


@checked
def magnitude_mask(w: torch.Tensor, *, sparsity: float | None = None, threshold: float | None = None) -> torch.Tensor:
    """Keep-mask (1 = keep) of one tensor by magnitude: the ``round(sparsity * n)`` smallest |w| are dropped,
    or every entry with ``|w| < threshold``. Ties are broken as ``torch.topk`` breaks them, as torch's own
    ``l1_unstructured`` does, so the masks are identical."""
    check_tensor("w", w)
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape {tuple(w.shape)}): there is nothing to prune")
    if (sparsity is None) == (threshold is None):
        raise ValueError("give exactly one of sparsity (a fraction in [0, 1]) or threshold (>= 0), got "
                         f"sparsity={sparsity!r}, threshold={threshold!r}")
    if threshold is not None:
        check_number("threshold", threshold, 0.0)
    else:
        check_fraction("sparsity", sparsity)
    scores = w.detach().abs()
    if threshold is not None:
        return (scores >= threshold).to(w.dtype)
    k = round(sparsity * scores.numel())
    mask = torch.ones_like(scores)
    if k > 0:
        mask.view(-1)[torch.topk(scores.view(-1), k, largest=False).indices] = 0
    return mask


def _global_masks(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """One ranking over all tensors (torch's ``global_unstructured`` with ``L1Unstructured``)."""
    flat = torch.cat([w.detach().abs().reshape(-1).float() for w in weights])
    masks = magnitude_mask(flat, sparsity=sparsity).split([w.numel() for w in weights])
    return [m.view_as(w).to(w.dtype) for m, w in zip(masks, weights)]


@checked
def magnitude_prune(
    model: nn.Module,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    scope: str = "layer",
    tensors: str | Sequence[str] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Zero the smallest-magnitude weights of every prunable tensor; returns the pruned model.

    Args:
        sparsity: fraction in [0, 1] of weights to remove; ``round(sparsity * n)`` entries per tensor
            (``scope="layer"``) or over all prunable tensors ranked together (``scope="global"``).
        threshold: instead of ``sparsity``: remove every weight with ``|w| < threshold`` (``>= 0``; 0 prunes nothing).
        scope: ``"layer"`` or ``"global"`` (only with ``sparsity``).
        tensors: prune only the tensors whose name contains one of these strings (see ``prunable``), e.g.
            ``"weight_hh"`` for the recurrent matrices of an RNN; ``None`` (default) prunes every one.
        inplace: prune ``model`` itself; by default a copy is pruned and ``model`` is left untouched.

    Weights already pruned count as zeros (so pruning again only grows the set of zeros). The masks are kept
    (``weight_orig`` / ``weight_mask``), so fine-tuning cannot revive a pruned weight; ``finalize`` makes them
    permanent. Same masks as ``torch.nn.utils.prune.l1_unstructured`` / ``global_unstructured``. A tensor shared by
    several layers (tied weights) is ranked once and gets one mask, so the layers stay tied.
    """
    check_module("model", model)
    if (sparsity is None) == (threshold is None):
        raise ValueError(
            f"give exactly one of sparsity or threshold, got sparsity={sparsity!r}, threshold={threshold!r}")
    if sparsity is not None:
        check_fraction("sparsity", sparsity)
    else:
        check_number("threshold", threshold, 0)
    check_choice("scope", scope, SCOPES)
    if scope == "global" and threshold is not None:
        raise ValueError("scope='global' ranks by sparsity; a threshold is the same for every layer already")
    check_bool("inplace", inplace)
    require_sites(model, tensors)  # refuses weight-norm, NaN, nothing to prune: before anything is copied

    target = model if inplace else copy_model(model)
    groups = unique_sites(require_sites(target, tensors))
    weights = [group[0].effective().detach() for group in groups]
    if scope == "global":
        masks = _global_masks(weights, sparsity)
    else:
        masks = [magnitude_mask(w, sparsity=sparsity, threshold=threshold) for w in weights]
    # every mask is computed before the first is applied: a failure cannot leave the model half pruned
    for group, mask in zip(groups, masks):
        for site in group:
            torch_prune.custom_from_mask(site.module, site.tensor, mask)
    return target


@checked
def freeze_zeros(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Mask every prunable weight that is exactly zero, so fine-tuning keeps it zero.

    What to do after proximal L1 training: its soft threshold made the zeros; the mask keeps them while a short
    fine-tune without the penalty undoes the shrinkage of the surviving weights (the L1 "debiasing" step).
    """
    check_module("model", model)
    check_bool("inplace", inplace)
    require_sites(model)
    target = model if inplace else copy_model(model)
    for group in unique_sites(require_sites(target)):
        mask = (group[0].effective().detach() != 0).to(group[0].stored.dtype)
        for site in group:
            torch_prune.custom_from_mask(site.module, site.tensor, mask)
    return target


@checked
def finalize(model: nn.Module) -> nn.Module:
    """Make the pruning masks permanent *in place*: ``weight = weight_orig * mask`` becomes a plain parameter.

    Like ``torch.nn.utils.prune.remove``, which it calls; it acts on the model given (a pruned model you own),
    and returns it. After it, the zeros are ordinary weights: further training can change them.
    """
    check_module("model", model)
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


@checked
def is_pruned(model: nn.Module) -> bool:
    """True when some module still carries pruning masks."""
    check_module("model", model)
    return any(name.endswith("_mask") for name, _ in model.named_buffers())


# ------------------------------------------------------------------------------------------------ reports


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    shape: tuple[int, ...]
    numel: int
    nonzero: int

    def __post_init__(self):
        check_fields(self)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0


class SparsityReport(list):
    """One ``LayerSparsity`` per prunable tensor; ``total`` over all of them; prints as a table."""

    @property
    def total(self) -> LayerSparsity:
        return LayerSparsity("total", (), sum(r.numel for r in self), sum(r.nonzero for r in self))

    def __str__(self) -> str:
        lines = [f"{'tensor':24s} {'shape':>14s} {'weights':>9s} {'nonzero':>9s} {'sparsity':>9s}"]
        for r in [*self, self.total]:
            lines.append(f"{r.name:24s} {str(tuple(r.shape)):>14s} {r.numel:9,d} {r.nonzero:9,d} {r.sparsity:9.1%}")
        return "\n".join(lines)


@checked
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Per prunable tensor: shape, weights, nonzeros, sparsity (after any mask); ``.total`` sums them."""
    return SparsityReport(
        LayerSparsity(s.name, tuple(w.shape), w.numel(), int(torch.count_nonzero(w)))
        for s in sites(model) for w in [s.effective().detach()]
    )


# ------------------------------------------------------------------------------------------------ sensitivity


@checked
def sensitivity_scan(
    model: nn.Module,
    dataset: Dataset,
    *,
    sparsities: Iterable[float] = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99),
) -> dict[str, list[tuple[float, float]]]:
    """Accuracy when pruning *one* tensor at a time (the others untouched), for each sparsity.

    Returns ``{tensor name: [(sparsity, accuracy), ...]}``; a flat curve is a tensor that tolerates pruning,
    a steep one a tensor to spare (Han et al. 2015, figure 6). ``model`` is not changed.
    """
    check_module("model", model)
    sparsities = check_fractions("sparsities", sparsities if isinstance(sparsities, Sequence) else
                                 list(sparsities) if hasattr(sparsities, "__iter__") else sparsities)
    curves: dict[str, list[tuple[float, float]]] = {}
    for index, site in enumerate(require_sites(model)):
        curves[site.name] = []
        for s in sparsities:
            trial = copy_model(model)
            mine = sites(trial)[index]
            torch_prune.custom_from_mask(mine.module, mine.tensor, magnitude_mask(mine.effective(), sparsity=s))
            curves[site.name].append((s, evaluate(trial, dataset)))
    return curves


# ------------------------------------------------------------------------------------------------ schedules


@checked
def cubic_schedule(final_sparsity: float, steps: int, *, initial_sparsity: float = 0.0) -> list[float]:
    """Zhu & Gupta's gradual schedule: s_t = s_f + (s_i - s_f) (1 - t / n)^3 for t = 1..n.

    Prunes fast while many redundant weights remain and slowly near the end. Pruning only adds zeros, so a
    schedule that decreases (``initial_sparsity > final_sparsity``) is refused.
    """
    check_fraction("final_sparsity", final_sparsity)
    check_fraction("initial_sparsity", initial_sparsity)
    check_int("steps", steps, 1)
    if initial_sparsity > final_sparsity:
        raise ValueError(f"initial_sparsity ({initial_sparsity}) must be <= final_sparsity ({final_sparsity}): "
                         "pruning cannot give weights back")
    return [final_sparsity + (initial_sparsity - final_sparsity) * (1 - t / steps) ** 3 for t in range(1, steps + 1)]


def _check_schedule(levels, final_sparsity: float) -> list[float]:
    """A schedule's sparsities: fractions that never decrease and end at the final sparsity."""
    if not isinstance(levels, (list, tuple)) or not levels:
        raise TypeError(f"schedule must return a non-empty list of sparsities, got {levels!r}")
    for i, s in enumerate(levels):
        check_fraction(f"schedule[{i}]", s)
    if any(b < a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"schedule decreases ({[round(s, 4) for s in levels]}): pruning cannot give weights back")
    if abs(levels[-1] - final_sparsity) > 1e-9:
        raise ValueError(f"schedule ends at {levels[-1]}, not at final_sparsity={final_sparsity}")
    return list(levels)


@checked
def iterative_prune(
    model: nn.Module,
    dataset: Dataset,
    *,
    final_sparsity: float,
    steps: int = 5,
    epochs_per_step: int = 3,
    lr: float = 1e-3,
    scope: str = "layer",
    schedule: Callable[[float, int], list[float]] = cubic_schedule,
    test: Dataset | None = None,
    progress: bool = False,
) -> tuple[nn.Module, list[dict]]:
    """Prune gradually and fine-tune between steps (Han et al. 2015's prune-retrain loop on a schedule).

    Returns the pruned, fine-tuned copy (masks kept: call ``finalize`` to make them permanent) and one
    ``{"step", "target", "sparsity", "accuracy"}`` entry per step: the schedule's target, the sparsity the model
    really has after the step's fine-tuning (``sparsity_report(...).total``: weights that were exactly zero before
    count too), and accuracy on ``test`` when given, else ``None``.
    """
    check_module("model", model)
    if test is not None:
        dataset_tensors(test, "test")
    check_fraction("final_sparsity", final_sparsity)
    check_int("steps", steps, 1)
    check_int("epochs_per_step", epochs_per_step, 1)
    check_number("lr", lr, 0, low_open=True)
    check_choice("scope", scope, SCOPES)
    check_bool("progress", progress)
    if not callable(schedule):
        raise TypeError(f"schedule must be callable (final_sparsity, steps) -> list, got {type(schedule).__name__}")
    levels = _check_schedule(schedule(final_sparsity, steps), final_sparsity)
    pruned = copy_model(model)
    history = []
    for step, s in enumerate(levels, start=1):
        magnitude_prune(pruned, sparsity=s, scope=scope, inplace=True)
        train(pruned, dataset, epochs=epochs_per_step, lr=lr, seed=step, progress=progress, desc=f"step {step}")
        history.append({"step": step, "target": s, "sparsity": sparsity_report(pruned).total.sparsity,
                        "accuracy": evaluate(pruned, test) if test is not None else None})
    return pruned, history


# ------------------------------------------------------------------------------------------------ language models

LM_METHODS = ("magnitude", "wanda")


@checked
def wanda_scores(w: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """Wanda's importance of each weight (Sun et al. 2023): ``|W_ij| * ||X_j||_2``, the weight's magnitude times the
    L2 norm of its input channel over the calibration tokens. ``w`` (out, in), ``input_norms`` (in,)."""
    check_tensor("w", w)
    check_tensor("input_norms", input_norms)
    if w.dim() != 2 or input_norms.shape != (w.shape[1],):
        raise ValueError(f"w must be (out, in) and input_norms (in,), got {tuple(w.shape)} and "
                         f"{tuple(input_norms.shape)}")
    return w.detach().abs() * input_norms[None, :]


@checked
def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that drops the ``round(sparsity * in)`` lowest scores of *each output row* (Wanda's comparison
    group: every output keeps the same number of inputs). Among equal scores the *earlier* column is dropped first
    (an ascending stable sort, as Wanda's reference code sorts), so ``[1, 1, 2]`` at a third keeps columns 1 and 2."""
    check_tensor("scores", scores)
    if scores.dim() != 2:
        raise ValueError(f"scores must be (out, in), got shape {tuple(scores.shape)}")
    check_fraction("sparsity", sparsity)
    k = round(sparsity * scores.shape[1])
    mask = torch.ones_like(scores)
    if k:
        drop = torch.sort(scores, dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, drop, 0.0)
    return mask


@checked
def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M semi-structured keep-mask: in every group of ``m`` consecutive inputs of a row, the ``n`` highest scores
    are kept (2:4 keeps half, in the pattern NVIDIA's sparse tensor cores run). Among equal scores the *earlier*
    column is kept (a descending stable sort), so ``[1, 1, 1, 1]`` at 2:4 keeps columns 0 and 1: the opposite of
    ``row_mask``'s order, which drops the earlier one."""
    check_tensor("scores", scores)
    check_int("m", m, 2, 64)
    check_int("n", n, 1, m - 1)
    if scores.dim() != 2 or scores.shape[1] % m:
        raise ValueError(f"scores must be (out, in) with in a multiple of m={m}, got shape {tuple(scores.shape)}")
    groups = scores.reshape(-1, m)
    keep = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    return torch.zeros_like(groups).scatter_(1, keep, 1.0).reshape(scores.shape)


@checked
@torch.no_grad()
def input_norms(module: nn.Module, linears: Sequence[nn.Linear], x: torch.Tensor, batch_size: int = 32) -> list:
    """The L2 norm of every input channel of each layer in ``linears`` over all tokens, when ``module`` runs on ``x``
    (in batches): ``[(in,) per layer]``."""
    check_batch("x", x, batch_size=batch_size)
    for i, m in enumerate(linears):
        if not isinstance(m, nn.Linear):
            raise TypeError(f"linears[{i}] must be an nn.Linear, got {type(m).__name__} {m!r:.40}")
    sums = [torch.zeros(m.in_features, dtype=torch.float64) for m in linears]

    def hook(i):
        def fn(mod, args):
            sums[i] += args[0].detach().reshape(-1, args[0].shape[-1]).double().pow(2).sum(0)
        return fn

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(linears)]
    try:
        for i in range(0, len(x), batch_size):
            module(x[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
    return [s.sqrt().float() for s in sums]


@checked
def prune_lm(model: nn.Module, sparsity: float | None = None, *, method: str = "magnitude",
             pattern: tuple[int, int] | None = None, calibration: torch.Tensor | None = None, samples: int = 32,
             seed: int = 0, inplace: bool = False) -> nn.Module:
    """One-shot pruning of the linear layers of a transformer's blocks (``layers.transformer_linears``); embeddings,
    LayerNorms and the head are kept.

    Args:
        sparsity: fraction of each layer's weights to remove (with no ``pattern``).
        method: ``"magnitude"``: the smallest |w| of each layer; ``"wanda"``: the lowest ``|W_ij| * ||X_j||`` of each
            output row, with input norms from ``calibration`` (training text, ``samples`` windows drawn with
            ``seed``), block by block, each block's inputs from the blocks pruned before it (Wanda's reference
            order). No weight is updated: the kept weights keep their values.
        pattern: ``(n, m)`` for N:M semi-structured sparsity (``(2, 4)``): the scores choose n of every m inputs.
    The masks are kept (``torch.nn.utils.prune``), so a fine-tune keeps the zeros. Returns a copy unless ``inplace``.
    """
    linears = transformer_linears(model)
    check_choice("method", method, LM_METHODS)
    if (sparsity is None) == (pattern is None):
        raise ValueError(f"give exactly one of sparsity or pattern, got sparsity={sparsity!r}, pattern={pattern!r}")
    if sparsity is not None:
        check_fraction("sparsity", sparsity)
    else:
        if not isinstance(pattern, tuple) or len(pattern) != 2:
            raise TypeError(f"pattern must be a tuple (n, m) such as (2, 4), got {pattern!r}")
        check_int("pattern m", pattern[1], 2, 64)
        check_int("pattern n", pattern[0], 1, pattern[1] - 1)
        for name, m in linears.items():
            if m.in_features % pattern[1]:
                raise ValueError(f"{name} has {m.in_features} inputs, not a multiple of m={pattern[1]}")
    check_bool("inplace", inplace)
    for name, m in linears.items():
        check_tensor(f"{name}.weight", m.weight)
    windows = None
    if method == "wanda":
        if calibration is None:
            raise ValueError("method='wanda' needs calibration token ids (training text), got calibration=None")
        check_ids(calibration, "calibration")
        windows = calibration_windows(calibration, model.context, samples, seed=seed)
    target = model if inplace else copy_model(model)

    def mask_of(scores):
        if pattern is not None:
            return nm_mask(scores, *pattern)
        return row_mask(scores, sparsity) if method == "wanda" else magnitude_mask(scores, sparsity=sparsity)

    with eval_mode(target), torch.no_grad():
        if method == "magnitude":
            masks = {id(m): mask_of(effective_weight(m).abs()) for m in transformer_linears(target).values()}
            for m in transformer_linears(target).values():
                torch_prune.custom_from_mask(m, "weight", masks[id(m)])
            return target
        x = inputs_of(target, target.blocks[0], windows)
        for block in target.blocks:
            mine = [m for m in block.modules() if isinstance(m, nn.Linear)]
            norms = input_norms(block, mine, x)
            for m, norm in zip(mine, norms):
                torch_prune.custom_from_mask(m, "weight", mask_of(wanda_scores(effective_weight(m), norm)))
            x = torch.cat([block(x[i:i + 32]) for i in range(0, len(x), 32)])  # the pruned block feeds the next
    return target

