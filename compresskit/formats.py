"""4-bit number formats for weights at (nearly) equal bits per weight, and ternary weights (chapter 11).

Each format splits a weight matrix's rows into blocks of ``block_size`` consecutive values and stores, per block, a
scale and one code per value:

- ``"nf4"`` (QLoRA, Dettmers et al. 2023): 16 levels at the quantiles of a normal distribution (``nf4_levels``),
  times the block's largest |w| (a float32 scale per block of 64: 4.5 bits per weight);
- ``"mxfp4"`` (OCP Microscaling v1.0): FP4 E2M1 values (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives) times a
  power of two shared by 32 values, stored as an 8-bit exponent (E8M0): 4.25 bits per weight;
- ``"nvfp4"`` (NVIDIA): E2M1 values times an FP8 E4M3 scale per 16 values, times one float32 scale for the
  tensor: 4.5 bits per weight and 32 bits per tensor;
- ``"ternary"`` (BitNet b1.58, Ma et al. 2024): -1, 0, +1 times the block's mean |w| (a float32 scale per block),
  packed five values to a byte (3^5 = 243 <= 256): 1.6 bits per weight plus the scales.

``fake_quantize`` returns the weights a format can represent (float32, same shape); ``pack`` writes the codes and
scales as bytes, exactly ``format_bits`` / 8 of them, and ``unpack`` reads them back to the same weights.
Chapter 09's INT4 groups (``weightonly``) are the fourth 4-bit format compared.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compresskit.checks import check_bool, check_choice, check_int, check_module, check_tensor, checked
from compresskit.layers import copy_model, transformer_linears

__all__ = ["FORMATS", "DEFAULT_BLOCK", "E2M1_VALUES", "nf4_levels", "e2m1_round", "e4m3_round", "fake_quantize",
           "format_bits", "pack", "unpack", "quantize_lm", "lm_bytes"]

FORMATS = ("nf4", "mxfp4", "nvfp4", "ternary")
DEFAULT_BLOCK = {"nf4": 64, "mxfp4": 32, "nvfp4": 16, "ternary": 64}
"""Each format's block as published (MX fixes 32; NVFP4 fixes 16)."""
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""The non-negative values of FP4 E2M1 (1 sign, 2 exponent, 1 mantissa bit), code 0-7 in this order."""
_E4M3_MAX = 448.0
_SCALE_BITS = {"nf4": 32, "mxfp4": 8, "nvfp4": 8, "ternary": 32}
_TENSOR_BITS = {"nf4": 0, "mxfp4": 0, "nvfp4": 32, "ternary": 0}


def nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels: 8 positive quantiles and 7 negative ones of N(0, 1) between probabilities 1 - delta and
    1/2 (delta = (1/32 + 1/30) / 2), an exact 0, all divided by the largest, so that they span [-1, 1]."""
    offset = 1 - 0.5 * (1 / 32 + 1 / 30)
    normal = torch.distributions.Normal(0.0, 1.0)
    positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    return (levels / levels.abs().max()).float()


