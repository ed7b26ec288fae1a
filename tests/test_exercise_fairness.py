"""The coding-exercise checkers are fair and sharp (compresskit.exercises): for every exercise, correct answers
written in several styles a learner would use (float64 then cast back, numpy, torch built-ins, layers rebuilt with
new Parameters) pass, and plausible wrong answers are rejected with the case that shows it and a hint (or the name of
the mistake, only when the mistake explains every case). A learner's function that returns the wrong type, builds
layers that do not multiply, changes its input or runs too long gets the same kind of message, never a raw error of
the checker."""

import copy
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compresskit import exercises
from compresskit.exercises import CODING, check, check_code

# ------------------------------------------------------------------------------------------------ 01: masks


def _mask_argsort(w, sparsity):
    k = round(sparsity * w.numel())
    mask = torch.ones_like(w)
    mask.view(-1)[w.abs().flatten().argsort()[:k]] = 0
    return mask


def _mask_topk(w, sparsity):
    keep = w.numel() - round(sparsity * w.numel())
    mask = torch.zeros(w.numel(), dtype=torch.bool)
    mask[torch.topk(w.abs().flatten(), keep).indices] = True
    return mask.reshape(w.shape)


def _mask_numpy(w, sparsity):
    a = np.abs(w.numpy()).ravel()
    k = int(np.round(sparsity * a.size))  # numpy rounds half to even too
    mask = np.ones(a.size)
    mask[np.argsort(a, kind="stable")[:k]] = 0
    return torch.from_numpy(mask.reshape(w.shape))


def _mask_float64_sorted(w, sparsity):
    flat = w.double().abs().flatten().tolist()
    k = round(sparsity * len(flat))
    drop = set(sorted(range(len(flat)), key=flat.__getitem__)[:k])
    return torch.tensor([0.0 if i in drop else 1.0 for i in range(len(flat))]).reshape(w.shape)


def _mask_threshold_ge(w, sparsity):  # |w| >= the k-th smallest is kept: one weight too few goes
    k = round(sparsity * w.numel())
    if k == 0:
        return torch.ones_like(w)
    return (w.abs() >= w.abs().flatten().kthvalue(k).values).float()


def _mask_int(w, sparsity):
    return _mask_argsort(w, sparsity) if sparsity * w.numel() == int(sparsity * w.numel()) else \
        _mask_by_count(w, int(sparsity * w.numel()))


def _mask_by_count(w, k):
    mask = torch.ones_like(w)
    mask.view(-1)[w.abs().flatten().argsort()[:k]] = 0
    return mask


def _mask_flat(w, sparsity):
    return _mask_argsort(w, sparsity).flatten()


def _mask_in_place(w, sparsity):
    mask = _mask_argsort(w, sparsity)
    w.mul_(mask)  # prunes the caller's tensor
    return mask


def _mask_signed(w, sparsity):
    k = round(sparsity * w.numel())
    mask = torch.ones_like(w)
    mask.view(-1)[w.flatten().argsort()[:k]] = 0
    return mask


def _mask_numpy_out(w, sparsity):
    return _mask_argsort(w, sparsity).numpy()


# ------------------------------------------------------------------------------------------------ 02: neurons


def _keep_rows(first, amount, score=lambda w: w.abs().sum(1), count=round):
    s = score(first.weight.detach())
    return s.argsort()[count(amount * len(s)):].sort().values


def _neurons_new_layers(first, second, amount):
    keep = _keep_rows(first, amount)
    a, b = nn.Linear(first.in_features, len(keep)), nn.Linear(len(keep), second.out_features)
    with torch.no_grad():
        a.weight.copy_(first.weight[keep])
        a.bias.copy_(first.bias[keep])
        b.weight.copy_(second.weight[:, keep])
        b.bias.copy_(second.bias)
    return a, b


def _neurons_new_parameters(first, second, amount):  # stale in_features / out_features: the weights decide
    keep = _keep_rows(first, amount)
    a, b = copy.deepcopy(first), copy.deepcopy(second)
    a.weight = nn.Parameter(first.weight.detach()[keep].clone())
    a.bias = nn.Parameter(first.bias.detach()[keep].clone())
    b.weight = nn.Parameter(second.weight.detach()[:, keep].clone())
    return a, b


def _neurons_topk_unsorted(first, second, amount):  # kept neurons in another order: the same function
    n = first.out_features
    keep = torch.topk(first.weight.detach().abs().sum(1), n - round(amount * n)).indices
    a, b = nn.Linear(first.in_features, len(keep)), nn.Linear(len(keep), second.out_features)
    a.weight.data, a.bias.data = first.weight.data[keep].clone(), first.bias.data[keep].clone()
    b.weight.data, b.bias.data = second.weight.data[:, keep].clone(), second.bias.data.clone()
    return a, b


def _neurons_numpy(first, second, amount):
    norms = np.abs(first.weight.detach().numpy().astype(np.float64)).sum(axis=1)
    keep = torch.from_numpy(np.sort(np.argsort(norms)[int(np.round(amount * len(norms))):]))
    return _neurons_from(first, second, keep)


def _neurons_from(first, second, keep, slice_bias=True, slice_next=True):
    a = nn.Linear(first.in_features, len(keep))
    a.weight.data = first.weight.data[keep].clone()
    a.bias.data = first.bias.data[keep].clone() if slice_bias else first.bias.data.clone()
    if not slice_next:
        return a, copy.deepcopy(second)
    b = nn.Linear(len(keep), second.out_features)
    b.weight.data, b.bias.data = second.weight.data[:, keep].clone(), second.bias.data.clone()
    return a, b


def _neurons_l2(first, second, amount):
    return _neurons_from(first, second, _keep_rows(first, amount, score=lambda w: w.pow(2).sum(1)))


def _neurons_strongest_go(first, second, amount):
    return _neurons_from(first, second, _keep_rows(first, amount, score=lambda w: -w.abs().sum(1)))


