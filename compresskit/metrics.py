"""Honest measurements: parameters, nonzeros, bytes a real file takes, MACs, and measured latency.

Parameter counts are what papers report; bytes and milliseconds are what a compressed model buys. This
module measures all of them so the chapters can show the gap.

``storage_bytes`` prices each tensor with a *format* (how its values and positions are stored). Weight
matrices and kernels ("compressible" tensors, ``dim >= 2``) use the format and bit width asked for;
biases, BatchNorm entries and other 1-d tensors stay dense float32, as every real format keeps them.
"""

from __future__ import annotations

import io
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from compresskit.checks import (
    check_bool,
    check_fraction,
    check_int,
    check_module,
    check_number,
    check_tensor,
    check_threads,
)
from compresskit.layers import GATES, effective_weight, pruning_hook
from compresskit.train import _tensors, evaluate

# ---------------------------------------------------------------------------------------------- tensors


def named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter and buffer as the model *uses* it.

    A module pruned with ``torch.nn.utils.prune`` holds ``weight_orig`` and ``weight_mask``; its effective
    weight (``orig * mask``, computed now: ``layers.effective_weight``) is what is yielded, under the name
    ``...weight``. A tensor shared by several modules (tied weights) is yielded once, as a file stores it once.
    """
    check_module("model", model)
    seen = set()
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if name.endswith("_orig") and pruning_hook(module, name[: -len("_orig")]) is not None:
                name = name[: -len("_orig")]
                p = effective_weight(module, name)
            yield prefix + name, p
        for name, b in module.named_buffers(recurse=False):
            if b is None or name.endswith("_mask"):
                continue
            yield prefix + name, b


def is_compressible(name: str, tensor: torch.Tensor) -> bool:
    """Weight matrices and kernels (``dim >= 2``): what pruning and quantization act on."""
    return tensor.dim() >= 2 and tensor.is_floating_point()


def _parameters(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    names = {n.removesuffix("_orig") for n, _ in model.named_parameters(remove_duplicate=False)}
    return ((n, t) for n, t in named_tensors(model) if n in names)


def count_params(model: nn.Module) -> int:
    """Number of parameters (masks of pruned modules are not parameters and are not counted)."""
    check_module("model", model)
    return sum(t.numel() for _, t in _parameters(model))


def count_nonzero(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero (after any pruning mask)."""
    check_module("model", model)
    return sum(int(torch.count_nonzero(t)) for _, t in _parameters(model))


# ---------------------------------------------------------------------------------------------- storage

# A format prices one compressible tensor in bits: f(w, value_bits, index_bits) -> int.
Format = Callable[[torch.Tensor, int, int], int]


def _dense_bits(w: torch.Tensor, value_bits: int, index_bits: int) -> int:
    """Every entry stored, zeros included: n * value_bits."""
    return w.numel() * value_bits


def _bitmask_bits(w: torch.Tensor, value_bits: int, index_bits: int) -> int:
    """One presence bit per entry, then the nonzero values: n + nnz * value_bits."""
    return w.numel() + int(torch.count_nonzero(w)) * value_bits


def _csr_bits(w: torch.Tensor, value_bits: int, index_bits: int) -> int:
    """Compressed sparse rows of the (out, -1) matrix: a value and a column index per nonzero, rows + 1 pointers.

    nnz * (value_bits + index_bits) + (rows + 1) * index_bits. With 32-bit indices every kept weight costs twice
    a float32, so below 50 % sparsity CSR is *bigger* than dense.
    """
    rows = w.shape[0]
    return int(torch.count_nonzero(w)) * (value_bits + index_bits) + (rows + 1) * index_bits


def relative_index_entries(w: torch.Tensor, index_bits: int) -> int:
    """Entries stored by Deep Compression's relative indexing (Han et al. 2016, section 3).

    Nonzeros are stored in flattened order with the *gap* (zeros skipped since the previous stored entry) in
    ``index_bits`` bits. A gap larger than ``2**index_bits - 1`` is bridged by a filler entry (a stored zero),
    which costs a value and an index like any other.
    """
    positions = torch.nonzero(w.reshape(-1)).flatten()
    if positions.numel() == 0:
        return 0
    gaps = torch.diff(positions, prepend=torch.tensor([-1], device=positions.device)) - 1  # zeros before each
    max_gap = 2**index_bits - 1
    fillers = torch.div(gaps, max_gap + 1, rounding_mode="floor")  # one filler per full span of max_gap + 1
    return positions.numel() + int(fillers.sum())


