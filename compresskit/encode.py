"""Real bytes (编码): a compressed model written to a small binary format of our own, and read back safely.

``pack(model)`` stores every tensor of the model as it is: a weight with few distinct values (k-means or uniformly
quantized) as a *codebook* plus one code per weight; a pruned weight in Deep Compression's sparse layout (the gap
before each kept weight instead of its position); both code streams Huffman-coded (Han et al., "Deep Compression",
ICLR 2016, sections 3 and 4). ``unpack(blob, like=model)`` rebuilds the model bit for bit. Nothing is pickled.

Format, version 1 (all integers little-endian)::

    magic  b"CKPK"  | version u8 | tensor count u32
    per tensor:  name length u16, name (UTF-8) | dtype u8 | ndim u8, shape u32 x ndim
                 encoding u8 | payload length u32 | payload
    crc32 u32 of everything before it

Encodings and their payloads (``n`` = number of entries, values in the tensor's own dtype, so bit-exact):

    0 RAW      the n values
    1 SHARED   codebook size k u16, k values | value stream (n codes)
    2 SPARSE   gap bits b u8, entries m u32 | gap stream (m gaps) | the kept values, raw
    3 SPARSE_SHARED  codebook size k u16, k values | gap bits b u8, entries m u32 | gap stream | value stream
    4 ROW_SHARED     per row (first dimension): size k_r u16, k_r values | value stream (n codes, row by row)
                     (per-channel quantization: each row has its own scale, so its own few values)

A *stream* is ``coding u8`` (0 fixed width, 1 canonical Huffman), then for fixed width ``width u8`` and the codes
packed MSB first, for Huffman ``alphabet size u16``, one code length u8 per symbol of the alphabet (0: unused; the
canonical code follows from the lengths), then ``bit count u32`` and the bits.

Sparse layout: positions in flattened order; each entry's gap (zeros skipped since the previous entry) is
< ``2^b - 1``; a gap field of ``2^b - 1`` is a *filler*: it skips ``2^b - 1`` zeros and stores nothing, for
longer runs, and has no code in the value stream (Deep Compression's filler stores a zero value, which
``metrics.relative_index_entries`` counts: here it costs only its gap field).

Reading checks every length and count against the bytes that are there and against ``like``'s own tensors before
anything is allocated; a wrong magic, a newer version, a checksum, a size or a Huffman table that cannot be right is
a ``ValueError`` that says what is wrong.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import Counter
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compresskit.bitstream import Reader, Writer, canonical_code, code_lengths, read_stream, write_stream
from compresskit.checks import check_bool, check_finite, check_int, check_module, checked
from compresskit.layers import copy_model, is_compressible, named_tensors, require_sites, sites

__all__ = ["MAGIC", "FORMAT_VERSION", "RAW", "SHARED", "SPARSE", "SPARSE_SHARED", "ROW_SHARED", "ENCODINGS",
           "MAX_CODEBOOK", "DTYPES", "DTYPE_CODES", "huffman_code", "pack", "describe", "unpack", "framing_bytes",
           "pack_two_four", "unpack_two_four"]

MAGIC = b"CKPK"
FORMAT_VERSION = 1
RAW, SHARED, SPARSE, SPARSE_SHARED, ROW_SHARED = 0, 1, 2, 3, 4
ENCODINGS = {RAW: "raw", SHARED: "shared", SPARSE: "sparse", SPARSE_SHARED: "sparse shared", ROW_SHARED: "row shared"}
MAX_CODEBOOK = 256  # a tensor with more distinct values is stored raw (or sparse raw)
DTYPES = {0: torch.float32, 1: torch.float64, 2: torch.float16, 3: torch.bfloat16, 4: torch.int64, 5: torch.int32,
          6: torch.uint8, 7: torch.bool}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}


# ------------------------------------------------------------------------------------------------ Huffman


def huffman_code(counts) -> dict:
    """Canonical Huffman code: ``{symbol: code}`` with codes as strings of '0'/'1'; prefix-free, of optimal expected
    length (H <= L < H + 1 against the entropy H of the counts). A single symbol gets the code '0'.

    Args:
        counts: ``{symbol: count}`` with counts > 0, or an iterable of symbols (a list, a tensor) to be counted.
            Symbols must be mutually comparable (canonical codes are assigned in symbol order).
    """
    counts = _counts(counts)
    return canonical_code(code_lengths(counts))


def _counts(counts) -> dict:
    if isinstance(counts, torch.Tensor):
        counts = counts.flatten().tolist()
    if isinstance(counts, dict):
        for symbol, c in counts.items():
            if isinstance(c, bool) or not isinstance(c, int) or c <= 0:
                raise ValueError(f"counts must be ints > 0, got {c!r} for symbol {symbol!r}")
        counts = dict(counts)
    elif isinstance(counts, Iterable) and not isinstance(counts, (str, bytes)):
        counts = dict(Counter(counts))
    else:
        raise TypeError("counts must be a {symbol: count} dict or an iterable of symbols, got "
                        f"{type(counts).__name__}")
    if not counts:
        raise ValueError("counts is empty: there is nothing to code")
    return counts


# ------------------------------------------------------------------------------------------------ tensors


def _gaps(flat: torch.Tensor, gap_bits: int) -> tuple[list[int], list[int]]:
    """Sparse layout of a flattened tensor: (gap fields, positions of the kept entries), fillers included: a gap
    field of ``2^b - 1`` skips that many zeros and stores nothing (its position is -1); every other field g skips g
    zeros and stores the next entry."""
    escape = 2**gap_bits - 1
    fields, where, last = [], [], -1
    for p in torch.nonzero(flat).flatten().tolist():
        gap = p - last - 1
        while gap >= escape:
            fields.append(escape)
            where.append(-1)
            gap -= escape
        fields.append(gap)
        where.append(p)
        last = p
    return fields, where


def _encode_tensor(t: torch.Tensor, huffman: bool, gap_bits: int | None) -> tuple[int, bytes]:
    """The smallest encoding of one tensor: (encoding, payload)."""
    flat = t.detach().reshape(-1).cpu()
    candidates = [(RAW, _raw_bytes(flat))]
    if not (t.is_floating_point() and t.dim() >= 2):
        return candidates[0]
    distinct = torch.unique(flat)
    nonzero = distinct[distinct != 0]
    has_zeros = bool((flat == 0).any())
    if len(distinct) <= MAX_CODEBOOK:  # shared, dense
        codes = torch.searchsorted(distinct, flat).tolist()
        w = Writer()
        w.put("H", len(distinct))
        w.raw(_raw_bytes(distinct))
        w.raw(write_stream(codes, len(distinct), huffman))
        candidates.append((SHARED, w.bytes()))
    rows = flat.reshape(t.shape[0], -1)
    row_values = [torch.unique(row) for row in rows]
    if max(len(v) for v in row_values) <= MAX_CODEBOOK and t.shape[0] > 1:  # shared per row
        w = Writer()
        codes = []
        for values, row in zip(row_values, rows):
            w.put("H", len(values))
            w.raw(_raw_bytes(values))
            codes += torch.searchsorted(values, row).tolist()
        w.raw(write_stream(codes, max(len(v) for v in row_values), huffman))
        candidates.append((ROW_SHARED, w.bytes()))
    if has_zeros:
        for b in ([gap_bits] if gap_bits else range(2, 9)):
            fields, where = _gaps(flat, b)
            kept = [p for p in where if p >= 0]
            gap_stream = write_stream(fields, 2**b, huffman)
            w = Writer()
            w.put("BI", b, len(fields))
            w.raw(gap_stream)
            w.raw(_raw_bytes(flat[kept]))
            candidates.append((SPARSE, w.bytes()))
            if 0 < len(nonzero) <= MAX_CODEBOOK:
                index = {v: i for i, v in enumerate(nonzero.tolist())}
                values = flat.tolist()
                codes = [index[values[p]] for p in where if p >= 0]  # a filler stores nothing
                w = Writer()
                w.put("H", len(nonzero))
                w.raw(_raw_bytes(nonzero))
                w.put("BI", b, len(fields))
                w.raw(gap_stream)
                w.raw(write_stream(codes, len(nonzero), huffman))
                candidates.append((SPARSE_SHARED, w.bytes()))
    return min(candidates, key=lambda c: len(c[1]))


def _raw_bytes(t: torch.Tensor) -> bytes:
    t = t.contiguous().cpu()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def _from_raw(data: bytes, dtype: torch.dtype, count: int) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.frombuffer(data, dtype=np.int16, count=count).copy()).view(torch.bfloat16)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    return torch.from_numpy(np.frombuffer(data, dtype=np_dtype, count=count).copy())


def _decode_tensor(r: Reader, encoding: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    numel = math.prod(shape)
    item = torch.empty(0, dtype=dtype).element_size()
    if encoding == RAW:
        return _from_raw(r.take(numel * item, "raw values"), dtype, numel)
    if encoding == ROW_SHARED:
        if len(shape) < 2 or shape[0] == 0:
            raise ValueError(f"{r.where}: row-shared encoding needs a tensor with rows, got shape {shape}")
        per_row = numel // shape[0]
        books = []
        for i in range(shape[0]):
            k = r.get("H", f"row {i} codebook size")
            if not 1 <= k <= min(MAX_CODEBOOK, per_row):
                raise ValueError(f"{r.where}: row {i} has a codebook of {k} values for {per_row} entries")
            books.append(_from_raw(r.take(k * item, f"row {i} codebook"), dtype, k))
        codes = torch.tensor(read_stream(r, numel, max(len(b) for b in books), "value stream"),
                             dtype=torch.long).reshape(shape[0], per_row)
        out = torch.empty(shape[0], per_row, dtype=dtype)
        for i, book in enumerate(books):
            if per_row and int(codes[i].max()) >= len(book):
                raise ValueError(f"{r.where}: row {i} holds code {int(codes[i].max())} beyond its {len(book)} values")
            out[i] = book[codes[i]]
        return out.reshape(-1)
    if encoding not in (SHARED, SPARSE, SPARSE_SHARED):
        raise ValueError(f"{r.where}: unknown encoding {encoding} (known: {ENCODINGS})")
    codebook = None
    if encoding in (SHARED, SPARSE_SHARED):
        k = r.get("H", "codebook size")
        if not 1 <= k <= min(MAX_CODEBOOK, max(numel, 1)):
            raise ValueError(f"{r.where}: codebook of {k} values for a tensor of {numel} (allowed 1-{MAX_CODEBOOK})")
        codebook = _from_raw(r.take(k * item, "codebook"), dtype, k)
    if encoding == SHARED:
        return codebook[torch.tensor(read_stream(r, numel, len(codebook), "value stream"), dtype=torch.long)] \
            if numel else torch.empty(0, dtype=dtype)
    gap_bits, entries = r.get("BI", "sparse header")
    if not 1 <= gap_bits <= 16:
        raise ValueError(f"{r.where}: gap width of {gap_bits} bits (allowed 1-16)")
    if entries > numel:
        raise ValueError(f"{r.where}: {entries} sparse entries for a tensor of only {numel} positions")
    escape = 2**gap_bits - 1
    fields = read_stream(r, entries, 2**gap_bits, "gap stream")
    positions, pos = [], -1  # pos: the last position consumed
    for g in fields:
        pos += g if g == escape else g + 1
        if pos >= numel:
            raise ValueError(f"{r.where}: the gaps run past the tensor's {numel} positions")
        positions.append(pos if g != escape else -1)
    kept = [p for p in positions if p >= 0]
    out = torch.zeros(numel, dtype=dtype)
    if encoding == SPARSE:
        out[torch.tensor(kept, dtype=torch.long)] = _from_raw(r.take(len(kept) * item, "kept values"), dtype, len(kept))
        return out
    codes = read_stream(r, len(kept), len(codebook), "value stream")  # fillers have no code
    if kept:
        out[torch.tensor(kept, dtype=torch.long)] = codebook[torch.tensor(codes, dtype=torch.long)]
    return out


# ------------------------------------------------------------------------------------------------ models


def _tensors_of(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(named_tensors(model))


@checked
def pack(model: nn.Module, *, huffman: bool = True, gap_bits: int | None = None, bias_bits: int = 32) -> bytes:
    """The model's tensors as they are, in the format above: ``bytes`` of a file you could ship.

    Each weight matrix or kernel takes the smallest of: raw values; a codebook of its distinct values (when <= 256:
    a k-means or uniformly quantized weight) with a code per weight; the sparse layout (when it has zeros) with raw
    kept values or with codes. Every other tensor (biases, BatchNorm) is stored raw: in its own dtype with
    ``bias_bits=32`` (unpack gives it back bit for bit), or as float16 with ``bias_bits=16`` (half the bytes; unpack
    gives back the float16-rounded values, in the model's dtype).

    Args:
        huffman: Huffman-code the gap and value streams (Deep Compression's last stage); False stores fixed-width
            codes, priced as ``metrics.storage_bytes`` prices them.
        gap_bits: width b of a sparse layout's gap field (runs of 2^b - 1 or more zeros take fillers); None tries 2-8
            and keeps the smallest (the paper used 5 for fully connected layers, 8 for convolutions).
        bias_bits: 32 (each tensor's own dtype) or 16 (float16) for the tensors that are not weight matrices.
    """
    check_module("model", model)
    check_bool("huffman", huffman)
    if bias_bits not in (16, 32) or isinstance(bias_bits, bool):
        raise ValueError(f"bias_bits must be 16 or 32, got {bias_bits!r}")
    if gap_bits is not None:
        check_int("gap_bits", gap_bits, 1, 16)
    require_sites(model)
    out = Writer()
    tensors = _tensors_of(model)
    out.raw(MAGIC)
    out.put("BI", FORMAT_VERSION, len(tensors))
    for name, t in tensors:
        if bias_bits == 16 and t.is_floating_point() and not is_compressible(t):
            t = t.detach().to(torch.float16)
        if t.dtype not in DTYPE_CODES:
            raise ValueError(f"tensor '{name}' has dtype {t.dtype}, which the format does not store "
                             f"(it stores {sorted(str(d) for d in DTYPE_CODES)})")
        encoded = name.encode("utf-8")
        out.put("H", len(encoded))
        out.raw(encoded)
        out.put("BB", DTYPE_CODES[t.dtype], t.dim())
        for d in t.shape:
            out.put("I", d)
        encoding, payload = _encode_tensor(t, huffman, gap_bits) if is_compressible(t) else \
            (RAW, _raw_bytes(t.detach().reshape(-1)))
        out.put("BI", encoding, len(payload))
        out.raw(payload)
    body = out.bytes()
    return body + struct.pack("<I", zlib.crc32(body))


@checked
def describe(blob: bytes) -> list[dict]:
    """What a blob holds, tensor by tensor: name, shape, dtype, encoding, payload bytes, and where they apply the
    codebook size, the gap width and the number of sparse entries (no ``like`` needed; the header is checked as
    ``unpack`` checks it, payloads are not decoded)."""
    r, count = _open(blob)
    rows = []
    for _ in range(count):
        name, dtype, shape, encoding, payload = _record(r)
        row = {"name": name, "shape": shape, "dtype": dtype, "encoding": ENCODINGS.get(encoding, "?"),
               "bytes": len(payload), "codebook": None, "gap_bits": None, "entries": None}
        p = Reader(payload, where=f"tensor '{name}'")
        if encoding in (SHARED, SPARSE_SHARED):
            row["codebook"] = p.get("H", "codebook size")
            p.take(row["codebook"] * torch.empty(0, dtype=dtype).element_size(), "codebook")
        if encoding in (SPARSE, SPARSE_SHARED):
            row["gap_bits"], row["entries"] = p.get("BI", "sparse header")
        rows.append(row)
    return rows


def _open(blob) -> tuple[Reader, int]:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"blob must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < 4 or blob[:4] != MAGIC:
        raise ValueError(f"blob is not a compresskit file: it starts with {blob[:4]!r}, expected {MAGIC!r}")
    if len(blob) < 4 + 5 + 4:
        raise ValueError(f"blob is truncated: {len(blob)} bytes cannot hold the header and checksum")
    version = blob[4]
    if version > FORMAT_VERSION:
        raise ValueError(f"the blob was written in format version {version} by a newer compresskit; this one reads "
                         f"version {FORMAT_VERSION}")
    if version < 1:
        raise ValueError(f"format version {version} does not exist")
    body, (crc,) = blob[:-4], struct.unpack("<I", blob[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError("blob is corrupt: its CRC-32 checksum does not match (truncated or altered)")
    r = Reader(body)
    r.take(5, "magic and version")
    count = r.get("I", "tensor count")
    if count * 13 > len(body) - r.pos:  # a record takes at least 13 bytes
        raise ValueError(f"blob claims {count} tensors but has only {len(body) - r.pos} bytes for them")
    return r, count


def _record(r: Reader):
    name_length = r.get("H", "name length")
    try:
        name = r.take(name_length, "name").decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"a tensor name is not UTF-8: {err}") from err
    dtype_code, ndim = r.get("BB", f"'{name}' dtype and ndim")
    if dtype_code not in DTYPES:
        raise ValueError(f"tensor '{name}' has an unknown dtype code {dtype_code}")
    if ndim > 8:
        raise ValueError(f"tensor '{name}' claims {ndim} dimensions (at most 8)")
    shape = tuple(r.get("I", f"'{name}' shape") for _ in range(ndim))
    encoding, length = r.get("BI", f"'{name}' encoding and length")
    payload = r.take(length, f"'{name}' payload")
    return name, DTYPES[dtype_code], shape, encoding, payload


@checked
def unpack(blob: bytes, *, like: nn.Module) -> nn.Module:
    """A new model shaped like ``like`` whose tensors are the packed ones, bit for bit (``like`` is not changed).

    Pruning masks of ``like`` are not carried over: the result is a plain model whose zeros are ordinary weights,
    as a model loaded from a file is. Every tensor of ``like`` must be in the blob with the same shape and dtype.
    """
    check_module("like", like)
    r, count = _open(blob)
    target = copy_model(like)
    sites(target)  # refuses parametrized layers
    for module in target.modules():  # a plain model: masks made permanent
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    wanted = dict(_tensors_of(target))
    seen = set()
    decoded = {}
    for _ in range(count):
        name, dtype, shape, encoding, payload = _record(r)
        if name not in wanted:
            raise ValueError(f"blob holds a tensor '{name}' that the model given as like does not have")
        if name in seen:
            raise ValueError(f"blob holds tensor '{name}' twice")
        seen.add(name)
        mine = wanted[name]
        half_bias = dtype == torch.float16 and mine.is_floating_point() and not is_compressible(mine)
        if tuple(mine.shape) != shape or (mine.dtype != dtype and not half_bias):
            raise ValueError(f"tensor '{name}' is {shape} {dtype} in the blob but {tuple(mine.shape)} {mine.dtype} "
                             "in like")
        pr = Reader(payload, where=f"tensor '{name}'")
        values = _decode_tensor(pr, encoding, dtype, shape)
        if pr.pos != len(payload):
            raise ValueError(f"tensor '{name}': {len(payload) - pr.pos} bytes left over after its data")
        decoded[name] = values.reshape(shape)
    if r.pos != len(r.data):
        raise ValueError(f"blob has {len(r.data) - r.pos} bytes after its last tensor")
    missing = sorted(set(wanted) - seen)
    if missing:
        raise ValueError(f"blob lacks tensors of the model given as like: {missing}")
    with torch.no_grad():
        for name, values in decoded.items():
            wanted[name].copy_(values.to(device=wanted[name].device, dtype=wanted[name].dtype))
    return target


@checked
def framing_bytes(model: nn.Module) -> int:
    """Bytes of ``pack(model)`` that are not values, codes or codebooks: magic, version, count and checksum (13), and
    per tensor its name, dtype, shape, encoding and payload length (2 + len(name) + 2 + 4 ndim + 5). What
    ``metrics.storage_bytes`` does not count."""
    check_module("model", model)
    return 13 + sum(2 + len(name.encode("utf-8")) + 2 + 4 * t.dim() + 5 for name, t in _tensors_of(model))


# ------------------------------------------------------------------------------------------------ 2:4 layout


@checked
def pack_two_four(w: torch.Tensor) -> bytes:
    """A 2:4-sparse matrix (at most 2 nonzeros in every 4 consecutive entries of a row) in the layout a sparse tensor
    core reads: per group of 4, its 2 kept values (in ``w``'s dtype) and their 2-bit positions. Values first, then the
    positions packed four to a byte; ``len`` is ``metrics.tensor_bits(w, format="2:4", value_bits=...) / 8`` for an
    even number of groups. A group with fewer than 2 nonzeros keeps a zero in a free position."""
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[1] % 4 or not w.is_floating_point():
        raise ValueError(f"w must be a floating (rows, columns) matrix with columns a multiple of 4, got "
                         f"{getattr(w, 'shape', type(w).__name__)}")
    check_finite("w", w)
    groups = w.detach().cpu().reshape(-1, 4)
    if groups.numel() and int((groups != 0).sum(dim=1).max()) > 2:
        raise ValueError("w is not 2:4 sparse: a group of 4 consecutive entries holds more than 2 nonzeros")
    # the two positions of each group: its nonzeros first, then the lowest free positions (stable: ordered)
    order = torch.sort((groups == 0).to(torch.int8), dim=1, stable=True).indices[:, :2]
    positions = torch.sort(order, dim=1).values
    values = torch.gather(groups, 1, positions)
    codes = positions.reshape(-1).numpy().astype(np.uint8)
    codes = np.concatenate([codes, np.zeros((-len(codes)) % 4, dtype=np.uint8)]).reshape(-1, 4)
    packed = (codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6).astype(np.uint8)
    return _raw_bytes(values.reshape(-1)) + packed.tobytes()


@checked
def unpack_two_four(blob: bytes, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``pack_two_four`` read back into a dense ``shape`` matrix of ``dtype``, bit for bit; a blob of the wrong length
    is a ``ValueError``."""
    if dtype not in DTYPE_CODES or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype the format knows, got {dtype}")
    if len(shape) != 2 or any(not isinstance(d, int) or d < 1 for d in shape) or shape[1] % 4:
        raise ValueError(f"shape must be (rows, columns) with columns a multiple of 4, got {shape}")
    groups = shape[0] * shape[1] // 4
    value_bytes = 2 * groups * torch.empty((), dtype=dtype).element_size()
    if len(blob) != value_bytes + -(-2 * groups // 4):
        raise ValueError(f"blob holds {len(blob)} bytes{' (empty)' if not blob else ''}; "
                         f"a 2:4 matrix of shape {shape} takes "
                         f"{value_bytes + -(-2 * groups // 4)}")
    values = _from_raw(blob[:value_bytes], dtype, 2 * groups).reshape(groups, 2)
    packed = np.frombuffer(blob[value_bytes:], dtype=np.uint8)
    codes = np.stack([(packed >> s) & 3 for s in (0, 2, 4, 6)], axis=1).reshape(-1)[: 2 * groups]
    out = torch.zeros(groups, 4, dtype=dtype)
    out.scatter_(1, torch.from_numpy(codes.astype(np.int64)).reshape(groups, 2), values)
    return out.reshape(shape)
