"""Weight-only quantization of a language model's linear layers: group-wise round-to-nearest, GPTQ, AWQ, bits per layer.

A weight matrix ``W`` (rows = outputs, columns = inputs) is cut along each row into groups of ``group_size``
columns, each with its own float16 scale (as GPTQ and AWQ checkpoints store it) and, affine, a ``bits``-bit zero
point: ``bits + (16 + bits) / group_size`` bits per weight. ``quantize_groups`` / ``dequantize_groups``: round to
nearest (RTN) per group.
- ``gptq``: Frantar et al., "GPTQ" (ICLR 2023). Columns are quantized in order; the error of each is spread over the
  columns not yet quantized, weighted by the inverse Hessian ``H = 2 X X^T / n`` of the layer's inputs (the OBS
  update), in the Cholesky form with lazy blocks of the paper's Algorithm 1.
- ``awq_scale``: Lin et al., "AWQ" (MLSys 2024). Weight columns of large-activation input channels times ``s > 1``
  (the input divided by ``s``, folded into the layer before) get finer levels; ``s = mean|x|^alpha``, ``alpha`` by
  a grid search on calibration inputs.
- ``quantize_lm``: any of the three on every linear of a ``models.TransformerLM``'s blocks; ``lm_bytes`` prices it;
  ``layer_sensitivity`` and ``allocate_bits`` choose bits per layer under a byte budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compresskit.checks import (
    check_bool,
    check_choice,
    check_int,
    check_module,
    check_number,
    check_tensor,
    checked,
)
from compresskit.data import calibration_windows, check_ids
from compresskit.hessian import hessian_of, inverse_hessian_factor
from compresskit.layers import copy_model, eval_mode, inputs_of, transformer_linears
from compresskit.metrics import perplexity
from compresskit.quantize import code_range

__all__ = ["BITS", "SCALE_BITS", "METHODS", "group_params", "quantize_groups", "dequantize_groups",
           "fake_quantize_groups", "gptq", "awq_scale", "awq_fold", "quantize_lm", "Setting", "settings_for",
           "layer_bytes", "lm_bytes", "pack_groups", "unpack_groups", "layer_sensitivity", "allocate_bits"]

BITS = (2, 8)  # the bit widths weight-only quantization accepts
SCALE_BITS = 16  # a float16 scale per group
METHODS = ("rtn", "gptq", "awq")
_TINY = torch.finfo(torch.float16).tiny  # the smallest normal float16: a scale below it would flush to zero


def _check_matrix(name: str, w) -> None:
    check_tensor(name, w)
    if w.dim() != 2 or w.numel() == 0:
        raise ValueError(f"{name} must be a non-empty matrix (rows = outputs, columns = inputs), got shape "
                         f"{tuple(w.shape)}")


def _check_setting(bits, group_size, columns: int, symmetric) -> int:
    """Checks bits, group size and symmetric; returns the group size in columns (None: the whole row)."""
    check_int("bits", bits, *BITS)
    check_bool("symmetric", symmetric)
    if group_size is None:
        return columns
    check_int("group_size", group_size, 1)
    if columns % group_size:
        raise ValueError(f"group_size must divide the {columns} columns (inputs) of the weight, got {group_size}; "
                         f"use a divisor of {columns} or None for one group per row")
    return group_size


# ------------------------------------------------------------------------------------------------ groups


@checked
def group_params(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of each row of ``w`` (one row = one group), both ``(rows, 1)``.

    The range is ``[min(w, 0), max(w, 0)]``. Affine: ``s = (max - min) / (2^b - 1)``, ``z = -round(min / s)``, codes
    ``0 .. 2^b - 1``. Symmetric: ``s = max|w| / ((2^b - 1) / 2)``, ``z = 0``, codes ``-2^(b-1) .. 2^(b-1) - 1`` (as
    ``quantize.qparams``). The scale is stored in float16: it is rounded *up* to the next float16 (a scale rounded
    down would leave the group's largest weights past the top code, clipped by more than half a step), and kept at
    least float16's smallest normal number, so a group of zeros does not divide by zero.
    """
    check_int("bits", bits, *BITS)
    _check_matrix("w", w)
    return _group_params(w, bits, symmetric)