def _relative_bits(w: torch.Tensor, value_bits: int, index_bits: int) -> int:
    """Deep Compression's format: (value, gap) pairs plus fillers; index_bits = 5 (FC) or 8 (conv) in the paper."""
    return relative_index_entries(w, index_bits) * (value_bits + index_bits)


FORMATS: dict[str, Format] = {
    "dense": _dense_bits,
    "bitmask": _bitmask_bits,
    "csr": _csr_bits,
    "relative": _relative_bits,
}
"""Storage formats by name: how a compressible tensor's values and positions are written."""


def tensor_bits(
    w: torch.Tensor, *, format: str = "dense", value_bits: int = 32, index_bits: int = 32, codebook_bits: int = 0
) -> int:
    """Bits one compressible tensor takes in ``format``, plus ``codebook_bits`` (shared-weight tables)."""
    check_tensor("w", w, floating=False, finite=False)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {format!r}")
    check_int("value_bits", value_bits, 1, 64)
    check_int("index_bits", index_bits, 1, 64)
    check_int("codebook_bits", codebook_bits, 0)
    return FORMATS[format](w.detach(), value_bits, index_bits) + codebook_bits


def storage_bytes(
    model: nn.Module,
    *,
    format: str = "dense",
    value_bits: int = 32,
    index_bits: int = 32,
    codebook_bits: int | Callable[[str, torch.Tensor], int] = 0,
) -> int:
    """Bytes a real file of ``model`` takes: values, index overhead of the format, codebooks; no pickling.

    Args:
        format: how compressible tensors store their entries (``FORMATS``): ``"dense"`` stores all of them.
        value_bits: bits per stored value of a compressible tensor (32 = float32; fewer after quantization).
        index_bits: bits per stored index, for sparse formats.
        codebook_bits: bits of a per-tensor table (e.g. k-means centroids), an int for every compressible
            tensor or a function ``(name, tensor) -> bits``.
    Every other tensor (biases, BatchNorm) is priced dense at its own dtype's width. Each tensor is rounded
    up to whole bytes, as it would be in a file.
    """
    check_module("model", model)
    if not callable(codebook_bits):
        check_int("codebook_bits", codebook_bits, 0)
    total_bits = 0
    for name, t in named_tensors(model):
        if is_compressible(name, t):
            extra = codebook_bits(name, t) if callable(codebook_bits) else codebook_bits
            bits = tensor_bits(t, format=format, value_bits=value_bits, index_bits=index_bits, codebook_bits=extra)
        else:
            bits = t.numel() * t.element_size() * 8
        total_bits += math.ceil(bits / 8) * 8
    return total_bits // 8


# ---------------------------------------------------------------------------------------------- compute

def _linear_macs(m: nn.Linear, inp, out) -> int:
    return out.numel() // m.out_features * m.in_features * m.out_features


def _conv_macs(m: nn.Conv1d | nn.Conv2d, inp, out) -> int:
    return out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _rnn_macs(m: nn.RNNBase, inp, out) -> int:
    x = inp[0]
    batched = x.dim() == 3
    steps = x.shape[1 if m.batch_first else 0] if batched else x.shape[0]
    batch = x.shape[0 if m.batch_first else 1] if batched else 1
    dirs = 2 if m.bidirectional else 1
    per_step = 0
    for layer in range(m.num_layers):
        in_size = m.input_size if layer == 0 else m.hidden_size * dirs
        per_step += dirs * GATES[m.mode] * m.hidden_size * (in_size + m.hidden_size)
    return batch * steps * per_step


_MAC_RULES: list[tuple[type, Callable]] = [
    (nn.Linear, _linear_macs),
    ((nn.Conv1d, nn.Conv2d), _conv_macs),
    (nn.RNNBase, _rnn_macs),
]


