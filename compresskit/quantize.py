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
from torch.nn.utils import parametrize
from torch.utils.data import Dataset

from compresskit.models import copy_model, refresh_pruned, replace_module, stored_tensor
from compresskit.prune import prunable
from compresskit.rnn import UnrolledRNN
from compresskit.train import train

EPS = torch.finfo(torch.float32).eps
METHODS = ("uniform", "kmeans", "binary")


# ------------------------------------------------------------------------------------------------ checks


def _check_bits(bits, low: int = 2, high: int = 16) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int in [{low}, {high}], got {type(bits).__name__} {bits!r}")
    if not low <= bits <= high:
        extra = " (1 bit is binarize(w))" if bits == 1 and low == 2 else ""
        raise ValueError(f"bits must be in [{low}, {high}], got {bits}{extra}")


def _check_tensor(w) -> None:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"w must be a floating-point torch.Tensor, got {type(w).__name__}")


def code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """(q_min, q_max): [-2^(b-1), 2^(b-1) - 1] symmetric, [0, 2^b - 1] affine."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)


# ------------------------------------------------------------------------------------------------ uniform


def _reduce_dims(w: torch.Tensor, per_channel: bool, axis: int) -> tuple[int, ...] | None:
    return tuple(d for d in range(w.dim()) if d != axis % w.dim()) if per_channel else None


def qparams(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False, axis: int = 0):
    """Scale and zero point of w, as torch's (PerChannel)MinMaxObserver computes them.

    Affine: the range [min, max] is widened to include 0, scale = (max - min) / (q_max - q_min), zero point =
    q_min - round(min / scale), clamped to the code range. Symmetric: scale = max|w| / ((q_max - q_min) / 2), zero
    point 0. Scale is at least float32 eps. Per channel, both have size C along ``axis`` and 1 elsewhere (so they
    broadcast against w).
    """
    q_min, q_max = code_range(bits, symmetric)
    dims = _reduce_dims(w, per_channel, axis)
    w = w.detach().float()
    lo = (w.amin(dim=dims, keepdim=True) if dims else w.min()).clamp(max=0.0)
    hi = (w.amax(dim=dims, keepdim=True) if dims else w.max()).clamp(min=0.0)
    if symmetric:
        scale = torch.maximum(-lo, hi) / ((q_max - q_min) / 2)
        scale = scale.clamp(min=EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = ((hi - lo) / float(q_max - q_min)).clamp(min=EPS)
        zero_point = (q_min - torch.round(lo / scale)).clamp(q_min, q_max).to(torch.int32)
    return scale, zero_point


def quantize_tensor(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False, axis: int = 0):
    """Integer codes of w and their parameters: ``(q, scale, zero_point)``, with ``w ~= (q - zero_point) * scale``.

    Args:
        bits: 2..16 (1 bit: use ``binarize``).
        symmetric: codes in [-2^(b-1), 2^(b-1) - 1] and zero point 0; else affine, codes in [0, 2^b - 1].
        per_channel: one scale / zero point per slice along ``axis`` (output channels for axis 0).
    Returns:
        q (int32, shape of w), scale (float32), zero_point (int32); per channel, the parameters have size C along
        ``axis`` and 1 elsewhere.
    """
    _check_tensor(w)
    _check_bits(bits)
    if per_channel and not -w.dim() <= axis < w.dim():
        raise ValueError(f"axis must be in [{-w.dim()}, {w.dim() - 1}] for a {w.dim()}-d tensor, got {axis}")
    scale, zero_point = qparams(w, bits, symmetric=symmetric, per_channel=per_channel, axis=axis)
    q_min, q_max = code_range(bits, symmetric)
    # torch's kernels multiply by the float32 inverse scale and round half to even (nearbyint)
    q = torch.round(w.detach().float() * (1.0 / scale)) + zero_point
    return q.clamp(q_min, q_max).to(torch.int32), scale, zero_point


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """``(q - zero_point) * scale`` as float32 (parameters broadcast, as ``quantize_tensor`` shapes them)."""
    return (q - zero_point).float() * scale


def fake_quantize(w: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False,
                  axis: int = 0) -> torch.Tensor:
    """``dequantize(*quantize_tensor(w, ...))``: w rounded to the nearest representable value (float32)."""
    return dequantize(*quantize_tensor(w, bits, symmetric=symmetric, per_channel=per_channel, axis=axis)).to(w.dtype)


def ste_fake_quantize(w: torch.Tensor, bits: int, **kw) -> torch.Tensor:
    """Fake quantization with the clipped straight-through estimator: the forward value is fake_quantize(w); the
    gradient passes unchanged where w is inside the representable range and is 0 where it was clamped
    (what torch's fake-quant ops do)."""
    symmetric = kw.get("symmetric", True)
    scale, zero_point = qparams(w, bits, symmetric=symmetric, per_channel=kw.get("per_channel", False),
                                axis=kw.get("axis", 0))
    q_min, q_max = code_range(bits, symmetric)
    inside = (w >= (q_min - zero_point) * scale) & (w <= (q_max - zero_point) * scale)
    wq = fake_quantize(w.detach(), bits, **kw)
    return torch.where(inside, w + (wq - w).detach(), wq)


# ------------------------------------------------------------------------------------------------ k-means


def kmeans_quantize(w: torch.Tensor, bits: int, *, init: str = "linear", max_iter: int = 100):
    """Weight sharing (Deep Compression): 2^bits shared values (a codebook) and, per weight, the index of its value.

    Lloyd's algorithm in 1-d: centroids start evenly spaced over [min, max] (``init="linear"``, the paper's best
    choice: it keeps the rare large weights) or at quantiles of w (``"density"``), then alternate assigning each
    weight to its nearest centroid and moving each centroid to the mean of its members, until no assignment changes.
    Returns ``(codebook (2^bits,) float32, indices (shape of w) int64)``; ``codebook[indices]`` is the shared weight.
    """
    _check_tensor(w)
    _check_bits(bits, 1, 8)
    if init not in ("linear", "density"):
        raise ValueError(f"init must be 'linear' or 'density', got {init!r}")
    flat = w.detach().float().reshape(-1)
    k = 2**bits
    if init == "linear":
        codebook = torch.linspace(float(flat.min()), float(flat.max()), k, device=flat.device)
    else:
        codebook = torch.quantile(flat, torch.linspace(0, 1, k, device=flat.device))
    assign = None
    for _ in range(max_iter):
        new = torch.argmin((flat[:, None] - codebook[None, :]).abs(), dim=1)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        sums = torch.zeros(k, device=flat.device).index_add_(0, assign, flat)
        counts = torch.bincount(assign, minlength=k).float()
        codebook = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)  # empty clusters stay put
    return codebook, assign.reshape(w.shape)


