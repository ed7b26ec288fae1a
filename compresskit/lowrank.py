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

from compresskit.models import copy_model, refresh_pruned, replace_module
from compresskit.rnn import UnrolledRNN


def _check_rank(name: str, rank, high: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"{name} must be an int in [1, {high}], got {type(rank).__name__} {rank!r}")
    if not 1 <= rank <= high:
        raise ValueError(f"{name} must be in [1, {high}], got {rank}")


def _check_energy(energy) -> None:
    if isinstance(energy, bool) or not isinstance(energy, (int, float)):
        raise TypeError(f"energy must be a float in (0, 1], got {type(energy).__name__} {energy!r}")
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep ``energy`` of sum s_i^2."""
    _check_energy(energy)
    share = torch.cumsum(singular_values.double() ** 2, 0) / (singular_values.double() ** 2).sum()
    return min(int(torch.searchsorted(share, torch.tensor(energy - 1e-12, dtype=torch.float64))) + 1,
               len(singular_values))


def break_even_rank(out_features: int, in_features: int) -> float:
    """Ranks below out * in / (out + in) store fewer numbers than the dense out x in matrix."""
    return out_features * in_features / (out_features + in_features)


# ------------------------------------------------------------------------------------------------ SVD


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Sequential(Linear(in, rank, bias=False), Linear(rank, out))`` from the truncated SVD of ``layer.weight``.

    The singular values are split evenly (sqrt(S) into each factor) so both layers have similar scales for
    fine-tuning. ``layer`` is not changed.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    w = refresh_pruned(layer).weight.detach()
    _check_rank("rank", rank, min(w.shape))
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(w.shape[1], rank, bias=False)
    second = nn.Linear(rank, w.shape[0], bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_((root[:, None] * vh[:rank]).to(w.dtype))
        second.weight.copy_((u[:, :rank] * root[None, :]).to(w.dtype))
        if layer.bias is not None:
            second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second).to(w.device)


# ------------------------------------------------------------------------------------------------ Tucker-2


def _leading(matrix: torch.Tensor, r: int) -> torch.Tensor:
    """The r leading left singular vectors of a matrix (columns)."""
    return torch.linalg.svd(matrix, full_matrices=False)[0][:, :r]


def tucker2(w: torch.Tensor, ranks: tuple[int, int], *, hooi_iters: int = 0):
    """Tucker-2 of a kernel w (out, in, kh, kw) on its channel modes: ``(core (r_out, r_in, kh, kw), U_out, U_in)``.

    HOSVD: U_out, U_in = leading left singular vectors of the mode-0 / mode-1 unfoldings; then ``hooi_iters`` rounds
    of HOOI, each mode re-fit with the other projected out (never worse than HOSVD).
    """
    r_in, r_out = ranks
    w = w.double()
    out_ch, in_ch = w.shape[:2]
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


def _conv(in_ch, out_ch, kernel, *, bias=False, template=None, stride=1, padding=0, dilation=1, groups=1):
    kw = {}
    if template is not None:
        kw = {"stride": template.stride, "padding": template.padding, "dilation": template.dilation,
              "padding_mode": template.padding_mode}
    else:
        kw = {"stride": stride, "padding": padding, "dilation": dilation}
    return nn.Conv2d(in_ch, out_ch, kernel, bias=bias, groups=groups, **kw)


def tucker_conv(conv: nn.Conv2d, ranks: tuple[int, int], *, hooi_iters: int = 5) -> nn.Sequential:
    """``Sequential(1x1 in->r_in, kh x kw r_in->r_out, 1x1 r_out->out)`` from Tucker-2 of ``conv.weight``.

    ``ranks=(r_in, r_out)``; full ranks ``(in, out)`` reproduce the layer (up to rounding).
    """
    _check_conv(conv)
    w = refresh_pruned(conv).weight.detach()
    out_ch, in_ch, kh, kwid = w.shape
    r_in, r_out = ranks
    _check_rank("ranks[0] (r_in)", r_in, in_ch)
    _check_rank("ranks[1] (r_out)", r_out, out_ch)
    core, u_out, u_in = tucker2(w, (r_in, r_out), hooi_iters=hooi_iters)
    first = _conv(in_ch, r_in, 1)
    middle = _conv(r_in, r_out, (kh, kwid), template=conv)
    last = _conv(r_out, out_ch, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(u_in.T.reshape(r_in, in_ch, 1, 1))
        middle.weight.copy_(core)
        last.weight.copy_(u_out.reshape(out_ch, r_out, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, middle, last).to(w.device)


# ------------------------------------------------------------------------------------------------ CP


def cp_als(w: torch.Tensor, rank: int, *, iters: int = 100, seed: int = 0, tol: float = 1e-7):
    """CP decomposition of a 4-d tensor by alternating least squares: factors (A, B, C, D), each (dim, rank), with
    w[o, i, h, k] ~= sum_r A[o, r] B[i, r] C[h, r] D[k, r]. Each step solves one factor exactly given the others:
    A = MTTKRP_A (B^T B * C^T C * D^T D)^+."""
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
    return torch.einsum("or,ir,hr,kr->oihk", *factors)


def cp_conv(conv: nn.Conv2d, rank: int, *, iters: int = 100, seed: int = 0) -> nn.Sequential:
    """``Sequential(1x1 in->R, depthwise kh x 1, depthwise 1 x kw, 1x1 R->out)`` from a rank-R CP of ``conv.weight``
    (Lebedev et al. 2015). Stride, padding and dilation are split between the two depthwise convolutions."""
    _check_conv(conv)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an int >= 1, got {rank!r}")
    w = refresh_pruned(conv).weight.detach()
    out_ch, in_ch, kh, kwid = w.shape
    a, b, c, d = cp_als(w, rank, iters=iters, seed=seed)
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    if isinstance(conv.padding, str):
        raise ValueError(f"string padding ({conv.padding!r}) is not supported; use integer padding")
    first = _conv(in_ch, rank, 1)
    vertical = _conv(rank, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank)
    horizontal = _conv(rank, rank, (1, kwid), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank)
    last = _conv(rank, out_ch, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(b.T.reshape(rank, in_ch, 1, 1))
        vertical.weight.copy_(c.T.reshape(rank, 1, kh, 1))
        horizontal.weight.copy_(d.T.reshape(rank, 1, 1, kwid))
        last.weight.copy_(a.reshape(out_ch, rank, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, vertical, horizontal, last).to(w.device)


# ------------------------------------------------------------------------------------------------ RNN


def svd_rnn(rnn: nn.RNNBase | UnrolledRNN, *, rank_ih: int | None = None, rank_hh: int | None = None) -> UnrolledRNN:
    """An ``UnrolledRNN`` with every layer's input-to-hidden (``rank_ih``) and hidden-to-hidden (``rank_hh``)
    matrix replaced by its truncated SVD (``svd_linear``); ``None`` keeps that matrix dense. ``rnn`` is not changed.
    """
    if not isinstance(rnn, (nn.RNNBase, UnrolledRNN)):
        raise TypeError(f"rnn must be an nn.RNN/GRU/LSTM or an UnrolledRNN, got {type(rnn).__name__}")
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
    w = layer.weight.detach()
    s = torch.linalg.svdvals(w.double())
    r = min(rank, len(s)) if rank is not None else rank_for_energy(s, energy)
    return None if only_if_smaller and r >= break_even_rank(*w.shape) else r


# ------------------------------------------------------------------------------------------------ models


def low_rank(model: nn.Module, *, rank: int | None = None, energy: float | None = None, only_if_smaller: bool = True,
             skip_last: bool = True, inplace: bool = False) -> nn.Module:
    """Factorize the model's Linear layers (truncated SVD), its kxk Conv2d layers (Tucker-2), and the gate matrices
    of its RNN / GRU / LSTM layers (``svd_rnn``: they become ``UnrolledRNN``s).

    Exactly one of ``rank`` (capped at each layer's largest possible rank) or ``energy`` in (0, 1] (per layer, the
    smallest rank keeping that share of sum s_i^2; for convolutions, of each channel mode). Layers whose
    factorization would not store fewer numbers are left dense when ``only_if_smaller``; the output layer is left
    dense when ``skip_last``. Returns a copy unless ``inplace``.
    """
    if (rank is None) == (energy is None):
        raise ValueError(f"give exactly one of rank or energy, got rank={rank!r}, energy={energy!r}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be an int >= 1, got {rank!r}")
    if energy is not None:
        _check_energy(energy)
    target = refresh_pruned(model if inplace else copy_model(model))
    layers = [(n, m) for n, m in target.named_modules() if isinstance(m, (nn.Linear, nn.RNNBase))
              or (isinstance(m, nn.Conv2d) and m.groups == 1 and max(m.kernel_size) > 1)]
    if skip_last and layers and isinstance(layers[-1][1], nn.Linear):
        layers = layers[:-1]
    for name, layer in layers:
        if isinstance(layer, nn.Linear):
            r = _linear_rank(layer, rank, energy, only_if_smaller)
            if r is not None:
                replace_module(target, name, svd_linear(layer, r))
        elif isinstance(layer, nn.RNNBase):
            new = UnrolledRNN.from_torch(layer)
            if _factorize_gates(new, lambda kind, k, part: _linear_rank(part, rank, energy, only_if_smaller)):
                replace_module(target, name, new)
        else:
            w = layer.weight.detach()
            out_ch, in_ch = w.shape[:2]
            if rank is not None:
                ranks = (min(rank, in_ch), min(rank, out_ch))
            else:
                ranks = (rank_for_energy(torch.linalg.svdvals(w.transpose(0, 1).reshape(in_ch, -1).double()), energy),
                         rank_for_energy(torch.linalg.svdvals(w.reshape(out_ch, -1).double()), energy))
            new = tucker_conv(layer, ranks)
            if only_if_smaller and sum(p.numel() for p in new.parameters()) >= layer.weight.numel():
                continue
            replace_module(target, name, new)
    return target