def _neurons_int(first, second, amount):
    return _neurons_from(first, second, _keep_rows(first, amount, count=int))


def _neurons_bias_kept(first, second, amount):
    return _neurons_from(first, second, _keep_rows(first, amount), slice_bias=False)


def _neurons_next_unchanged(first, second, amount):
    return _neurons_from(first, second, _keep_rows(first, amount), slice_next=False)


def _neurons_in_place(first, second, amount):
    keep = _keep_rows(first, amount)
    with torch.no_grad():
        first.weight[~torch.isin(torch.arange(first.out_features), keep)] = 0  # silences the caller's layer
    return _neurons_from(first, second, keep)


def _neurons_columns_of_first(first, second, amount):  # scores the inputs (columns), not the neurons (rows)
    return _neurons_from(first, second, _keep_rows(first, amount, score=lambda w: w.abs().sum(0)[: w.shape[0]]))


# ------------------------------------------------------------------------------------------------ 03: soft threshold


def _soft_where(v, t):
    return torch.where(v > t, v - t, torch.where(v < -t, v + t, torch.zeros_like(v)))


def _soft_numpy(v, t):
    x = v.numpy().astype(np.float64)
    return torch.from_numpy(np.sign(x) * np.maximum(np.abs(x) - t, 0)).to(v.dtype)


def _soft_clamp(v, t):
    return v - torch.clamp(v, -t, t)


def _soft_float64(v, t):
    x = v.double()
    return (torch.sign(x) * torch.relu(x.abs() - t)).float()


def _soft_numpy_uncast(v, t):
    x = v.numpy().astype(np.float64)
    return torch.from_numpy(np.sign(x) * np.maximum(np.abs(x) - t, 0))


def _soft_in_place(v, t):
    v.copy_(torch.sign(v) * torch.clamp(v.abs() - t, min=0))
    return v


def _soft_list(v, t):
    return (torch.sign(v) * torch.clamp(v.abs() - t, min=0)).tolist()


# ------------------------------------------------------------------------------------------------ 04: fake quantize


def _range(bits, symmetric):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)


def _scale_zero(w, bits, symmetric, dtype=torch.float32):
    q_min, q_max = _range(bits, symmetric)
    x = w.to(dtype)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    eps = torch.finfo(torch.float32).eps
    if symmetric:
        return max(max(-lo, hi) / ((q_max - q_min) / 2), eps), 0
    s = max((hi - lo) / (q_max - q_min), eps)
    return s, min(max(q_min - round(lo / s), q_min), q_max)


def _fq_torch_op(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric)
    q_min, q_max = _range(bits, symmetric)
    return torch.fake_quantize_per_tensor_affine(w, s, int(z), q_min, q_max)


def _fq_float64(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric, torch.float64)
    q_min, q_max = _range(bits, symmetric)
    q = torch.clamp(torch.round(w.double() / s) + z, q_min, q_max)
    return ((q - z) * s).to(w.dtype)


def _fq_numpy(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric, torch.float64)
    q_min, q_max = _range(bits, symmetric)
    q = np.clip(np.round(w.numpy().astype(np.float64) / s) + z, q_min, q_max)  # np.round: half to even
    return torch.from_numpy((q - z) * s).float()


def _fq_codes_then_back(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric)
    q_min, q_max = _range(bits, symmetric)
    codes = (w / s).round().add(z).clamp(q_min, q_max).to(torch.int32)
    return (codes - z).float() * s


def _fq_half_up(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric)
    q_min, q_max = _range(bits, symmetric)
    return (torch.clamp(torch.floor(w / s + 0.5) + z, q_min, q_max) - z) * s


def _fq_python_round_away(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric)
    q_min, q_max = _range(bits, symmetric)
    codes = [min(max(math.copysign(math.floor(abs(v) / s + 0.5), v) + z, q_min), q_max) for v in w.flatten().tolist()]
    return ((torch.tensor(codes) - z) * s).reshape(w.shape)


def _fq_no_clamp(w, bits, symmetric):
    s, z = _scale_zero(w, bits, symmetric)
    return (torch.round(w / s) + z - z) * s


def _fq_range_without_zero(w, bits, symmetric):  # the affine range [min, max] not widened to include 0
    q_min, q_max = _range(bits, symmetric)
    if symmetric:
        return _fq_float64(w, bits, symmetric)
    lo, hi = float(w.min()), float(w.max())
    s = max((hi - lo) / (q_max - q_min), torch.finfo(torch.float32).eps)
    z = q_min - round(lo / s)
    return (torch.clamp(torch.round(w / s) + z, q_min, q_max) - z) * s


def _fq_codes_returned(w, bits, symmetric):  # forgets to dequantize
    s, z = _scale_zero(w, bits, symmetric)
    q_min, q_max = _range(bits, symmetric)
    return torch.clamp(torch.round(w / s) + z, q_min, q_max)


def _fq_float64_uncast(w, bits, symmetric):
    return _fq_float64(w, bits, symmetric).double()


# ------------------------------------------------------------------------------------------------ 05: SVD pair


def _svd_split_sqrt(layer, rank):  # sqrt(S) into each factor: the same product
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    r = s[:rank].sqrt()
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
    first.weight.data = r[:, None] * vh[:rank]
    second.weight.data, second.bias.data = u[:, :rank] * r, layer.bias.detach().clone()
    return nn.Sequential(first, second)


def _svd_float64(layer, rank):
    u, s, vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
    first.weight.data = (s[:rank, None] * vh[:rank]).float()
    second.weight.data, second.bias.data = u[:, :rank].float(), layer.bias.detach().clone()
    return nn.Sequential(first, second)