def centroid_gradients(grad: torch.Tensor, indices: torch.Tensor, k: int) -> torch.Tensor:
    """Deep Compression's codebook fine-tuning: each centroid's gradient is the sum of its members' gradients."""
    return torch.zeros(k, device=grad.device).index_add_(0, indices.reshape(-1), grad.reshape(-1))


# ------------------------------------------------------------------------------------------------ binary


def binarize(w: torch.Tensor) -> torch.Tensor:
    """``alpha * sign(w)`` with sign(0) = +1 and alpha = mean |w| per output channel (slice along dim 0).

    alpha minimizes ||w - alpha * sign(w)||^2 for each channel (XNOR-Net). ``torch.sign(0) == 0`` would leave
    zeros as a third value, so sign is taken as ``w >= 0``.
    """
    _check_tensor(w)
    if w.dim() == 0:
        raise ValueError("w must have at least one dimension")
    dims = tuple(range(1, w.dim()))
    alpha = w.detach().abs().mean(dim=dims, keepdim=True) if dims else w.detach().abs()
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype) * alpha


def ste_binarize(w: torch.Tensor) -> torch.Tensor:
    """binarize with the clipped STE (BinaryConnect): gradient 1 where |w| <= 1, else 0."""
    return torch.where(w.abs() <= 1, w + (binarize(w) - w).detach(), binarize(w).detach())


# ------------------------------------------------------------------------------------------------ models


def _quantized(w: torch.Tensor, bits: int, method: str, symmetric: bool, per_channel: bool) -> torch.Tensor:
    if method == "binary":
        return binarize(w)
    if method == "kmeans":
        codebook, indices = kmeans_quantize(w, bits)
        return codebook[indices].to(w.dtype)
    return fake_quantize(w, bits, symmetric=symmetric, per_channel=per_channel, axis=0)


