"""Recovery after compression (chapter 12): a small low-rank correction of each layer's compression error, computed in
closed form from calibration inputs, as NNCF's and EoRA's "low-rank compensation" and SVD-LLM's truncation do.

A compressed layer computes ``Q x`` instead of ``W x``; its error on the calibration inputs ``X`` (``n x columns``)
is ``(W - Q) X^T``. The rank-``r`` matrix ``B A`` that makes ``||(W - Q - B A) X^T||_F`` smallest is not the SVD
of ``W - Q`` (that weighs every input direction alike) but a *whitened* one: with ``X^T X = S S^T`` (Cholesky),
``||M X^T||_F = ||M S||_F`` for any ``M``, so by Eckart-Young the best ``B A`` is the rank-``r`` truncation
``U_r Sigma_r V_r^T`` of ``(W - Q) S``, mapped back: ``B = U_r Sigma_r``, ``A = V_r^T S^{-1}``. Its error is the root
of the sum of the squared singular values of ``(W - Q) S`` beyond ``r``.

- ``lowrank_correction``: ``B, A`` for one layer.
- ``CorrectedLinear``: a compressed linear layer plus its correction, ``Q x + B (A x)``.
- ``correct_lm``: every linear of a ``models.TransformerLM``'s blocks corrected, each from its inputs in the float
  model; ``correction_bytes`` prices the factors (float16).
- ``tune_corrections``: the factors alone trained for a few steps against the reference's predictions (a LoRA-style
  fine-tune of the frozen compressed model, started from the closed form).
"""

from __future__ import annotations

import torch
from torch import nn

from compresskit.cache import keyed
from compresskit.checks import check_bool, check_int, check_module, check_number, check_tensor, checked
from compresskit.data import calibration_windows, check_ids, windows
from compresskit.layers import copy_model, effective_weight, eval_mode, transformer_linears
from compresskit.train import train

__all__ = ["FACTOR_BITS", "lowrank_correction", "CorrectedLinear", "correct_lm", "correction_bytes", "tune_corrections"]

FACTOR_BITS = 16  # the correction's factors are stored in float16


@checked
def lowrank_correction(w: torch.Tensor, q: torch.Tensor, x: torch.Tensor, rank: int, *,
                       damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """The rank-``rank`` correction ``B`` ``(rows, rank)``, ``A`` ``(rank, columns)`` that minimizes
    ``||(w - q - B A) x^T||_F`` over the calibration inputs ``x`` ``(n, columns)``: the whitened SVD of the module's
    docstring, in float64. ``damp``: ``damp * mean(diag(x^T x))`` is added to ``x^T x``'s diagonal so that ``S`` is
    invertible (input directions no token uses then get a small weight, not an infinite one). Returns float32."""
    for name, t in (("w", w), ("q", q), ("x", x)):
        check_tensor(name, t)
        if t.dim() != 2 or not t.numel():
            raise ValueError(f"{name} must be a non-empty 2-d tensor, got shape {tuple(t.shape)}")
    if q.shape != w.shape or x.shape[1] != w.shape[1]:
        raise ValueError(f"q must have w's shape {tuple(w.shape)} and x {w.shape[1]} columns, got q "
                         f"{tuple(q.shape)} and x {tuple(x.shape)}")
    check_int("rank", rank, 1, min(w.shape))
    check_number("damp", damp, 0.0, 1.0)
    e = (w.detach().double() - q.detach().double())
    g = x.detach().double().T @ x.detach().double()
    g += (damp * torch.mean(torch.diagonal(g)) + 1e-12) * torch.eye(len(g), dtype=g.dtype)
    s = torch.linalg.cholesky(g)  # g = s s^T, s lower triangular
    u, sigma, vh = torch.linalg.svd(e @ s, full_matrices=False)
    b = u[:, :rank] * sigma[:rank]
    a = torch.linalg.solve_triangular(s.T, vh[:rank].T, upper=True).T  # A = V_r^T S^-1: solve S^T A^T = V_r
    return b.float(), a.float()


class CorrectedLinear(nn.Module):
    """A compressed linear layer and its low-rank correction: ``layer(x) + (x A^T) B^T``. ``layer`` keeps its
    weight (pruned masks included); ``A`` ``(rank, in)`` and ``B`` ``(out, rank)`` are trainable parameters, so a
    short fine-tune of the corrections alone (a LoRA on a frozen compressed model) starts from the closed form."""

    @checked
    def __init__(self, layer: nn.Module, b: torch.Tensor, a: torch.Tensor):
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
        for name, t in (("b", b), ("a", a)):
            check_tensor(name, t)
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != layer.in_features or b.shape[0] != layer.out_features or \
                a.shape[0] != b.shape[1]:
            raise ValueError(f"a must be (rank, {layer.in_features}) and b ({layer.out_features}, rank), got a "
                             f"{tuple(a.shape)} and b {tuple(b.shape)}")
        super().__init__()
        self.layer = layer
        self.a = nn.Parameter(a.detach().clone())
        self.b = nn.Parameter(b.detach().clone())

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) + (x @ self.a.T) @ self.b.T


