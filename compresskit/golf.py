"""Char-golf (chapter 12's capstone): the best bits per character a language model reaches when the file that holds
its numbers must fit a byte budget, as in the public "parameter golf" challenges (int8/int6 codes, GPTQ, lzma).

An entry is a compressed model; its **file** is what ``pack`` writes, compressed with lzma, and its **score** is the
bits per character of the model read back from that file (``unpack``), never of the model before packing: every
rounding the file makes (float16 scales, 8-bit embeddings) is paid for in the score. The decoder, this module and
``models.TransformerLM``, is the same for every entry and is not counted (the public challenges count their code too:
here it is shared, so it changes no ranking).

The file before lzma (version 1, integers little-endian)::

    magic b"CKGF" | version u8 | bits u8 | group u16 (0: one group per row) | others u8 | tensor count u32
    per tensor of ``layers.named_tensors(model)``, in that order:
        name length u16, name (UTF-8) | kind u8 | payload length u32 | payload

Kinds: ``0`` float16 values; ``1`` group codes: the tensor's values already lie on a ``bits``-bit grid per group
(``quantize_lm``, GPTQ, SparseGPT with ``bits``, pruned zeros included): the grid is read back from the values
(``grid_of``) and written by ``weightonly.pack_groups``; ``2`` the same at 8 bits for the other matrices (embeddings,
head, low-rank factors) when ``others=8``, rounded here. The linears of the blocks (``layers.transformer_linears``)
are kind 1 (kind 0 when ``bits`` is 0); every other tensor with two dimensions is kind 2 (``others=8``) or kind 0
(``others=16``); vectors are kind 0.
"""

from __future__ import annotations

import lzma
import math
import struct
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compresskit.checks import check_fields, check_int, check_module, checked
from compresskit.data import check_ids
from compresskit.layers import copy_model, named_tensors, transformer_linears
from compresskit.metrics import perplexity
from compresskit.weightonly import dequantize_groups, pack_groups, quantize_groups, unpack_groups

__all__ = ["MAGIC", "FORMAT_VERSION", "OTHERS", "LZMA_PRESET", "grid_of", "pack", "unpack", "Entry", "score",
           "board"]

MAGIC = b"CKGF"
FORMAT_VERSION = 1
OTHERS = (8, 16)  # bits of the matrices that are not block linears: 8-bit rows (a float16 scale each) or float16
LZMA_PRESET = 9 | lzma.PRESET_EXTREME
_FLOAT16, _GROUPS, _ROWS8 = 0, 1, 2
_TOLERANCE = 1e-3  # of a grid step: how far a value may sit from its level (float32 rounding is ~1e-6)


@checked
@torch.no_grad()
def grid_of(w: torch.Tensor, bits: int, *, group_size: int | None = 64) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
    """The codes, scales and zero points (``weightonly.quantize_groups``'s layout) of a matrix whose values already
    lie on a ``bits``-bit grid ``scale * (q - zero)`` in each group of ``group_size`` columns, read back from the
    values: per group, the smallest gap between two of its values (or that gap divided by 2, 3, ... when a level in
    between is unused) such that every value and zero lie a whole number of steps apart, within ``2**bits - 1``
    steps. ``dequantize_groups`` of the result gives ``w`` back (to float32 rounding). A matrix
    not on such a grid is a ``ValueError``: quantize it first."""
    check_int("bits", bits, 2, 8)
    if w.dim() != 2 or not w.numel() or not bool(torch.isfinite(w).all()):
        raise ValueError(f"w must be a finite 2-d tensor, got shape {tuple(w.shape)}")
    g = w.shape[1] if group_size is None else group_size
    check_int("group_size", g, 1)
    if w.shape[1] % g:
        raise ValueError(f"group_size={group_size} must divide w's {w.shape[1]} columns")
    v = w.detach().double().reshape(-1, g)
    low, high = v.amin(1), v.amax(1)
    span = high - low
    levels = 2**bits - 1
    scale = torch.zeros(len(v), dtype=torch.float64)
    done = span == 0  # one value: q = 1, zero 0 (value > 0), q = 0, zero 1 (< 0), scale 0 (zero)
    scale[done] = low[done].abs()
    # the step is the smallest gap between two levels the group uses, or a fraction of it when a level in between
    # is unused everywhere (the usual group fits at j = 1: one pass over the whole matrix)
    gaps = v.sort(1).values.diff(1)
    gaps[gaps <= _TOLERANCE * span[:, None]] = float("inf")
    smallest = gaps.amin(1)
    for j in range(1, levels + 1):
        step = torch.where(torch.isfinite(smallest) & (span > 0), smallest / j, torch.ones_like(smallest))
        r = (v - low[:, None]) / step[:, None]
        z = low / step
        zero = (-z.round()).clamp(min=0)
        fits = ((r - r.round()).abs().amax(1) < _TOLERANCE) & ((z - z.round()).abs() < _TOLERANCE) & \
            ((high / step).round() + zero <= levels) & (zero <= levels) & (span > 0)
        new = fits & ~done
        scale[new] = step[new]
        done |= fits
        if bool(done.all()):
            break
    if not bool(done.all()):
        bad = int((~done).nonzero()[0])
        raise ValueError(f"w is not on a {bits}-bit grid in groups of {g} (group {bad} of {len(v)}, row "
                         f"{bad * g // w.shape[1]}): quantize it to {bits} bits in groups of {g} first")
    constant = span == 0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = (-(low / safe).round()).clamp(min=0)
    zero[constant] = (low[constant] < 0).double()
    q = (v / safe[:, None]).round() + zero[:, None]
    q[constant] = (low[constant] > 0).double()[:, None].expand(-1, g)
    rows = w.shape[0]
    return (q.reshape(w.shape).to(torch.int32), scale.float().reshape(rows, -1), zero.float().reshape(rows, -1))


