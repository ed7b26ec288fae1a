"""Activation outliers in a language model, and the two ways of taming them before weights *and* activations are
quantized (W8A8, W4A8, W4A4): SmoothQuant's per-channel scales and QuaRot's Hadamard rotation.

- ``input_absmax``: each transformer linear's per-input-channel max |x| on some text (where the outliers are).
- ``kurtosis``: E[(x - mean)^4] / var^2 along the channels (3 for a Gaussian; outlier channels make it large).
- ``plant_outliers``: a control with known outliers. Channels ``c`` of both LayerNorms' outputs times ``factor`` and
  the columns ``c`` of the layers reading them divided by it: the float function is unchanged, its activations are
  not.
- ``smooth_scales`` / ``smooth``: Xiao et al., "SmoothQuant" (ICML 2023). ``s_j = max|X_j|^alpha /
  max|W_j|^(1 - alpha)`` per input channel; the LayerNorm before divides by ``s``, the weights' columns multiply by
  it: activations get easier to quantize, weights harder, the float function stays.
- ``hadamard`` / ``rotate``: Ashkboos et al., "QuaRot" (NeurIPS 2024). The residual stream is rotated by an
  orthogonal (randomized) Hadamard matrix ``Q``: LayerNorms become RMSNorms (the mean is removed by the layers that
  write to the stream, their scale and shift folded into the readers), writers get ``Q^T W``, readers ``W Q``. With
  ``online=True`` the MLP's inner activation is rotated too (a Hadamard multiply in the forward, as QuaRot does before
  the down projection). Outliers are spread over all channels; the float function is unchanged.
- ``quantize_wa``: weights per output channel and activations per token (dynamic), symmetric round to nearest with
  the absmax scale, as SmoothQuant's and QuaRot's fake-quantization utilities do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from compresskit.checks import check_bool, check_int, check_number, check_seed, check_tensor, checked
from compresskit.data import calibration_windows, check_ids
from compresskit.layers import copy_model, eval_mode, transformer_linears

__all__ = ["input_absmax", "kurtosis", "plant_outliers", "smooth_scales", "smooth", "hadamard", "RMSNorm",
           "RotatedInput", "rotate", "absmax_quantize", "WAQuantLinear", "quantize_wa", "SCALE_FLOOR"]

SCALE_FLOOR = 1e-5  # SmoothQuant's clamp on both maxima and on the scales


def _check_lm(model: nn.Module) -> dict[str, nn.Linear]:
    layers = transformer_linears(model)  # refuses anything without `blocks`
    for name in ("tok", "pos", "ln", "head"):
        if not isinstance(getattr(model, name, None), nn.Module):
            raise TypeError(f"model must be a models.TransformerLM (it has no `{name}`), got {type(model).__name__}")
    for name, m in layers.items():
        check_tensor(f"{name}.weight", m.weight)
    return layers


@checked
@torch.no_grad()
def input_absmax(model: nn.Module, ids: torch.Tensor, *, samples: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Each linear of the blocks (``layers.transformer_linears``, by name): the largest |x| of each of its input
    channels over ``samples`` windows of ``ids`` (at ``seed``'s offsets, ``data.calibration_windows``)."""
    layers = _check_lm(model)
    check_ids(ids, "ids")
    windows = calibration_windows(ids, model.context, samples, seed=seed)
    found: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args):
            m = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0).float()
            found[name] = m if name not in found else torch.maximum(found[name], m)
        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in layers.items()]
    try:
        with eval_mode(model):
            model(windows)
    finally:
        for h in handles:
            h.remove()
    return found


@checked
def kurtosis(x: torch.Tensor) -> torch.Tensor:
    """Pearson's kurtosis ``E[(x - m)^4] / E[(x - m)^2]^2`` of each row of ``x`` along its last dimension (3 for
    Gaussian values; a few outlier channels push it far up). Rows are the tokens, the last dimension the channels."""
    check_tensor("x", x)
    if x.dim() == 0 or x.shape[-1] < 2:
        raise ValueError(f"x must have at least 2 values along its last dimension, got shape {tuple(x.shape)}")
    d = x.double() - x.double().mean(-1, keepdim=True)
    var = (d ** 2).mean(-1)
    if bool((var == 0).any()):
        raise ValueError("x has a row of equal values: its kurtosis is undefined")
    return ((d ** 4).mean(-1) / var ** 2).to(x.dtype)