@torch.no_grad()
def macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one sample of shape ``input_shape`` (no batch dim).

    Counted for Linear (in*out per row), Conv1d/2d (out elements * in/groups * kernel), and RNN/GRU/LSTM
    (steps * gates * hidden * (in + hidden) per layer and direction). Activations, pooling, BatchNorm and
    the element-wise gate arithmetic are left out: they are a few percent of the total here.
    Zeros in a pruned weight still count: a dense kernel multiplies them too.
    """
    check_module("model", model)
    if not isinstance(input_shape, (tuple, list)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dim, got {input_shape!r}")
    total = [0]

    def hook(rule):
        def fn(module, inp, out):
            total[0] += rule(module, inp, out[0] if isinstance(out, tuple) else out)
        return fn

    handles = []
    for module in model.modules():
        for kind, rule in _MAC_RULES:
            if isinstance(module, kind):
                handles.append(module.register_forward_hook(hook(rule)))
                break
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]


@dataclass(frozen=True)
class Timing:
    """A measured latency: the median over ``repeats`` timed calls after warm-up, on ``threads`` threads."""

    ms: float
    threads: int
    repeats: int
    q1_ms: float
    q3_ms: float

    def __float__(self) -> float:
        return self.ms

    def __str__(self) -> str:
        return (f"{self.ms:.3f} ms (median of {self.repeats}, IQR {self.q1_ms:.3f}-{self.q3_ms:.3f}, "
                f"{self.threads} thread(s))")


@contextmanager
def _timing_conditions(models, threads: int):
    """Threads pinned to ``threads`` and modules in eval mode inside the block; both restored after it."""
    modes = [(m, m.training) for m in models if isinstance(m, nn.Module)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for m, _ in modes:
            m.eval()
        yield
    finally:
        torch.set_num_threads(before)
        for m, mode in modes:
            m.train(mode)


def _timed_call(callables: dict, example_input, warmup, threads: int) -> tuple:
    """The checks every timing shares (each callable by its label, the input, warm-up, threads); returns the call's
    arguments."""
    for label, m in callables.items():
        if not callable(m):
            raise TypeError(f"{label} must be an nn.Module or a callable, got {type(m).__name__}")
    if example_input is not None:
        check_tensor("example_input", example_input, floating=False)
    check_int("warmup", warmup, 0)
    check_threads(threads)
    return () if example_input is None else (example_input,)


@torch.inference_mode()
def latency(
    model: nn.Module | Callable, example_input: torch.Tensor | None, *, repeats: int = 50, warmup: int = 10,
    threads: int = 1,
) -> Timing:
    """Median wall-clock time of ``model(example_input)`` (``model()`` when the input is None), in ms, threads pinned.

    One thread by default: the figure then compares models, not how busy the other core was. The previous
    thread setting is restored afterwards. ``threads`` may not exceed the machine's cores (``checks.check_threads``).
    """
    args = _timed_call({"model": model}, example_input, warmup, threads)
    check_int("repeats", repeats, 1)
    with _timing_conditions([model], threads):
        for _ in range(warmup):
            model(*args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(*args)
            times.append((time.perf_counter() - start) * 1e3)
    q = statistics.quantiles(times, n=4) if repeats > 1 else [times[0]] * 3
    return Timing(ms=statistics.median(times), threads=threads, repeats=repeats, q1_ms=q[0], q3_ms=q[2])


# ---------------------------------------------------------------------------------------------- records


@dataclass
class Record:
    """One model's measurements: what every chapter's accuracy-vs-size plot consumes."""

    name: str
    accuracy: float  # top-1 in [0, 1] on the test set
    params: int
    nonzeros: int
    bytes: int  # storage_bytes with the format / bits given to measure()
    macs: int
    latency_ms: float | None = None  # None when not measured (slider hot paths)
    group: str = ""  # legend entry: the technique family
    extra: dict = field(default_factory=dict)

    @property
    def kb(self) -> float:
        return self.bytes / 1024


def measure(
    model: nn.Module,
    dataset: Dataset,
    *,
    name: str = "",
    group: str = "",
    timed: bool = False,
    batch_size: int = 1,
    **storage,
) -> Record:
    """Accuracy, parameters, nonzeros, storage bytes, MACs and (if ``timed``) latency of ``model``.

    Args:
        dataset: the test set (a ``TensorDataset``), or a ``Split`` whose ``.test`` is used.
        timed: also measure latency on a batch of ``batch_size`` test inputs (slow-ish: leave off on sliders).
        **storage: passed to ``storage_bytes`` (``format``, ``value_bits``, ``index_bits``, ``codebook_bits``).
    """
    check_module("model", model)
    check_bool("timed", timed)
    check_int("batch_size", batch_size, 1)
    dataset = getattr(dataset, "test", dataset)
    x, _ = _tensors(dataset)
    return Record(
        name=name,
        group=group,
        accuracy=evaluate(model, dataset),
        params=count_params(model),
        nonzeros=count_nonzero(model),
        bytes=storage_bytes(model, **storage),
        macs=macs(model, tuple(x.shape[1:])),
        latency_ms=latency(model, x[:batch_size]).ms if timed else None,
    )


# ---------------------------------------------------------------------------------------------- files and kernels


def torch_file_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the float32 file a learner would ship from PyTorch."""
    check_module("model", model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def sparse_matmul_timings(
    size: int = 1024, batch: int = 64, sparsities: Iterable[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99), *,
    seed: int = 0, threads: int = 1,
) -> list[dict]:
    """Measured CPU time of ``W @ X`` with W (size x size) at each sparsity: dense kernel vs ``torch.sparse`` CSR/COO.

    The three kernels are timed **interleaved** at each sparsity (``compare``, reference: dense). Returns one
    ``{"sparsity", "dense_ms", "csr_ms", "coo_ms", "csr", "coo", "comparison"}`` per sparsity: medians over rounds,
    and for CSR and COO the verdict against dense ("1.8x faster (1.6-2.0)", "no measurable difference (...)").
    The dense kernel's time does not depend on how many entries are zero: zeros are multiplied like any number.
    """
    from compresskit.prune import magnitude_mask  # prune imports this module

    check_int("size", size, 1, 8192)
    check_int("batch", batch, 1, 8192)
    check_int("seed", seed)
    check_threads(threads)
    sparsities = list(sparsities)
    for i, s in enumerate(sparsities):
        check_fraction(f"sparsities[{i}]", s)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(size, size, generator=gen)
    x = torch.randn(size, batch, generator=gen)
    rows = []
    for s in sparsities:
        ws = w * magnitude_mask(w, sparsity=s)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and the point of the measurement
            warnings.simplefilter("ignore", UserWarning)
            csr, coo = ws.to_sparse_csr(), ws.to_sparse()
            result = compare({"dense": lambda ws=ws: ws @ x, "csr": lambda csr=csr: csr @ x,
                              "coo": lambda coo=coo: torch.sparse.mm(coo, x)}, None, threads=threads)
        rows.append({"sparsity": s, **{f"{k}_ms": result.median_ms(k) for k in ("dense", "csr", "coo")},
                     "csr": result.verdict("csr"), "coo": result.verdict("coo"), "comparison": result})
    return rows


# ---------------------------------------------------------------------------------------------- comparisons


def median_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the median of ``values``: ``(low, high, coverage)``.

    From order statistics: with the n values sorted, the median lies between the k-th smallest and the k-th largest
    unless k or fewer of the n values fall on one side of it; each value falls below the median with probability 1/2,
    so that happens with probability ``2 P(B <= k - 1)``, B ~ Binomial(n, 1/2). ``k`` is the largest with
    ``coverage = 1 - 2 P(B <= k - 1) >= confidence``: the interval narrows as n grows (about as 1/sqrt(n)) however
    skewed the values are. Below 6 values no interval reaches 95 %: the smallest and largest value are returned with
    the coverage they have (n = 5: 93.75 %).
    """
    ordered = sorted(values)
    n = len(ordered)
    if n < 2:
        raise ValueError(f"values must hold at least 2 numbers, got {n}")
    if not all(math.isfinite(v) for v in ordered):
        raise ValueError("values must be finite")
    check_number("confidence", confidence, 0.0, 1.0, low_open=True, high_open=True)
    outcomes = 2**n  # exact integers: 0.5**n underflows to 0 past n = 1074
    below, k = 1, 1  # below / outcomes = P(B <= k - 1)
    while k + 1 <= n // 2:
        nxt = below + math.comb(n, k)
        if 1 - 2 * nxt / outcomes < confidence:
            break
        below, k = nxt, k + 1
    return ordered[k - 1], ordered[n - k], 1 - 2 * below / outcomes


@dataclass(frozen=True)
class SpeedComparison:
    """Several models timed on the same input, interleaved round by round (``compare``).

    ``times_ms[name]`` holds one time per call for each round; ``speedup(name)`` is the reference's time over the
    model's, per round, as ``(median, low, high)`` with low-high the 95 % confidence interval of that median
    (``median_interval``), which narrows as rounds are added.
    """

    reference: str
    times_ms: dict[str, list[float]]
    threads: int
    # Speed-ups closer to 1 than this are not called a difference. Measured on the workbook's 2-core machine: models
    # that run identical computations (chapter 08's quantized models unpacked to float32, against the dense one)
    # come out up to 9 % apart in one run, and the same pair's speed-up moves by 5-10 % when the other core is busy.
    resolution: float = 0.15
    confidence: float = 0.95
    # What the rounds of one run cannot see: a pair's speed-up drifts with the machine's load from run to run. In the
    # workbook's stability checks (benchmarks/verdict_stability.py: every chapter idle and with the other core busy)
    # every verdict that contradicted itself came from a pair that moved by 1-3 % across the 15 % line. Verdicts widen
    # the interval by 3 % on each side, so such an effect reads "undecided" in both runs rather than "faster" in one
    # and "no measurable difference" in the other. (A wider allowance moves more effects into "undecided": at 5 %,
    # pairs at 1.2-1.25x started to flip between undecided and decided.)
    drift: float = 0.03

    @property
    def rounds(self) -> int:
        return len(self.times_ms[self.reference])

    def median_ms(self, name: str) -> float:
        return statistics.median(self.times_ms[name])

    def speedup(self, name: str, against: str | None = None) -> tuple[float, float, float]:
        """``(median, low, high)`` of the per-round speed-up of ``name`` over ``against`` (default: the reference),
        low-high the confidence interval of the median; both were timed in the same rounds, so any pair can be
        compared, not only against the reference."""
        against = self.reference if against is None else against
        for arg, value in (("name", name), ("against", against)):
            if value not in self.times_ms:
                raise ValueError(f"{arg} must be one of {list(self.times_ms)}, got {value!r}")
        ratios = [r / m for r, m in zip(self.times_ms[against], self.times_ms[name])]
        low, high, _ = median_interval(ratios, self.confidence)
        return statistics.median(ratios), low, high

    def kind(self, name: str, against: str | None = None) -> str:
        """"faster", "slower", "same" (no measurable difference), "undecided" or "reference": where the confidence
        interval of the median speed-up, widened by the run-to-run ``drift`` (``interval``), lies against the
        resolution band ``[1 / (1 + r), 1 + r]``. Beyond the band
        on one side: faster or slower; inside it: no measurable difference; reaching across one of its edges:
        undecided (the effect is about as large as the resolution, or the rounds vary too much to place it)."""
        if name == (self.reference if against is None else against):
            return "reference"
        return self._kind(*self.interval(name, against))

    def interval(self, name: str, against: str | None = None) -> tuple[float, float]:
        """The interval a verdict reads: the confidence interval of the median speed-up (``speedup``) widened by
        ``drift`` on each side, ``(low / (1 + drift), high * (1 + drift))``."""
        return self._widen(*self.speedup(name, against)[1:])

    def _widen(self, low: float, high: float) -> tuple[float, float]:
        return low / (1.0 + self.drift), high * (1.0 + self.drift)

    def _kind(self, low: float, high: float) -> str:
        edge = 1.0 + self.resolution
        if low >= edge:
            return "faster"
        if high <= 1.0 / edge:
            return "slower"
        if low > 1.0 / edge and high < edge:
            return "same"
        return "undecided"

    def verdict(self, name: str, against: str | None = None) -> str:
        """"1.8x faster (1.6-2.0)", "1.3x slower (1.2-1.4)", "no measurable difference (0.97-1.04)" or
        "undecided, 1.09x (1.04-1.16)" (``kind``), with the 95 % confidence interval of the median per-round
        speed-up, widened by the 3 % drift between runs (``interval``), in brackets. A difference is called only
        when that whole interval is beyond the 15 % resolution:
        two models that run the same kernels on equal shapes differ by a few percent from run to run on a shared CPU
        (memory placement, the other core), and the share of time the machine takes from each model shifts with its
        load; a difference of that size is not a property of the models and would flip between runs."""
        if name == (self.reference if against is None else against):
            return "reference"
        mid, low, high = self.speedup(name, against)  # one median and interval for the figure and the kind
        low, high = self._widen(low, high)
        kind = self._kind(low, high)
        if kind == "same":
            return f"no measurable difference ({low:.2f}-{high:.2f})"
        if kind == "undecided":
            return f"undecided, {mid:.2f}x ({low:.2f}-{high:.2f})"
        if kind == "faster":
            return f"{mid:.1f}x faster ({low:.1f}-{high:.1f})" if mid >= 1.95 else \
                f"{mid:.2f}x faster ({low:.2f}-{high:.2f})"
        return f"{1 / mid:.1f}x slower ({1 / high:.1f}-{1 / low:.1f})" if mid <= 0.51 else \
            f"{1 / mid:.2f}x slower ({1 / high:.2f}-{1 / low:.2f})"

    def __str__(self) -> str:
        width = max(len(n) for n in self.times_ms)
        lines = [f"{'model':{width}s} {'median ms':>10s}  against {self.reference} ({self.threads} thread(s), "
                 f"{self.rounds} interleaved rounds, {self.confidence:.0%} intervals)"]
        lines += [f"{n:{width}s} {self.median_ms(n):10.3f}  {self.verdict(n)}" for n in self.times_ms]
        return "\n".join(lines)


@torch.inference_mode()
def compare(models: dict, example_input: torch.Tensor | None, *, reference: str | None = None, rounds: int = 15,
            max_rounds: int | None = None, warmup: int = 5, threads: int = 1, block_ms: float = 2.0
            ) -> SpeedComparison:
    """Time several models on the same input, **interleaved**: each round times every model once (in an order that
    rotates from round to round), so a busy moment on the machine hits all of them, not one. Each model's time in a
    round is the mean over a block of calls long enough (``block_ms``) for the timer; the reference (default: the
    first model) is timed once per round like the others, never against itself. Threads are pinned and restored,
    modules run in eval mode (restored) under ``torch.inference_mode``.

    At least ``rounds`` rounds are timed; while any pair of models is still "undecided" (its interval reaches across
    an edge of the resolution band, ``SpeedComparison.kind``), rounds are added, up to ``max_rounds`` (default: four
    times ``rounds``). The interval narrows as rounds grow, so a pair left undecided after them all differs by
    about the resolution itself.
    """
    if not isinstance(models, dict) or len(models) < 2:
        raise TypeError("models must be a dict of at least two {name: model or callable} to compare")
    args = _timed_call({f"models['{name}']": m for name, m in models.items()}, example_input, warmup, threads)
    reference = next(iter(models)) if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference must be one of {list(models)}, got {reference!r}")
    check_int("rounds", rounds, 3, 10_000)
    max_rounds = 4 * rounds if max_rounds is None else max_rounds
    check_int("max_rounds", max_rounds, rounds, 10_000)
    if isinstance(block_ms, bool) or not isinstance(block_ms, (int, float)) or not 0 < block_ms <= 1000:
        raise ValueError(f"block_ms must be in (0, 1000], got {block_ms!r}")
    names = list(models)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    with _timing_conditions(list(models.values()), threads):
        calls = {}
        for name, m in models.items():  # warm up and size each block so that it lasts about block_ms
            start = time.perf_counter()
            for _ in range(max(warmup, 1)):
                m(*args)
            one = (time.perf_counter() - start) / max(warmup, 1) * 1e3
            calls[name] = max(1, math.ceil(block_ms / max(one, 1e-6)))
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(max_rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                m, n = models[name], calls[name]
                start = time.perf_counter()
                for _ in range(n):
                    m(*args)
                times[name].append((time.perf_counter() - start) * 1e3 / n)
            if r + 1 >= rounds:
                so_far = SpeedComparison(reference, times, threads)
                if all(so_far.kind(a, b) != "undecided" for a, b in pairs):
                    break
    return SpeedComparison(reference, times, threads)
