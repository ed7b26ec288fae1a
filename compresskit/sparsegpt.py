"""SparseGPT (Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot", ICML
2023): prune a linear layer and correct the weights it keeps in one pass, with GPTQ's inverse Hessian.

Removing weight ``w_ij`` changes the layer's output on its calibration inputs ``X``; the optimal brain surgeon (OBS)
update spreads that error over the weights of row ``i`` not yet visited, weighted by the inverse Hessian ``H^-1``
with ``H = 2 X X^T / n``. SparseGPT visits the columns in order, as GPTQ does, so that every row shares one sequence
of inverse Hessians: row ``j`` of the upper Cholesky factor of ``H^-1``, divided by its diagonal entry, is the update
column ``j``'s error makes to the columns after it. The mask is chosen on the way, per lazy block of ``block_size``
columns, from the OBS saliency ``w^2 / [L]_jj^2`` of the block's weights as the updates have left them (adaptive
mask selection; ``L`` the Cholesky factor); with an N:M pattern, per group of ``m`` columns. ``bits`` rounds the kept
weights in the same pass (the paper's joint sparsity and quantization): each column is pruned and rounded before its
error is spread.

- ``sparsegpt``: one weight matrix, its Hessian, and a sparsity, a pattern or a given keep-mask.
- ``prune_lm``: every linear of a ``models.TransformerLM``'s blocks, block by block, each layer's Hessian from its
  inputs in the model pruned so far (the paper's sequential order); the masks are kept (``torch.nn.utils.prune``).
- ``layer_error``: ``||W X - W' X||^2`` summed over calibration inputs: what the updates make small.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compresskit.checks import check_bool, check_fraction, check_int, check_number, check_tensor, checked
from compresskit.data import calibration_windows, check_ids
from compresskit.hessian import hessian_of, inverse_hessian_factor
from compresskit.layers import copy_model, eval_mode, inputs_of, transformer_linears
from compresskit.prune import magnitude_mask, nm_mask

__all__ = ["sparsegpt", "prune_lm", "layer_error"]


def _check_pattern(pattern, columns: int) -> None:
    if not isinstance(pattern, tuple) or len(pattern) != 2:
        raise TypeError(f"pattern must be a tuple (n, m) such as (2, 4), got {pattern!r}")
    check_int("pattern m", pattern[1], 2, 64)
    check_int("pattern n", pattern[0], 1, pattern[1] - 1)
    if columns % pattern[1]:
        raise ValueError(f"pattern's m={pattern[1]} must divide the weight's {columns} columns")


def _check_choice(sparsity, pattern, mask, shape) -> None:
    if sum(v is not None for v in (sparsity, pattern, mask)) != 1:
        raise ValueError(f"give exactly one of sparsity, pattern or mask, got sparsity={sparsity!r}, "
                         f"pattern={pattern!r}, mask={'a tensor' if mask is not None else None}")
    if sparsity is not None:
        check_fraction("sparsity", sparsity)
    if pattern is not None:
        _check_pattern(pattern, shape[1])
    if mask is not None:
        check_tensor("mask", mask)
        if mask.shape != shape or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must be 0s and 1s of the weight's shape {tuple(shape)}, got shape "
                             f"{tuple(mask.shape)}")


def _round(col: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric round to nearest with one scale per row, the levels -q_max..q_max."""
    q_max = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(col / scale), -q_max, q_max) * scale