def _readers(block: nn.Module) -> list[tuple[nn.LayerNorm, list[nn.Linear]]]:
    """Each LayerNorm of a block with the linears that read its output."""
    return [(block.ln1, [block.attn.q, block.attn.k, block.attn.v]), (block.ln2, [block.fc])]


@checked
@torch.no_grad()
def plant_outliers(model: nn.Module, channels: Sequence[int], factor: float, *, inplace: bool = False) -> nn.Module:
    """The control with outliers of known size: in every block, channels ``channels`` of both LayerNorms' outputs
    times ``factor`` (their weight and bias) and the same columns of the layers reading them (q, k, v; fc) divided
    by it. The float function is unchanged up to rounding; the inputs of q, k, v and fc get ``len(channels)`` channels
    ``factor`` times larger. A copy unless ``inplace``."""
    _check_lm(model)
    check_number("factor", factor, 1.0, 1e4)
    check_bool("inplace", inplace)
    width = model.tok.embedding_dim
    if not isinstance(channels, (list, tuple)) or not channels:
        raise TypeError(f"channels must be a non-empty list of channel indices, got {channels!r:.60}")
    for c in channels:
        check_int("channels[i]", c, 0, width - 1)
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels must not repeat, got {list(channels)}")
    target = model if inplace else copy_model(model)
    idx = torch.tensor(list(channels))
    for block in target.blocks:
        for norm, readers in _readers(block):
            norm.weight[idx] *= factor
            norm.bias[idx] *= factor
            for m in readers:
                m.weight[:, idx] /= factor
    return target


@checked
def smooth_scales(act_absmax: torch.Tensor, weights: Sequence[torch.Tensor], alpha: float) -> torch.Tensor:
    """SmoothQuant's scale of each input channel ``j``: ``max|X_j|^alpha / max|W_j|^(1 - alpha)``, the weight maximum
    over the columns ``j`` of every matrix in ``weights`` (they read the same input), both maxima and the result
    floored at 1e-5 as the reference code does. Dividing ``X_j`` and multiplying ``W_j`` by it leaves ``X W^T``."""
    check_tensor("act_absmax", act_absmax)
    if act_absmax.dim() != 1 or act_absmax.numel() == 0 or bool((act_absmax < 0).any()):
        raise ValueError(f"act_absmax must be a 1-d tensor of maxima >= 0, got shape {tuple(act_absmax.shape)}")
    check_number("alpha", alpha, 0.0, 1.0)
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError("weights must be a non-empty list of weight matrices that read the same input")
    for i, w in enumerate(weights):
        check_tensor(f"weights[{i}]", w)
        if w.dim() != 2 or w.shape[1] != act_absmax.shape[0]:
            raise ValueError(f"weights[{i}] must be (rows, {act_absmax.shape[0]}), got {tuple(w.shape)}")
    w_max = torch.stack([w.detach().abs().amax(dim=0) for w in weights]).amax(dim=0).clamp(min=SCALE_FLOOR)
    a_max = act_absmax.detach().float().clamp(min=SCALE_FLOOR)
    return (a_max.pow(alpha) / w_max.float().pow(1.0 - alpha)).clamp(min=SCALE_FLOOR)


@checked
@torch.no_grad()
def smooth(model: nn.Module, calibration: torch.Tensor, alpha: float = 0.5, *, samples: int = 16, seed: int = 0,
           inplace: bool = False) -> nn.Module:
    """SmoothQuant folded into a copy of ``model`` (unless ``inplace``): for q, k, v (reading the first LayerNorm)
    and fc (reading the second), ``s = smooth_scales(max|X|, W, alpha)`` from ``samples`` windows of ``calibration``
    (training text); the LayerNorm's weight and bias divided by ``s``, the readers' columns times ``s``. ``proj`` and
    ``out`` keep their inputs (no LayerNorm before them to fold into), as in the paper's OPT recipe."""
    layers = _check_lm(model)
    check_number("alpha", alpha, 0.0, 1.0)
    check_bool("inplace", inplace)
    check_ids(calibration, "calibration")
    maxima = input_absmax(model, calibration, samples=samples, seed=seed)
    names = {id(m): n for n, m in layers.items()}
    target = model if inplace else copy_model(model)
    for source, block in zip(model.blocks, target.blocks):
        for (_, readers_src), (norm, readers) in zip(_readers(source), _readers(block)):
            s = smooth_scales(maxima[names[id(readers_src[0])]], [m.weight for m in readers], alpha)
            norm.weight.div_(s)
            norm.bias.div_(s)
            for m in readers:
                m.weight.mul_(s)
    return target


