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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from compresskit.checks import (
    check_bool,
    check_fields,
    check_int,
    check_module,
    check_number,
    check_tensor,
    checked,
    dataset_tensors,
)
from compresskit.data import TEXT_VOCAB, Split, decode_text, encode_text
from compresskit.layers import GATES, effective_weight, eval_mode, is_compressible, named_tensors, transformer_linears
from compresskit.models import KVCache, TransformerLM
from compresskit.timing import latency
from compresskit.train import evaluate

__all__ = ["count_params", "count_nonzero", "Format", "relative_index_entries", "FORMATS", "tensor_bits",
           "storage_bytes", "macs", "Record", "measure", "torch_file_bytes", "LMScore", "perplexity", "Fidelity",
           "fidelity", "sample_text", "sparse_lm_bytes"]

# ---------------------------------------------------------------------------------------------- tensors


def _parameters(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    names = {n.removesuffix("_orig") for n, _ in model.named_parameters(remove_duplicate=False)}
    return ((n, t) for n, t in named_tensors(model) if n in names)


@checked
def count_params(model: nn.Module) -> int:
    """Number of parameters (masks of pruned modules are not parameters and are not counted)."""
    check_module("model", model)
    return sum(t.numel() for _, t in _parameters(model))


@checked
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


@checked
def relative_index_entries(w: torch.Tensor, index_bits: int) -> int:
    """Entries stored by Deep Compression's relative indexing (Han et al. 2016, section 3).

    Nonzeros are stored in flattened order with the *gap* (zeros skipped since the previous stored entry) in
    ``index_bits`` bits. A gap larger than ``2**index_bits - 1`` is bridged by a filler entry (a stored zero),
    which costs a value and an index like any other.
    """
    check_int("index_bits", index_bits, 1, 64)
    if w.dim() == 0:
        raise ValueError("w must have at least one dimension to be stored in a sparse layout, got a 0-d tensor")
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


def _two_four_bits(w: torch.Tensor, value_bits: int, index_bits: int) -> int:
    """2:4 semi-structured, as a sparse tensor core reads it: of every 4 consecutive entries of a row, 2 values and
    their 2-bit positions, whether or not they are zero: n / 2 * (value_bits + 2). (``index_bits`` does not apply.)"""
    if w.shape[-1] % 4:
        raise ValueError(f"the 2:4 format needs rows whose length is a multiple of 4, got shape {tuple(w.shape)}")
    reshaped = w.reshape(-1, 4)
    if int((reshaped != 0).sum(dim=1).max()) > 2:
        raise ValueError("the 2:4 format holds at most 2 nonzeros in every 4 consecutive entries of a row")
    return w.numel() // 2 * (value_bits + 2)


FORMATS: dict[str, Format] = {
    "dense": _dense_bits,
    "2:4": _two_four_bits,
    "bitmask": _bitmask_bits,
    "csr": _csr_bits,
    "relative": _relative_bits,
}
"""Storage formats by name: how a compressible tensor's values and positions are written."""


@checked
def tensor_bits(
    w: torch.Tensor, *, format: str = "dense", value_bits: int = 32, index_bits: int = 32, codebook_bits: int = 0
) -> int:
    """Bits one compressible tensor takes in ``format``, plus ``codebook_bits`` (shared-weight tables)."""
    check_tensor("w", w, floating=False, finite=False)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {format!r}")
    if format != "dense" and w.dim() == 0:
        raise ValueError(f"w must have at least one dimension to be stored in the {format!r} format, got a 0-d tensor")
    check_int("value_bits", value_bits, 1, 64)
    check_int("index_bits", index_bits, 1, 64)
    check_int("codebook_bits", codebook_bits, 0)
    return FORMATS[format](w.detach(), value_bits, index_bits) + codebook_bits


@checked
def storage_bytes(
    model: nn.Module,
    *,
    format: str = "dense",
    value_bits: int | dict[str, int] | None = None,
    index_bits: int = 32,
    codebook_bits: int | Callable[[str, torch.Tensor], int] = 0,
) -> int:
    """Bytes a real file of ``model`` takes: values, index overhead of the format, codebooks; no pickling.

    Args:
        format: how compressible tensors store their entries (``FORMATS``): ``"dense"`` stores all of them.
        value_bits: bits per stored value of a compressible tensor (fewer after quantization); None (default): the
            tensor's own element size (32 for float32, 64 for float64, 16 for bfloat16); a ``{tensor name: bits}``
            dict prices each named tensor at its own width (bits per layer) and the others at their element size.
        index_bits: bits per stored index, for sparse formats.
        codebook_bits: bits of a per-tensor table (e.g. k-means centroids), an int for every compressible
            tensor or a function ``(name, tensor) -> bits``.
    Every other tensor (biases, BatchNorm) is priced dense at its own dtype's width. Each tensor is rounded
    up to whole bytes, as it would be in a file.
    """
    check_module("model", model)
    if not callable(codebook_bits):
        check_int("codebook_bits", codebook_bits, 0)
    widths = value_bits if isinstance(value_bits, dict) else {}
    for name, bits in widths.items():
        check_int(f"value_bits[{name!r}]", bits, 1, 64)
    if value_bits is not None and not isinstance(value_bits, dict):
        check_int("value_bits", value_bits, 1, 64)
    tensors = list(named_tensors(model))
    compressible = [name for name, t in tensors if is_compressible(t)]
    unknown = [name for name in widths if name not in compressible]
    if unknown:
        raise ValueError(f"value_bits names {unknown}, which are no compressible tensors of the model; they are "
                         f"{compressible[:8]}{' ...' if len(compressible) > 8 else ''}")
    total_bits = 0
    for name, t in tensors:
        if is_compressible(t):
            extra = codebook_bits(name, t) if callable(codebook_bits) else codebook_bits
            own = widths.get(name) if widths else value_bits
            bits = tensor_bits(t, format=format, value_bits=own or t.element_size() * 8, index_bits=index_bits,
                               codebook_bits=extra)
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


@checked
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
    try:
        with eval_mode(model):  # every submodule's own mode comes back
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return total[0]


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

    def __post_init__(self):
        check_fields(self, accuracy=(0.0, 1.0), latency_ms=(0.0, None))

    @property
    def kb(self) -> float:
        return self.bytes / 1024


@checked
def measure(
    model: nn.Module,
    dataset: Dataset | Split,
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
    x, _ = dataset_tensors(dataset)
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


@checked
def torch_file_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the float32 file a learner would ship from PyTorch."""
    check_module("model", model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes




# ---------------------------------------------------------------------------------------------- language models


@dataclass(frozen=True)
class LMScore:
    """A language model's loss on held-out text: ``nll`` nats per token (mean over ``tokens`` predicted tokens), read
    in windows of ``context`` tokens moved by ``stride``."""

    nll: float
    tokens: int
    context: int
    stride: int

    def __post_init__(self):
        check_fields(self, tokens=(1, None), context=(1, None), stride=(1, None), nll=(0.0, None))

    @property
    def perplexity(self) -> float:
        """``exp(nll)``: the number of equally likely characters the model is, on average, choosing between."""
        return math.exp(self.nll)

    @property
    def bits_per_char(self) -> float:
        """``nll / ln 2``: bits per character, what an ideal coder driven by the model would need."""
        return self.nll / math.log(2)

    def __str__(self) -> str:
        return (f"perplexity {self.perplexity:.3f} ({self.bits_per_char:.3f} bits per character, {self.tokens:,} "
                f"tokens, context {self.context}, stride {self.stride})")


@checked
@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, *, context: int | None = None, stride: int | None = None,
               batch_size: int = 64) -> LMScore:
    """Perplexity and bits per character of a next-token model (``(B, T) ids -> (B, T, vocab) logits``) on ``ids``.

    ``ids`` 1-d, a text: windows of ``context`` tokens (default: the model's ``context``) start every ``stride``
    tokens (default ``context``: windows that do not overlap). The first window scores all its predictions; each later
    one only its last ``stride``, the tokens no earlier window predicted, so every scored token is predicted once, with
    at least ``context - stride`` tokens before it (except in the first window). Tokens after the last whole window are
    not scored. A smaller stride gives each prediction more context (a lower perplexity) and costs ``context /
    stride`` times the compute: compare two models only at the same context and stride.

    ``ids`` 2-d, windows ``(N, context + 1)`` (e.g. ``weightonly.calibration_windows``): every prediction of every
    window is scored (``context`` and ``stride`` must not be given).
    """
    check_module("model", model)
    windows, context, stride, first_all = _windows(model, ids, context, stride, batch_size)
    total, count = 0.0, 0
    with eval_mode(model):
        for i, chunk in _chunks(model, windows, batch_size):
            logits = model(chunk[:, :-1])  # (b, context, vocab)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")
            keep = _scored(nll, i, first_all, stride)
            if not bool(torch.isfinite(keep).all()):
                raise ValueError("the model's loss is not finite on this text (NaN or inf weights or logits?)")
            total += float(keep.double().sum())
            count += keep.numel()
    return LMScore(total / count, count, context, stride)


def _windows(model: nn.Module, ids, context, stride, batch_size) -> tuple[torch.Tensor, int, int, bool]:
    """The windows ``(N, context + 1)`` a score reads, their context and stride, and whether the first window scores
    every prediction (a text) or each window all of its own (windows given)."""
    if not isinstance(ids, torch.Tensor) or ids.dim() not in (1, 2) or ids.dtype != torch.int64:
        raise TypeError("ids must be a 1-d int64 tensor of token ids (a text) or a 2-d one (windows)")
    model_context = getattr(model, "context", None)
    check_int("batch_size", batch_size, 1)
    if ids.dim() == 2:
        if context is not None or stride is not None:
            raise ValueError("context and stride are set by the windows' width when ids is 2-d")
        context = ids.shape[1] - 1
        check_int("the windows' width - 1", context, 1, model_context)
        return ids, context, context, False
    context = model_context if context is None else context
    if context is None:
        raise ValueError("context must be given for a model without a `context` attribute")
    check_int("context", context, 1, model_context)
    stride = context if stride is None else stride
    check_int("stride", stride, 1, context)
    if len(ids) < context + 1:
        raise ValueError(f"ids holds {len(ids)} tokens: the text must hold at least context + 1 = {context + 1}")
    starts = torch.arange(0, len(ids) - context, stride)
    return ids[starts[:, None] + torch.arange(context + 1)], context, stride, True


def _chunks(model: nn.Module, windows: torch.Tensor, batch_size: int):
    """(first row's index, batch of windows on the model's device)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for i in range(0, len(windows), batch_size):
        yield i, windows[i:i + batch_size].to(device)


def _scored(values: torch.Tensor, i: int, first_all: bool, stride: int) -> torch.Tensor:
    """The per-position ``values`` ``(b, context, ...)`` of the predictions scored: all of the text's first window,
    the last ``stride`` of every other window."""
    if first_all and i == 0:
        return torch.cat([values[:1].flatten(0, 1), values[1:, -stride:].flatten(0, 1)])
    return values[:, -stride:].flatten(0, 1)


@dataclass(frozen=True)
class Fidelity:
    """How far a compressed language model's next-token distributions are from the original's on the same tokens
    (llama.cpp's KL-divergence statistics): KL(p_reference || p_model) per token in nats (mean, median, 99th and
    99.9th percentile), the fraction of tokens whose most likely next token both models agree on, and
    ln(PPL_model / PPL_reference)."""

    kl_mean: float
    kl_median: float
    kl_p99: float
    kl_p999: float
    top1: float
    log_ppl_ratio: float
    tokens: int

    def __post_init__(self):
        check_fields(self, kl_mean=(0.0, None), kl_median=(0.0, None), kl_p99=(0.0, None), kl_p999=(0.0, None),
                     top1=(0.0, 1.0), tokens=(1, None))

    def __str__(self) -> str:
        return (f"KL mean {self.kl_mean:.4f} (median {self.kl_median:.4f}, 99.9 % {self.kl_p999:.3f}) nats, top-1 "
                f"agreement {self.top1:.2%}, ln(PPL ratio) {self.log_ppl_ratio:+.4f} over {self.tokens:,} tokens")


_REFERENCE: list = []  # (key, log-probabilities): the last reference scored, reused while nothing in its key changes


def _reference_log_probs(reference: nn.Module, windows: torch.Tensor, batch_size: int, first_all: bool,
                         stride: int) -> list[torch.Tensor]:
    """The reference model's scored float64 log-softmaxes, chunk by chunk. A chapter compares many compressed models
    with one reference on one text: the last reference's are kept and reused while its key holds: the same module,
    submodules, every tensor they hold the same at the same in-place version, the same windows."""
    modules = list(reference.modules())  # their tensors: parameters, buffers and plain attributes (a head mask)
    tensors = [t for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False),
                                            *(v for v in vars(m).values() if isinstance(v, torch.Tensor)))]
    key = (tuple(map(id, modules)), tuple((t.data_ptr(), t._version) for t in tensors), windows.shape,
           hash(windows.cpu().numpy().tobytes()), batch_size, first_all, stride)
    if _REFERENCE and _REFERENCE[0][0] == key:
        return _REFERENCE[0][1]
    found = [_scored(torch.log_softmax(reference(chunk[:, :-1]).double(), -1), i, first_all, stride)
             for i, chunk in _chunks(reference, windows, batch_size)]
    _REFERENCE[:] = [(key, found)]
    return found


@checked
@torch.no_grad()
def fidelity(reference: nn.Module, model: nn.Module, ids: torch.Tensor, *, context: int | None = None,
             stride: int | None = None, batch_size: int = 64) -> Fidelity:
    """``model`` (compressed) against ``reference`` (the original) on the tokens ``perplexity`` scores with the same
    ``context`` and ``stride``: per-token KL(p_reference || p_model) from float64 log-softmaxes, top-1 agreement, and
    the log perplexity ratio. A perplexity can stay put while single tokens change a lot; the KL tail says so."""
    windows, context, stride, first_all = _windows(reference, ids, context, stride, batch_size)
    kls, agree, nll_ref, nll_model = [], 0, 0.0, 0.0
    with eval_mode(reference, model):  # (the reference's log-probabilities: computed once for many models)
        references = _reference_log_probs(reference, windows, batch_size, first_all, stride)
        for (i, chunk), log_p in zip(_chunks(reference, windows, batch_size), references):
            targets = _scored(chunk[:, 1:, None], i, first_all, stride).squeeze(-1)
            log_q = _scored(torch.log_softmax(model(chunk[:, :-1]).double(), -1), i, first_all, stride)
            if not (bool(torch.isfinite(log_p).all()) and bool(torch.isfinite(log_q).all())):
                raise ValueError("a model's logits are not finite on this text (NaN or inf weights?)")
            kls.append((log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0))
            agree += int((log_p.argmax(-1) == log_q.argmax(-1)).sum())
            nll_ref -= float(log_p.gather(-1, targets[:, None]).sum())
            nll_model -= float(log_q.gather(-1, targets[:, None]).sum())
    kl = torch.cat(kls)
    q = torch.quantile(kl, torch.tensor([0.5, 0.99, 0.999], dtype=kl.dtype)).tolist()
    n = len(kl)
    return Fidelity(float(kl.mean()), q[0], q[1], q[2], agree / n, (nll_model - nll_ref) / n, n)


@checked
@torch.no_grad()
def sample_text(model: nn.Module, prompt: str, length: int = 200, *, seed: int = 0, temperature: float = 0.8) -> str:
    """``length`` characters the model writes after ``prompt``, drawn from its softmax at ``temperature`` with a
    private generator seeded by ``seed``: the same model, prompt and seed always give the same text, so two models'
    samples differ only where their predictions do. Returns the new characters only."""
    check_module("model", model)
    check_int("length", length, 1, 100_000)
    check_int("seed", seed, 0, 2**63 - 1)
    check_number("temperature", temperature, 0, low_open=True)
    idx = encode_text(prompt)
    if idx.numel() == 0:
        raise ValueError(f"prompt must hold at least one character, got {prompt!r}")
    context = getattr(model, "context", len(idx) + length)
    gen = torch.Generator().manual_seed(seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = idx.tolist()
    incremental = isinstance(model, TransformerLM) and not any(  # a KV cache: each step computes the new position
        getattr(m, "kv_quant", None) is not None for m in model.modules())  # only (a quantized one is simulated)
    cache, fed = KVCache(), 0  # the tokens of ``out`` the cache has seen
    with eval_mode(model):
        for _ in range(length):
            if incremental and len(out) <= context:
                logits = model(torch.tensor(out[fed:], device=device)[None], cache)[0, -1].float().cpu()
                fed = len(out)
            else:  # past the context the window slides: every position moves, so the window is recomputed
                window = torch.tensor(out[-context:], device=device)[None]
                logits = model(window)[0, -1].float().cpu()
            if logits.shape[0] != len(TEXT_VOCAB) or not bool(torch.isfinite(logits).all()):
                raise ValueError("the model's logits must be finite, one per character of data.TEXT_VOCAB")
            probs = torch.softmax(logits / temperature, dim=0)
            out.append(int(torch.multinomial(probs, 1, generator=gen)))
    return decode_text(out[len(idx):])


@checked
def sparse_lm_bytes(model: nn.Module, *, format: str = "bitmask", value_bits: int = 32) -> int:
    """Bytes of a file of a pruned transformer: the linear layers of its blocks (``layers.transformer_linears``) in
    ``format`` (``metrics.FORMATS``: ``"bitmask"`` a presence bit per entry and the kept values, ``"2:4"`` two values
    and their 2-bit positions per 4 entries, ``"dense"`` every entry), everything else (embeddings, biases,
    LayerNorms, the head) dense at its dtype's size; each tensor rounded up to whole bytes."""
    linears = {id(m.weight_orig if hasattr(m, "weight_orig") else m.weight): m
               for m in transformer_linears(model).values()}
    total = 0
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if id(p) in linears and name in ("weight", "weight_orig"):
                w = effective_weight(module).detach()
                total += -(-tensor_bits(w, format=format, value_bits=value_bits) // 8)
            else:
                total += p.numel() * p.element_size()
    return total
