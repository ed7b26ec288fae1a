"""Low-rank factorization (低秩分解 / 张量分解): a big layer replaced by a chain of thinner ones.

- ``svd_linear``: W (out x in) ~= U_r S_r V_r^T, as Linear(in, r, no bias) then Linear(r, out). Truncated SVD is the
  best rank-r approximation in Frobenius norm (Eckart-Young): error = sqrt(sum of the dropped s_i^2). It saves
  parameters only when r < out * in / (out + in).
- ``tucker_conv``: Tucker-2 on the channel modes of a conv kernel (out, in, kh, kw) ~= core x_0 U_out x_1 U_in, as
  1x1 (in -> r_in), kh x kw (r_in -> r_out, the original stride / padding / dilation), 1x1 (r_out -> out, the bias).
  HOSVD initialisation, optionally refined by HOOI (Kim et al., ICLR 2016).
- ``cp_conv``: CP decomposition W ~= sum_r a_r o b_r o c_r o d_r by alternating least squares, as 1x1, depthwise
  kh x 1, depthwise 1 x kw, 1x1 (Lebedev et al., ICLR 2015).
- ``svd_rnn``: the same truncated SVD on an RNN / GRU / LSTM's stacked gate matrices W_ih (gates*hidden x in) and
  W_hh (gates*hidden x hidden), each chosen separately; the result is an ``rnn.UnrolledRNN`` whose maps are the
  factor pairs (one shared projection read by every gate).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compresskit.checks import (
    check_bool,
    check_finite,
    check_int,
    check_items,
    check_module,
    check_number,
    check_seed,
    check_sizes,
    check_tensor,
    checked,
)
from compresskit.layers import (
    copy_model,
    device_dtype,
    effective_weight,
    placed_like,
    replace_module,
    require_sites,
    stored_tensor,
)
from compresskit.rnn import UnrolledRNN

__all__ = ["rank_for_energy", "break_even_rank", "svd_linear", "svd_of", "tucker2", "tucker_rank_limits", "tucker_conv",
           "cp_rank_limit", "cp_als", "cp_reconstruct", "cp_conv", "svd_rnn", "low_rank"]


def _check_rank(name: str, rank, high: int) -> None:
    check_int(name, rank, 1, high)


def _check_energy(energy) -> None:
    check_number("energy", energy, 0.0, 1.0, low_open=True)


def _weight(layer: nn.Module) -> torch.Tensor:
    """The layer's effective weight (pruned entries 0), refused when non-finite."""
    w = effective_weight(layer).detach()
    check_finite("layer.weight", w)
    return w


def _check_kernel(w) -> None:
    """A 4-d convolution kernel (out, in, kh, kw) with entries, all finite."""
    check_tensor("w", w)
    if w.dim() != 4 or w.numel() == 0:
        raise ValueError(f"w must be a non-empty 4-d kernel (out, in, kh, kw), got shape {tuple(w.shape)}")


def cp_rank_limit(shape) -> int:
    """Largest useful CP rank of a tensor of ``shape``: the product of all its sizes but the largest (a rank-R CP
    with R beyond it has more factors than entries to fit; a 16x8x3x3 kernel stops at 8 * 3 * 3 = 72)."""
    shape = check_sizes("shape", tuple(shape) if isinstance(shape, torch.Size) else shape)
    return math.prod(shape) // max(shape)


