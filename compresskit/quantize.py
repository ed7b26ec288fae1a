"""Quantization (量化): uniform (symmetric / affine, per tensor / per channel), k-means weight sharing, binarization,
quantization-aware training with the straight-through estimator, and activation calibration.

Uniform quantization maps a real w to an integer code q and back:
    q = clamp(round(w / scale) + zero_point, q_min, q_max),      w_hat = (q - zero_point) * scale
with scale and zero point computed exactly as torch's MinMaxObserver computes them and the rounding (half to even,
on w * (1 / scale)) and clamping of ``torch.fake_quantize_per_tensor_affine``; the tests compare with both.

References: Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference" (CVPR 2018); Han et al., "Deep Compression" (ICLR 2016); Rastegari et al., "XNOR-Net" (ECCV 2016);
Bengio et al., "Estimating or Propagating Gradients Through Stochastic Neurons" (2013) for the STE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from compresskit.checks import check_bool, check_choice, check_int, check_module, check_tensor, checked, dataset_tensors
from compresskit.layers import copy_model, refresh_pruned, require_sites, unique_sites

__all__ = ["EPS", "METHODS", "code_range", "qparams", "quantize_tensor", "dequantize", "fake_quantize",
           "ste_fake_quantize", "kmeans_quantize", "centroid_gradients", "binarize", "ste_binarize", "check_method",
           "quantize_model", "storage_kwargs", "ActivationQuant", "quantize_activations"]

EPS = torch.finfo(torch.float32).eps
METHODS = ("uniform", "kmeans", "binary")


# ------------------------------------------------------------------------------------------------ checks


def _check_bits(bits, low: int = 2, high: int = 16, name: str = "bits") -> None:
    if bits == 1 and low == 2 and not isinstance(bits, bool):
        raise ValueError(f"{name} must be in [2, 16], got 1 (1 bit is binarize(w))")
    check_int(name, bits, low, high)


def _check_kept(w: torch.Tensor, mask) -> torch.Tensor | None:
    """``mask`` as a boolean map of ``w``'s kept entries (None: all kept)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a tensor of w's shape (1 = kept) or None, got {type(mask).__name__}")
    if mask.shape != w.shape:
        raise ValueError(f"mask must have w's shape {tuple(w.shape)}, got {tuple(mask.shape)}")
    return mask.bool().to(w.device)


def _check_w(w) -> None:
    check_tensor("w", w)
    if w.dim() == 0:
        raise ValueError("w must have at least one dimension, got a 0-d tensor")
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape {tuple(w.shape)}): there is nothing to quantize")


@checked
def code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """(q_min, q_max): [-2^(b-1), 2^(b-1) - 1] symmetric, [0, 2^b - 1] affine."""
    check_int("bits", bits, 1, 32)  # 0 bits would be the range (-1, 0): no code at all
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)


# ------------------------------------------------------------------------------------------------ uniform


@checked
def qparams(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False, axis: int = 0,
            mask: torch.Tensor | None = None):
    """Scale and zero point of w, as torch's (PerChannel)MinMaxObserver computes them.

    Affine: the range [min, max] is widened to include 0, scale = (max - min) / (q_max - q_min), zero point =
    q_min - round(min / scale), clamped to the code range. Symmetric: scale = max|w| / ((q_max - q_min) / 2), zero
    point 0. Scale is at least float32 eps. Per channel, both have size C along ``axis`` and 1 elsewhere (so they
    broadcast against w); a 1-d tensor per channel has one scale per entry. With a ``mask``, only the kept entries
    set the range (pruned weights are not data; the range includes 0 anyway, so 0 stays exactly representable).
    """
    code_range(bits, symmetric)  # refuses bits outside [1, 32] by name
    check_tensor("w", w)
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape {tuple(w.shape)}): there is nothing to quantize")
    return _qparams(w, bits, symmetric, per_channel, axis, _check_kept(w, mask))


