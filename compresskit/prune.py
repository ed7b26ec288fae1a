"""Pruning (剪枝): unstructured magnitude pruning, structured channel pruning, sensitivity and schedules.

Unstructured pruning follows torch.nn.utils.prune's split: a *score* (|w|), a *mask* computed from the scores,
and *applying* the mask. Masks are applied with ``torch.nn.utils.prune.custom_from_mask``, so a pruned module
holds ``weight_orig`` and ``weight_mask`` and zeros stay zero through fine-tuning until ``finalize``.

Structured pruning (``prune_channels``) instead builds a smaller dense model: fewer rows, fewer filters, fewer
MACs, really faster, where masks only write zeros that a dense kernel still multiplies.

References: Han et al., "Learning both Weights and Connections for Efficient Neural Networks" (NeurIPS 2015);
Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017); Zhu & Gupta, "To prune, or not to prune" (2017).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import Dataset

from compresskit.metrics import latency
from compresskit.models import copy_model, refresh_pruned
from compresskit.train import evaluate, train

SCOPES = ("layer", "global")
_RNN_WEIGHT_PREFIXES = ("weight_ih_l", "weight_hh_l")


# ------------------------------------------------------------------------------------------------ targets


def prunable(model: nn.Module, tensors: str | Sequence[str] | None = None) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, module, tensor name) of every prunable weight, in model order.

    Linear / Conv1d / Conv2d ``weight``; RNN / GRU / LSTM ``weight_ih_l*`` and ``weight_hh_l*``. Never biases.
    ``tensors``: keep only those whose qualified name contains one of these strings (e.g. ``"weight_hh"``, or
    ``"hh."`` for an ``UnrolledRNN``); naming nothing that exists is a ``ValueError``.
    """
    refresh_pruned(model)  # pruned weights as they are now, not as the last forward left them
    found = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            names = ["weight"]
        elif isinstance(module, nn.RNNBase):
            names = [n for n in module._flat_weights_names if n.startswith(_RNN_WEIGHT_PREFIXES)]
        else:
            continue
        found += [(prefix + n, module, n) for n in names]
    if tensors is None:
        return found
    wanted = [tensors] if isinstance(tensors, str) else list(tensors) if isinstance(tensors, (list, tuple)) else None
    if not wanted or not all(isinstance(w, str) and w for w in wanted):
        raise TypeError(f"tensors must be a non-empty string or a sequence of them, got {tensors!r}")
    chosen = [site for site in found if any(w in site[0] for w in wanted)]
    if not chosen:
        raise ValueError(f"tensors={tensors!r} matches none of the prunable tensors {[s[0] for s in found]}")
    return chosen


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


def _check_fraction(name: str, value, *, high_open: bool = False) -> None:
    upper = "1)" if high_open else "1]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, {upper}, got {type(value).__name__} {value!r}")
    if not (0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in [0, {upper}, got {value!r}")


# ------------------------------------------------------------------------------------------------ masks


def magnitude_mask(w: torch.Tensor, *, sparsity: float | None = None, threshold: float | None = None) -> torch.Tensor:
    """Keep-mask (1 = keep) of one tensor by magnitude: the ``round(sparsity * n)`` smallest |w| are dropped,
    or every entry with ``|w| < threshold``. Ties are broken as ``torch.topk`` breaks them, as torch's own
    ``l1_unstructured`` does, so the masks are identical."""
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
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights])
    masks = magnitude_mask(flat, sparsity=sparsity).split([w.numel() for w in weights])
    return [m.view_as(w) for m, w in zip(masks, weights)]


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
    permanent. Same masks as ``torch.nn.utils.prune.l1_unstructured`` / ``global_unstructured``.
    """
    _check_model(model)
    if (sparsity is None) == (threshold is None):
        raise ValueError(
            f"give exactly one of sparsity or threshold, got sparsity={sparsity!r}, threshold={threshold!r}")
    if sparsity is not None:
        _check_fraction("sparsity", sparsity)
    else:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a float >= 0, got {type(threshold).__name__} {threshold!r}")
        if not threshold >= 0 or math.isinf(threshold):
            raise ValueError(f"threshold must be a finite float >= 0, got {threshold!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "global" and threshold is not None:
        raise ValueError("scope='global' ranks by sparsity; a threshold is the same for every layer already")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {inplace!r}")

    target = model if inplace else copy_model(model)
    sites = prunable(target, tensors)
    if not sites:
        raise ValueError(f"model has no prunable weights (Linear, Conv1d/2d, RNN/GRU/LSTM): {type(model).__name__}")
    weights = [getattr(module, name) for _, module, name in sites]
    if scope == "global":
        masks = _global_masks(weights, sparsity)
    else:
        masks = [magnitude_mask(w, sparsity=sparsity, threshold=threshold) for w in weights]
    # every mask is computed before the first is applied: a failure cannot leave the model half pruned
    for (_, module, name), mask in zip(sites, masks):
        torch_prune.custom_from_mask(module, name, mask)
    return target


def freeze_zeros(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Mask every prunable weight that is exactly zero, so fine-tuning keeps it zero.

    What to do after proximal L1 training: its soft threshold made the zeros; the mask keeps them while a short
    fine-tune without the penalty undoes the shrinkage of the surviving weights (the L1 "debiasing" step).
    """
    _check_model(model)
    target = model if inplace else copy_model(model)
    for _, module, name in prunable(target):
        torch_prune.custom_from_mask(module, name, (getattr(module, name) != 0).to(getattr(module, name).dtype))
    return target