def _group(columns: int, group_size: int | None) -> int | None:
    """The group a layer of ``columns`` inputs is packed with: one group per row when it is narrower than the group
    (as ``weightonly.quantize_lm`` groups it), so that writer and reader agree."""
    return group_size if group_size is not None and columns >= group_size else None


def _rows8(t: torch.Tensor) -> bytes:
    """A matrix rounded to 8 bits per row (asymmetric min-max, integer zero point), as ``pack_groups`` writes it."""
    q, scale, zero = quantize_groups(t, 8, group_size=None)
    return pack_groups(q, scale, zero, 8, symmetric=False)


def _check_setting(bits: int, group_size: int | None, others: int) -> None:
    if bits != 0:
        check_int("bits", bits, 2, 8)
    if group_size is not None:
        check_int("group_size", group_size, 1, 65535)
    check_int("others", others, 8, 16)
    if others not in OTHERS:
        raise ValueError(f"others must be one of {OTHERS} (bits of the other matrices), got {others}")


@checked
@torch.no_grad()
def pack(model: nn.Module, bits: int, *, group_size: int | None = 64, others: int = 16) -> bytes:
    """The entry's file: every tensor of ``model`` (``layers.named_tensors``: pruned weights as they are used) in the
    format of the module docstring, lzma-compressed (``LZMA_PRESET``). ``bits`` (2..8) is the grid the block linears
    already lie on (``grid_of``), 0 to store them in float16; ``others`` 8 rounds every other matrix to 8 bits per
    row here, 16 stores it in float16. Its length is the entry's size."""
    check_module("model", model)
    _check_setting(bits, group_size, others)
    linear_weights = {f"{name}.weight" for name in transformer_linears(model)}
    out = [MAGIC, struct.pack("<BBHBI", FORMAT_VERSION, bits, group_size or 0, others,
                              sum(1 for _ in named_tensors(model)))]
    for name, t in named_tensors(model):
        t = t.detach().float()
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds NaN or inf values: such a model has no file")
        if name in linear_weights and bits:
            g = _group(t.shape[1], group_size)
            try:
                payload = pack_groups(*grid_of(t, bits, group_size=g), bits, symmetric=False)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
            kind = _GROUPS
        elif t.dim() == 2 and others == 8:
            payload, kind = _rows8(t), _ROWS8
        else:
            payload, kind = t.numpy().astype(np.float16).tobytes(), _FLOAT16
        encoded = name.encode()
        out += [struct.pack("<H", len(encoded)), encoded, struct.pack("<BI", kind, len(payload)), payload]
    return lzma.compress(b"".join(out), preset=LZMA_PRESET)