def _svd_numpy(layer, rank):
    u, s, vh = np.linalg.svd(layer.weight.detach().numpy().astype(np.float64), full_matrices=False)
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
    first.weight = nn.Parameter(torch.from_numpy(np.diag(s[:rank]) @ vh[:rank]).float())
    second.weight = nn.Parameter(torch.from_numpy(u[:, :rank]).float())
    second.bias = nn.Parameter(layer.bias.detach().clone())
    return nn.Sequential(first, second)


def _svd_new_parameters(layer, rank):  # Parameters swapped into copies: in_features/out_features left stale
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    first, second = copy.deepcopy(layer), copy.deepcopy(layer)
    first.weight, first.bias = nn.Parameter(s[:rank, None] * vh[:rank]), None
    second.weight = nn.Parameter(u[:, :rank].clone())
    return nn.Sequential(first, second)


def _svd_wrong_order(layer, rank):  # U_r S_r first, V_r^T second: shapes that do not multiply
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    first, second = nn.Linear(layer.out_features, rank, bias=False), nn.Linear(rank, layer.in_features)
    first.weight.data = (u[:, :rank] * s[:rank]).T.contiguous()
    second.weight.data = vh[:rank].T.contiguous()
    return nn.Sequential(first, second)


def _svd_bias_dropped(layer, rank):
    pair = _svd_float64(layer, rank)
    pair[1].bias.data.zero_()
    return pair


def _svd_bias_first(layer, rank):  # the bias goes into the rank-r layer: shapes that do not even fit
    pair = _svd_float64(layer, rank)
    pair[0].bias = nn.Parameter(layer.bias.detach().clone())
    return pair


def _svd_no_s(layer, rank):
    return CODING["05-code"].mistakes["dropping the singular values"][0](layer, rank)


def _svd_of_transpose(layer, rank):  # the SVD of W^T = U' S V'^T: W = V' S U'^T, the same factors read the other way
    u, s, vh = torch.linalg.svd(layer.weight.detach().T, full_matrices=False)
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
    first.weight.data = (s[:rank, None] * u[:, :rank].T)[:, : layer.in_features]
    second.weight.data = vh[:rank].T[: layer.out_features]
    second.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, second)


def _svd_s_twice(layer, rank):  # S in both factors: W ~ U S^2 V^T
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
    first.weight.data = s[:rank, None] * vh[:rank]
    second.weight.data, second.bias.data = u[:, :rank] * s[:rank], layer.bias.detach().clone()
    return nn.Sequential(first, second)


def _svd_a_tensor(layer, rank):
    return _svd_float64(layer, rank)[1].weight


# ------------------------------------------------------------------------------------------------ 06: KD loss


def _kd_by_hand(student_logits, teacher_logits, labels, temperature, alpha):
    t = temperature
    p_t = torch.softmax(teacher_logits / t, dim=1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(student_logits / t, dim=1))).sum(1).mean()
    return alpha * t**2 * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)


def _kd_float(student_logits, teacher_logits, labels, temperature, alpha):
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True)
    return float(alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student_logits, labels))


def _kd_float64(student_logits, teacher_logits, labels, temperature, alpha):
    s, te = student_logits.double(), teacher_logits.double()
    loss = _kd_by_hand(s, te, labels, temperature, alpha)
    return loss.float()


def _kd_numpy(student_logits, teacher_logits, labels, temperature, alpha):
    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    s, te, y = student_logits.numpy().astype(np.float64), teacher_logits.numpy().astype(np.float64), labels.numpy()
    ls, lt = log_softmax(s / temperature), log_softmax(te / temperature)
    kl = (np.exp(lt) * (lt - ls)).sum(axis=1).mean()
    ce = -log_softmax(s)[np.arange(len(y)), y].mean()
    return np.float64(alpha * temperature**2 * kl + (1 - alpha) * ce)


def _kd_sum(student_logits, teacher_logits, labels, temperature, alpha):  # summed over the batch, not its mean
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="sum")
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def _kd_mean(student_logits, teacher_logits, labels, temperature, alpha):  # 'mean' divides by classes too
    t = temperature
    with warnings.catch_warnings():  # torch warns about exactly this mistake
        warnings.simplefilter("ignore", UserWarning)
        soft = F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="mean")
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def _kd_swapped_alpha(student_logits, teacher_logits, labels, temperature, alpha):
    return _kd_by_hand(student_logits, teacher_logits, labels, temperature, 1 - alpha)


def _kd_t_not_squared(student_logits, teacher_logits, labels, temperature, alpha):
    return CODING["06-code"].mistakes["a missing T^2"][0](student_logits, teacher_logits, labels, temperature, alpha)


def _kd_ce_on_soft(student_logits, teacher_logits, labels, temperature, alpha):  # CE of the softened student
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean")
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student_logits / t, labels)


def _kd_per_example(student_logits, teacher_logits, labels, temperature, alpha):  # no batch mean at all
    t = temperature
    p_t = torch.softmax(teacher_logits / t, 1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(student_logits / t, 1))).sum(1)
    return alpha * t * t * kl + (1 - alpha) * F.cross_entropy(student_logits, labels, reduction="none")


# ------------------------------------------------------------------------------------------------ 07: GRU step