@checked
def hadamard(n: int, *, seed: int | None = None) -> torch.Tensor:
    """The ``n x n`` orthogonal Hadamard matrix ``H / sqrt(n)`` (Sylvester's construction, ``n`` a power of 2), its
    rows' signs flipped at random (``diag(s) H / sqrt(n)``, QuaRot's randomized Hadamard) when ``seed`` is given.
    Float64."""
    check_int("n", n, 1, 1 << 16)
    if seed is not None:
        check_seed(seed)
    if n & (n - 1):
        raise ValueError(f"n must be a power of 2 (Sylvester's construction), got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    h = h / n ** 0.5
    if seed is not None:
        signs = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)).double() * 2 - 1
        h = signs[:, None] * h
    return h


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps)`` with no scale or shift: what a LayerNorm is once its input has mean zero and its
    affine part has been folded into the layers after it. Commutes with any rotation of the channels."""

    @checked
    def __init__(self, eps: float):
        check_number("eps", eps, 0.0, 1.0, low_open=True)
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class RotatedInput(nn.Linear):
    """A linear layer that rotates its input first: ``linear(x @ R)``, its weight already ``W R`` (QuaRot's online
    Hadamard before the MLP's down projection). The float function of ``x -> x W_original^T`` is unchanged."""

    @checked
    def __init__(self, linear: nn.Linear, rotation: torch.Tensor):
        _check_linear(linear)
        check_tensor("rotation", rotation)
        n = linear.in_features
        if rotation.shape != (n, n) or not torch.allclose(rotation.double() @ rotation.double().T,
                                                          torch.eye(n, dtype=torch.float64), atol=1e-5):
            raise ValueError(f"rotation must be an orthogonal ({n}, {n}) matrix (the layer's inputs), got shape "
                             f"{tuple(rotation.shape)}{'' if rotation.shape != (n, n) else ', not orthogonal'}")
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.register_buffer("rotation", rotation.float())
        with torch.no_grad():
            self.weight.copy_((linear.weight.double() @ rotation).float())
            if linear.bias is not None:
                self.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x @ self.rotation, self.weight, self.bias)


def _check_linear(linear) -> None:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    check_tensor("linear.weight", linear.weight)


def _fold_norm(norm: nn.LayerNorm, readers: list[nn.Linear]) -> None:
    """A LayerNorm's weight and bias into the layers reading it (float64): ``W' = W diag(g)``, ``b' = b + W beta``."""
    g, beta = norm.weight.double(), norm.bias.double()
    for m in readers:
        w = m.weight.double()
        m.bias.copy_((m.bias.double() + w @ beta).float())
        m.weight.copy_((w * g).float())


@checked
@torch.no_grad()
def rotate(model: nn.Module, *, seed: int = 0, online: bool = True, inplace: bool = False) -> nn.Module:
    """QuaRot's rotation of a ``models.TransformerLM`` (a copy unless ``inplace``); the float function is unchanged
    up to rounding (float64 folds). Steps: (1) each LayerNorm's scale and shift folded into its readers (q, k, v; fc;
    the head, which gains a bias); (2) the layers writing to the residual stream (both embeddings, proj, out) made
    to write zero-mean vectors, so the stream has mean zero and every LayerNorm becomes an ``RMSNorm``; (3) the stream
    rotated by ``Q = hadamard(width, seed=seed)``: embeddings ``E Q``, writers ``Q^T W`` and ``b Q``, readers ``W Q``.
    ``online``: the input of every ``out`` (after GELU) rotated too, by ``hadamard(hidden, seed=seed + 1)``."""
    _check_lm(model)
    check_bool("online", online)
    check_bool("inplace", inplace)
    width = model.tok.embedding_dim
    q = hadamard(width, seed=seed)
    target = model if inplace else copy_model(model)
    head = target.head
    if head.bias is None:  # the final LayerNorm's shift becomes the head's bias
        target.head = nn.Linear(head.in_features, head.out_features, bias=True)
        target.head.weight.copy_(head.weight)
        target.head.bias.zero_()
    for block in target.blocks:
        for norm, readers in _readers(block):
            _fold_norm(norm, readers)
    _fold_norm(target.ln, [target.head])
    for emb in (target.tok, target.pos):  # writers: centre, then rotate
        e = emb.weight.double()
        emb.weight.copy_(((e - e.mean(-1, keepdim=True)) @ q).float())
    for block in target.blocks:
        for m in (block.attn.proj, block.out):
            w, b = m.weight.double(), m.bias.double()
            m.weight.copy_((q.T @ (w - w.mean(0, keepdim=True))).float())
            m.bias.copy_(((b - b.mean()) @ q).float())
        for m in (block.attn.q, block.attn.k, block.attn.v, block.fc):
            m.weight.copy_((m.weight.double() @ q).float())
        block.ln1, block.ln2 = RMSNorm(block.ln1.eps), RMSNorm(block.ln2.eps)
        if online:
            block.out = RotatedInput(block.out, hadamard(block.out.in_features, seed=seed + 1))
    target.head.weight.copy_((target.head.weight.double() @ q).float())
    target.ln = RMSNorm(target.ln.eps)
    return target


