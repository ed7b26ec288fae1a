"""Datasets the workbook uses, read from local files only (no download, ever).

- ``load_digits``: the 8x8 handwritten digits shipped in ``data/digits.csv.gz``.
- ``load_idx`` / ``load_mnist``: MNIST-format IDX files that a user brings.
- ``as_sequences``: images as sequences of rows, for the recurrent-network chapter.
- ``load_text``: the text corpus of chapters 09-10 (Python source of CPython's standard library,
  ``data/pycode.txt.gz``), as token ids of ``TEXT_VOCAB``; ``windows`` cuts next-token training pairs from it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from compresskit.checks import (
    check_fields,
    check_int,
    check_number,
    check_path,
    check_seed,
    check_tensor,
    check_text,
    checked,
)

__all__ = ["DATA_DIR", "DIGITS_FILE", "DIGITS_SHA256", "TEXT_FILE", "TEXT_SHA256", "TEXT_VOCAB", "TEXT_BLOCK",
           "TEXT_CYCLE", "MNIST_VARIANTS", "Split", "MAX_SEED", "stratified_split", "verified_file", "read_digits",
           "load_digits", "load_idx", "MAX_IDX_BYTES", "load_mnist", "as_sequences", "TextSplit", "encode_text",
           "decode_text", "read_text", "load_text", "windows", "check_ids", "calibration_windows"]

DATA_DIR = Path(os.environ.get("COMPRESSKIT_DATA", Path(__file__).resolve().parent.parent / "data"))
DIGITS_FILE = "digits.csv.gz"
DIGITS_SHA256 = "e31b7ccbf8cc2b158de948b1bb7a67bf39a856fb064b3aa8ef489f12a2dc4b63"
TEXT_FILE = "pycode.txt.gz"
TEXT_SHA256 = "32c49aa763c88042677a05176b821612b4bb107d432f8d92e86b80c9fb23ceb1"
TEXT_VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
"""The text corpus's alphabet: newline and the 95 printable ASCII characters; a character's token is its index."""
TEXT_BLOCK = 2048  # the corpus is cut into blocks of this many characters; of every 20 consecutive blocks, the first
TEXT_CYCLE = 20  # 18 are training text, the 19th validation and the 20th test: 90 / 5 / 5 %, all files in all three

# IDX type codes (http://yann.lecun.com/exdb/mnist/ file format) -> numpy dtype (big-endian).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# file names of the MNIST family, as published: (train images, train labels, test images, test labels)
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_VARIANTS = ("mnist", "fashion")


@dataclass(frozen=True)
class Split:
    """A train/test pair of ``TensorDataset(images (N, 1, H, W) float32 in [0, 1], labels int64)``."""

    train: TensorDataset
    test: TensorDataset

    def __post_init__(self):
        check_fields(self)

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.train.tensors[1], self.test.tensors[1]]).max()) + 1


MAX_SEED = 2**64 - 1  # what torch.Generator.manual_seed accepts (non-negative)


def _check_split(test_fraction: float, seed: int) -> None:
    check_number("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    check_seed(seed)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@checked
def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test): from each class, ``round(test_fraction * n_class)`` go to test.

    Deterministic for a seed: one ``torch.Generator`` drives every shuffle.
    """
    _check_split(test_fraction, seed)
    check_tensor("labels", labels, floating=False)
    if labels.ndim != 1 or len(labels) == 0 or labels.dtype == torch.bool or labels.is_floating_point() \
            or labels.is_complex():
        raise ValueError(f"labels must be a non-empty 1-d tensor of integer class indices, got shape "
                         f"{tuple(labels.shape)} of dtype {labels.dtype}")
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got a minimum of {int(labels.min())}")
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = round(test_fraction * len(idx))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx, test_idx = torch.cat(train_idx), torch.cat(test_idx)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(f"test_fraction={test_fraction} leaves the {'test' if len(test_idx) == 0 else 'train'} part "
                         f"empty for {len(labels)} labels: choose a fraction that keeps at least one of each")
    # mix classes inside each part, so a plain slice of the dataset is not one digit only
    train_idx = train_idx[torch.randperm(len(train_idx), generator=gen)]
    test_idx = test_idx[torch.randperm(len(test_idx), generator=gen)]
    return train_idx, test_idx


