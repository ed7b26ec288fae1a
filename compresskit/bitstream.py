"""Bit streams for ``compresskit.encode``: Huffman's algorithm and canonical codes, and the code streams a packed
tensor is made of (fixed width, or canonical Huffman with its table), written and read back with every length,
table and count checked before anything is allocated.

A *stream* is ``coding u8`` (0 fixed width, 1 canonical Huffman), then for fixed width ``width u8`` and the codes
packed MSB first, for Huffman ``alphabet size u16``, one code length u8 per symbol of the alphabet (0: unused; the
canonical code follows from the lengths), then ``bit count u32`` and the bits.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections import Counter

import numpy as np

from compresskit.checks import check_int, checked

__all__ = ["FIXED", "HUFFMAN", "MAX_CODE_LENGTH", "code_lengths", "canonical_code", "Writer", "pack_bits",
           "write_stream", "Reader", "read_stream"]

FIXED, HUFFMAN = 0, 1
MAX_CODE_LENGTH = 32


@checked
def code_lengths(counts: dict) -> dict:
    """Huffman's algorithm: merge the two lightest subtrees until one is left; a symbol's depth is its code length.
    Ties are broken by the order of first creation, so the lengths are deterministic."""
    _check_table("counts", counts, 1)
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    depth = dict.fromkeys(counts, 0)
    tick = len(heap)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        for s in a + b:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, tick, a + b))
        tick += 1
    return depth


@checked
def canonical_code(lengths: dict) -> dict:
    """Codes from lengths: symbols in (length, symbol) order take consecutive binary numbers, shifted left whenever
    the length grows. Prefix-free whenever sum 2^-length <= 1 (Kraft)."""
    _check_table("lengths", lengths, 1, MAX_CODE_LENGTH)
    code, previous, out = 0, 0, {}
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        out[symbol] = format(code, f"0{length}b")
        code, previous = code + 1, length
    return out


def _check_table(name: str, table: dict, low: int, high: int | None = None) -> None:
    """A dict from symbols to ints in [low, high] (counts, or code lengths)."""
    for symbol, value in table.items():
        check_int(f"{name}[{symbol!r}]", value, low, high)


# ------------------------------------------------------------------------------------------------ bit streams


class Writer:
    def __init__(self):
        self.parts: list[bytes] = []

    def put(self, fmt: str, *values) -> None:
        self.parts.append(struct.pack("<" + fmt, *values))

    def raw(self, data: bytes) -> None:
        self.parts.append(data)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


@checked
def pack_bits(bits: str) -> bytes:
    if bits.strip("01"):
        raise ValueError(f"bits must be a string of 0s and 1s, got {bits[:40]!r}")
    if not bits:
        return b""
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big")


@checked
def write_stream(symbols: list[int], alphabet: int, huffman: bool) -> bytes:
    """One code stream: fixed width (ceil(log2(alphabet)) bits a code), or with ``huffman`` the smaller of that and
    canonical Huffman with its table (on a short stream the table can cost more than it saves)."""
    check_int("alphabet", alphabet, 1, 2**16 - 1)
    for i, s in enumerate(symbols):
        check_int(f"symbols[{i}]", s, 0, alphabet - 1)
    if huffman:
        return min(write_stream(symbols, alphabet, False), _huffman_stream(symbols, alphabet), key=len)
    out = Writer()
    width = max(1, math.ceil(math.log2(alphabet))) if alphabet > 1 else 1
    out.put("BB", FIXED, width)
    out.raw(pack_bits("".join(format(s, f"0{width}b") for s in symbols)))
    return out.bytes()


def _huffman_stream(symbols: list[int], alphabet: int) -> bytes:
    out = Writer()
    out.put("B", HUFFMAN)
    lengths = code_lengths(dict(Counter(symbols))) if symbols else {}
    codes = canonical_code(lengths)
    out.put("H", alphabet)  # then one code length a symbol of the alphabet, 0 for the unused ones
    out.raw(bytes(lengths.get(s, 0) for s in range(alphabet)))
    bits = "".join(codes[s] for s in symbols)
    out.put("I", len(bits))
    out.raw(pack_bits(bits))
    return out.bytes()


class Reader:
    """Bounds-checked reads from the blob: nothing is read or allocated past what is there."""

    @checked
    def __init__(self, data: bytes, where: str = "blob"):
        self.data, self.pos, self.where = data, 0, where

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"{self.where} is truncated: {what} needs {n} bytes at offset {self.pos}, only "
                             f"{len(self.data) - self.pos} remain")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def get(self, fmt: str, what: str):
        values = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))
        return values if len(values) > 1 else values[0]


@checked
def read_stream(r: Reader, count: int, alphabet: int, what: str) -> list[int]:
    """Exactly ``count`` codes, each < ``alphabet``, from a stream; every table and length checked first."""
    check_int("count", count, 0)
    check_int("alphabet", alphabet, 1, 2**16 - 1)
    coding = r.get("B", f"{what} coding")
    if coding == FIXED:
        width = r.get("B", f"{what} width")
        if not 1 <= width <= 16:
            raise ValueError(f"{r.where}: {what} has a code width of {width} bits (allowed 1-16)")
        data = r.take(math.ceil(count * width / 8), f"{what} codes")
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
        codes = (bits.astype(np.int64) << np.arange(width - 1, -1, -1)).sum(axis=1).tolist() if count else []
    elif coding == HUFFMAN:
        codes = _read_huffman(r, count, alphabet, what)
    else:
        raise ValueError(f"{r.where}: {what} has an unknown coding {coding} (0 fixed width, 1 Huffman)")
    if codes and max(codes) >= alphabet:
        raise ValueError(f"{r.where}: {what} holds code {max(codes)}, outside its alphabet of {alphabet}")
    return codes


def _read_huffman(r: Reader, count: int, alphabet: int, what: str) -> list[int]:
    size = r.get("H", f"{what} alphabet size")
    if size != alphabet:
        raise ValueError(f"{r.where}: {what}'s Huffman table covers {size} symbols, its alphabet has {alphabet}")
    table = r.take(size, f"{what} code lengths")
    n_bits = r.get("I", f"{what} bit count")
    data = r.take(math.ceil(n_bits / 8), f"{what} bits")
    lengths = {s: length for s, length in enumerate(table) if length}
    if count == 0:
        return []
    if not lengths:
        raise ValueError(f"{r.where}: {what} must hold {count} codes but its Huffman table is empty")
    if max(lengths.values()) > MAX_CODE_LENGTH:
        raise ValueError(f"{r.where}: {what}'s Huffman table has code lengths above {MAX_CODE_LENGTH}")
    if sum(2.0 ** -length for length in lengths.values()) > 1.0:
        raise ValueError(f"{r.where}: {what}'s Huffman table is not prefix-free (its code lengths break Kraft's "
                         "inequality: sum 2^-length > 1)")
    if n_bits < count * min(lengths.values()):
        raise ValueError(f"{r.where}: {what} has {n_bits} bits, too few for {count} codes")
    # canonical decoding: for each length, the first code and the symbols that have it
    order = sorted(lengths, key=lambda s: (lengths[s], s))
    first, start, by_length = {}, {}, {}
    code, previous = 0, 0
    for i, s in enumerate(order):
        length = lengths[s]
        code <<= length - previous
        if length not in first:
            first[length], start[length], by_length[length] = code, i, 0
        by_length[length] += 1
        code, previous = code + 1, length
    longest = max(lengths.values())
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n_bits]
    padded = np.concatenate([bits, np.zeros(longest, dtype=np.uint8)]).astype(np.int64)
    windows = (np.lib.stride_tricks.sliding_window_view(padded, longest)[:n_bits]
               @ (1 << np.arange(longest - 1, -1, -1, dtype=np.int64))).tolist()
    steps = [(length, longest - length, first[length], by_length[length], start[length]) for length in sorted(first)]
    out, pos = [], 0
    for _ in range(count):
        if pos >= n_bits:
            raise ValueError(f"{r.where}: {what} ends after {len(out)} of {count} codes")
        window = windows[pos]
        for length, shift, first_code, n, offset in steps:
            index = (window >> shift) - first_code
            if 0 <= index < n:
                out.append(order[offset + index])
                pos += length
                break
        else:
            raise ValueError(f"{r.where}: {what} holds a bit pattern that is no code of its Huffman table")
    if pos > n_bits:
        raise ValueError(f"{r.where}: {what}'s last code runs past its {n_bits} bits")
    return out