@checked
def absmax_quantize(x: torch.Tensor, bits: int, *, dim: int = -1) -> torch.Tensor:
    """Symmetric round to nearest with the absmax scale along ``dim`` (each slice its own scale, ``max|x| / (2^(bits-1)
    - 1)``, floored at 1e-5 / that), the values kept in float: per token for activations (``dim=-1`` of ``(..., C)``),
    per output channel for a weight (``dim=1`` of ``(rows, columns)``)."""
    check_tensor("x", x)
    check_int("bits", bits, 2, 16)
    if x.dim() == 0 or x.numel() == 0:
        raise ValueError(f"x must have at least one dimension and one value, got shape {tuple(x.shape)}")
    check_int("dim", dim, -x.dim(), x.dim() - 1)
    q_max = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=dim, keepdim=True).clamp(min=SCALE_FLOOR) / q_max
    return (x / scale).round().clamp(-q_max, q_max) * scale


class WAQuantLinear(nn.Linear):
    """A linear layer quantized for an integer matmul: its weight rounded per output channel to ``w_bits`` once, its
    input rounded per token to ``a_bits`` on every call (dynamic, ``absmax_quantize``); a rotated input
    (``RotatedInput``) is rotated first, then rounded. ``a_bits=None`` leaves the activations in float."""

    @checked
    def __init__(self, linear: nn.Linear, w_bits: int, a_bits: int | None):
        _check_linear(linear)
        check_int("w_bits", w_bits, 2, 8)
        if a_bits is not None:
            check_int("a_bits", a_bits, 2, 16)
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.w_bits, self.a_bits = w_bits, a_bits
        rotation = getattr(linear, "rotation", None)
        self.register_buffer("rotation", None if rotation is None else rotation.clone())
        with torch.no_grad():
            self.weight.copy_(absmax_quantize(linear.weight.detach(), w_bits, dim=1))
            if linear.bias is not None:
                self.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rotation is not None:
            x = x @ self.rotation
        if self.a_bits is not None:
            x = absmax_quantize(x, self.a_bits)
        return nn.functional.linear(x, self.weight, self.bias)


@checked
@torch.no_grad()
def quantize_wa(model: nn.Module, w_bits: int, a_bits: int | None = 8, *, inplace: bool = False) -> nn.Module:
    """Every linear of the blocks replaced by a ``WAQuantLinear``: ``w_bits`` per weight (2..8, per output channel)
    and ``a_bits`` per activation (2..16 per token, or None for weight-only). Embeddings, norms and head stay float.
    W8A8 is ``quantize_wa(model, 8, 8)``, W4A4 ``quantize_wa(model, 4, 4)``. A copy unless ``inplace``."""
    _check_lm(model)
    check_int("w_bits", w_bits, 2, 8)
    if a_bits is not None:
        check_int("a_bits", a_bits, 2, 16)
    check_bool("inplace", inplace)
    target = model if inplace else copy_model(model)
    for block in target.blocks:
        for parent, name in ((block.attn, "q"), (block.attn, "k"), (block.attn, "v"), (block.attn, "proj"),
                             (block, "fc"), (block, "out")):
            setattr(parent, name, WAQuantLinear(getattr(parent, name), w_bits, a_bits))
    return target