def _gru_chunks(x, h, cell):
    ir, iz, i_n = (x @ cell.weight_ih.T + cell.bias_ih).chunk(3, dim=1)
    hr, hz, h_n = (h @ cell.weight_hh.T + cell.bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def _gru_slices(x, h, cell):  # one gate at a time, by index ranges, with F.linear
    n = cell.hidden_size

    def gate(k, inp, w, b):
        return F.linear(inp, w[k * n:(k + 1) * n], b[k * n:(k + 1) * n])

    with torch.no_grad():
        r = torch.sigmoid(gate(0, x, cell.weight_ih, cell.bias_ih) + gate(0, h, cell.weight_hh, cell.bias_hh))
        z = torch.sigmoid(gate(1, x, cell.weight_ih, cell.bias_ih) + gate(1, h, cell.weight_hh, cell.bias_hh))
        new = torch.tanh(gate(2, x, cell.weight_ih, cell.bias_ih) + r * gate(2, h, cell.weight_hh, cell.bias_hh))
    return new + z * (h - new)  # (1 - z) n + z h, written as a step from n towards h


def _gru_float64(x, h, cell):
    p = {k: v.detach().double() for k, v in cell.named_parameters()}
    return _gru_chunks(x.double(), h.double(), type("Cell", (), {
        "weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "bias_ih": p["bias_ih"],
        "bias_hh": p["bias_hh"]})).to(h.dtype)


def _gru_numpy(x, h, cell):
    w_ih, w_hh, b_ih, b_hh = (p.detach().numpy() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                                            cell.bias_hh))
    gi, gh = x.numpy() @ w_ih.T + b_ih, h.numpy() @ w_hh.T + b_hh
    n = cell.hidden_size
    r = 1 / (1 + np.exp(-(gi[:, :n] + gh[:, :n])))
    z = 1 / (1 + np.exp(-(gi[:, n:2 * n] + gh[:, n:2 * n])))
    new = np.tanh(gi[:, 2 * n:] + r * gh[:, 2 * n:])
    return torch.from_numpy(((1 - z) * new + z * h.numpy()).astype(np.float32))


def _gru_torch_cell(x, h, cell):  # the layer itself: a correct answer, if not the point of the exercise
    with torch.no_grad():
        return cell(x, h)


def _gru_z_first(x, h, cell):
    iz, ir, i_n = (x @ cell.weight_ih.T + cell.bias_ih).chunk(3, dim=1)
    hz, hr, h_n = (h @ cell.weight_hh.T + cell.bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def _gru_swapped_mix(x, h, cell):
    ir, iz, i_n = (x @ cell.weight_ih.T + cell.bias_ih).chunk(3, dim=1)
    hr, hz, h_n = (h @ cell.weight_hh.T + cell.bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    return z * torch.tanh(i_n + r * h_n) + (1 - z) * h


def _gru_reset_first(x, h, cell):  # the original paper's (and Keras's reset_after=False) variant, not torch's
    n = cell.hidden_size
    ir, iz, i_n = (x @ cell.weight_ih.T + cell.bias_ih).chunk(3, dim=1)
    hr, hz, _ = (h @ cell.weight_hh.T + cell.bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    new = torch.tanh(i_n + (r * h) @ cell.weight_hh[2 * n:].T + cell.bias_hh[2 * n:])
    return (1 - z) * new + z * h


def _gru_tanh_gates(x, h, cell):
    ir, iz, i_n = (x @ cell.weight_ih.T + cell.bias_ih).chunk(3, dim=1)
    hr, hz, h_n = (h @ cell.weight_hh.T + cell.bias_hh).chunk(3, dim=1)
    r, z = torch.tanh(ir + hr), torch.tanh(iz + hz)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def _gru_no_bias(x, h, cell):
    ir, iz, i_n = (x @ cell.weight_ih.T).chunk(3, dim=1)
    hr, hz, h_n = (h @ cell.weight_hh.T).chunk(3, dim=1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def _gru_updates_h_in_place(x, h, cell):
    new = _gru_chunks(x, h, cell).detach()
    h.copy_(new)  # "the state moves on": but the caller's h changes with it
    return h


def _gru_last_sample_only(x, h, cell):  # loses the batch dimension
    return _gru_chunks(x, h, cell)[-1]


# ------------------------------------------------------------------------------------------------ 08: Huffman


def _huffman_heap_tiebreak(counts):
    import heapq

    heap = [(c, i, [s]) for i, (s, c) in enumerate(counts.items())]
    heapq.heapify(heap)
    depth = dict.fromkeys(counts, 0)
    order = len(heap)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        for s in a + b:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, order, a + b))
        order += 1
    return {s: max(d, 1) for s, d in depth.items()}


def _huffman_sorted_list(counts):  # re-sorting a list instead of a heap; ties broken the other way
    nodes = [(c, [s]) for s, c in counts.items()]
    depth = dict.fromkeys(counts, 0)
    while len(nodes) > 1:
        nodes.sort(key=lambda n: n[0], reverse=True)
        c1, a = nodes.pop()
        c2, b = nodes.pop()
        for s in a + b:
            depth[s] += 1
        nodes.append((c1 + c2, a + b))
    return {s: d or 1 for s, d in depth.items()}


def _huffman_numpy_lengths(counts):
    lengths = _huffman_heap_tiebreak(counts)
    return {s: np.int64(v) for s, v in lengths.items()}  # numpy integers are whole numbers too


def _huffman_tree(counts):  # an explicit tree of dicts, walked for depths
    import heapq

    heap = [(c, i, {"symbol": s}) for i, (s, c) in enumerate(counts.items())]
    heapq.heapify(heap)
    tick = len(heap)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        heapq.heappush(heap, (c1 + c2, tick, {"children": (a, b)}))
        tick += 1
    out = {}

    def walk(node, depth):
        if "symbol" in node:
            out[node["symbol"]] = max(depth, 1)
        else:
            for child in node["children"]:
                walk(child, depth + 1)

    walk(heap[0][2], 0)
    return out


def _huffman_no_tiebreak(counts):  # heap entries (count, dict): equal counts compare dicts and raise
    import heapq

    heap = [(c, {"symbols": [s]}) for s, c in counts.items()]
    heapq.heapify(heap)
    depth = dict.fromkeys(counts, 0)
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        for s in a["symbols"] + b["symbols"]:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, {"symbols": a["symbols"] + b["symbols"]}))
    return {s: max(d, 1) for s, d in depth.items()}


def _huffman_single_zero(counts):
    lengths = _huffman_heap_tiebreak(counts)
    return {s: 0 for s in lengths} if len(lengths) == 1 else lengths


def _huffman_fixed(counts):
    return {s: max(1, math.ceil(math.log2(len(counts)))) for s in counts}