@torch.no_grad()
def _inputs(model: nn.Module, layers: dict[str, nn.Linear], batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer's inputs in one forward pass of ``model`` over ``batch`` (what ``layers.inputs_of`` gives one
    layer at a time), flattened to ``(tokens, in_features)``."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = [layer.register_forward_pre_hook(lambda module, args, name=name: seen[name].append(
        args[0].detach().float().reshape(-1, args[0].shape[-1]))) for name, layer in layers.items()]
    try:
        with eval_mode(model):
            for i in range(0, len(batch), 32):
                model(batch[i:i + 32])
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(rows) for name, rows in seen.items()}


def _parents(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    names = dict(model.named_modules())
    return {name: (names[name.rpartition(".")[0]], name.rpartition(".")[2]) for name in transformer_linears(model)}


@checked
@torch.no_grad()
def correct_lm(compressed: nn.Module, reference: nn.Module, rank: int, *, calibration: torch.Tensor,
               samples: int = 32, seed: int = 0, damp: float = 0.01, inplace: bool = False) -> nn.Module:
    """Every linear of ``compressed``'s blocks (``layers.transformer_linears``; quantized, pruned or both) replaced by
    a ``CorrectedLinear`` whose rank-``rank`` correction makes its outputs closest to ``reference``'s same layer on
    that layer's inputs in ``reference`` (``samples`` windows of ``calibration``, training text, at ``seed``'s
    offsets). The two models must have the same layers and shapes. A copy unless ``inplace``."""
    check_module("reference", reference)
    compressed_layers, reference_layers = transformer_linears(compressed), transformer_linears(reference)
    if {k: m.weight.shape for k, m in compressed_layers.items()} != \
            {k: m.weight.shape for k, m in reference_layers.items()}:
        raise ValueError("compressed and reference must have the same block linears with the same shapes")
    check_int("rank", rank, 1, min(min(m.weight.shape) for m in compressed_layers.values()))
    check_ids(calibration, "calibration")
    check_bool("inplace", inplace)
    calib = calibration_windows(calibration, reference.context, samples, seed=seed)
    target = compressed if inplace else copy_model(compressed)
    inputs = _inputs(reference, reference_layers, calib)
    for name, (parent, attr) in _parents(target).items():
        layer = getattr(parent, attr)
        b, a = lowrank_correction(reference_layers[name].weight, effective_weight(layer), inputs[name], rank,
                                  damp=damp)
        setattr(parent, attr, CorrectedLinear(layer, b, a))
    return target


@checked
def correction_bytes(model: nn.Module) -> int:
    """Bytes the corrections of a ``correct_lm`` model add to its file: ``rank * (in + out)`` float16 values per
    corrected layer (``FACTOR_BITS``)."""
    check_module("model", model)
    return sum(m.a.numel() + m.b.numel() for m in model.modules() if isinstance(m, CorrectedLinear)) * FACTOR_BITS // 8


@checked
def tune_corrections(corrected: nn.Module, reference: nn.Module, ids: torch.Tensor, *, steps: int = 64,
                     batch_size: int = 8, lr: float = 3e-4, seed: int = 0, progress: bool = True,
                     inplace: bool = False) -> nn.Module:
    """A short fine-tune of the corrections alone (a LoRA on the frozen compressed model, QLoRA-style): every
    ``CorrectedLinear``'s ``a`` and ``b`` trained with Adam for ``steps`` steps of ``batch_size`` windows of ``ids``
    (training text, consecutive windows from its start), every other parameter frozen. The objective is the mean
    per-token KL(reference || model): the corrections learn to predict what the reference predicts, not the text.
    Trained on the next characters instead, they move the model away from the reference while its perplexity falls
    (measured once on the shipped model, 3-bit groups of 128 with rank-8 corrections, 64 steps of 16 windows at
    1e-3, 4,096 test characters: mean KL 0.077 -> 0.286, perplexity 2.945 -> 2.888). Cached like every training
    (``compresskit.cache``). A copy unless ``inplace``."""
    check_module("reference", reference)
    check_int("steps", steps, 1)
    check_int("batch_size", batch_size, 1)
    check_number("lr", lr, 0.0, 1.0, low_open=True)
    check_bool("inplace", inplace)
    check_ids(ids, "ids")
    if not any(isinstance(m, CorrectedLinear) for m in corrected.modules()):
        raise ValueError("corrected has no CorrectedLinear: make one with correct_lm first")
    needed = steps * batch_size * reference.context + 1
    if len(ids) < needed:
        raise ValueError(f"ids holds {len(ids):,} tokens; {steps} steps of {batch_size} windows of "
                         f"{reference.context} need {needed:,}")
    target = corrected if inplace else copy_model(corrected)
    for module in target.modules():
        for name, p in module.named_parameters(recurse=False):
            p.requires_grad_(isinstance(module, CorrectedLinear) and name in ("a", "b"))

    def objective(model, x, _y):
        with torch.no_grad(), eval_mode(reference):
            wanted = torch.log_softmax(reference(x), -1)
        log_q = torch.log_softmax(model(x), -1)
        return (wanted.exp() * (wanted - log_q)).sum(-1).mean()

    keyed(objective, "tune_corrections", *(p.detach() for p in reference.parameters()))
    try:
        train(target, windows(ids[:needed], reference.context), epochs=1, lr=lr, batch_size=batch_size,
              objective=objective, seed=seed, progress=progress, desc="corrections")
    finally:
        for p in target.parameters():
            p.requires_grad_(True)
    return target