def finalize(model: nn.Module) -> nn.Module:
    """Make the pruning masks permanent *in place*: ``weight = weight_orig * mask`` becomes a plain parameter.

    Like ``torch.nn.utils.prune.remove``, which it calls; it acts on the model given (a pruned model you own),
    and returns it. After it, the zeros are ordinary weights: further training can change them.
    """
    _check_model(model)
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


def is_pruned(model: nn.Module) -> bool:
    """True when some module still carries pruning masks."""
    return any(name.endswith("_mask") for name, _ in model.named_buffers())


# ------------------------------------------------------------------------------------------------ reports


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    shape: tuple[int, ...]
    numel: int
    nonzero: int

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


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Per prunable tensor: shape, weights, nonzeros, sparsity (after any mask); ``.total`` sums them."""
    _check_model(model)
    return SparsityReport(
        LayerSparsity(name, tuple(getattr(m, n).shape), getattr(m, n).numel(), int(torch.count_nonzero(getattr(m, n))))
        for name, m, n in prunable(model)
    )


# ------------------------------------------------------------------------------------------------ sensitivity


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
    _check_model(model)
    sparsities = list(sparsities)
    for s in sparsities:
        _check_fraction("sparsities[i]", s)
    curves: dict[str, list[tuple[float, float]]] = {}
    for index, (name, _, _) in enumerate(prunable(model)):
        curves[name] = []
        for s in sparsities:
            trial = copy_model(model)
            _, module, tensor = prunable(trial)[index]
            torch_prune.custom_from_mask(module, tensor, magnitude_mask(getattr(module, tensor), sparsity=s))
            curves[name].append((s, evaluate(trial, dataset)))
    return curves


# ------------------------------------------------------------------------------------------------ schedules


def cubic_schedule(final_sparsity: float, steps: int, *, initial_sparsity: float = 0.0) -> list[float]:
    """Zhu & Gupta's gradual schedule: s_t = s_f + (s_i - s_f) (1 - t / n)^3 for t = 1..n.

    Prunes fast while many redundant weights remain and slowly near the end.
    """
    _check_fraction("final_sparsity", final_sparsity)
    _check_fraction("initial_sparsity", initial_sparsity)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    return [final_sparsity + (initial_sparsity - final_sparsity) * (1 - t / steps) ** 3 for t in range(1, steps + 1)]


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
    ``{"step", "sparsity", "accuracy"}`` entry per step (accuracy on ``test`` when given, else ``None``).
    """
    pruned = copy_model(model)
    history = []
    for step, s in enumerate(schedule(final_sparsity, steps), start=1):
        magnitude_prune(pruned, sparsity=s, scope=scope, inplace=True)
        train(pruned, dataset, epochs=epochs_per_step, lr=lr, seed=step, progress=progress, desc=f"step {step}")
        history.append({"step": step, "sparsity": s, "accuracy": evaluate(pruned, test) if test is not None else None})
    return pruned, history


# ------------------------------------------------------------------------------------------------ structured


def channel_scores(weight: torch.Tensor, norm: int = 1) -> torch.Tensor:
    """L-``norm`` of each output unit: a row of a Linear weight, a whole filter of a Conv weight."""
    return torch.linalg.vector_norm(weight.detach().reshape(weight.shape[0], -1), ord=norm, dim=1)