def _split(images: torch.Tensor, labels: torch.Tensor, test_fraction: float, seed: int) -> Split:
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return Split(
        train=TensorDataset(images[train_idx], labels[train_idx]),
        test=TensorDataset(images[test_idx], labels[test_idx]),
    )


@checked
def verified_file(path, default: str, sha256: str, *, what: str, script: str, needs: str) -> Path:
    """The shipped file at ``path`` (default ``DATA_DIR / default``), refused unless its SHA-256 is the published one.

    Raises:
        FileNotFoundError: the file is missing (says how to restore it).
        ValueError: the file's SHA-256 is not the published one (corrupt, truncated or edited).
    """
    if path is not None:
        check_path("path", path)
    check_text("default", default, empty=False)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits (a SHA-256), got {sha256!r}")
    path = Path(path) if path is not None else DATA_DIR / default
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} file not found at {path}. It ships with the workbook in data/{default}: restore it with "
            f"`git checkout -- data/` (or regenerate with `python data/{script}`, which needs {needs}), or point "
            "COMPRESSKIT_DATA at the folder holding it."
        )
    digest = _sha256(path)
    if digest != sha256:
        raise ValueError(
            f"{path} is corrupt: SHA-256 {digest}, expected {sha256} (see data/README.md). "
            f"Restore it with `git checkout -- data/` or `python data/{script}`."
        )
    return path