@checked
def sparsegpt(w: torch.Tensor, hessian: torch.Tensor, sparsity: float | None = None, *,
              pattern: tuple[int, int] | None = None, mask: torch.Tensor | None = None, bits: int | None = None,
              damp: float = 0.01, block_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT of one weight matrix ``w`` ``(rows, columns)`` with ``hessian`` ``H = 2 X X^T / n`` of the layer's
    calibration inputs ``(columns, columns)``. Give exactly one of:

    - ``sparsity``: in each lazy block of ``block_size`` columns, the ``round(sparsity * rows * width)`` weights of
      lowest saliency ``w^2 / [L]_jj^2`` go (ties: the earlier first);
    - ``pattern`` ``(n, m)``: in each group of ``m`` consecutive weights of a row, the ``n`` of highest saliency are
      kept (2:4 keeps half), chosen when the pass reaches the group;
    - ``mask``: a given keep-mask (1 = keep), the weights still updated.

    ``bits`` (2..8): the kept weights are also rounded, symmetric, one absmax scale per row taken from ``w`` before
    any update. ``damp``: ``damp * mean(diag H)`` is added to H's diagonal. Columns whose input is always zero
    (``H_jj = 0``) carry nothing and are removed. Returns the new weights (``w``'s dtype; pruned entries exactly 0)
    and the keep-mask (float 0/1)."""
    check_tensor("w", w)
    if w.dim() != 2 or not w.numel():
        raise ValueError(f"w must be a non-empty (rows, columns) matrix, got shape {tuple(w.shape)}")
    rows, cols = w.shape
    check_tensor("hessian", hessian)
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian must be ({cols}, {cols}) for a weight with {cols} columns, got "
                         f"{tuple(hessian.shape)}")
    _check_choice(sparsity, pattern, mask, w.shape)
    if bits is not None:
        check_int("bits", bits, 2, 8)
    check_number("damp", damp, 0.0, 1.0)
    check_int("block_size", block_size, 1, 1 << 20)
    if pattern is not None and block_size % pattern[1]:
        raise ValueError(f"block_size ({block_size}) must be a multiple of pattern's m={pattern[1]}")
    W = w.detach().double().clone()
    L, dead = inverse_hessian_factor(hessian, damp)  # GPTQ's: the same factor serves both
    W[:, dead] = 0.0
    scale = None
    if bits is not None:
        scale = (W.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / (2 ** (bits - 1) - 1))[:, 0]
    keep = torch.ones_like(W) if mask is None else mask.detach().double().clone()
    keep[:, dead] = 0.0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1, Err1, L1 = W[:, i1:i2].clone(), torch.zeros(rows, i2 - i1, dtype=W.dtype), L[i1:i2, i1:i2]
        d = torch.diagonal(L1)
        if sparsity is not None:  # adaptive: this block's saliencies, the updates so far included
            keep[:, i1:i2] *= magnitude_mask(W1 ** 2 / d[None, :] ** 2, sparsity=sparsity).double()
        for i in range(i2 - i1):
            if pattern is not None and i % pattern[1] == 0:
                group = W1[:, i:i + pattern[1]] ** 2 / d[None, i:i + pattern[1]] ** 2
                keep[:, i1 + i:i1 + i + pattern[1]] *= nm_mask(group, *pattern).double()
            col = W1[:, i]
            q = col * keep[:, i1 + i]
            if scale is not None:
                q = _round(q, scale, bits)
            err = (col - q) / L1[i, i]
            W1[:, i:] -= err[:, None] @ L1[i, i:][None, :]  # OBS update of the columns not yet visited
            W1[:, i] = q
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ L[i1:i2, i2:]  # the lazy update of every later block, once
    W *= keep  # exact zeros where pruned
    return W.to(w.dtype), keep.to(w.dtype)


@checked
def layer_error(w: torch.Tensor, new: torch.Tensor, x: torch.Tensor) -> float:
    """``||x W^T - x W'^T||^2`` summed over the rows of ``x`` ``(n, columns)``: how far a compressed layer's outputs
    are from the original's on its calibration inputs (what SparseGPT's and GPTQ's updates make small)."""
    for name, t in (("w", w), ("new", new), ("x", x)):
        check_tensor(name, t)
        if t.dim() != 2 or not t.numel():
            raise ValueError(f"{name} must be a non-empty 2-d tensor, got shape {tuple(t.shape)}")
    if new.shape != w.shape or x.shape[1] != w.shape[1]:
        raise ValueError(f"new must have w's shape {tuple(w.shape)} and x {w.shape[1]} columns, got new "
                         f"{tuple(new.shape)} and x {tuple(x.shape)}")
    return float(((x.double() @ (w.double() - new.double()).T) ** 2).sum())


def _stages(block: nn.Module) -> list[list[nn.Linear]]:
    """A block's linears in the order their inputs are computed, those that read the same input together."""
    return [[block.attn.q, block.attn.k, block.attn.v], [block.attn.proj], [block.fc], [block.out]]


@checked
@torch.no_grad()
def prune_lm(model: nn.Module, sparsity: float | None = None, *, pattern: tuple[int, int] | None = None,
             bits: int | None = None, calibration: torch.Tensor, samples: int = 32, seed: int = 0,
             damp: float = 0.01, block_size: int = 128, inplace: bool = False) -> nn.Module:
    """SparseGPT on every linear of a ``models.TransformerLM``'s blocks (``layers.transformer_linears``): ``sparsity``
    or an N:M ``pattern`` (and ``bits`` for joint quantization), Hessians from ``samples`` windows of
    ``calibration`` (training text) at ``seed``'s offsets. Block by block and stage by stage (q, k, v; proj; fc;
    out), each stage's Hessian from its inputs with the stages before it already pruned; the next block reads the
    pruned block's outputs. Embeddings, LayerNorms, biases and the head are kept. The keep-masks are registered with
    ``torch.nn.utils.prune``, so a fine-tune keeps the zeros. A copy unless ``inplace``."""
    linears = transformer_linears(model)
    for name, m in linears.items():
        check_tensor(f"{name}.weight", m.weight)
        _check_choice(sparsity, pattern, None, m.weight.shape)
    if bits is not None:
        check_int("bits", bits, 2, 8)
    check_ids(calibration, "calibration")
    check_bool("inplace", inplace)
    windows = calibration_windows(calibration, model.context, samples, seed=seed)
    target = model if inplace else copy_model(model)
    with eval_mode(target):
        x = inputs_of(target, target.blocks[0], windows)  # what the first block reads
        for block in target.blocks:
            for stage in _stages(block):
                h = hessian_of(inputs_of(block, stage[0], x).reshape(-1, stage[0].in_features))
                for m in stage:
                    new, keep = sparsegpt(m.weight, h, sparsity, pattern=pattern, bits=bits, damp=damp,
                                          block_size=block_size)
                    m.weight.copy_(new)
                    torch_prune.custom_from_mask(m, "weight", keep)
            x = torch.cat([block(x[i:i + 32]) for i in range(0, len(x), 32)])
    return target