def _keep(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices (sorted) of the units kept: all but the ``round(amount * n)`` lowest-scoring."""
    n = scores.numel()
    drop = round(amount * n)
    if drop >= n:
        raise ValueError(f"amount={amount} would remove all {n} units of a layer; use amount < {(n - 0.5) / n:.3f}")
    return torch.sort(torch.topk(scores, n - drop, largest=True).indices).values


def _sliced(layer: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Module:
    """A new dense copy of a Linear / Conv / BatchNorm keeping the given output and input indices."""
    w = layer.weight.detach()
    b = layer.bias.detach() if getattr(layer, "bias", None) is not None else None
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        idx = out_idx
        new = type(layer)(len(idx), eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                          track_running_stats=layer.track_running_stats)
        with torch.no_grad():
            if layer.affine:
                new.weight.copy_(w[idx])
                new.bias.copy_(b[idx])
            if layer.track_running_stats:
                new.running_mean.copy_(layer.running_mean[idx])
                new.running_var.copy_(layer.running_var[idx])
                new.num_batches_tracked.copy_(layer.num_batches_tracked)
        return new.to(w.device)
    if out_idx is not None:
        w, b = w[out_idx], (b[out_idx] if b is not None else None)
    if in_idx is not None:
        w = w[:, in_idx]
    if isinstance(layer, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    else:
        new = type(layer)(w.shape[1], w.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding,
                          dilation=layer.dilation, bias=b is not None, padding_mode=layer.padding_mode)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new.to(w.device)


def prune_channels(model: nn.Sequential, amount: float, *, norm: int = 1) -> nn.Sequential:
    """Structured pruning: remove the ``round(amount * n)`` lowest-norm neurons / filters of every hidden layer.

    Works on an ``nn.Sequential`` of Linear / Conv1d / Conv2d layers with element-wise layers (ReLU, pooling,
    dropout), BatchNorm and one Flatten between them, e.g. ``Conv -> BN -> ReLU -> Pool -> Flatten -> Linear``.
    Each hidden layer loses output units; the next layer loses the matching inputs (after a Flatten, the
    ``H*W`` features of each removed channel); BatchNorm loses the matching entries. The output layer keeps
    its size. Returns a new, smaller *dense* model; ``model`` is not changed.

    Args:
        amount: fraction in [0, 1) of the units of each hidden layer to remove.
        norm: 1 (sum of |w|, Li et al. 2017) or 2.
    """
    if not isinstance(model, nn.Sequential):
        hint = ("; for the hidden units of an RNN/GRU/LSTM use compresskit.rnn.prune_units"
                if any(isinstance(m, nn.RNNBase) for m in model.modules()) else "")
        raise TypeError(f"model must be an nn.Sequential (a plain MLP or CNN), got {type(model).__name__}{hint}")
    _check_fraction("amount", amount, high_open=True)
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm!r}")
    refresh_pruned(model)
    layers = list(model)
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if len(weighted) < 2:
        raise ValueError("model needs at least two Linear/Conv layers: only hidden layers are pruned")
    for i in weighted:
        if getattr(layers[i], "groups", 1) != 1:
            raise ValueError(f"layer {i} is a grouped convolution (groups={layers[i].groups}): not supported")
    new_layers = [copy_model(m) for m in layers]
    in_idx = None  # indices of the inputs the current layer keeps
    for pos, i in enumerate(weighted):
        layer = layers[i]
        weight = layer.weight  # effective weight, also under a pruning mask
        out_idx = _keep(channel_scores(weight, norm), amount) if pos < len(weighted) - 1 else None
        new_layers[i] = _sliced(layer, out_idx, in_idx)
        if out_idx is None:
            break
        in_idx = out_idx
        for j in range(i + 1, weighted[pos + 1]):  # between this layer and the next weighted one
            between = layers[j]
            if isinstance(between, nn.modules.batchnorm._BatchNorm):
                new_layers[j] = _sliced(between, out_idx, None)
            elif isinstance(between, nn.Flatten):
                nxt = layers[weighted[pos + 1]]
                per_channel, rest = divmod(nxt.weight.shape[1], weight.shape[0])
                if rest or not isinstance(nxt, nn.Linear):
                    raise ValueError(f"cannot map {weight.shape[0]} channels through Flatten to {type(nxt).__name__}")
                in_idx = (out_idx[:, None] * per_channel + torch.arange(per_channel, device=out_idx.device)).reshape(-1)
            elif any(p.numel() for p in between.parameters()):
                raise ValueError(f"layer {j} ({type(between).__name__}) has weights that prune_channels cannot slice")
    return nn.Sequential(*new_layers)


# ------------------------------------------------------------------------------------------------ sparse kernels


def sparse_matmul_timings(
    size: int = 1024, batch: int = 64, sparsities: Iterable[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99), *,
    seed: int = 0, threads: int = 1,
) -> list[dict]:
    """Measured CPU time of ``W @ X`` with W (size x size) at each sparsity: dense kernel vs ``torch.sparse`` CSR/COO.

    Returns one ``{"sparsity", "dense_ms", "csr_ms", "coo_ms"}`` per sparsity (medians, ``threads`` threads). The
    dense kernel's time does not depend on how many entries are zero: zeros are multiplied like any number.
    """
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(size, size, generator=gen)
    x = torch.randn(size, batch, generator=gen)
    rows = []
    for s in sparsities:
        _check_fraction("sparsities[i]", s)
        ws = w * magnitude_mask(w, sparsity=s)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and the point of the measurement
            warnings.simplefilter("ignore", UserWarning)
            csr, coo = ws.to_sparse_csr(), ws.to_sparse()
        rows.append({
            "sparsity": s,
            "dense_ms": latency(lambda ws=ws: ws @ x, None, threads=threads).ms,
            "csr_ms": latency(lambda csr=csr: csr @ x, None, threads=threads).ms,
            "coo_ms": latency(lambda coo=coo: torch.sparse.mm(coo, x), None, threads=threads).ms,
        })
    return rows