@checked
def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep ``energy`` of sum s_i^2."""
    _check_energy(energy)
    check_tensor("singular_values", singular_values)
    if singular_values.dim() != 1 or len(singular_values) == 0 or bool((singular_values < 0).any()):
        raise ValueError(f"singular_values must be a non-empty 1-d tensor of values >= 0 (as torch.linalg.svd returns "
                         f"them), got shape {tuple(singular_values.shape)}")
    share = torch.cumsum(singular_values.double() ** 2, 0) / (singular_values.double() ** 2).sum()
    return min(int(torch.searchsorted(share, torch.tensor(energy - 1e-12, dtype=torch.float64))) + 1,
               len(singular_values))


@checked
def break_even_rank(out_features: int, in_features: int) -> float:
    """Ranks below out * in / (out + in) store fewer numbers than the dense out x in matrix."""
    check_int("out_features", out_features, 1)
    check_int("in_features", in_features, 1)
    return out_features * in_features / (out_features + in_features)


# ------------------------------------------------------------------------------------------------ SVD


@checked
def svd_linear(layer: nn.Linear, rank: int, *, svd: tuple | None = None) -> nn.Sequential:
    """``Sequential(Linear(in, rank, bias=False), Linear(rank, out))`` from the truncated SVD of ``layer.weight``.

    The singular values are split evenly (sqrt(S) into each factor) so both layers have similar scales for
    fine-tuning. ``layer`` is not changed. ``svd``: the layer's ``svd_of(layer)``, computed once when several ranks
    of one layer are wanted (every truncation is a slice of the same decomposition).
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    w = _weight(layer)
    _check_rank("rank", rank, min(w.shape))
    if svd is None:
        u, s, vh = svd_of(layer)
    else:
        if not (isinstance(svd, tuple) and len(svd) == 3 and all(isinstance(t, torch.Tensor) for t in svd)):
            raise TypeError(f"svd must be the (U, S, Vh) tuple that svd_of(layer) returns, got {type(svd).__name__}")
        u, s, vh = svd
        if u.shape[0] != w.shape[0] or vh.shape[1] != w.shape[1]:
            raise ValueError(f"svd is of a {u.shape[0]} x {vh.shape[1]} matrix, layer.weight is {tuple(w.shape)}")
    root = s[:rank].sqrt()
    first = nn.Linear(w.shape[1], rank, bias=False, **device_dtype(w))
    second = nn.Linear(rank, w.shape[0], bias=layer.bias is not None, **device_dtype(w))
    with torch.no_grad():
        first.weight.copy_((root[:, None] * vh[:rank]).to(w.dtype))
        second.weight.copy_((u[:, :rank] * root[None, :]).to(w.dtype))
        if layer.bias is not None:
            second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second).train(layer.training)


@checked
def svd_of(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.linalg.svd`` of the layer's effective weight in float64, thin: ``(U, S, Vh)``."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    return torch.linalg.svd(_weight(layer).double(), full_matrices=False)


# ------------------------------------------------------------------------------------------------ Tucker-2


def _leading(matrix: torch.Tensor, r: int) -> torch.Tensor:
    """The r leading left singular vectors of a matrix (columns)."""
    return torch.linalg.svd(matrix, full_matrices=False)[0][:, :r]


@checked
def tucker2(w: torch.Tensor, ranks: tuple[int, int], *, hooi_iters: int = 0):
    """Tucker-2 of a kernel w (out, in, kh, kw) on its channel modes: ``(core (r_out, r_in, kh, kw), U_out, U_in)``.

    HOSVD: U_out, U_in = leading left singular vectors of the mode-0 / mode-1 unfoldings; then ``hooi_iters`` rounds
    of HOOI, each mode re-fit with the other projected out (never worse than HOSVD).
    """
    _check_kernel(w)
    if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
        raise TypeError(f"ranks must be a pair (r_in, r_out), got {ranks!r}")
    r_in, r_out = ranks
    out_ch, in_ch, kh, kw = w.shape
    _check_rank("ranks[0] (r_in)", r_in, min(in_ch, out_ch * kh * kw))
    _check_rank("ranks[1] (r_out)", r_out, min(out_ch, in_ch * kh * kw))
    check_int("hooi_iters", hooi_iters, 0)
    w = w.double()
    u_out = _leading(w.reshape(out_ch, -1), r_out)
    u_in = _leading(w.transpose(0, 1).reshape(in_ch, -1), r_in)
    for _ in range(hooi_iters):
        u_out = _leading(torch.einsum("oihw,ir->orhw", w, u_in).reshape(out_ch, -1), r_out)
        u_in = _leading(torch.einsum("oihw,os->ishw", w, u_out).reshape(in_ch, -1), r_in)
    core = torch.einsum("oihw,os,ir->srhw", w, u_out, u_in)
    return core, u_out, u_in


def _check_conv(conv) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"conv must not be grouped (groups={conv.groups})")


@checked
def tucker_rank_limits(conv: nn.Conv2d) -> tuple[int, int]:
    """Largest useful (r_in, r_out): a mode's rank cannot exceed its size nor the product of the other sizes."""
    out_ch, in_ch, kh, kw = conv.weight.shape
    return min(in_ch, out_ch * kh * kw), min(out_ch, in_ch * kh * kw)


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    """Integer padding of a conv, 'valid' and 'same' (odd kernels) written out."""
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":
        if any(d * (k - 1) % 2 for k, d in zip(conv.kernel_size, conv.dilation)):
            raise ValueError("padding='same' with an even (dilated) kernel pads unevenly; use integer padding")
        return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
    return conv.padding