@checked
def read_digits(path: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits: images ``(1797, 1, 8, 8)`` float32 in [0, 1], labels ``(1797,)`` int64.

    Raises:
        FileNotFoundError: the file is missing (says how to restore it).
        ValueError: the file's SHA-256 is not the published one (corrupt or edited).
    """
    path = verified_file(path, DIGITS_FILE, DIGITS_SHA256, what="digits data", script="make_digits.py",
                         needs="scikit-learn")
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :64]).float().div_(16.0).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(table[:, 64]).long()
    return images, labels


@checked
def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """The 8x8 handwritten digits (UCI optical digits), split stratified and deterministically for ``seed``.

    Args:
        seed: seeds the split only (not the models).
        test_fraction: share of each class held out for testing, in (0, 1).

    Returns:
        ``Split`` with ``train`` and ``test`` ``TensorDataset``s of images ``(N, 1, 8, 8)`` float32 in [0, 1]
        (pixel counts 0..16 divided by 16) and labels int64 in 0..9. With the defaults: 1438 train, 359 test.
    """
    _check_split(test_fraction, seed)
    images, labels = read_digits()
    return _split(images, labels, test_fraction, seed)


@checked
def load_idx(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> TensorDataset:
    """Read an MNIST-format pair of IDX files (plain, or gzip when the name ends in ``.gz``).

    Returns:
        ``TensorDataset(images (N, 1, H, W) float32 in [0, 1], labels (N,) int64)``; uint8 pixels are divided by 255.
    Raises:
        ValueError: a bad magic number, a size that does not match the header, or image/label counts that differ.
    """
    images = _read_idx(Path(images_path))
    labels = _read_idx(Path(labels_path))
    if images.ndim != 3:
        raise ValueError(f"images_path {images_path} holds a {images.ndim}-d array, expected 3-d (N, H, W)")
    if labels.ndim != 1:
        raise ValueError(f"labels_path {labels_path} holds a {labels.ndim}-d array, expected 1-d (N,)")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images in {images_path} but {len(labels)} labels in {labels_path}")
    if len(images) == 0:
        raise ValueError(f"{images_path} holds no images: an empty dataset")
    if labels.dtype.kind not in "iu" or int(labels.min()) < 0:
        raise ValueError(f"labels_path {labels_path} must hold integer class indices >= 0, got dtype {labels.dtype} "
                         f"with minimum {labels.min()}")
    if images.dtype != np.uint8:  # pixels of another type have no known range: never returned as if in [0, 1]
        raise ValueError(f"images_path {images_path} holds {images.dtype} pixels; images must be unsigned bytes "
                         "(IDX type 0x08), as in MNIST and Fashion-MNIST, so that dividing by 255 maps them to [0, 1]")
    x = torch.from_numpy(images.astype(np.float32)) / 255.0
    return TensorDataset(x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


MAX_IDX_BYTES = 2**30  # 1 GiB: MNIST's largest file holds 47 MB; a header promising more is refused before reading


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file, plain or gzip: the header is checked (magic, type, dimensions, a size that fits) before any
    data is read, and the data must be exactly as long as the header says; a truncated or corrupt gzip stream is
    a ValueError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            magic = fh.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES or magic[3] == 0:
                raise ValueError(f"{path} is not an IDX file (magic bytes {magic.hex()!r}, expected "
                                 "0000<type><ndim> with a known type and ndim >= 1)")
            dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
            dims = fh.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(f"{path} is truncated: its header promises {ndim} dimensions but ends first")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
            if expected > MAX_IDX_BYTES:
                raise ValueError(f"{path}: header promises shape {shape} ({expected:,} bytes), more than the "
                                 f"{MAX_IDX_BYTES:,} bytes compresskit reads from one IDX file")
            payload = fh.read(expected + 1)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} is corrupt or truncated: {err}") from err
    if len(payload) != expected:
        raise ValueError(f"{path}: header promises shape {shape} ({4 + 4 * ndim + expected} bytes) but the file has "
                         f"{4 + 4 * ndim + len(payload)}{'+' if len(payload) > expected else ''} bytes")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


@checked
def load_mnist(root: str | os.PathLike, variant: str = "mnist") -> Split:
    """MNIST or Fashion-MNIST from IDX files the user brings (the workbook never downloads).

    Args:
        root: a folder; the files are looked for in ``root/<variant>/`` and then ``root/``, plain or ``.gz``,
            under their published names (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``).
        variant: ``"mnist"`` or ``"fashion"``.
    Returns:
        ``Split`` with the published 60k/10k train/test partition, images ``(N, 1, 28, 28)``.
    """
    if variant not in MNIST_VARIANTS:
        raise ValueError(f"variant must be one of {MNIST_VARIANTS}, got {variant!r}")
    root = Path(root)
    for folder in (root / variant, root):
        paths = [_find(folder, name) for name in _MNIST_FILES]
        if all(paths):
            split = Split(train=load_idx(paths[0], paths[1]), test=load_idx(paths[2], paths[3]))
            for part, label_path in ((split.train, paths[1]), (split.test, paths[3])):
                if int(part.tensors[1].max()) > 9:
                    raise ValueError(f"{label_path}: {variant} labels must be in [0, 9], got "
                                     f"{int(part.tensors[1].max())}")
            return split
    missing = ", ".join(f"{n}[.gz]" for n in _MNIST_FILES)
    raise FileNotFoundError(
        f"{variant} IDX files not found under {root / variant} or {root}. The workbook does not download: copy "
        f"the four files ({missing}) there from wherever you obtained {variant}, gzip'd or not."
    )


@checked
def as_sequences(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W) -> (N, H, W)``: each image row becomes one time step of ``W`` features."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    return images[:, 0]


# ---------------------------------------------------------------------------------------------- text corpus


@dataclass(frozen=True)
class TextSplit:
    """The text corpus as token ids (int64, one per character of ``TEXT_VOCAB``): train / val / test (``load_text``)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def __post_init__(self):
        check_fields(self)
        for name in ("train", "val", "test"):
            ids = getattr(self, name)
            if ids.dtype != torch.int64 or ids.dim() != 1:
                raise ValueError(f"TextSplit.{name} must be a 1-d int64 tensor of token ids, got {ids.dtype} of "
                                 f"shape {tuple(ids.shape)}")

    @property
    def vocab_size(self) -> int:
        return len(TEXT_VOCAB)


_TOKEN = {c: i for i, c in enumerate(TEXT_VOCAB)}


@checked
def encode_text(text: str) -> torch.Tensor:
    """Characters -> token ids (int64). Refuses characters outside ``TEXT_VOCAB`` (a tab, a non-ASCII letter)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    try:
        return torch.tensor([_TOKEN[c] for c in text], dtype=torch.int64)
    except KeyError as error:
        raise ValueError(f"text holds {error.args[0]!r}, which is not in TEXT_VOCAB (newline and printable "
                         "ASCII)") from None


def decode_text(ids) -> str:
    """Token ids (a tensor or a sequence of ints in ``[0, len(TEXT_VOCAB))``) -> characters."""
    if not isinstance(ids, (torch.Tensor, list, tuple)):
        raise TypeError(f"ids must be a tensor or a list of token ids, got {type(ids).__name__} {ids!r:.60}")
    try:
        ids = torch.as_tensor(ids)
    except (RuntimeError, TypeError, ValueError, OverflowError):
        raise TypeError(f"ids must be a tensor or a list of token ids, got {ids!r:.60}") from None
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() != 1:
        raise ValueError(f"ids must be a 1-d sequence of integer token ids, got {ids.dtype} of shape "
                         f"{tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(TEXT_VOCAB)):
        raise ValueError(f"ids must lie in [0, {len(TEXT_VOCAB) - 1}], got {int(ids.min())}..{int(ids.max())}")
    return "".join(TEXT_VOCAB[i] for i in ids.tolist())


@checked
def read_text(path: str | os.PathLike | None = None) -> str:
    """The whole corpus (``data/pycode.txt.gz``: Python source of CPython's standard library, PSF licence),
    checksum verified."""
    path = verified_file(path, TEXT_FILE, TEXT_SHA256, what="text corpus", script="make_pycode.py",
                         needs="CPython 3.11.7")
    with gzip.open(path, "rb") as fh:
        return fh.read().decode("ascii")


def load_text() -> TextSplit:
    """The text corpus as token ids, split 90 / 5 / 5 % into train, validation and test by interleaved blocks: of
    every ``TEXT_CYCLE`` consecutive blocks of ``TEXT_BLOCK`` characters, the last is test, the one before it
    validation, the rest training text (each part's blocks concatenated in order). A contiguous split would make the
    test text the last few files of the corpus (one module's tables of locale names), not a sample of it.
    Deterministic: there is nothing random to seed."""
    ids = encode_text(read_text())
    part = torch.arange(len(ids)) // TEXT_BLOCK % TEXT_CYCLE
    return TextSplit(train=ids[part < TEXT_CYCLE - 2], val=ids[part == TEXT_CYCLE - 2],
                     test=ids[part == TEXT_CYCLE - 1])


@checked
def windows(ids: torch.Tensor, context: int, *, stride: int | None = None) -> TensorDataset:
    """Next-token training pairs from a token stream: ``x[i] = ids[o : o + context]``, ``y[i] = ids[o + 1 : o + context
    + 1]`` for offsets ``o = 0, stride, 2 * stride, ...`` (default ``stride = context``: windows that do not overlap).
    Returns a ``TensorDataset(x (N, context), y (N, context))`` of int64."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.int64:
        raise TypeError(f"ids must be a 1-d int64 tensor of token ids, got {type(ids).__name__}"
                        + (f" {ids.dtype} of shape {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else ""))
    check_int("context", context, 1)
    stride = context if stride is None else stride
    check_int("stride", stride, 1)
    if len(ids) < context + 1:
        raise ValueError(f"ids holds {len(ids)} tokens: a window of context {context} needs {context + 1}")
    starts = torch.arange(0, len(ids) - context, stride)
    span = starts[:, None] + torch.arange(context + 1)  # (N, context + 1)
    chunks = ids[span]
    return TensorDataset(chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous())


def check_ids(ids, name: str = "ids") -> None:
    """A text as token ids: a non-empty 1-d int64 tensor."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.int64 or not len(ids):
        raise TypeError(f"{name} must be a non-empty 1-d int64 tensor of token ids, got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)} of shape {tuple(getattr(ids, 'shape', ()))}")


@checked
def calibration_windows(ids: torch.Tensor, context: int, samples: int, *, seed: int = 0) -> torch.Tensor:
    """``samples`` windows of ``context`` tokens at random offsets of ``ids`` (a private generator seeded by ``seed``):
    ``(samples, context)``. Take them from the *training* text: calibrating on test text is a leak."""
    check_ids(ids)
    check_int("context", context, 1)
    check_int("samples", samples, 1, 100_000)
    check_seed(seed)
    if len(ids) < context + samples:
        raise ValueError(f"the calibration text holds {len(ids)} tokens: {samples} windows of {context} need at least "
                         f"{context + samples}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - context + 1, (samples,), generator=gen)
    return ids[starts[:, None] + torch.arange(context)]
