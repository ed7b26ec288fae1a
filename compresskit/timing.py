"""Timing and its statistics: how the workbook measures milliseconds and decides whether one model is faster.

``latency`` is one model's median time; ``compare`` times several models **interleaved**, round by round, and returns
a ``SpeedComparison`` whose verdicts rest on the 95 % confidence interval of the median per-round speed-up
(``median_interval``), widened by the drift between runs and placed against a 15 % resolution. ``SparseCSR`` and
``sparse_matmul_timings`` measure what a sparse kernel does with a pruned model's zeros.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from compresskit.checks import (
    check_batch,
    check_fields,
    check_fractions,
    check_int,
    check_module,
    check_named,
    check_number,
    check_seed,
    check_threads,
    checked,
)
from compresskit.layers import effective_weight, eval_mode
from compresskit.prune import magnitude_mask

__all__ = ["Timing", "latency", "median_interval", "SpeedComparison", "compare", "sparse_matmul_timings", "SparseCSR"]


@dataclass(frozen=True)
class Timing:
    """A measured latency: the median over ``repeats`` timed calls after warm-up, on ``threads`` threads."""

    ms: float
    threads: int
    repeats: int
    q1_ms: float
    q3_ms: float

    def __post_init__(self):
        check_fields(self, ms=(0.0, None), threads=(1, None), repeats=(1, None), q1_ms=(0.0, None),
                     q3_ms=(0.0, None))

    def __float__(self) -> float:
        return self.ms

    def __str__(self) -> str:
        return (f"{self.ms:.3f} ms (median of {self.repeats}, IQR {self.q1_ms:.3f}-{self.q3_ms:.3f}, "
                f"{self.threads} thread(s))")


@contextmanager
def _timing_conditions(models, threads: int):
    """Threads pinned to ``threads`` and modules in eval mode inside the block; both restored after it (each
    submodule's own mode, ``layers.eval_mode``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with eval_mode(*[m for m in models if isinstance(m, nn.Module)]):
            yield
    finally:
        torch.set_num_threads(before)


def _checked_call_args(callables: dict, example_input, warmup, threads: int) -> tuple:
    """The checks every timing shares (each callable by its label, the input, warm-up, threads); returns the call's
    arguments."""
    for label, m in callables.items():
        if not callable(m):
            raise TypeError(f"{label} must be an nn.Module or a callable, got {type(m).__name__} {m!r:.40}")
    if example_input is not None:
        check_batch("example_input", example_input)
    check_int("warmup", warmup, 0)
    check_threads(threads)
    return () if example_input is None else (example_input,)


@checked
@torch.inference_mode()
def latency(
    model: nn.Module | Callable, example_input: torch.Tensor | None, *, repeats: int = 50, warmup: int = 10,
    threads: int = 1,
) -> Timing:
    """Median wall-clock time of ``model(example_input)`` (``model()`` when the input is None), in ms, threads pinned.

    One thread by default: the figure then compares models, not how busy the other core was. The previous
    thread setting is restored afterwards. ``threads`` may not exceed the machine's cores (``checks.check_threads``).
    """
    args = _checked_call_args({"model": model}, example_input, warmup, threads)
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



@checked
def median_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the median of ``values``: ``(low, high, coverage)``.

    From order statistics: with the n values sorted, the median lies between the k-th smallest and the k-th largest
    unless k or fewer of the n values fall on one side of it; each value falls below the median with probability 1/2,
    so that happens with probability ``2 P(B <= k - 1)``, B ~ Binomial(n, 1/2). ``k`` is the largest with
    ``coverage = 1 - 2 P(B <= k - 1) >= confidence``: the interval narrows as n grows (about as 1/sqrt(n)) however
    skewed the values are. Below 6 values no interval reaches 95 %: the smallest and largest value are returned with
    the coverage they have (n = 5: 93.75 %).
    """
    values = list(values)
    for i, v in enumerate(values):
        check_number(f"values[{i}]", v)
    ordered = sorted(values)
    n = len(ordered)
    if n < 2:
        raise ValueError(f"values must hold at least 2 numbers, got {n}: {values!r:.60}")
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

    def __post_init__(self):
        check_fields(self, threads=(1, None), drift=(0.0, 1.0))
        check_number("SpeedComparison.resolution", self.resolution, 0.0, 1.0, low_open=True, high_open=True)
        check_number("SpeedComparison.confidence", self.confidence, 0.0, 1.0, low_open=True, high_open=True)
        check_named("SpeedComparison.times_ms", self.times_ms, list)
        if self.reference not in self.times_ms:
            raise ValueError(f"SpeedComparison.reference must name one of {list(self.times_ms)}, got "
                             f"{self.reference!r}")

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


@checked
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
    args = _checked_call_args({f"models['{name}']": m for name, m in models.items()}, example_input, warmup, threads)
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


# ---------------------------------------------------------------------------------------------- sparse kernels


@checked
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
    check_int("size", size, 1, 8192)
    check_int("batch", batch, 1, 8192)
    check_seed(seed)
    check_threads(threads)
    sparsities = check_fractions("sparsities", list(sparsities) if hasattr(sparsities, "__iter__") and
                                 not isinstance(sparsities, (str, bytes, dict)) else sparsities)
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


class SparseCSR(nn.Module):
    """An ``nn.Sequential`` MLP whose Linear layers multiply with ``torch.sparse`` CSR weights: the runtime that can
    skip a pruned model's zeros (the dense kernel multiplies them)."""

    @checked
    def __init__(self, model: nn.Sequential):
        super().__init__()
        check_module("model", model)
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
        self.steps: list = []
        for layer in model:
            if isinstance(layer, nn.Linear):
                with warnings.catch_warnings():  # "sparse CSR support is in beta": the point of the measurement
                    warnings.simplefilter("ignore", UserWarning)
                    w = effective_weight(layer).detach().to_sparse_csr()
                bias = layer.bias.detach() if layer.bias is not None else None
                self.steps.append((w, bias))
            elif isinstance(layer, (nn.ReLU, nn.Flatten)):
                self.steps.append(layer)
            else:
                raise TypeError(f"SparseCSR runs Linear, ReLU and Flatten layers, not {type(layer).__name__}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            if isinstance(step, tuple):
                w, bias = step
                x = (w @ x.T).T
                x = x + bias if bias is not None else x
            else:
                x = step(x)
        return x