def _conv(in_ch, out_ch, kernel, *, like_w, bias=False, template=None, stride=1, padding=0, dilation=1, groups=1,
          padding_mode="zeros"):
    if template is not None:
        kw = {"stride": template.stride, "padding": template.padding, "dilation": template.dilation,
              "padding_mode": template.padding_mode}
    else:
        kw = {"stride": stride, "padding": padding, "dilation": dilation, "padding_mode": padding_mode}
    return nn.Conv2d(in_ch, out_ch, kernel, bias=bias, groups=groups, **kw, **device_dtype(like_w))


@checked
def tucker_conv(conv: nn.Conv2d, ranks: tuple[int, int], *, hooi_iters: int = 5) -> nn.Sequential:
    """``Sequential(1x1 in->r_in, kh x kw r_in->r_out, 1x1 r_out->out)`` from Tucker-2 of ``conv.weight``.

    ``ranks=(r_in, r_out)``; full ranks ``(in, out)`` reproduce the layer (up to rounding). A mode's rank is at most
    its size and the product of the other sizes (``tucker_rank_limits``: the 1 -> 16 first conv of ``lenet()`` has
    r_out <= 9).
    """
    _check_conv(conv)
    check_int("hooi_iters", hooi_iters, 0)
    if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
        raise TypeError(f"ranks must be a pair (r_in, r_out), got {ranks!r}")
    w = _weight(conv)
    out_ch, in_ch, kh, kwid = w.shape
    r_in, r_out = ranks
    max_in, max_out = tucker_rank_limits(conv)
    _check_rank("ranks[0] (r_in)", r_in, max_in)
    _check_rank("ranks[1] (r_out)", r_out, max_out)
    core, u_out, u_in = tucker2(w, (r_in, r_out), hooi_iters=hooi_iters)
    first = _conv(in_ch, r_in, 1, like_w=w)
    middle = _conv(r_in, r_out, (kh, kwid), template=conv, like_w=w)
    last = _conv(r_out, out_ch, 1, bias=conv.bias is not None, like_w=w)
    with torch.no_grad():
        first.weight.copy_(u_in.T.reshape(r_in, in_ch, 1, 1))
        middle.weight.copy_(core)
        last.weight.copy_(u_out.reshape(out_ch, r_out, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, middle, last).train(conv.training)


# ------------------------------------------------------------------------------------------------ CP


@checked
def cp_als(w: torch.Tensor, rank: int, *, iters: int = 100, seed: int = 0, tol: float = 1e-7):
    """CP decomposition of a 4-d tensor by alternating least squares: factors (A, B, C, D), each (dim, rank), with
    w[o, i, h, k] ~= sum_r A[o, r] B[i, r] C[h, r] D[k, r]. Each step solves one factor exactly given the others:
    A = MTTKRP_A (B^T B * C^T C * D^T D)^+."""
    _check_kernel(w)
    _check_rank("rank", rank, cp_rank_limit(w.shape))
    check_int("iters", iters, 1)
    check_seed(seed)
    check_number("tol", tol, 0.0)
    w = w.double()
    gen = torch.Generator().manual_seed(seed)
    factors = [torch.randn(d, rank, generator=gen, dtype=torch.float64) for d in w.shape]
    specs = ["oihk,ir,hr,kr->or", "oihk,or,hr,kr->ir", "oihk,or,ir,kr->hr", "oihk,or,ir,hr->kr"]
    previous = math.inf
    for _ in range(iters):
        for mode in range(4):
            others = [f for j, f in enumerate(factors) if j != mode]
            gram = others[0].T @ others[0] * (others[1].T @ others[1]) * (others[2].T @ others[2])
            factors[mode] = torch.einsum(specs[mode], w, *others) @ torch.linalg.pinv(gram)
        error = float(torch.linalg.norm(w - cp_reconstruct(factors)))
        if abs(previous - error) <= tol * float(torch.linalg.norm(w)):
            break
        previous = error
    return factors


def cp_reconstruct(factors) -> torch.Tensor:
    """sum_r A[:, r] o B[:, r] o C[:, r] o D[:, r]."""
    factors = check_items("factors", factors, torch.Tensor)
    if len(factors) != 4 or any(f.dim() != 2 or f.shape[1] != factors[0].shape[1] for f in factors):
        raise ValueError(f"factors must be 4 matrices (size, rank) of one rank, as cp_als returns them, got shapes "
                         f"{[tuple(f.shape) for f in factors]}")
    return torch.einsum("or,ir,hr,kr->oihk", *factors)


@checked
def cp_conv(conv: nn.Conv2d, rank: int, *, iters: int = 100, seed: int = 0) -> nn.Sequential:
    """``Sequential(1x1 in->R, depthwise kh x 1, depthwise 1 x kw, 1x1 R->out)`` from a rank-R CP of ``conv.weight``
    (Lebedev et al. 2015). Stride, padding, padding mode and dilation are split between the two depthwise
    convolutions: each pads only its own direction, and the copy-style modes (reflect, replicate, circular) copy
    whole rows or columns, which commutes with the other direction's convolution, so the result equals the full
    convolution with the CP kernel."""
    _check_conv(conv)
    _check_rank("rank", rank, cp_rank_limit(conv.weight.shape))
    check_int("iters", iters, 1)
    check_seed(seed)
    w = _weight(conv)
    out_ch, in_ch, kh, kwid = w.shape
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, _padding(conv), conv.dilation
    a, b, c, d = cp_als(w, rank, iters=iters, seed=seed)
    mode = conv.padding_mode
    first = _conv(in_ch, rank, 1, like_w=w)
    vertical = _conv(rank, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank,
                     padding_mode=mode, like_w=w)
    horizontal = _conv(rank, rank, (1, kwid), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank,
                       padding_mode=mode, like_w=w)
    last = _conv(rank, out_ch, 1, bias=conv.bias is not None, like_w=w)
    with torch.no_grad():
        first.weight.copy_(b.T.reshape(rank, in_ch, 1, 1))
        vertical.weight.copy_(c.T.reshape(rank, 1, kh, 1))
        horizontal.weight.copy_(d.T.reshape(rank, 1, 1, kwid))
        last.weight.copy_(a.reshape(out_ch, rank, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, vertical, horizontal, last).train(conv.training)


# ------------------------------------------------------------------------------------------------ RNN


@checked
def svd_rnn(rnn: nn.RNNBase | UnrolledRNN, *, rank_ih: int | None = None, rank_hh: int | None = None) -> UnrolledRNN:
    """An ``UnrolledRNN`` with every layer's input-to-hidden (``rank_ih``) and hidden-to-hidden (``rank_hh``)
    matrix replaced by its truncated SVD (``svd_linear``); ``None`` keeps that matrix dense. ``rnn`` is not changed.
    """
    if not isinstance(rnn, (nn.RNNBase, UnrolledRNN)):
        raise TypeError(f"rnn must be an nn.RNN/GRU/LSTM or an UnrolledRNN, got {type(rnn).__name__} {rnn!r:.40}")
    require_sites(rnn)
    new = UnrolledRNN.from_torch(rnn) if isinstance(rnn, nn.RNNBase) else copy_model(rnn)
    ranks = {"ih": rank_ih, "hh": rank_hh}

    def rank_of(kind: str, k: int, part: nn.Module) -> int | None:
        if ranks[kind] is not None:
            if not isinstance(part, nn.Linear):
                raise ValueError(f"rank_{kind}: layer {k}'s matrix is already factorized")
            _check_rank(f"rank_{kind}", ranks[kind], min(part.weight.shape))
        return ranks[kind]

    _factorize_gates(new, rank_of)
    return new


def _factorize_gates(unrolled: UnrolledRNN, rank_of) -> bool:
    """Replace each ``ih[k]`` / ``hh[k]`` by its truncated SVD at ``rank_of(kind, k, part)`` (None: keep it); whether
    any was replaced. Every rank is asked for before the first replacement, so a bad one changes nothing."""
    chosen = [(parts, k, rank_of(kind, k, part)) for kind, parts in (("ih", unrolled.ih), ("hh", unrolled.hh))
              for k, part in enumerate(parts)]
    for parts, k, r in chosen:
        if r is not None:
            parts[k] = svd_linear(parts[k], r)
    return any(r is not None for _, _, r in chosen)


def _linear_rank(layer: nn.Linear, rank: int | None, energy: float | None, only_if_smaller: bool) -> int | None:
    """The rank ``low_rank`` gives one matrix, or None to leave it dense."""
    w = _weight(layer)
    s = torch.linalg.svdvals(w.double())
    r = min(rank, len(s)) if rank is not None else rank_for_energy(s, energy)
    return None if only_if_smaller and r >= break_even_rank(*w.shape) else r


def _conv_ranks(conv: nn.Conv2d, rank: int | None, energy: float | None) -> tuple[int, int]:
    """(r_in, r_out) for ``low_rank``: ``rank`` capped at each mode's limit, or each mode's energy rank."""
    max_in, max_out = tucker_rank_limits(conv)
    if rank is not None:
        return min(rank, max_in), min(rank, max_out)
    w = _weight(conv)
    out_ch, in_ch = w.shape[:2]
    return (min(rank_for_energy(torch.linalg.svdvals(w.transpose(0, 1).reshape(in_ch, -1).double()), energy), max_in),
            min(rank_for_energy(torch.linalg.svdvals(w.reshape(out_ch, -1).double()), energy), max_out))


def _tied_copy(factorized: nn.Sequential, layer: nn.Linear) -> nn.Sequential:
    """The factorization of a tied weight for another layer that shares it: the same factor parameters (they stay
    tied), the layer's own bias."""
    first, second = factorized
    new_second = nn.Linear(second.in_features, second.out_features, bias=layer.bias is not None,
                           **device_dtype(second.weight))
    new_second.weight = second.weight
    if layer.bias is not None:
        with torch.no_grad():
            new_second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, new_second).train(layer.training)


# ------------------------------------------------------------------------------------------------ models


@checked
def low_rank(model: nn.Module, *, rank: int | None = None, energy: float | None = None, only_if_smaller: bool = True,
             skip_last: bool = True, inplace: bool = False) -> nn.Module:
    """Factorize the model's Linear layers (truncated SVD), its kxk Conv2d layers (Tucker-2), and the gate matrices
    of its RNN / GRU / LSTM layers (``svd_rnn``: they become ``UnrolledRNN``s).

    Exactly one of ``rank`` (capped at each layer's largest possible rank) or ``energy`` in (0, 1] (per layer, the
    smallest rank keeping that share of sum s_i^2; for convolutions, of each channel mode). Layers whose
    factorization would not store fewer numbers are left dense when ``only_if_smaller``; the output layer is left
    dense when ``skip_last``. Returns a copy unless ``inplace``. A pruned layer is factorized as it computes (its
    zeros included; the factors are dense). Linear layers that share one weight (tied) share its factors. New layers
    keep the model's dtype, device and train/eval mode.
    """
    check_module("model", model)
    if (rank is None) == (energy is None):
        raise ValueError(f"give exactly one of rank or energy, got rank={rank!r}, energy={energy!r}")
    if rank is not None:
        check_int("rank", rank, 1)
    if energy is not None:
        _check_energy(energy)
    for name, flag in (("only_if_smaller", only_if_smaller), ("skip_last", skip_last), ("inplace", inplace)):
        check_bool(name, flag)
    require_sites(model)
    target = model if inplace else copy_model(model)
    layers = [(n, m) for n, m in target.named_modules() if isinstance(m, (nn.Linear, nn.RNNBase))
              or (isinstance(m, nn.Conv2d) and m.groups == 1 and max(m.kernel_size) > 1)]
    if skip_last and layers and isinstance(layers[-1][1], nn.Linear):
        layers = layers[:-1]
    replacements, tied = [], {}
    for name, layer in layers:  # every replacement is built before the first is put in: a failure changes nothing
        if isinstance(layer, nn.Linear):
            key = id(stored_tensor(layer, "weight"))
            if key in tied:
                replacements.append((name, _tied_copy(tied[key], layer)))
                continue
            r = _linear_rank(layer, rank, energy, only_if_smaller)
            if r is not None:
                tied[key] = svd_linear(layer, r)
                replacements.append((name, tied[key]))
        elif isinstance(layer, nn.RNNBase):
            new = UnrolledRNN.from_torch(layer)
            if _factorize_gates(new, lambda kind, k, part: _linear_rank(part, rank, energy, only_if_smaller)):
                replacements.append((name, new))
        else:
            new = tucker_conv(layer, _conv_ranks(layer, rank, energy))
            if only_if_smaller and sum(p.numel() for p in new.parameters()) >= layer.weight.numel():
                continue
            replacements.append((name, placed_like(new, layer)))
    for name, new in replacements:
        replace_module(target, name, new)
    return target