def _huffman_merge_largest(counts):  # merges the two most frequent subtrees
    nodes = [(c, [s]) for s, c in counts.items()]
    depth = dict.fromkeys(counts, 0)
    while len(nodes) > 1:
        nodes.sort(key=lambda n: n[0])
        c1, a = nodes.pop()
        c2, b = nodes.pop()
        for s in a + b:
            depth[s] += 1
        nodes.append((c1 + c2, a + b))
    return {s: d or 1 for s, d in depth.items()}


def _huffman_rank_lengths(counts):  # the i-th most frequent symbol gets i + 1 bits (a unary code)
    ordered = sorted(counts, key=lambda s: -counts[s])
    return {s: i + 1 for i, s in enumerate(ordered)}


def _huffman_float_lengths(counts):
    return {s: float(v) for s, v in _huffman_heap_tiebreak(counts).items()}


# ------------------------------------------------------------------------------------------------ 09: group RTN


def _group_affine(g, bits, dtype=torch.float32):
    x = g.to(dtype)
    lo, hi = x.amin(dim=1, keepdim=True).clamp(max=0), x.amax(dim=1, keepdim=True).clamp(min=0)
    s = ((hi - lo) / (2**bits - 1)).clamp(min=torch.finfo(torch.float32).eps)
    z = torch.clamp(-torch.round(lo / s), 0, 2**bits - 1)
    return x, s, z


def _group_reshape(w, bits, group_size):
    x, s, z = _group_affine(w.reshape(-1, group_size), bits)
    q = torch.clamp(torch.round(x / s) + z, 0, 2**bits - 1)
    return ((q - z) * s).reshape(w.shape)


def _group_float64(w, bits, group_size):
    x, s, z = _group_affine(w.reshape(-1, group_size), bits, torch.float64)
    q = torch.clamp(torch.round(x / s) + z, 0, 2**bits - 1)
    return ((q - z) * s).reshape(w.shape).float()


def _group_loop(w, bits, group_size):
    out = torch.empty_like(w)
    for r in range(w.shape[0]):
        for c in range(0, w.shape[1], group_size):
            g = w[r, c : c + group_size]
            lo, hi = min(float(g.min()), 0.0), max(float(g.max()), 0.0)
            s = max((hi - lo) / (2**bits - 1), torch.finfo(torch.float32).eps)
            z = min(max(-round(lo / s), 0), 2**bits - 1)
            out[r, c : c + group_size] = (torch.clamp(torch.round(g / s) + z, 0, 2**bits - 1) - z) * s
    return out


def _group_numpy(w, bits, group_size):
    g = w.numpy().astype(np.float64).reshape(-1, group_size)
    lo, hi = np.minimum(g.min(axis=1, keepdims=True), 0), np.maximum(g.max(axis=1, keepdims=True), 0)
    s = np.maximum((hi - lo) / (2**bits - 1), np.finfo(np.float32).eps)
    z = np.clip(-np.round(lo / s), 0, 2**bits - 1)
    q = np.clip(np.round(g / s) + z, 0, 2**bits - 1)
    return torch.from_numpy(((q - z) * s).reshape(w.shape)).float()


def _group_half_up(w, bits, group_size):
    x, s, z = _group_affine(w.reshape(-1, group_size), bits)
    q = torch.clamp(torch.floor(x / s + 0.5) + z, 0, 2**bits - 1)
    return ((q - z) * s).reshape(w.shape)


def _group_trunc(w, bits, group_size):
    x, s, z = _group_affine(w.reshape(-1, group_size), bits)
    q = torch.clamp(torch.trunc(x / s) + z, 0, 2**bits - 1)
    return ((q - z) * s).reshape(w.shape)


def _group_per_row(w, bits, group_size):
    return _group_reshape(w, bits, w.shape[1])


def _group_down_columns(w, bits, group_size):
    return _group_reshape(w.T.contiguous(), bits, group_size).T


def _group_flat(w, bits, group_size):
    return _group_reshape(w, bits, group_size).flatten()


def _group_no_zero_in_range(w, bits, group_size):  # [min, max] of the group, not widened to include 0
    g = w.reshape(-1, group_size)
    lo, hi = g.amin(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)
    s = ((hi - lo) / (2**bits - 1)).clamp(min=torch.finfo(torch.float32).eps)
    z = torch.round(-lo / s)
    q = torch.clamp(torch.round(g / s) + z, 0, 2**bits - 1)
    return ((q - z) * s).reshape(w.shape)


def _group_codes_only(w, bits, group_size):
    x, s, z = _group_affine(w.reshape(-1, group_size), bits)
    return torch.clamp(torch.round(x / s) + z, 0, 2**bits - 1).reshape(w.shape)


# ------------------------------------------------------------------------------------------------ 10: 2:4


def _two_four_topk(scores):
    groups = scores.reshape(-1, 4)
    mask = torch.zeros_like(groups)
    mask.scatter_(1, groups.topk(2, dim=1).indices, 1.0)
    return mask.reshape(scores.shape)


def _two_four_argsort_bool(scores):
    groups = scores.reshape(-1, 4)
    keep = torch.zeros(groups.shape, dtype=torch.bool)
    keep.scatter_(1, groups.argsort(dim=1)[:, 2:], True)
    return keep.reshape(scores.shape)


def _two_four_numpy(scores):
    g = scores.numpy().reshape(-1, 4)
    mask = np.zeros_like(g)
    np.put_along_axis(mask, np.argsort(g, axis=1)[:, 2:], 1.0, axis=1)
    return torch.from_numpy(mask.reshape(scores.shape))


def _two_four_threshold(scores):  # compare with the second largest of each group
    groups = scores.reshape(-1, 4)
    second = groups.sort(dim=1, descending=True).values[:, 1:2]
    return (groups >= second).to(scores.dtype).reshape(scores.shape)