def _round_to_grid(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Each |x| to the nearest value of the sorted non-negative ``grid`` (saturating at its largest), ties to the
    value of even index (round half to even: an even code has a zero last mantissa bit), sign kept."""
    a = x.abs().clamp(max=float(grid[-1]))
    hi = torch.bucketize(a, grid).clamp(1, len(grid) - 1)  # grid[hi - 1] <= a <= grid[hi]
    lo = hi - 1
    d_lo, d_hi = a - grid[lo], grid[hi] - a
    pick = torch.where((d_lo < d_hi) | ((d_lo == d_hi) & (lo % 2 == 0)), lo, hi)
    return torch.copysign(grid[pick], x), pick


@checked
def e2m1_round(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to FP4 E2M1 (``E2M1_VALUES`` with a sign), to nearest with ties to even, saturating at +-6."""
    check_tensor("x", x)
    return _round_to_grid(x.float(), torch.tensor(E2M1_VALUES))[0]


@checked
def e4m3_round(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to FP8 E4M3 (torch's ``float8_e4m3fn``: to nearest, ties to even), saturating at +-448 (the
    format has no infinity: a cast beyond it would give NaN)."""
    check_tensor("x", x)
    return x.float().clamp(-_E4M3_MAX, _E4M3_MAX).to(torch.float8_e4m3fn).float()


def _check(w, fmt: str, block_size: int | None) -> tuple[torch.Tensor, int]:
    check_tensor("w", w)
    if w.dim() != 2:
        raise ValueError(f"w must be a 2-d weight matrix (rows, columns), got shape {tuple(w.shape)}")
    check_choice("format", fmt, FORMATS)
    block = DEFAULT_BLOCK[fmt] if block_size is None else block_size
    check_int("block_size", block, 1)
    if fmt == "mxfp4" and block != 32 or fmt == "nvfp4" and block != 16:
        raise ValueError(f"block_size of {fmt} is fixed by the format ({DEFAULT_BLOCK[fmt]}), got {block}")
    if w.shape[1] % block:
        raise ValueError(f"the rows of w ({w.shape[1]} columns) must split into blocks of block_size={block}")
    return w.detach().float().reshape(-1, block), block


def _encode(blocks: torch.Tensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes per value, scale per block, tensor scale) such that value = level(code) * scale * tensor scale."""
    amax = blocks.abs().amax(1, keepdim=True)
    tensor_scale = torch.ones(())
    if fmt == "nf4":
        scale = amax
        levels = nf4_levels()
        codes = (blocks / torch.where(scale > 0, scale, 1.0)).unsqueeze(-1).sub(levels).abs().argmin(-1)
        return codes, scale, tensor_scale
    if fmt == "ternary":
        scale = blocks.abs().mean(1, keepdim=True)
        codes = (blocks / torch.where(scale > 0, scale, 1.0)).round().clamp(-1, 1).long() + 1  # 0, 1, 2
        return codes, scale, tensor_scale
    if fmt == "mxfp4":  # shared exponent: floor(log2(amax)) - 2 (E2M1's largest exponent); 2^-127 for a zero block
        exponent = torch.where(amax > 0, torch.floor(torch.log2(torch.where(amax > 0, amax, 1.0))) - 2, -127.0)
        scale = torch.exp2(exponent.clamp(-127, 127))
    else:  # nvfp4: the tensor scale maps the largest |w| to 6 * 448, each block's E4M3 scale its amax to about 6
        top = float(blocks.abs().max())
        tensor_scale = torch.tensor(top / (6 * _E4M3_MAX) if top > 0 else 1.0)
        scale = e4m3_round(amax / 6 / tensor_scale)
    unit = scale * tensor_scale
    _, pick = _round_to_grid(blocks / torch.where(unit > 0, unit, 1.0), torch.tensor(E2M1_VALUES))
    codes = torch.where(blocks < 0, pick + 8, pick)  # sign bit on top: codes 0-15 (code 8 is -0)
    return torch.where(unit > 0, codes, 0), scale, tensor_scale


def _decode(codes: torch.Tensor, scale: torch.Tensor, tensor_scale: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == "nf4":
        return nf4_levels()[codes] * scale
    if fmt == "ternary":
        return (codes - 1).float() * scale
    grid = torch.tensor(E2M1_VALUES)
    values = torch.where(codes >= 8, -grid[codes % 8], grid[codes % 8])
    return values * scale * tensor_scale


@checked
def fake_quantize(w: torch.Tensor, format: str, *, block_size: int | None = None) -> torch.Tensor:
    """The weights ``format`` represents for ``w`` (2-d, float32, same shape): each row's blocks of ``block_size``
    (default: the format's, ``DEFAULT_BLOCK``; fixed for MXFP4 and NVFP4) encoded and decoded."""
    blocks, _ = _check(w, format, block_size)
    return _decode(*_encode(blocks, format), format).reshape(w.shape)


@checked
def format_bits(format: str, numel: int, *, block_size: int | None = None) -> int:
    """Bits of ``numel`` weights in ``format``: codes (4 bits; ternary 8 per 5 values), a scale per block (float32,
    E8M0 or E4M3) and NVFP4's float32 tensor scale. ``numel`` must fill whole blocks."""
    check_choice("format", format, FORMATS)
    check_int("numel", numel, 1)
    block = DEFAULT_BLOCK[format] if block_size is None else block_size
    check_int("block_size", block, 1)
    if numel % block:
        raise ValueError(f"numel={numel} must fill whole blocks of block_size={block}")
    codes = 8 * math.ceil(numel / 5) if format == "ternary" else 4 * numel + 4 * (numel % 2)
    return codes + (numel // block) * _SCALE_BITS[format] + _TENSOR_BITS[format]


def _pack_codes(codes: torch.Tensor, fmt: str) -> bytes:
    flat = codes.reshape(-1).to(torch.uint8)
    if fmt == "ternary":  # five base-3 digits per byte
        flat = torch.cat([flat, flat.new_zeros(-len(flat) % 5)]).reshape(-1, 5).long()
        return (flat * torch.tensor([1, 3, 9, 27, 81])).sum(1).to(torch.uint8).numpy().tobytes()
    flat = torch.cat([flat, flat.new_zeros(len(flat) % 2)]).reshape(-1, 2)
    return (flat[:, 0] | (flat[:, 1] << 4)).numpy().tobytes()


@checked
def pack(w: torch.Tensor, format: str, *, block_size: int | None = None) -> bytes:
    """``w`` in ``format`` as bytes: the codes, then the block scales (float32 little-endian; MXFP4 an exponent
    byte, 2^(e - 127); NVFP4 an E4M3 byte), then NVFP4's float32 tensor scale. The length is ``format_bits / 8``
    (rounded up); ``unpack`` with the same shape and format gives ``fake_quantize(w, ...)`` back."""
    blocks, block = _check(w, format, block_size)
    codes, scale, tensor_scale = _encode(blocks, format)
    out = _pack_codes(codes, format)
    if format == "mxfp4":
        out += (torch.log2(scale).round() + 127).to(torch.uint8).numpy().tobytes()
    elif format == "nvfp4":
        out += scale.to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes()
        out += tensor_scale.reshape(1).numpy().astype("<f4").tobytes()
    else:
        out += scale.reshape(-1).numpy().astype("<f4").tobytes()
    return out


@checked
def unpack(blob: bytes, shape: tuple[int, int], format: str, *, block_size: int | None = None) -> torch.Tensor:
    """The float32 weights of shape ``shape`` that ``pack`` wrote into ``blob`` (its length is checked)."""
    if len(shape) != 2:
        raise ValueError(f"shape must be (rows, columns), got {shape!r}")
    for i, v in enumerate(shape):
        check_int(f"shape[{i}]", v, 1)
    rows, cols = shape
    _, block = _check(torch.zeros(1, cols), format, block_size)
    numel, n_blocks = rows * cols, rows * cols // block
    expected = -(-format_bits(format, numel, block_size=block) // 8)
    if len(blob) != expected:
        raise ValueError(f"blob holds {len(blob)} bytes ({blob[:8]!r}...); {format} weights of shape {shape} take "
                         f"{expected}")
    raw = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    if format == "ternary":
        n_code = -(-numel // 5)
        digits = raw[:n_code].long()[:, None] // torch.tensor([1, 3, 9, 27, 81]) % 3
        codes = digits.reshape(-1)[:numel]
    else:
        n_code = -(-numel // 2)
        pairs = raw[:n_code].long()
        codes = torch.stack([pairs & 15, pairs >> 4], 1).reshape(-1)[:numel]
    rest = raw[n_code:]
    tensor_scale = torch.ones(())
    if format == "mxfp4":
        scale = torch.exp2(rest.float() - 127)
    elif format == "nvfp4":
        scale = rest[:n_blocks].clone().view(torch.float8_e4m3fn).float()
        tensor_scale = rest[n_blocks:].clone().view(torch.float32)[0]
    else:
        scale = rest.clone().view(torch.float32)
    values = _decode(codes.reshape(n_blocks, block), scale.reshape(-1, 1), tensor_scale, format)
    return values.reshape(rows, cols)


@checked
def quantize_lm(model: nn.Module, format: str, *, block_size: int | None = None, inplace: bool = False) -> nn.Module:
    """``model`` with the weights of every linear of its transformer blocks (``layers.transformer_linears``) in
    ``format``, fake-quantized; embeddings, LayerNorms, biases and the head stay float32. A copy unless
    ``inplace=True``."""
    check_module("model", model)
    check_bool("inplace", inplace)
    target = model if inplace else copy_model(model)
    linears = transformer_linears(target)
    if not linears:
        raise ValueError("model has no transformer linears to quantize (layers.transformer_linears found none)")
    with torch.no_grad():
        for layer in linears.values():
            layer.weight.copy_(fake_quantize(layer.weight, format, block_size=block_size))
    return target


@checked
def lm_bytes(model: nn.Module, format: str, *, block_size: int | None = None) -> int:
    """Bytes of a file of ``model`` with its transformer linears' weights in ``format`` (``format_bits``, each
    rounded up to whole bytes, as ``pack`` writes them) and every other tensor at its dtype's size."""
    check_module("model", model)
    weights = {id(layer.weight) for layer in transformer_linears(model).values()}
    total = 0
    for p in model.parameters():
        if id(p) in weights:
            total += -(-format_bits(format, p.numel(), block_size=block_size) // 8)
        else:
            total += p.numel() * p.element_size()
    return total
