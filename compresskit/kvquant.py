"""Quantizing a language model's KV cache the KIVI way (Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization
for KV Cache", ICML 2024): keys per channel, values per token, the most recent tokens kept in float.

Keys have a few channels that are large for every token (as activations do): a scale per channel, shared by a group
of ``group`` consecutive tokens, fits them; values have no such channels and are read as a weighted sum of tokens, so
each token gets its own scale. Both use asymmetric min-max rounding to ``bits`` bits. Tokens arrive one at a time;
KIVI keeps a residual of up to ``window`` tokens in float and quantizes them, ``group`` at a time, when the residual is
full: after ``n`` tokens, the first ``(n // window) * window`` are quantized.

``KIVIQuantizer`` simulates exactly that inside one forward pass over a whole window (``model(idx)`` without a
``models.KVCache``): query ``i`` reads quantized keys and values for the tokens ``j < ((i + 1) // window) * window``
and float ones for the rest, so perplexity and divergence measure what a generation with the quantized cache would
produce. ``quantize_kv`` attaches one to every attention of a copy of the model; ``kv_bytes`` prices the cache.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compresskit.checks import check_bool, check_choice, check_int, check_tensor, checked
from compresskit.layers import copy_model

__all__ = ["SCALE_BITS", "FLOAT_BITS", "KEY_AXES", "minmax_quantize", "quantize_keys", "quantize_values",
           "KIVIQuantizer", "quantize_kv", "kv_bytes"]

SCALE_BITS = 16  # a float16 scale and a float16 zero point (KIVI stores both in half precision)
FLOAT_BITS = 16  # the float cache a deployment keeps (float16), against which the quantized one is priced
KEY_AXES = ("channel", "token")  # KIVI's keys per channel, or (the ablation) per token like the values


def _check_bits(bits) -> None:
    check_int("bits", bits, 1, 16)


@checked
def minmax_quantize(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Asymmetric round to nearest over ``dim`` (one range per slice): ``scale = (max - min) / (2^bits - 1)``, codes
    ``round((x - min) / scale)``, values ``codes * scale + min``, kept in float. A constant slice is returned as is."""
    check_tensor("x", x)
    _check_bits(bits)
    if x.dim() == 0 or x.numel() == 0:
        raise ValueError(f"x must have at least one dimension and one value, got shape {tuple(x.shape)}")
    check_int("dim", dim, -x.dim(), x.dim() - 1)
    lo, hi = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)
    scale = (hi - lo) / (2 ** bits - 1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.where(scale > 0, torch.round((x - lo) / safe) * safe + lo, x)


def _check_kv(name: str, x) -> None:
    check_tensor(name, x)
    if x.dim() != 4 or x.numel() == 0:
        raise ValueError(f"{name} must be (batch, heads, tokens, head_dim) and non-empty, got {tuple(x.shape)}")


@checked
def quantize_keys(k: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Keys ``(B, heads, T, head_dim)`` per channel: each channel of each run of ``group`` tokens (0..group-1,
    group..2 group-1, ...; the last run may be shorter) has its own min-max range (``minmax_quantize``)."""
    _check_kv("k", k)
    _check_bits(bits)
    check_int("group", group, 1, 1 << 20)
    b, h, t, d = k.shape
    runs = math.ceil(t / group)
    padded = torch.cat([k, k[:, :, -1:].expand(b, h, runs * group - t, d)], dim=2)  # repeats keep the range
    out = minmax_quantize(padded.reshape(b, h, runs, group, d), bits, dim=3)
    return out.reshape(b, h, runs * group, d)[:, :, :t]


@checked
def quantize_values(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Values ``(B, heads, T, head_dim)`` per token: each token of each head has its own min-max range."""
    _check_kv("v", v)
    _check_bits(bits)
    return minmax_quantize(v, bits, dim=-1)


class KIVIQuantizer(nn.Module):
    """Attention with KIVI's quantized cache, simulated over a whole window (see the module's docstring): called as
    ``quantizer(q, k, v)`` on ``(B, heads, T, head_dim)`` tensors in place of causal scaled dot-product attention.

    Args:
        bits: bits per key and value (1..16).
        window: the float residual's capacity, a positive multiple of ``group`` (KIVI's R).
        group: tokens per key range (KIVI's G).
        keys: ``"channel"`` (KIVI) or ``"token"`` (a range per key token, as for values: the ablation KIVI reports
            to fail at 2 bits, because a few key channels are large for every token)."""

    @checked
    def __init__(self, bits: int, window: int = 32, group: int = 32, keys: str = "channel"):
        _check_bits(bits)
        check_choice("keys", keys, KEY_AXES)
        check_int("group", group, 1, 1 << 20)
        check_int("window", window, 1, 1 << 20)
        if window % group:
            raise ValueError(f"window must be a positive multiple of group ({group}): KIVI quantizes the residual "
                             f"{group} tokens at a time; got window={window}")
        super().__init__()
        self.bits, self.window, self.group, self.keys = bits, window, group, keys

    def quantized_mask(self, t: int) -> torch.Tensor:
        """``(t, t)`` bool: whether query ``i`` reads token ``j``'s key and value quantized."""
        i = torch.arange(t)[:, None]
        return torch.arange(t)[None, :] < (i + 1) // self.window * self.window

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        t = q.shape[2]
        kq = quantize_keys(k, self.bits, self.group) if self.keys == "channel" else quantize_values(k, self.bits)
        vq = quantize_values(v, self.bits)
        old = self.quantized_mask(t).to(q.device)
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = torch.where(old, q @ kq.transpose(-2, -1), q @ k.transpose(-2, -1)) * scale
        causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        p = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return (p * ~old) @ v + (p * old) @ vq

    def extra_repr(self) -> str:
        return f"bits={self.bits}, window={self.window}, group={self.group}, keys={self.keys}"


def _attentions(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(hasattr(b, "attn") for b in blocks):
        raise TypeError(f"model must be a models.TransformerLM (blocks with an `attn`), got {type(model).__name__}")
    return [b.attn for b in blocks]


@checked
def quantize_kv(model: nn.Module, bits: int, *, window: int = 32, group: int = 32, keys: str = "channel",
                inplace: bool = False) -> nn.Module:
    """A copy of a ``models.TransformerLM`` (unless ``inplace``) whose every attention reads its keys and values
    through a ``KIVIQuantizer(bits, window, group, keys)``. Weights are untouched; the model runs on whole windows
    (``model(idx)``), not with a ``models.KVCache``."""
    _check_bits(bits)
    check_bool("inplace", inplace)
    _attentions(model)
    KIVIQuantizer(bits, window, group, keys)  # refuses a bad window, group or key axis before anything is copied
    target = model if inplace else copy_model(model)
    for attn in _attentions(target):
        attn.kv_quant = KIVIQuantizer(bits, window, group, keys)
    return target


@checked
def kv_bytes(model: nn.Module, tokens: int, *, bits: int | None = None, window: int = 32, group: int = 32,
             batch: int = 1) -> int:
    """Bytes of the KV cache after ``tokens`` tokens for ``batch`` sequences: keys and values of every block, each
    ``heads x head_dim`` wide. ``bits=None``: all in float16 (``FLOAT_BITS``). Otherwise KIVI: the first
    ``(tokens // window) * window`` tokens at ``bits`` each, plus a float16 scale and zero point per key channel per
    ``group`` tokens and per value token per head; the rest in float16."""
    attns = _attentions(model)
    check_int("tokens", tokens, 0, 1 << 30)
    check_int("batch", batch, 1, 1 << 20)
    if bits is not None:
        KIVIQuantizer(bits, window, group)
    total = 0
    for attn in attns:
        width, heads = attn.n_head * attn.head_dim, attn.n_head
        if bits is None:
            total += 2 * tokens * width * FLOAT_BITS
            continue
        old = tokens // window * window
        total += 2 * old * width * bits  # codes of keys and values
        total += (old // group) * width * 2 * SCALE_BITS  # keys: scale and zero per channel per group
        total += old * heads * 2 * SCALE_BITS  # values: scale and zero per token per head
        total += 2 * (tokens - old) * width * FLOAT_BITS  # the float residual
    return batch * math.ceil(total / 8)