def _two_four_lowest(scores):
    return 1 - _two_four_topk(scores)


def _two_four_columns(scores):
    return _two_four_topk(scores.T.contiguous()).T


def _two_four_row_half(scores):
    keep = scores.topk(scores.shape[1] // 2, dim=1).indices
    return torch.zeros_like(scores).scatter_(1, keep, 1.0)


def _two_four_one_of_four(scores):
    groups = scores.reshape(-1, 4)
    return torch.zeros_like(groups).scatter_(1, groups.topk(1, dim=1).indices, 1.0).reshape(scores.shape)


def _two_four_flat(scores):
    return _two_four_topk(scores).flatten()


def _two_four_prunes_scores(scores):
    mask = _two_four_topk(scores)
    scores.mul_(mask)
    return mask



# ------------------------------------------------------------------------------------------------ 09: a GPTQ column


def _obs_outer(w, q, j, hinv):
    return w - torch.outer((w[:, j] - q) / hinv[j, j], hinv[j])


def _obs_float64(w, q, j, hinv):
    W, H = w.double(), hinv.double()
    return (W - ((W[:, j] - q.double()) / H[j, j])[:, None] * H[j][None, :]).to(w.dtype)


def _obs_numpy(w, q, j, hinv):
    W, H, Q = w.numpy(), hinv.numpy(), q.numpy()
    return torch.from_numpy(W - np.outer((W[:, j] - Q) / H[j, j], H[j]))


def _obs_loop(w, q, j, hinv):
    out = w.clone()
    for r in range(w.shape[0]):  # one output row at a time, as the paper's eq. 3 reads
        out[r] = w[r] - (w[r, j] - q[r]) / hinv[j, j] * hinv[j]
    return out


def _obs_no_division(w, q, j, hinv):
    return w - torch.outer(w[:, j] - q, hinv[j])


def _obs_added(w, q, j, hinv):
    return w + torch.outer((w[:, j] - q) / hinv[j, j], hinv[j])


def _obs_column(w, q, j, hinv):
    return w - torch.outer((w[:, j] - q) / hinv[j, j], hinv[:, j])


def _obs_in_place(w, q, j, hinv):
    w -= torch.outer((w[:, j] - q) / hinv[j, j], hinv[j])
    return w


def _obs_after_j_only(w, q, j, hinv):
    out = w.clone()
    out[:, j + 1:] -= torch.outer((w[:, j] - q) / hinv[j, j], hinv[j, j + 1:])
    return out


def _obs_returns_error(w, q, j, hinv):
    return (w[:, j] - q) / hinv[j, j]


# ------------------------------------------------------------------------------------------------ 10: Wanda's mask


def _wanda_scatter(w, norms, sparsity):
    scores = w.abs() * norms[None, :]
    k = round(sparsity * w.shape[1])
    return torch.ones_like(w).scatter(1, torch.argsort(scores, dim=1)[:, :k], 0.0)


def _wanda_topk(w, norms, sparsity):
    scores = w.abs() * norms
    keep = w.shape[1] - round(sparsity * w.shape[1])
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask.scatter_(1, torch.topk(scores, keep, dim=1).indices, True)
    return mask


def _wanda_numpy(w, norms, sparsity):
    scores = np.abs(w.numpy()) * norms.numpy()[None, :]
    k = int(np.round(sparsity * w.shape[1]))
    mask = np.ones(scores.shape)
    np.put_along_axis(mask, np.argsort(scores, axis=1, kind="stable")[:, :k], 0.0, axis=1)
    return torch.from_numpy(mask)


def _wanda_threshold_per_row(w, norms, sparsity):
    scores = (w.double().abs() * norms.double()).tolist()
    k = round(sparsity * w.shape[1])
    rows = []
    for row in scores:
        cut = sorted(row)[k - 1] if k else -1.0
        rows.append([1.0 if v > cut else 0.0 for v in row])
    return torch.tensor(rows)


def _wanda_magnitude(w, norms, sparsity):
    return _wanda_scatter(w, torch.ones_like(norms), sparsity)


def _wanda_global(w, norms, sparsity):
    scores = (w.abs() * norms).flatten()
    mask = torch.ones_like(scores)
    mask[scores.argsort()[:round(sparsity * scores.numel())]] = 0
    return mask.reshape(w.shape)


def _wanda_norm_per_row(w, norms, sparsity):
    return _wanda_scatter(w, w.norm(dim=0), sparsity)  # the weights' own column norms, not the inputs'


def _wanda_int(w, norms, sparsity):
    scores = w.abs() * norms
    k = int(sparsity * w.shape[1])
    return torch.ones_like(w).scatter(1, torch.argsort(scores, dim=1)[:, :k], 0.0)


def _wanda_prunes_w(w, norms, sparsity):
    mask = _wanda_scatter(w, norms, sparsity)
    w.mul_(mask)
    return mask


def _wanda_flat(w, norms, sparsity):
    return _wanda_scatter(w, norms, sparsity).flatten()


# ------------------------------------------------------------------------------------------------ the table

# --- 11-smooth: SmoothQuant's scales ----------------------------------------------------------------------------------


def _smooth_pow(x_max, w, alpha):
    return x_max.pow(alpha) / w.abs().max(dim=0).values.pow(1 - alpha)


def _smooth_log(x_max, w, alpha):
    return torch.exp(alpha * torch.log(x_max) - (1 - alpha) * torch.log(w.abs().amax(0)))


def _smooth_numpy(x_max, w, alpha):
    a, m = x_max.numpy(), np.abs(w.numpy()).max(axis=0)
    return torch.from_numpy(a ** alpha / m ** (1 - alpha))


def _smooth_loop(x_max, w, alpha):
    return torch.stack([x_max[j] ** alpha / w[:, j].abs().max() ** (1 - alpha) for j in range(w.shape[1])])


def _smooth_rows(x_max, w, alpha):
    return x_max ** alpha / w.abs().amax(1) ** (1 - alpha)


def _smooth_swapped(x_max, w, alpha):
    return x_max ** (1 - alpha) / w.abs().amax(0) ** alpha


def _smooth_product(x_max, w, alpha):
    return x_max ** alpha * w.abs().amax(0) ** (1 - alpha)


def _smooth_mean(x_max, w, alpha):
    return x_max ** alpha / w.abs().mean(0) ** (1 - alpha)


def _smooth_in_place(x_max, w, alpha):
    return x_max.pow_(alpha).div_(w.abs().amax(0) ** (1 - alpha))


def _smooth_no_weight_exponent(x_max, w, alpha):
    return x_max ** alpha / w.abs().amax(0)


# --- 12-sparsegpt: SparseGPT's mask of a lazy block -----------------------------------------------------------------


def _sgpt_topk(w, d, sparsity):
    scores = (w / d[None, :]) ** 2
    k = round(sparsity * scores.numel())
    keep = torch.ones(scores.numel())
    keep[torch.topk(scores.flatten(), k, largest=False).indices] = 0
    return keep.reshape(w.shape)


def _sgpt_sorted(w, d, sparsity):
    scores = w.pow(2) / d.pow(2)
    order = torch.argsort(scores.flatten())
    keep = torch.ones(scores.numel())
    keep[order[:round(sparsity * scores.numel())]] = 0
    return keep.view_as(w)


def _sgpt_numpy(w, d, sparsity):
    scores = (w.numpy() ** 2 / d.numpy() ** 2).ravel()
    keep = np.ones_like(scores)
    keep[np.argsort(scores, kind="stable")[:round(sparsity * scores.size)]] = 0
    return torch.from_numpy(keep.reshape(w.shape))


def _sgpt_threshold(w, d, sparsity):
    scores = w ** 2 / d ** 2
    k = round(sparsity * scores.numel())
    cut = scores.flatten().sort().values[k - 1] if k else -1.0
    return (scores > cut).float()


def _sgpt_magnitude(w, d, sparsity):
    return _sgpt_topk(w, torch.ones_like(d), sparsity)


def _sgpt_per_row(w, d, sparsity):
    scores = w ** 2 / d ** 2
    k = round(sparsity * w.shape[1])
    return torch.ones_like(w).scatter(1, torch.argsort(scores, dim=1, stable=True)[:, :k], 0.0)


def _sgpt_d_once(w, d, sparsity):
    return _sgpt_topk(w, d.sqrt(), sparsity)


def _sgpt_int(w, d, sparsity):
    scores = (w / d[None, :]) ** 2
    keep = torch.ones(scores.numel())
    keep[torch.argsort(scores.flatten())[:int(sparsity * scores.numel())]] = 0
    return keep.reshape(w.shape)


def _sgpt_largest(w, d, sparsity):
    scores = (w / d[None, :]) ** 2
    keep = torch.ones(scores.numel())
    keep[torch.argsort(scores.flatten(), descending=True)[:round(sparsity * scores.numel())]] = 0
    return keep.reshape(w.shape)


def _sgpt_prunes_w(w, d, sparsity):
    return w * _sgpt_topk(w, d, sparsity)


CORRECT = {
    "01-code": [_mask_argsort, _mask_topk, _mask_numpy, _mask_float64_sorted],
    "02-code": [_neurons_new_layers, _neurons_new_parameters, _neurons_topk_unsorted, _neurons_numpy],
    "03-code": [lambda v, t: torch.sign(v) * torch.clamp(v.abs() - t, min=0), _soft_where, _soft_numpy,
                _soft_clamp, _soft_float64, lambda v, t: F.softshrink(v, t)],
    "04-code": [_fq_torch_op, _fq_float64, _fq_numpy, _fq_codes_then_back],
    "05-code": [_svd_split_sqrt, _svd_float64, _svd_numpy, _svd_new_parameters, _svd_of_transpose],
    "06-code": [_kd_by_hand, _kd_float, _kd_float64, _kd_numpy],
    "07-code": [_gru_chunks, _gru_slices, _gru_float64, _gru_numpy, _gru_torch_cell],
    "08-code": [_huffman_heap_tiebreak, _huffman_sorted_list, _huffman_numpy_lengths, _huffman_tree],
    "09-code": [_group_reshape, _group_float64, _group_loop, _group_numpy],
    "10-code": [_two_four_topk, _two_four_argsort_bool, _two_four_numpy, _two_four_threshold],
    "09-gptq": [_obs_outer, _obs_float64, _obs_numpy, _obs_loop],
    "10-wanda": [_wanda_scatter, _wanda_topk, _wanda_numpy, _wanda_threshold_per_row],
    "11-smooth": [_smooth_pow, _smooth_log, _smooth_numpy, _smooth_loop],
    "12-sparsegpt": [_sgpt_topk, _sgpt_sorted, _sgpt_numpy, _sgpt_threshold],
}

WRONG = {
    "01-code": [_mask_threshold_ge, _mask_int, _mask_flat, _mask_in_place, _mask_signed, _mask_numpy_out],
    "02-code": [_neurons_l2, _neurons_strongest_go, _neurons_int, _neurons_bias_kept, _neurons_next_unchanged,
                _neurons_in_place, _neurons_columns_of_first],
    "03-code": [lambda v, t: v * (v.abs() > t), lambda v, t: v - t * torch.sign(v), _soft_numpy_uncast,
                _soft_in_place, _soft_list, lambda v, t: torch.clamp(v.abs() - t, min=0)],
    "04-code": [_fq_half_up, _fq_python_round_away, _fq_no_clamp, _fq_range_without_zero, _fq_codes_returned,
                _fq_float64_uncast],
    "05-code": [_svd_wrong_order, _svd_bias_dropped, _svd_bias_first, _svd_no_s, _svd_s_twice, _svd_a_tensor],
    "06-code": [_kd_sum, _kd_mean, _kd_swapped_alpha, _kd_t_not_squared, _kd_ce_on_soft, _kd_per_example],
    "07-code": [_gru_z_first, _gru_swapped_mix, _gru_reset_first, _gru_tanh_gates, _gru_no_bias,
                _gru_updates_h_in_place, _gru_last_sample_only],
    "08-code": [_huffman_no_tiebreak, _huffman_single_zero, _huffman_fixed, _huffman_merge_largest,
                _huffman_rank_lengths, _huffman_float_lengths],
    "09-code": [_group_half_up, _group_trunc, _group_per_row, _group_down_columns, _group_flat,
                _group_no_zero_in_range, _group_codes_only],
    "10-code": [_two_four_lowest, _two_four_columns, _two_four_row_half, _two_four_one_of_four, _two_four_flat,
                _two_four_prunes_scores],
    "09-gptq": [_obs_no_division, _obs_added, _obs_column, _obs_in_place, _obs_after_j_only, _obs_returns_error],
    "10-wanda": [_wanda_magnitude, _wanda_global, _wanda_norm_per_row, _wanda_int, _wanda_prunes_w, _wanda_flat],
    "11-smooth": [_smooth_rows, _smooth_swapped, _smooth_product, _smooth_mean, _smooth_in_place,
                  _smooth_no_weight_exponent],
    "12-sparsegpt": [_sgpt_magnitude, _sgpt_per_row, _sgpt_d_once, _sgpt_int, _sgpt_largest, _sgpt_prunes_w],
}


def test_every_exercise_has_four_correct_styles_and_five_wrong_answers():
    assert set(CORRECT) == set(WRONG) == set(CODING)
    for name in CODING:
        assert len(CORRECT[name]) >= 4 and len(WRONG[name]) >= 5, name


@pytest.mark.parametrize("name, index", [(n, i) for n, fns in CORRECT.items() for i in range(len(fns))])
def test_a_correct_answer_in_any_style_passes(name, index, capsys):
    assert check_code(name, CORRECT[name][index]) is True
    assert "correct on all" in capsys.readouterr().out


@pytest.mark.parametrize("name, index", [(n, i) for n, fns in WRONG.items() for i in range(len(fns))])
def test_a_plausible_wrong_answer_is_rejected_with_its_case_and_a_hint(name, index):
    with pytest.raises(AssertionError) as error:
        check_code(name, WRONG[name][index])
    message = str(error.value)
    assert message.startswith(f"[{name}] case "), message
    assert "Hint: " in message or "classic mistake" in message, message


def test_a_threshold_error_is_not_named_as_int_instead_of_round():
    # `|w| >= t` removes one weight too few, which on the 90 % case is also what int() does: not named as int()
    with pytest.raises(AssertionError) as error:
        check_code("01-code", _mask_threshold_ge)
    assert "int() instead of round()" not in str(error.value) and "Hint: " in str(error.value)


@pytest.mark.parametrize("name, fn, mistake", [
    ("01-code", _mask_int, "int() instead of round()"), ("02-code", _neurons_int, "int() instead of round()"),
    ("07-code", _gru_swapped_mix, "h' = z * n + (1 - z) * h"), ("04-code", _fq_half_up, "rounding half up"),
    ("07-code", _gru_reset_first, "the reset gate applied before the matrix product"),
    ("04-code", _fq_python_round_away, "rounding half away from zero"), ("09-code", _group_half_up, "rounding half up"),
    ("08-code", _huffman_single_zero, "a single symbol of length 0")])
def test_a_mistake_that_explains_every_case_is_named(name, fn, mistake):
    with pytest.raises(AssertionError, match=re.escape(f"classic mistake '{mistake}'")):
        check_code(name, fn)


@pytest.mark.parametrize("name, fn, match", [
    ("04-code", _fq_float64_uncast, r"case 1 of \d+ .*dtype torch.float64, expected torch.float32"),
    ("05-code", _svd_wrong_order, r"expected two Linear layers with weights of shape"),
    ("01-code", _mask_numpy_out, r"expected a tensor mask, got ndarray"),
    ("08-code", _huffman_no_tiebreak, r"raised TypeError: '<' not supported.*tie-breaker"),
    ("10-code", _two_four_flat, r"shape \(8,\), expected \(1, 16\)|the mask has shape"),
    ("06-code", _kd_per_example, "could not be compared|expected one number")])
def test_results_the_checker_cannot_read_get_the_case_and_a_hint_not_a_crash(name, fn, match):
    with pytest.raises(AssertionError, match=match):
        check_code(name, fn)


@pytest.mark.parametrize("name, fn, argument", [("01-code", _mask_in_place, "w"), ("03-code", _soft_in_place, "v"),
                                                 ("07-code", _gru_updates_h_in_place, "h"),
                                                 ("10-code", _two_four_prunes_scores, "scores"),
                                                 ("02-code", _neurons_in_place, "first")])
def test_a_function_that_changes_its_input_is_caught(name, fn, argument):
    with pytest.raises(AssertionError, match=f"changed the {argument} it was given"):
        check_code(name, fn)


def test_a_function_that_runs_too_long_is_stopped_with_a_message(monkeypatch):
    monkeypatch.setattr(exercises, "CASE_SECONDS", 0.2)

    def endless(v, t):
        while True:
            pass

    with pytest.raises(AssertionError, match=r"\[03-code\] case 1 of \d+ .* ran longer than 0.2 s and was stopped"):
        check_code("03-code", endless)


def test_arithmetic_answers_accept_numpy_and_torch_numbers_not_bools(capsys):
    assert check("x", np.int64(12), 12) and check("x", np.float32(0.5), 0.5) and check("x", torch.tensor(7), 7)
    with pytest.raises(AssertionError):
        check("x", True, 1)
    with pytest.raises(AssertionError):
        check("x", "12", 12)