def _qparams(w: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, axis: int, mask) -> tuple:
    """``qparams`` of arguments already checked (by it, or by ``_check_uniform``)."""
    q_min, q_max = code_range(bits, symmetric)
    w = w.detach().float()
    if mask is not None:
        w = torch.where(mask, w, torch.zeros((), device=w.device))
    if per_channel:
        dims = tuple(d for d in range(w.dim()) if d != axis % w.dim())
        lo = (w.amin(dim=dims, keepdim=True) if dims else w).clamp(max=0.0)
        hi = (w.amax(dim=dims, keepdim=True) if dims else w).clamp(min=0.0)
    else:
        lo, hi = w.min().clamp(max=0.0), w.max().clamp(min=0.0)
    if symmetric:
        scale = (torch.maximum(-lo, hi) / ((q_max - q_min) / 2)).clamp(min=EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = ((hi - lo) / float(q_max - q_min)).clamp(min=EPS)
        zero_point = (q_min - torch.round(lo / scale)).clamp(q_min, q_max).to(torch.int32)
    return scale, zero_point


def _check_uniform(w, bits, symmetric, per_channel, axis, mask) -> torch.Tensor | None:
    _check_w(w)
    _check_bits(bits)
    check_bool("symmetric", symmetric)
    check_bool("per_channel", per_channel)
    check_int("axis", axis, -w.dim(), w.dim() - 1)
    return _check_kept(w, mask)


def _codes(w: torch.Tensor, scale, zero_point) -> torch.Tensor:
    """round(w / scale) + zero_point before clamping, as torch's kernels compute it: w times the float32 inverse
    scale, rounded half to even (nearbyint)."""
    return torch.round(w.detach().float() * (1.0 / scale)) + zero_point


@checked
def quantize_tensor(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False, axis: int = 0,
                    mask: torch.Tensor | None = None):
    """Integer codes of w and their parameters: ``(q, scale, zero_point)``, with ``w ~= (q - zero_point) * scale``.

    Args:
        bits: 2..16 (1 bit: use ``binarize``).
        symmetric: codes in [-2^(b-1), 2^(b-1) - 1] and zero point 0; else affine, codes in [0, 2^b - 1].
        per_channel: one scale / zero point per slice along ``axis`` (output channels for axis 0).
        mask: kept entries (1) of a pruned tensor: only they set the range, the others get the code of 0.
    Returns:
        q (int32, shape of w), scale (float32), zero_point (int32); per channel, the parameters have size C along
        ``axis`` and 1 elsewhere.
    """
    kept = _check_uniform(w, bits, symmetric, per_channel, axis, mask)
    scale, zero_point = _qparams(w, bits, symmetric, per_channel, axis, kept)
    q_min, q_max = code_range(bits, symmetric)
    q = _codes(w, scale, zero_point).clamp(q_min, q_max).to(torch.int32)
    if kept is not None:
        q = torch.where(kept, q, zero_point.expand_as(q))
    return q, scale, zero_point


@checked
def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """``(q - zero_point) * scale`` as float32 (parameters broadcast, as ``quantize_tensor`` shapes them)."""
    for name, t in (("q", q), ("scale", scale), ("zero_point", zero_point)):
        check_tensor(name, t, floating=False)
    try:
        shape = torch.broadcast_shapes(q.shape, scale.shape, zero_point.shape)
    except RuntimeError:
        shape = None
    if shape != q.shape:
        raise ValueError(f"scale {tuple(scale.shape)} and zero_point {tuple(zero_point.shape)} must broadcast against "
                         f"q {tuple(q.shape)} (one per tensor, or one per channel as quantize_tensor shapes them)")
    return (q - zero_point).float() * scale


@checked
def fake_quantize(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False,
                  axis: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``dequantize(*quantize_tensor(w, ...))``: w rounded to the nearest representable value (in w's dtype)."""
    q = quantize_tensor(w, bits, symmetric=symmetric, per_channel=per_channel, axis=axis, mask=mask)
    return dequantize(*q).to(w.dtype)


@checked
def ste_fake_quantize(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False,
                      axis: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fake quantization with the clipped straight-through estimator, as torch's fake-quant ops do it: the forward
    value is ``fake_quantize(w)``; the gradient passes unchanged where the *rounded* code ``round(w / s) + z`` lies
    in ``[q_min, q_max]`` and is 0 where it was clamped (so a weight half a step beyond the range still learns).
    With a ``mask``, pruned entries are 0 forward and get no gradient."""
    kept = _check_uniform(w, bits, symmetric, per_channel, axis, mask)
    scale, zero_point = _qparams(w, bits, symmetric, per_channel, axis, kept)
    q_min, q_max = code_range(bits, symmetric)
    codes = _codes(w, scale, zero_point)
    inside = (codes >= q_min) & (codes <= q_max)
    wq = (codes.clamp(q_min, q_max) - zero_point) * scale
    wq = wq.to(w.dtype)
    # wq + (w - w.detach()) is exactly wq forward (w + (wq - w) can be off by an ulp) and passes gradient 1
    out = torch.where(inside, wq + (w - w.detach()), wq)
    return out * kept.to(w.dtype) if kept is not None else out


# ------------------------------------------------------------------------------------------------ k-means


def _nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of every x (1-d): through the midpoints of the sorted codebook, O(n log k).
    A value exactly halfway goes to the smaller centroid."""
    values, order = torch.sort(codebook)
    return order[torch.searchsorted((values[1:] + values[:-1]) / 2, x)]


def _lloyd_1d(x: torch.Tensor, codebook: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on 1-d data to a fixed point: every x at its nearest centroid, every centroid the mean of
    its members. An empty cluster takes the point farthest from its own centroid (as scikit-learn's k-means does),
    so no centroid is wasted while data could fill it."""
    k = len(codebook)
    assign = _nearest(x, codebook)
    for _ in range(max_iter):
        sums = torch.zeros(k, dtype=x.dtype).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            far = torch.topk((x - codebook[assign]) ** 2, len(empty)).indices
            for cluster, point in zip(empty.tolist(), far.tolist()):
                sums[assign[point]] -= x[point]
                counts[assign[point]] -= 1
                sums[cluster], counts[cluster] = x[point], 1
        codebook = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)
        new = _nearest(x, codebook)
        if torch.equal(new, assign):
            break
        assign = new
    return codebook, assign


@checked
def kmeans_quantize(w: torch.Tensor, bits: int, *, init: str = "linear", max_iter: int = 1000,
                    mask: torch.Tensor | None = None):
    """Weight sharing (Deep Compression): 2^bits shared values (a codebook) and, per weight, the index of its value.

    Lloyd's algorithm in 1-d (in float64), run to a fixed point: centroids start evenly spaced over [min, max]
    (``init="linear"``, the paper's best choice: it keeps the rare large weights) or at quantiles of w
    (``"density"``); each weight goes to its nearest centroid, each centroid to the mean of its members, and an empty
    cluster is moved to the weight farthest from its centroid. With fewer distinct values than 2^bits, the codebook
    is those values (the rest repeat the last one). With a ``mask`` (a pruned tensor), only the kept weights are
    clustered (Deep Compression clusters the survivors); the shared weight is then ``codebook[indices] * mask``.
    Returns ``(codebook (2^bits,) float32, indices (shape of w) int64)``.
    """
    _check_w(w)
    check_int("bits", bits, 1, 8)
    check_choice("init", init, ("linear", "density"))
    check_int("max_iter", max_iter, 1)
    kept = _check_kept(w, mask)
    all_values = w.detach().double().reshape(-1).cpu()
    data = all_values[kept.reshape(-1).cpu()] if kept is not None else all_values
    k = 2**bits
    if data.numel() == 0:  # everything pruned: nothing to share
        return torch.zeros(k, dtype=torch.float32, device=w.device), torch.zeros(w.shape, dtype=torch.int64,
                                                                                 device=w.device)
    distinct = torch.unique(data)
    if len(distinct) <= k:
        codebook = torch.cat([distinct, distinct[-1:].expand(k - len(distinct))])
    else:
        if init == "linear":
            codebook = torch.linspace(float(data.min()), float(data.max()), k, dtype=torch.float64)
        else:
            codebook = torch.quantile(data, torch.linspace(0, 1, k, dtype=torch.float64))
        codebook, _ = _lloyd_1d(data, codebook, max_iter)
    indices = _nearest(all_values, codebook).reshape(w.shape)
    return codebook.float().to(w.device), indices.to(w.device)


@checked
def centroid_gradients(grad: torch.Tensor, indices: torch.Tensor, k: int) -> torch.Tensor:
    """Deep Compression's codebook fine-tuning: each centroid's gradient is the sum of its members' gradients."""
    check_tensor("grad", grad)
    check_tensor("indices", indices, floating=False)
    check_int("k", k, 1)
    if indices.is_floating_point() or indices.shape != grad.shape:
        raise ValueError(f"indices must be integer codes of grad's shape {tuple(grad.shape)}, got {indices.dtype} of "
                         f"shape {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= k):
        raise ValueError(f"indices must lie in [0, {k - 1}] (codes of a {k}-entry codebook), got values from "
                         f"{int(indices.min())} to {int(indices.max())}")
    return torch.zeros(k, device=grad.device, dtype=grad.dtype).index_add_(0, indices.reshape(-1), grad.reshape(-1))


# ------------------------------------------------------------------------------------------------ binary


@checked
def binarize(w: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``alpha * sign(w)`` with sign(0) = +1 and alpha = mean |w| per output channel (slice along dim 0).

    alpha minimizes ||w - alpha * sign(w)||^2 for each channel (XNOR-Net). ``torch.sign(0) == 0`` would leave
    zeros as a third value, so sign is taken as ``w >= 0``. With a ``mask`` (a pruned tensor), alpha is the mean
    |w| of each channel's *kept* weights and pruned entries stay 0 (averaging the zeros in would shrink alpha
    towards 0 and ruin the model).
    """
    _check_w(w)
    kept = _check_kept(w, mask)
    dims = tuple(range(1, w.dim()))
    magnitude = w.detach().abs()
    if kept is None:
        alpha = magnitude.mean(dim=dims, keepdim=True) if dims else magnitude
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype) * alpha
    k = kept.to(w.dtype)
    count = k.sum(dim=dims, keepdim=True) if dims else k
    alpha = (magnitude * k).sum(dim=dims, keepdim=True) / count.clamp(min=1) if dims else magnitude * k
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype) * alpha * k


@checked
def ste_binarize(w: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """binarize with the clipped STE (BinaryConnect): gradient 1 where |w| <= 1, else 0 (and 0 where pruned)."""
    b = binarize(w, mask=mask).detach()
    out = torch.where(w.abs() <= 1, b + (w - w.detach()), b)
    return out * mask.to(w.dtype) if mask is not None else out


# ------------------------------------------------------------------------------------------------ models


def _quantized(w: torch.Tensor, bits: int, method: str, symmetric: bool, per_channel: bool,
               kept: torch.Tensor) -> torch.Tensor:
    mask = None if bool(kept.all()) else kept
    if method == "binary":
        return binarize(w, mask=mask)
    if method == "kmeans":
        codebook, indices = kmeans_quantize(w, bits, mask=mask)
        shared = codebook[indices].to(w.dtype)
        return shared * mask.to(w.dtype) if mask is not None else shared
    return fake_quantize(w, bits, symmetric=symmetric, per_channel=per_channel, axis=0, mask=mask)


@checked
def check_method(method: str, bits, allowed=METHODS, *, name: str = "bits") -> None:
    """``method`` one of ``allowed`` and ``bits`` what it stores (an int, or a per-layer ``{tensor: bits}`` dict of
    them; ``name`` is what the message calls the bits)."""
    check_choice("method", method, allowed)
    if isinstance(bits, dict):
        if not bits:
            raise ValueError(f"{name} is an empty dict: give the bits of at least one tensor")
        for tensor, b in bits.items():
            check_method(method, b, allowed, name=f"{name}[{tensor!r}]")
    elif method == "binary":
        if bits != 1 or isinstance(bits, bool):
            raise ValueError(f"method='binary' stores 1 bit per weight: {name} must be 1, got {bits!r}")
    elif method == "kmeans":
        check_int(name, bits, 1, 8)
    else:
        _check_bits(bits, name=name)


def _bits_by_site(bits, found: list) -> dict[str, int]:
    """``{site name: bits}`` for the sites to quantize: all of ``found`` with one int, the dict's own keys (each a
    compressible tensor of the model, by name) with a per-layer dict."""
    if not isinstance(bits, dict):
        return {s.name: bits for s in found}
    names = [s.name for s in found]
    unknown = [k for k in bits if k not in names]
    if unknown:
        raise ValueError(f"bits names {unknown}, which are no compressible tensors of the model; they are "
                         f"{names[:8]}{' ...' if len(names) > 8 else ''}")
    return dict(bits)


@checked
def quantize_model(model: nn.Module, bits: int | dict[str, int], *, method: str = "uniform", symmetric: bool = True,
                   per_channel: bool = False, tensors: str | Sequence[str] | None = None,
                   inplace: bool = False) -> nn.Module:
    """Post-training quantization of the weights of Linear, Conv1d/2d and RNN/GRU/LSTM layers (never biases).

    Each weight is replaced by its quantized value (what an integer kernel would compute with, in float32, so the
    model runs anywhere): ``method="uniform"`` (bits 2..16), ``"kmeans"`` (2^bits shared values, bits 1..8), or
    ``"binary"`` (1 bit; ``bits`` must be 1). ``tensors`` picks some weights by name, as in ``prune.prunable``
    (e.g. ``"weight_hh"``). Bits per layer: ``bits={"0.weight": 8, "2.weight": 4}`` quantizes exactly the tensors
    it names (as ``layers.named_tensors`` names them), each to its own width, and leaves the others in float (not
    together with ``tensors``). The caller's model is unchanged unless ``inplace=True``.

    On a pruned model the scale, zero point, codebook or alpha is fitted to the *kept* weights only (the pruning
    mask, or the nonzero entries of a model without masks) and the pruned weights stay exactly 0; masks are kept,
    so a later fine-tune keeps the zeros. Tied weights are quantized once and stay tied.
    Its real size: ``metrics.storage_bytes(q, **storage_kwargs(...))``.
    """
    check_module("model", model)
    check_method(method, bits)
    check_bool("symmetric", symmetric)
    check_bool("per_channel", per_channel)
    check_bool("inplace", inplace)
    if isinstance(bits, dict) and tensors is not None:
        raise ValueError(f"give either tensors={tensors!r} or bits per tensor (a dict), not both")
    widths = _bits_by_site(bits, require_sites(model, tensors))  # refuses weight-norm, NaN, nothing to quantize
    target = model if inplace else copy_model(model)
    groups = [g for g in unique_sites(require_sites(target, tensors)) if any(s.name in widths for s in g)]
    for g in groups:
        tied = {widths[s.name] for s in g if s.name in widths}  # a tied weight is named by any of its names
        if len(tied) > 1:
            raise ValueError(f"tensors {[s.name for s in g]} are one tied weight: give them one bit width, got {tied}")
    new = [_quantized(g[0].effective().detach(), widths[next(s.name for s in g if s.name in widths)], method,
                      symmetric, per_channel, g[0].kept()) for g in groups]
    for group, w in zip(groups, new):  # all computed first: a failure leaves the model as it was
        group[0].write(w)
    return refresh_pruned(target)


@checked
def storage_kwargs(method: str, bits: int | dict[str, int], *, per_channel: bool = False,
                   symmetric: bool = True) -> dict:
    """Arguments for ``metrics.storage_bytes`` that price a quantized model honestly.

    uniform: ``bits`` per weight plus a float32 scale (and an int32 zero point when affine) per tensor or channel;
    kmeans: ``bits`` per index plus a codebook of 2^bits float32 values per tensor; binary: 1 bit per weight plus a
    float32 alpha per output channel. With bits per layer (the dict given to ``quantize_model``) each named tensor
    is priced at its own width and the others at their float width, without a table.
    """
    check_method(method, bits)
    check_bool("per_channel", per_channel)
    check_bool("symmetric", symmetric)
    per = 32 if symmetric else 64  # a float32 scale, and an int32 zero point when affine
    if isinstance(bits, dict):
        def table(name: str, w: torch.Tensor) -> int:
            if name not in bits:
                return 0
            if method == "kmeans":
                return 32 * 2 ** bits[name]
            return 32 * w.shape[0] if method == "binary" else per * w.shape[0] if per_channel else per

        return {"value_bits": dict(bits), "codebook_bits": table}
    if method == "kmeans":
        return {"value_bits": bits, "codebook_bits": 32 * 2**bits}
    if method == "binary":
        return {"value_bits": 1, "codebook_bits": lambda name, w: 32 * w.shape[0]}
    return {"value_bits": bits, "codebook_bits": (lambda name, w: per * w.shape[0]) if per_channel else per}


# ------------------------------------------------------------------------------------------------ activations


class ActivationQuant(nn.Module):
    """Fake-quantizes activations with a fixed (calibrated) affine range, as an integer-only runtime would."""

    @checked
    def __init__(self, bits: int):
        check_int("bits", bits, 2, 16)
        super().__init__()
        self.bits = bits
        self.register_buffer("lo", torch.tensor(math.inf))
        self.register_buffer("hi", torch.tensor(-math.inf))
        self.calibrating = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:  # MinMaxObserver: running min / max over the calibration batches
            self.lo = torch.minimum(self.lo, x.detach().min())
            self.hi = torch.maximum(self.hi, x.detach().max())
            return x
        q_min, q_max = code_range(self.bits, symmetric=False)
        lo, hi = self.lo.clamp(max=0.0), self.hi.clamp(min=0.0)
        scale = ((hi - lo) / float(q_max - q_min)).clamp(min=EPS)
        zero_point = int((q_min - torch.round(lo / scale)).clamp(q_min, q_max))
        return torch.fake_quantize_per_tensor_affine(x, float(scale), zero_point, q_min, q_max)


@checked
def quantize_activations(model: nn.Sequential, bits: int, calibration: Dataset, *, batches: int = 8,
                         batch_size: int = 64) -> nn.Sequential:
    """A copy of an ``nn.Sequential`` with an ``ActivationQuant`` at its input and after every ReLU, calibrated on
    ``batches`` batches of ``calibration``: the "full integer" model's activations (weights are not touched here:
    combine with ``quantize_model``)."""
    check_module("model", model)
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    _check_bits(bits)
    check_int("batches", batches, 1)
    check_int("batch_size", batch_size, 1)
    x, _ = dataset_tensors(calibration, "calibration")
    layers: list[nn.Module] = [ActivationQuant(bits)]
    for m in copy_model(model):
        layers.append(m)
        if isinstance(m, nn.ReLU):
            layers.append(ActivationQuant(bits))
    quantized = nn.Sequential(*layers).eval()
    with torch.no_grad():
        for i in range(min(batches, math.ceil(len(x) / batch_size))):
            quantized(x[i * batch_size : (i + 1) * batch_size])
    for m in quantized:
        if isinstance(m, ActivationQuant):
            m.calibrating = False
    return quantized