@checked
@torch.no_grad()
def unpack(blob: bytes, *, like: nn.Module) -> nn.Module:
    """``pack``'s file read back into a copy of ``like`` (the same modules and shapes; its values are replaced):
    the model whose score counts. Pruning masks of ``like`` are kept (the zeros are in the file too)."""
    check_module("like", like)
    if not isinstance(blob, bytes | bytearray) or not blob:
        raise ValueError("blob must be the non-empty bytes golf.pack returned")
    try:
        raw = lzma.decompress(blob)
    except lzma.LZMAError as error:
        raise ValueError(f"blob is not an lzma file written by golf.pack: {error}") from None
    if raw[:4] != MAGIC or len(raw) < 13:
        raise ValueError(f"blob is not a golf.pack file (magic {raw[:4]!r}, expected {MAGIC!r})")
    version, bits, group, _others, count = struct.unpack_from("<BBHBI", raw, 4)
    if version != FORMAT_VERSION:
        raise ValueError(f"blob is format version {version}; this reader knows version {FORMAT_VERSION}")
    target = copy_model(like)
    tensors = dict(named_tensors(target))
    if count != len(tensors):
        raise ValueError(f"blob holds {count} tensors; like has {len(tensors)}")
    modules = dict(target.named_modules())
    pos = 13
    for _ in range(count):
        (length,) = struct.unpack_from("<H", raw, pos)
        name = raw[pos + 2:pos + 2 + length].decode()
        kind, size = struct.unpack_from("<BI", raw, pos + 2 + length)
        payload = raw[pos + 7 + length:pos + 7 + length + size]
        pos += 7 + length + size
        if name not in tensors or len(payload) != size:
            raise ValueError(f"blob's tensor {name!r} is not one of like's, or the file is cut short")
        shape = tensors[name].shape
        if kind == _FLOAT16:
            if size != 2 * math.prod(shape):
                raise ValueError(f"{name}: {size} bytes of float16 for shape {tuple(shape)}")
            value = torch.from_numpy(np.frombuffer(payload, dtype=np.float16).astype(np.float32)).reshape(shape)
        elif kind in (_GROUPS, _ROWS8):
            b = bits if kind == _GROUPS else 8
            g = _group(shape[1], group or None) if kind == _GROUPS else None
            value = dequantize_groups(*unpack_groups(payload, shape[0], shape[1], b, group_size=g, symmetric=False))
        else:
            raise ValueError(f"{name}: unknown kind {kind}")
        module_name, _, attr = name.rpartition(".")
        module = modules[module_name]
        stored = getattr(module, f"{attr}_orig", None) if hasattr(module, f"{attr}_mask") else None
        (stored if stored is not None else getattr(module, attr)).copy_(value)
    if pos != len(raw):
        raise ValueError(f"blob has {len(raw) - pos} bytes after its last tensor")
    return target


@dataclass(frozen=True)
class Entry:
    """One entry of the board: its ``name``, the ``recipe`` that made it (words), its file's ``bytes`` (``pack``) and
    the ``bits_per_char`` of the model read back from the file, on ``tokens`` test characters."""

    name: str
    recipe: str
    bytes: int
    bits_per_char: float
    tokens: int

    def __post_init__(self):
        check_fields(self, bytes=(1, None), bits_per_char=(0.0, None), tokens=(1, None))

    def __str__(self) -> str:
        return f"{self.name}: {self.bits_per_char:.4f} bits per character, {self.bytes:,} bytes ({self.recipe})"


@checked
def score(name: str, model: nn.Module, ids: torch.Tensor, bits: int, *, group_size: int | None = 64,
          others: int = 16, recipe: str = "") -> Entry:
    """An ``Entry``: ``model`` packed (``pack(model, bits, group_size=..., others=...)``), read back (``unpack``) and
    scored on ``ids`` (test text) by ``metrics.perplexity``'s bits per character."""
    check_ids(ids, "ids")
    blob = pack(model, bits, group_size=group_size, others=others)
    result = perplexity(unpack(blob, like=model), ids)
    setting = f"{'float16' if not bits else f'{bits}-bit'} blocks, {others}-bit others"
    return Entry(name, f"{recipe}; {setting}" if recipe else setting, len(blob), result.bits_per_char, result.tokens)


@checked
def board(entries: list, budget: int) -> list:
    """The entries whose file fits ``budget`` bytes, best (fewest bits per character) first; ties by size."""
    check_int("budget", budget, 1)
    if not isinstance(entries, list) or not entries:
        raise (TypeError if not isinstance(entries, list) else ValueError)(
            f"entries must be a non-empty list of golf.Entry, got {entries!r:.60}")
    for i, e in enumerate(entries):
        if not isinstance(e, Entry):
            raise TypeError(f"entries[{i}] must be a golf.Entry, got {type(e).__name__}")
    return sorted((e for e in entries if e.bytes <= budget), key=lambda e: (e.bits_per_char, e.bytes))