def quantize_model(model: nn.Module, bits: int, *, method: str = "uniform", symmetric: bool = True,
                   per_channel: bool = False, tensors: str | Sequence[str] | None = None,
                   inplace: bool = False) -> nn.Module:
    """Post-training quantization of the weights of Linear, Conv1d/2d and RNN/GRU/LSTM layers (never biases).

    Each weight is replaced by its quantized value (what an integer kernel would compute with, in float32, so the
    model runs anywhere): ``method="uniform"`` (bits 2..16), ``"kmeans"`` (2^bits shared values, bits 1..8), or
    ``"binary"`` (1 bit; ``bits`` must be 1). ``tensors`` picks some weights by name, as in ``prune.prunable``
    (e.g. ``"weight_hh"``). The caller's model is unchanged unless ``inplace=True``.
    Its real size: ``metrics.storage_bytes(q, **storage_kwargs(...))``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "binary" and bits != 1:
        raise ValueError(f"method='binary' stores 1 bit per weight: bits must be 1, got {bits!r}")
    if method == "uniform":
        _check_bits(bits)
    elif method == "kmeans":
        _check_bits(bits, 1, 8)
    target = model if inplace else copy_model(model)
    sites = prunable(target, tensors)
    new = [_quantized(getattr(m, n).detach(), bits, method, symmetric, per_channel) for _, m, n in sites]
    with torch.no_grad():  # all computed first: a failure leaves the model as it was
        for (_, m, n), w in zip(sites, new):
            stored_tensor(m, n).copy_(w)
    return refresh_pruned(target)


def storage_kwargs(method: str, bits: int, *, per_channel: bool = False, symmetric: bool = True) -> dict:
    """Arguments for ``metrics.storage_bytes`` that price a quantized model honestly.

    uniform: ``bits`` per weight plus a float32 scale (and an int32 zero point when affine) per tensor or channel;
    kmeans: ``bits`` per index plus a codebook of 2^bits float32 values per tensor; binary: 1 bit per weight plus a
    float32 alpha per output channel.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "kmeans":
        return {"value_bits": bits, "codebook_bits": 32 * 2**bits}
    if method == "binary":
        return {"value_bits": 1, "codebook_bits": lambda name, w: 32 * w.shape[0]}
    per = 32 if symmetric else 64
    return {"value_bits": bits, "codebook_bits": (lambda name, w: per * w.shape[0]) if per_channel else per}


# ------------------------------------------------------------------------------------------------ QAT


class _FakeQuant(nn.Module):
    """Parametrization: the layer sees quantized weights; the optimizer updates the float "shadow" weights."""

    def __init__(self, bits: int, method: str, symmetric: bool, per_channel: bool):
        super().__init__()
        self.bits, self.method, self.symmetric, self.per_channel = bits, method, symmetric, per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.method == "binary":
            return ste_binarize(w)
        return ste_fake_quantize(w, self.bits, symmetric=self.symmetric, per_channel=self.per_channel)


def qat(model: nn.Module, dataset: Dataset, *, bits: int, method: str = "uniform", symmetric: bool = True,
        per_channel: bool = True, epochs: int = 5, lr: float = 1e-3, **train_kwargs) -> nn.Module:
    """Quantization-aware training: fine-tune a copy whose Linear/Conv layers see fake-quantized weights (clipped
    STE in the backward pass), then freeze the quantized values. Returns the quantized copy.

    ``method="uniform"`` (bits 2..16) or ``"binary"`` (bits 1). Recurrent layers (``nn.RNN/GRU/LSTM``) train as
    ``rnn.UnrolledRNN`` (the same recurrence with ``Linear`` parts, which take the fake quantizer; torch's fused
    layers do not) and are returned as the torch layer they were.
    """
    if method not in ("uniform", "binary"):
        raise ValueError(f"method must be 'uniform' or 'binary' for QAT, got {method!r}")
    if method == "binary" and bits != 1:
        raise ValueError(f"method='binary' stores 1 bit per weight: bits must be 1, got {bits!r}")
    if method == "uniform":
        _check_bits(bits)
    target = copy_model(model)
    recurrent = [name for name, m in target.named_modules() if isinstance(m, nn.RNNBase)]
    for name in recurrent:
        replace_module(target, name, UnrolledRNN.from_torch(target.get_submodule(name)))
    layers = [m for m in target.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", _FakeQuant(bits, method, symmetric, per_channel))
    train(target, dataset, epochs=epochs, lr=lr, **train_kwargs)
    for layer in layers:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    for name in recurrent:
        replace_module(target, name, target.get_submodule(name).to_torch())
    return target


# ------------------------------------------------------------------------------------------------ activations


class ActivationQuant(nn.Module):
    """Fake-quantizes activations with a fixed (calibrated) affine range, as an integer-only runtime would."""

    def __init__(self, bits: int):
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


def quantize_activations(model: nn.Sequential, bits: int, calibration: Dataset, *, batches: int = 8,
                         batch_size: int = 64) -> nn.Sequential:
    """A copy of an ``nn.Sequential`` with an ``ActivationQuant`` at its input and after every ReLU, calibrated on
    ``batches`` batches of ``calibration``: the "full integer" model's activations (weights are not touched here:
    combine with ``quantize_model``)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    _check_bits(bits)
    layers: list[nn.Module] = [ActivationQuant(bits)]
    for m in copy_model(model):
        layers.append(m)
        if isinstance(m, nn.ReLU):
            layers.append(ActivationQuant(bits))
    quantized = nn.Sequential(*layers).eval()
    x = calibration.tensors[0]
    with torch.no_grad():
        for i in range(min(batches, math.ceil(len(x) / batch_size))):
            quantized(x[i * batch_size : (i + 1) * batch_size])
    for m in quantized:
        if isinstance(m, ActivationQuant):
            m.calibrating = False
    return quantized