def _group_params(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    q_min, q_max = code_range(bits, symmetric)  # group_params of a matrix its caller checked (GPTQ's inner loop)
    lo = w.amin(dim=1, keepdim=True).clamp(max=0.0)
    hi = w.amax(dim=1, keepdim=True).clamp(min=0.0)
    span = torch.maximum(-lo, hi) * 2 if symmetric else hi - lo
    exact = (span / (q_max - q_min)).clamp(min=_TINY)
    stored = exact.half()
    stored = torch.where(stored.float() < exact, torch.nextafter(stored, torch.full_like(stored, math.inf)), stored)
    scale = stored.float()
    zero = torch.zeros_like(scale) if symmetric else (q_min - torch.round(lo / scale)).clamp(q_min, q_max)
    return scale, zero


def _round(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Codes of ``w`` for given parameters: ``clamp(round(w / s) + z)``, w times the float32 inverse scale rounded half
    to even, as torch's fake-quant kernels compute it."""
    q_min, q_max = code_range(bits, symmetric)
    return (torch.round(w * (1.0 / scale)) + zero).clamp(q_min, q_max)


@checked
def quantize_groups(w: torch.Tensor, bits: int, *, group_size: int | None = 64, symmetric: bool = False):
    """Round-to-nearest codes of a weight matrix, group by group: ``(q, scale, zero)``.
    ``w``: ``(rows, columns)`` float weights; ``bits`` 2..8; ``group_size`` columns per group, a divisor of
    ``columns`` (None: one group per row); ``symmetric``: zero point 0 and signed codes, else affine. Returns q
    ``(rows, columns)`` int32 codes, scale and zero ``(rows, columns / group_size)`` (float32 holding float16 values;
    zero points as float32 integers): ``w ~= dequantize_groups(q, scale, zero)``.
    """
    _check_matrix("w", w)
    g = _check_setting(bits, group_size, w.shape[1], symmetric)
    rows, cols = w.shape
    groups = w.detach().float().reshape(rows * cols // g, g)  # one group per row of this view
    scale, zero = _group_params(groups, bits, symmetric)
    q = _round(groups, scale, zero, bits, symmetric)
    return q.reshape(rows, cols).to(torch.int32), scale.reshape(rows, -1), zero.reshape(rows, -1)


@checked
def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """``(q - z) * s`` with each group's parameters repeated over its ``columns / groups`` columns (float32)."""
    for name, t in (("q", q), ("scale", scale), ("zero", zero)):
        check_tensor(name, t, floating=False)
    if q.dim() != 2 or scale.shape != zero.shape or scale.dim() != 2 or scale.shape[0] != q.shape[0] \
            or scale.shape[1] == 0 or q.shape[1] % scale.shape[1]:
        raise ValueError(f"scale and zero must both be (rows, groups) with groups dividing the columns of q; got q "
                         f"{tuple(q.shape)}, scale {tuple(scale.shape)}, zero {tuple(zero.shape)}")
    g = q.shape[1] // scale.shape[1]
    return (q.float() - zero.repeat_interleave(g, dim=1)) * scale.repeat_interleave(g, dim=1)


@checked
def fake_quantize_groups(w: torch.Tensor, bits: int, *, group_size: int | None = 64,
                         symmetric: bool = False) -> torch.Tensor:
    """Round-to-nearest: ``w`` replaced by its nearest representable value, group by group (w's dtype)."""
    return dequantize_groups(*quantize_groups(w, bits, group_size=group_size, symmetric=symmetric)).to(w.dtype)


# ------------------------------------------------------------------------------------------------ GPTQ


def _check_hessian(h, columns: int) -> None:
    check_tensor("hessian", h)
    if h.shape != (columns, columns):
        raise ValueError(f"hessian must be ({columns}, {columns}) for a weight with {columns} columns, got "
                         f"{tuple(h.shape)}")


@checked
def gptq(w: torch.Tensor, hessian: torch.Tensor, bits: int, *, group_size: int | None = 64, symmetric: bool = False,
         damp: float = 0.01, block_size: int = 128, act_order: bool = False,
         group_scales: str = "block start") -> torch.Tensor:
    """GPTQ of one weight matrix; returns the quantized weights (dequantized values, w's shape and dtype).

    Args:
        w: ``(rows, columns)`` weights of a linear layer ``y = W x``.
        hessian: ``H = 2 X X^T / n`` of the layer's ``n`` calibration inputs, ``(columns, columns)``.
        damp: ``lambda = damp * mean(diag H)`` is added to H's diagonal (the paper's 1 %): without it, H of a
            few hundred inputs is close to singular and the updates blow up.
        block_size: columns per lazy block (Algorithm 1's B = 128): the update inside a block is applied column by
            column, the rest of the matrix is updated once per block. With ``group_scales="updated"`` the result
            does not depend on it.
        act_order: quantize columns by decreasing ``diag H`` (largest inputs first). With groups, each group's scale
            and zero point are then fixed before the loop from the original weights (the reference's "static groups"),
            so the file keeps its plain group layout.
        group_scales: without ``act_order``, where a group's scale and zero point come from when the loop reaches
            its first column: ``"block start"`` (default), the weights as they were when the current lazy block
            began (the reference code's ``find_params(W[:, i:i + groupsize])``, which reads the matrix the lazy
            updates refresh once per block); ``"updated"``, the weights as every earlier column's update has left
            them (independent of ``block_size``). On the chapter 09 model the two are within 1.3 % in perplexity.
    Columns whose input is always zero (``H_jj = 0``) carry no information: their weights become 0.
    """
    _check_matrix("w", w)
    rows, cols = w.shape
    g = _check_setting(bits, group_size, cols, symmetric)
    _check_hessian(hessian, cols)
    check_number("damp", damp, 0.0, 1.0)
    check_int("block_size", block_size, 1)
    check_bool("act_order", act_order)
    check_choice("group_scales", group_scales, ("updated", "block start"))
    W = w.detach().double().clone()  # float64: the updates subtract many small terms
    H = hessian.detach().double().clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0  # before act_order's sort, as the reference code does
    W[:, dead] = 0.0
    static = None
    perm = torch.arange(cols)
    if act_order:  # every group's parameters from the original weights, before any update
        static = [_group_params(W[:, j:j + g].float(), bits, symmetric) for j in range(0, cols, g)]
        perm = torch.argsort(torch.diagonal(H), descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
    Hinv, _ = inverse_hessian_factor(H, damp)
    # blocks hold whole groups, so a group's parameters come from weights every earlier column has updated
    block = g * max(1, block_size // g) if g <= block_size else g
    Q = torch.zeros_like(W)
    scale = zero = None
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1, Err1, Hinv1 = W[:, i1:i2].clone(), torch.zeros(rows, i2 - i1, dtype=W.dtype), Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if static is not None:
                scale, zero = static[int(perm[i1 + i]) // g]
            elif (i1 + i) % g == 0:  # a new group: its parameters from the weights as the updates have left them
                start = W1 if group_scales == "updated" else W[:, i1:i2]  # or as they were when the block began
                scale, zero = _group_params(start[:, i:i + g].float(), bits, symmetric)
            w_col = W1[:, i]
            q = ((_round(w_col.float()[:, None], scale, zero, bits, symmetric) - zero) * scale)[:, 0].double()
            Q[:, i1 + i] = q
            err = (w_col - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] @ Hinv1[i, i:][None, :]  # OBS update inside the block, column by column
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # the lazy update of every later block, once
    return Q[:, torch.argsort(perm)].to(w.dtype)


# ------------------------------------------------------------------------------------------------ AWQ


@checked
def awq_scale(ws: Sequence[torch.Tensor], x: torch.Tensor, bits: int, *, group_size: int | None = 64,
              symmetric: bool = False, grid: int = 20) -> tuple[torch.Tensor, float]:
    """AWQ's per-input-channel scale for the weights ``ws`` that all read the input ``x`` ``(n, columns)``. For
    ``alpha`` in ``0, 1/grid, ..., (grid - 1)/grid``: ``s = mean|x|^alpha`` per channel (normalized so that
    ``sqrt(max s * min s) = 1``), each weight quantized as ``RTN(W * s) / s``, and the summed squared error of the
    outputs ``|| (RTN(W s) / s - W) x ||^2`` measured; the ``s`` with the smallest error is returned with its alpha.
    ``alpha = 0`` is plain RTN, so on these inputs the chosen scale is never worse than RTN."""
    if not isinstance(ws, (list, tuple)) or not ws:
        raise TypeError("ws must be a non-empty list of weight matrices that read the same input")
    check_tensor("x", x)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be (n, columns) with n >= 1, got {tuple(x.shape)}")
    for i, w in enumerate(ws):
        _check_matrix(f"ws[{i}]", w)
        if w.shape[1] != x.shape[1]:
            raise ValueError(f"ws[{i}] has {w.shape[1]} columns but x has {x.shape[1]} channels")
        _check_setting(bits, group_size, w.shape[1], symmetric)
    check_int("grid", grid, 1, 1000)
    x = x.detach().float()
    magnitude = x.abs().mean(dim=0).clamp(min=1e-8)
    targets = [x @ w.detach().float().T for w in ws]
    best = (math.inf, None, 0.0)
    for k in range(grid):
        alpha = k / grid
        s = magnitude.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        error = 0.0
        for w, y in zip(ws, targets):
            wq = fake_quantize_groups(w.detach().float() * s, bits, group_size=group_size, symmetric=symmetric) / s
            error += float(((x @ wq.T - y) ** 2).sum())
        if error < best[0]:
            best = (error, s, alpha)
    return best[1], best[2]


# ------------------------------------------------------------------------------------------------ models


def _stages(block: nn.Module) -> list[tuple[list[nn.Linear], nn.Module | None, str]]:
    """A block's linear layers in the order their inputs are computed, those that read the same input together, with
    the module before them that AWQ folds a scale into: q, k, v after the first LayerNorm; proj after v (attention
    mixes v's rows linearly, so its output channels follow v's rows); fc after the second LayerNorm; out after GELU,
    which a scale cannot pass through (no fold)."""
    attn = block.attn
    return [([attn.q, attn.k, attn.v], block.ln1, "norm"), ([attn.proj], attn.v, "rows"),
            ([block.fc], block.ln2, "norm"), ([block.out], None, "")]


@dataclass(frozen=True)
class Setting:
    """How one layer is stored: ``bits`` per weight, ``group_size`` columns per scale (None: one per row)."""

    bits: int
    group_size: int | None = 64
    symmetric: bool = False

    def __post_init__(self):
        _check_setting(self.bits, self.group_size, self.group_size or 1, self.symmetric)


def _settings(layers: dict, bits, group_size, symmetric) -> dict[str, Setting]:
    """One ``Setting`` per layer from one bit width or a ``{layer name: bits}`` dict naming every layer."""
    if isinstance(bits, dict):
        unknown, missing = set(bits) - set(layers), set(layers) - set(bits)
        if unknown or missing:
            raise ValueError(f"bits must name every quantizable layer exactly: unknown {sorted(unknown)}, missing "
                             f"{sorted(missing)}; got {bits!r:.80}")
        chosen = bits
    else:
        chosen = dict.fromkeys(layers, bits)
    out = {}
    for name, b in chosen.items():
        g = _group(layers[name], group_size)
        _check_setting(b, g, layers[name].in_features, symmetric)
        out[name] = Setting(b, g, symmetric)
    return out


def _fold(layers: list[nn.Linear], before: nn.Module, kind: str, x: torch.Tensor, setting: Setting,
          grid: int) -> float:
    """AWQ's scale for ``layers`` on their input ``x`` folded in: columns times s, ``before``'s output divided by s.
    Returns alpha."""
    s, alpha = awq_scale([m.weight for m in layers], x.reshape(-1, x.shape[-1]), setting.bits,
                         group_size=setting.group_size, symmetric=setting.symmetric, grid=grid)
    for m in layers:
        m.weight.mul_(s)  # W' = W diag(s)
    if kind == "norm":  # LayerNorm's output divided by s: its affine weight and bias
        before.weight.div_(s)
        before.bias.div_(s)
    else:  # v's output rows divided by s
        before.weight.div_(s[:, None])
        before.bias.div_(s)
    return alpha


def _quantize_block(block: nn.Module, x: torch.Tensor, names: dict, settings: dict[str, Setting], method: str,
                    damp: float, act_order: bool, grid: int, alphas: dict) -> torch.Tensor:
    """Quantize (``method``) or, with ``method="fold"``, only scale one block on its calibration input ``x`` (B, T,
    C); returns the input of the next block. GPTQ quantizes stage by stage, each stage's Hessian from the block with
    the stages before it already quantized, and the next block reads the quantized block's output (the paper's
    sequential order). AWQ searches every scale on the float block (scales folded, not yet quantized) and passes the
    float block's output on, as its reference implementation does."""
    for layers, before, kind in _stages(block):
        if method in ("awq", "fold") and before is not None:
            inputs = inputs_of(block, layers[0], x)
            alphas[names[id(layers[0])]] = _fold(layers, before, kind, inputs, settings[names[id(layers[0])]], grid)
        elif method == "gptq":
            h = hessian_of(inputs_of(block, layers[0], x).reshape(-1, layers[0].in_features))
            for m in layers:
                s = settings[names[id(m)]]
                m.weight.copy_(gptq(m.weight, h, s.bits, group_size=s.group_size, symmetric=s.symmetric, damp=damp,
                                    act_order=act_order))
    following = torch.cat([block(x[i:i + 32]) for i in range(0, len(x), 32)])
    if method == "awq":
        for layers, _, _ in _stages(block):
            for m in layers:
                s = settings[names[id(m)]]
                m.weight.copy_(fake_quantize_groups(m.weight, s.bits, group_size=s.group_size, symmetric=s.symmetric))
    return following


def _calibrated(target: nn.Module, windows: torch.Tensor, settings: dict[str, Setting], method: str, damp: float,
                act_order: bool, grid: int) -> dict[str, float]:
    """Every block, first to last, through ``_quantize_block``; returns AWQ's alpha per scaled stage."""
    names = {id(m): n for n, m in transformer_linears(target).items()}
    alphas: dict[str, float] = {}
    x = inputs_of(target, target.blocks[0], windows)  # the embeddings: what the first block reads
    for block in target.blocks:
        x = _quantize_block(block, x, names, settings, method, damp, act_order, grid, alphas)
    return alphas


def _check_calibration(model, calibration, samples, seed) -> torch.Tensor:
    if calibration is None:
        raise ValueError("gptq and awq need calibration token ids (training text), got calibration=None")
    check_ids(calibration, "calibration")
    return calibration_windows(calibration, model.context, samples, seed=seed)


@checked
@torch.no_grad()
def awq_fold(model: nn.Module, bits: int | dict[str, int], *, calibration: torch.Tensor, group_size: int | None = 64,
             symmetric: bool = False, samples: int = 32, seed: int = 0, grid: int = 20,
             inplace: bool = False) -> tuple[nn.Module, dict[str, float]]:
    """AWQ's scales searched (``awq_scale``, for the bits each layer will get) and folded into a copy of ``model``
    (``_stages``: q, k, v's columns times s with the first LayerNorm's weight and bias divided by s; proj's with v's
    rows; fc's with the second LayerNorm; the MLP's ``out`` keeps no scale, GELU is in the way). The float function is
    unchanged up to rounding; only how the weights quantize changes. Returns the model and each stage's alpha, named
    by the stage's first layer."""
    layers = transformer_linears(model)
    settings = _settings(layers, bits, group_size, symmetric)
    windows = _check_calibration(model, calibration, samples, seed)
    check_int("grid", grid, 1, 1000)
    check_bool("inplace", inplace)
    target = model if inplace else copy_model(model)
    with eval_mode(target):
        return target, _calibrated(target, windows, settings, "fold", 0.0, False, grid)


@checked
@torch.no_grad()
def quantize_lm(model: nn.Module, bits: int | dict[str, int], *, group_size: int | None = 64, symmetric: bool = False,
                method: str = "rtn", calibration: torch.Tensor | None = None, samples: int = 32, seed: int = 0,
                damp: float = 0.01, act_order: bool = False, grid: int = 20, inplace: bool = False) -> nn.Module:
    """Weight-only quantization of the linear layers of a transformer's blocks (``quantizable_layers``).

    Args:
        bits: 2..8 for every layer, or ``{layer name: bits}`` for each (mixed precision, ``allocate_bits``).
        group_size: columns per group (a divisor of each layer's inputs; a layer narrower than it gets one group per
            row); None: one group per row.
        method: ``"rtn"`` round to nearest; ``"gptq"`` (block by block, each layer's Hessian from its inputs in the
            model quantized so far, as the paper does); ``"awq"`` (scales searched and folded, then RTN).
        calibration: token ids of *training* text (gptq and awq need it): ``samples`` windows at ``seed``'s offsets.
    Returns a copy (unless ``inplace``) holding the quantized values in float32, of real size ``lm_bytes(model,
    settings_for(...))``. Biases, embeddings, LayerNorms and the head are kept (AWQ rescales LayerNorms and v's bias).
    """
    layers = transformer_linears(model)
    check_choice("method", method, METHODS)
    settings = _settings(layers, bits, group_size, symmetric)
    check_bool("inplace", inplace)
    check_bool("act_order", act_order)
    check_number("damp", damp, 0.0, 1.0)
    check_int("grid", grid, 1, 1000)
    windows = _check_calibration(model, calibration, samples, seed) if method != "rtn" else None
    for name, m in layers.items():
        check_tensor(f"{name}.weight", m.weight)  # NaN or inf weights are refused before anything changes
    target = model if inplace else copy_model(model)
    with eval_mode(target):
        if method == "rtn":
            for name, layer in transformer_linears(target).items():
                s = settings[name]
                layer.weight.copy_(fake_quantize_groups(layer.weight, s.bits, group_size=s.group_size,
                                                        symmetric=s.symmetric))
        else:
            _calibrated(target, windows, settings, method, damp, act_order, grid)
    return target


def _group(layer: nn.Linear, group_size: int | None) -> int | None:
    """A layer narrower than the group size gets one group per row."""
    return group_size if group_size is None or layer.in_features >= group_size else None


@checked
def layer_bytes(layer: nn.Linear, setting: Setting) -> int:
    """Bytes of one layer's weight stored with ``setting``: codes, float16 scales, (affine) zero points."""
    rows, cols = layer.weight.shape
    groups = rows * (cols // (setting.group_size or cols))
    return (math.ceil(rows * cols * setting.bits / 8)
            + math.ceil(groups * (SCALE_BITS + (0 if setting.symmetric else setting.bits)) / 8))


def _pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Unsigned integers below ``2**bits``, ``bits`` each, least significant bit first, padded to a whole byte."""
    planes = (values.astype(np.uint16)[:, None] >> np.arange(bits, dtype=np.uint16)) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def _unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    return (planes.reshape(count, bits).astype(np.int64) << np.arange(bits)).sum(axis=1)


@checked
def pack_groups(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, *, symmetric: bool) -> bytes:
    """The bytes a file stores for one layer (``quantize_groups``'s output): the codes at ``bits`` each (symmetric
    codes offset by ``2**(bits - 1)``), then the float16 scales, then (affine) the zero points at ``bits`` each; each
    part padded to a whole byte. ``len(pack_groups(...)) == layer_bytes(...)``: sizes reported are files."""
    check_int("bits", bits, *BITS)
    check_bool("symmetric", symmetric)
    for name, t in (("q", q), ("scale", scale), ("zero", zero)):
        if t.dim() != 2 or len(t) != len(q) or not t.numel():
            raise ValueError(f"{name} must be a 2-d tensor with one row per row of q ({len(q) if q.dim() else 0}), as "
                             f"quantize_groups returns it, got shape {tuple(t.shape)}")
    offset = 2 ** (bits - 1) if symmetric else 0
    codes = q.flatten().numpy().astype(np.int64) + offset
    if codes.min() < 0 or codes.max() >= 2**bits:
        raise ValueError(f"q holds codes outside the {bits}-bit range")
    blob = _pack_bits(codes, bits) + scale.flatten().numpy().astype(np.float16).tobytes()
    return blob if symmetric else blob + _pack_bits(zero.flatten().numpy().astype(np.int64), bits)


@checked
def unpack_groups(blob: bytes, rows: int, columns: int, bits: int, *, group_size: int | None,
                  symmetric: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pack_groups`` read back: ``(q, scale, zero)`` exactly as ``quantize_groups`` returned them."""
    check_int("rows", rows, 1)
    check_int("columns", columns, 1)
    g = _check_setting(bits, group_size, columns, symmetric)
    n, groups = rows * columns, rows * (columns // g)
    sizes = [-(-n * bits // 8), 2 * groups, 0 if symmetric else -(-groups * bits // 8)]
    if len(blob) != sum(sizes):
        raise ValueError(f"blob holds {len(blob)} bytes{' (empty)' if not blob else ''}; "
                         f"{rows}x{columns} at {bits} bits in groups of {g} take "
                         f"{sum(sizes)}")
    offset = 2 ** (bits - 1) if symmetric else 0
    q = torch.from_numpy(_unpack_bits(blob[: sizes[0]], n, bits) - offset).reshape(rows, columns).to(torch.int32)
    scale = torch.from_numpy(np.frombuffer(blob[sizes[0]: sizes[0] + sizes[1]], dtype=np.float16).astype(np.float32))
    zero = torch.zeros(groups) if symmetric else torch.from_numpy(
        _unpack_bits(blob[sizes[0] + sizes[1]:], groups, bits).astype(np.float32))
    return q, scale.reshape(rows, -1), zero.reshape(rows, -1)


@checked
def lm_bytes(model: nn.Module, settings: dict[str, Setting] | None = None) -> int:
    """Bytes of a file of ``model`` with the layers of ``settings`` stored as group codes (``layer_bytes``), every
    other tensor (embeddings, biases, LayerNorms, the head, layers not in ``settings``) at its dtype's size."""
    check_module("model", model)
    settings = settings or {}
    modules = dict(model.named_modules())
    total = 0
    for name, p in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        quantized = name.endswith(".weight") and layer in settings
        total += layer_bytes(modules[layer], settings[layer]) if quantized else p.numel() * p.element_size()
    return total


@checked
def settings_for(model: nn.Module, bits: int | dict[str, int], *, group_size: int | None = 64,
                 symmetric: bool = False) -> dict[str, Setting]:
    """The ``Setting`` of every quantizable layer for ``quantize_lm``'s arguments (for ``lm_bytes``)."""
    return _settings(transformer_linears(model), bits, group_size, symmetric)


# ------------------------------------------------------------------------------------------------ bits per layer


@checked
def layer_sensitivity(model: nn.Module, ids: torch.Tensor, bits: Sequence[int] = (2, 3, 4), *,
                      group_size: int | None = 64, symmetric: bool = False, around: int | None = None,
                      progress: Callable | None = None) -> dict[str, dict]:
    """Perplexity on ``ids`` (text or windows, as ``metrics.perplexity`` takes them) with one layer at a time at each
    of ``bits`` (RTN), every other layer at ``around`` bits (None: float32): ``{layer: {bits: perplexity}}``, and
    ``{"": {around or 32: perplexity}}`` with no layer changed. Measured around the operating point (``around=3``
    near 3 bits per weight), low-bit layers' errors add up as they will; take ``ids`` from training or validation
    text, never the test text. ``progress``: a wrapper such as ``tqdm`` for the loop over layers."""
    layers = transformer_linears(model)
    if not isinstance(bits, (list, tuple)) or not bits:
        raise TypeError(f"bits must be a non-empty list of bit widths, got {bits!r}")
    for b in bits:
        check_int("bits", b, *BITS)
    if around is not None:
        check_int("around", around, *BITS)
    work = copy_model(model) if around is None else quantize_lm(model, around, group_size=group_size,
                                                                symmetric=symmetric)
    originals = {n: m.weight.detach().clone() for n, m in layers.items()}
    result = {"": {around or 32: perplexity(work, ids).perplexity}}
    items = list(transformer_linears(work).items())
    for name, layer in (progress(items) if progress else items):
        held = layer.weight.detach().clone()
        result[name] = {}
        for b in bits:
            if b == around:
                result[name][b] = result[""][around]
                continue
            with torch.no_grad():
                layer.weight.copy_(fake_quantize_groups(originals[name], b, group_size=_group(layer, group_size),
                                                        symmetric=symmetric))
            result[name][b] = perplexity(work, ids).perplexity
        with torch.no_grad():
            layer.weight.copy_(held)
    return result


@checked
def allocate_bits(sensitivity: dict[str, dict], model: nn.Module, budget: int, *, group_size: int | None = 64,
                  symmetric: bool = False, unit: int = 16) -> dict[str, int] | None:
    """Bits per layer that minimize the summed perplexity rise (``layer_sensitivity``) within ``budget`` bytes of the
    whole file (``lm_bytes``), or None when even the fewest bits do not fit.

    A multiple-choice knapsack solved exactly by dynamic programming over the budget in steps of ``unit`` bytes (sizes
    rounded up: an allocation found always fits), assuming the layers' rises add up (true while each is small).
    """
    layers = transformer_linears(model)
    check_int("budget", budget, 1)
    check_int("unit", unit, 1)
    if not isinstance(sensitivity, dict) or set(sensitivity) != set(layers) | {""}:
        raise ValueError("sensitivity must hold every quantizable layer of model (layer_sensitivity on this model), "
                         f"got {sensitivity!r:.80}")
    base = next(iter(sensitivity[""].values()))
    rest = lm_bytes(model) - sum(p.numel() * p.element_size() for p in (m.weight for m in layers.values()))
    room = (budget - rest) // unit
    if room < 0:
        return None
    best = np.zeros(room + 1)  # best[c]: least summed rise of the layers so far within c units
    picks = []
    for name, layer in layers.items():
        candidates, options = [], []
        for b, ppl in sorted(sensitivity[name].items()):
            cost = math.ceil(layer_bytes(layer, Setting(b, _group(layer, group_size), symmetric)) / unit)
            shifted = np.full(room + 1, np.inf)
            shifted[cost:] = best[:room + 1 - cost] + (ppl - base)
            candidates.append(shifted)
            options.append((b, cost))
        stacked = np.stack(candidates)
        pick = stacked.argmin(axis=0)
        best = stacked[pick, np.arange(room + 1)]
        picks.append((name, pick, options))
    if not np.isfinite(best[room]):
        return None
    out, c = {}, room
    for name, pick, options in reversed(picks):
        b, cost = options[pick[c]]
        out[name] = b
        c -= cost
    return {name: out[name] for name in layers}
