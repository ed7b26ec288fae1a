"""The coding exercises' material: for each exercise its cases, the package's answer, how a result is compared (a
function of ``compresskit.answer_checks``) and the classic mistakes it recognises (the seed articles' mistakes among
them). ``compresskit.exercises`` runs them.

Cases are chosen away from rounding ties unless a tie is the point of the case, so that a correct answer computed
another way (in float64 and cast back, with numpy) is never rejected by float noise.
"""

from __future__ import annotations

import copy
import heapq
import math

import torch
import torch.nn.functional as F
from torch import nn

from compresskit.answer_checks import (
    code_lengths_differ,
    hidden_state_differs,
    keep_mask_differs,
    low_rank_pair_differs,
    mask_differs,
    neuron_pair_differs,
    scalar_differs,
    seeded_randn,
    tensor_differs,
)
from compresskit.distill import kd_loss
from compresskit.encode import huffman_code
from compresskit.lowrank import svd_linear
from compresskit.prune import magnitude_mask, nm_mask
from compresskit.quantize import code_range, fake_quantize, qparams
from compresskit.sparsify import soft_threshold
from compresskit.structured import prune_channels

__all__ = ["EXERCISES", "MASK_MISTAKES", "NEURON_MISTAKES", "SOFT_MISTAKES", "QUANT_MISTAKES", "SVD_MISTAKES",
           "KD_MISTAKES", "GRU_MISTAKES", "HUFFMAN_MISTAKES", "GROUP_MISTAKES", "TWO_FOUR_MISTAKES"]


def _exercise(signature, cases, solve, differs, hint, mistakes) -> dict:
    return {"signature": signature, "cases": cases, "solve": solve, "differs": differs, "hint": hint,
            "mistakes": mistakes}


# --- 01 and 07: magnitude masks ------------------------------------------------------------------------------


def _package_mask(w, sparsity):
    return magnitude_mask(w, sparsity=sparsity)


def _mask_cases():
    ties = torch.tensor([[0.1, -0.1, 0.1, 0.2], [0.3, -0.1, 0.2, 0.05]])
    return [{"what": "random 5x7, half", "w": seeded_randn(0, 5, 7), "sparsity": 0.5},
            {"what": "random 5x7, 90 % (31.5 rounds to 32)", "w": seeded_randn(1, 5, 7), "sparsity": 0.9},
            {"what": "ties: four weights of magnitude 0.1", "w": ties, "sparsity": 0.25},
            {"what": "nothing to remove", "w": seeded_randn(2, 3, 4), "sparsity": 0.0},
            {"what": "everything removed", "w": seeded_randn(3, 3, 4), "sparsity": 1.0},
            {"what": "a conv weight", "w": seeded_randn(4, 4, 2, 3, 3), "sparsity": 0.7}]


def _mask_by_kth(w, sparsity):  # compares with the k-th smallest |w|: every weight tied with it goes too
    k = round(sparsity * w.numel())
    if k == 0:
        return torch.ones_like(w)
    return (w.abs() > w.abs().flatten().kthvalue(k).values).float()


MASK_MISTAKES = {
    "a threshold of 0": (lambda w, sparsity: (w.abs() >= 0).float(),
                         "|w| < 0 is never true, so nothing is removed; the threshold must come from the sparsity"),
    "comparing with the k-th value on ties": (_mask_by_kth, "with `|w| > t` at t = the k-th smallest |w|, every "
                                              "weight tied with it goes too; remove exactly k = round(s * n) entries "
                                              "(argsort or topk), not a threshold"),
    "ranking by w instead of |w|": (lambda w, sparsity: _keep_top(w, sparsity), "large negative weights matter as "
                                    "much as large positive ones: rank by the absolute value"),
    "removing the large weights": (lambda w, sparsity: _keep_top(-w.abs(), sparsity),
                                   "magnitude pruning removes the *smallest* |w|"),
    "int() instead of round()": (lambda w, sparsity: _drop_lowest(w.abs(), int(sparsity * w.numel())),
                                 "int() truncates: at 90 % of 35 weights it removes 31, round() gives 32"),
}


def _drop_lowest(scores, k):
    mask = torch.ones_like(scores)
    if k:
        mask.view(-1)[scores.flatten().argsort(stable=True)[:k]] = 0
    return mask


def _keep_top(scores, sparsity):
    return _drop_lowest(scores, round(sparsity * scores.numel()))


# --- 02: structured pruning of one neuron layer ---------------------------------------------------------------


def _neuron_reference(first, second, amount):
    pruned = prune_channels(nn.Sequential(first, nn.ReLU(), second), amount)
    return pruned[0], pruned[2]


def _neuron_cases():
    out = []
    # (7, 9, 3, 0.75): 6.75 neurons round to 7, int() gives 6
    for seed, (i, h, o, amount) in enumerate([(6, 8, 3, 0.5), (10, 12, 4, 0.25), (5, 9, 2, 0.7), (7, 9, 3, 0.75)]):
        torch.manual_seed(seed)
        out.append({"what": f"{i} -> {h} -> {o}, remove {amount:.0%}", "first": nn.Linear(i, h),
                    "second": nn.Linear(h, o), "amount": amount})
    return out


def _neurons_by(score, drop_next=True, keep_low=False, count=round):
    def wrong(first, second, amount):
        s = score(first.weight.detach())
        k = count(amount * len(s))
        keep = s.argsort(descending=keep_low)[k:].sort().values
        a = nn.Linear(first.in_features, len(keep))
        a.weight.data, a.bias.data = first.weight.data[keep].clone(), first.bias.data[keep].clone()
        if not drop_next:
            return a, copy.deepcopy(second)
        b = nn.Linear(len(keep), second.out_features)
        b.weight.data, b.bias.data = second.weight.data[:, keep].clone(), second.bias.data.clone()
        return a, b
    return wrong


NEURON_MISTAKES = {
    "removing the strongest neurons": (_neurons_by(lambda w: w.abs().sum(1), keep_low=True),
                                       "the neurons with the *smallest* L1 norm go"),
    "ranking by the signed sum": (_neurons_by(lambda w: w.sum(1)), "score a neuron by sum(|w|) of its incoming "
                                  "weights; a signed sum lets positive and negative weights cancel"),
    "leaving the next layer as it was": (_neurons_by(lambda w: w.abs().sum(1), drop_next=False),
                                         "the next layer must lose the matching *columns*"),
    "int() instead of round()": (_neurons_by(lambda w: w.abs().sum(1), count=int),
                                 "int() truncates: removing 75 % of 9 neurons is 6.75, which rounds to 7"),
}


# --- 03: the soft threshold -----------------------------------------------------------------------------------


def _soft(v, t):
    return soft_threshold(v, t)


SOFT_MISTAKES = {
    "a hard threshold": (lambda v, t: v * (v.abs() > t), "the soft threshold also moves the kept values t closer "
                         "to zero: sign(v) * max(|v| - t, 0)"),
    "a subgradient step": (lambda v, t: v - t * torch.sign(v), "v - t * sign(v) jumps over zero instead of landing "
                           "on it: small values change sign; clamp |v| - t at 0"),
    "forgetting the sign": (lambda v, t: torch.clamp(v - t, min=0), "negative values must shrink towards zero too: "
                            "apply max(|v| - t, 0) to |v| and put the sign back"),
    "a flattened result": (lambda v, t: (torch.sign(v) * torch.clamp(v.abs() - t, min=0)).flatten(),
                           "the step acts on weight matrices: return a tensor of v's shape (no .flatten() or "
                           ".view(-1) on the way out)"),
}


def _soft_cases():
    return [{"what": "random", "v": seeded_randn(0, 20), "t": 0.3},
            {"what": "t = 0 changes nothing", "v": seeded_randn(1, 8), "t": 0.0},
            {"what": "values exactly at +-t", "v": torch.tensor([0.5, -0.5, 0.2, -1.0]), "t": 0.5},
            {"what": "t larger than every |v|", "v": seeded_randn(2, 6, scale=0.1), "t": 5.0},
            {"what": "a weight matrix (4 x 5)", "v": seeded_randn(3, 4, 5), "t": 0.4}]


# --- 04: uniform fake quantization ----------------------------------------------------------------------------


def _fake_quant(w, bits, symmetric):
    return fake_quantize(w, bits, symmetric=symmetric)


def _quant_no_zero_point(w, bits, symmetric):
    s, _ = qparams(w, bits, symmetric=symmetric)
    q_min, q_max = code_range(bits, symmetric)
    return torch.clamp(torch.round(w / s), q_min, q_max) * s


def _quant_no_clamp(w, bits, symmetric):
    s, _ = qparams(w, bits, symmetric=symmetric)
    return torch.round(w / s) * s  # (round(w / s) + z - z) * s: the zero point in and out, nothing clamped


def _quant_from_max(w, bits, symmetric):
    if not symmetric:
        return _fake_quant(w, bits, symmetric)
    s = torch.clamp(w.max(), min=1e-12) / ((2**bits - 1) / 2)  # the largest value, not the largest magnitude
    q_min, q_max = code_range(bits, symmetric)
    return torch.clamp(torch.round(w * (1.0 / s)), q_min, q_max) * s


QUANT_MISTAKES = {
    "round(w / 2**bits)": (lambda w, bits, symmetric: torch.round(w / 2**bits), "there is no scale here and no way "
                           "back: q = clamp(round(w / s) + z, q_min, q_max), then w_hat = (q - z) * s"),
    "a missing zero point": (_quant_no_zero_point, "an affine grid starts at min(w), not at 0: add z = q_min - "
                             "round(min / s) before clamping and subtract it when dequantizing"),
    "a missing clamp": (_quant_no_clamp, "round(w / s) can land one code outside the range (max|w| / s = 7.5 rounds "
                        "to 8 at 4 bits): clamp to [q_min, q_max]"),
    "rounding half up": (lambda w, bits, symmetric: _round_half(w, bits, symmetric, "up"),
                         "floor(x + 0.5) rounds every tie up (2.5 -> 3); torch.round rounds ties to even (2.5 -> 2), "
                         "as torch's fake quantization does"),
    "a symmetric scale from max(w)": (_quant_from_max, "a symmetric grid spans [-max|w|, max|w|]: take the largest "
                                      "magnitude, w.abs().max(), not w.max(), or a large negative weight is clipped"),
    "rounding half away from zero": (lambda w, bits, symmetric: _round_half(w, bits, symmetric, "away"),
                                     "Python 2's and C's round() send ties away from zero (2.5 -> 3, -3.5 -> -4); "
                                     "torch.round sends them to even (2.5 -> 2)"),
}


def _quant_ties() -> torch.Tensor:
    """4-bit symmetric with scale exactly 0.25 (max |w| = 1.875 = 7.5 steps): w / s lands exactly on .5 in float32
    and float64 alike, where round half to even, half up and half away from zero all differ."""
    return torch.tensor([1.875, 0.625, -0.375, -0.875, 0.125, 1.125, -1.625, 0.3])


def _round_half(w, bits, symmetric, mode):
    s, z = qparams(w, bits, symmetric=symmetric)
    q_min, q_max = code_range(bits, symmetric)
    x = w / s
    r = torch.floor(x + 0.5) if mode == "up" else torch.sign(x) * torch.floor(x.abs() + 0.5)
    return (torch.clamp(r + z, q_min, q_max) - z) * s


def _largest_positive(w: torch.Tensor) -> torch.Tensor:
    """``w`` with its sign flipped if needed so that its largest |w| is positive. Symmetric quantization puts the
    largest |w| exactly on a tie (max|w| / s = 2^(b-1) - 0.5 steps); at +7.5 both neighbours clamp to code 7, at -7.5
    the code (-8 or -7) would be decided by float noise, and a correct answer computed in float64 could be rejected."""
    return w * torch.sign(w.flatten()[w.abs().argmax()])


def _quant_cases():
    return [{"what": "4-bit symmetric, exact ties (w / s = 2.5, -1.5, -3.5, 0.5, 4.5, -6.5)", "w": _quant_ties(),
             "bits": 4, "symmetric": True},
            {"what": "4-bit symmetric", "w": _largest_positive(seeded_randn(0, 6, 5)), "bits": 4, "symmetric": True},
            {"what": "3-bit affine", "w": seeded_randn(1, 40), "bits": 3, "symmetric": False},
            {"what": "8-bit affine, one-sided (ReLU-like) values", "w": seeded_randn(2, 30).abs() + 0.5, "bits": 8,
             "symmetric": False},
            {"what": "2-bit symmetric with an outlier", "w": torch.cat([seeded_randn(3, 20, scale=0.1),
                                                                        torch.tensor([2.0])]),
             "bits": 2, "symmetric": True},
            {"what": "a zero range: every value 0", "w": torch.zeros(5), "bits": 4, "symmetric": False},
            # the largest magnitude negative, on exact values (scale 0.25): -7.5 steps rounds to -8 in any precision
            {"what": "4-bit symmetric, largest magnitude negative",
             "w": torch.tensor([-1.875, 0.625, 0.375, -0.5, 1.0, 0.125]), "bits": 4, "symmetric": True}]


# --- 05: a truncated-SVD layer pair ---------------------------------------------------------------------------


def _svd_reference(layer, rank):
    return svd_linear(layer, rank)


def _svd_wrong(use_s=True, smallest=False):
    def wrong(layer, rank):
        u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
        pick = slice(len(s) - rank, len(s)) if smallest else slice(0, rank)
        u, s, vh = u[:, pick], s[pick], vh[pick]
        first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
        first.weight.data = (s[:, None] * vh if use_s else vh).clone()
        second.weight.data, second.bias.data = u.clone(), layer.bias.detach().clone()
        return nn.Sequential(first, second)
    return wrong


SVD_MISTAKES = {
    "dropping the singular values": (_svd_wrong(use_s=False), "W ~ U_r diag(S_r) V_r^T: the singular values must go "
                                     "into one of the factors (or sqrt(S) into each)"),
    "keeping the smallest singular values": (_svd_wrong(smallest=True), "torch.linalg.svd sorts S in descending "
                                             "order: keep the first r, not the last"),
}


def _svd_cases():
    out = []
    for seed, (i, o, r) in enumerate([(12, 8, 3), (8, 8, 8), (20, 5, 1)]):
        torch.manual_seed(seed)
        out.append({"what": f"Linear({i}, {o}) at rank {r}", "layer": nn.Linear(i, o), "rank": r})
    return out


# --- 06: the distillation loss --------------------------------------------------------------------------------


def _kd_reference(student_logits, teacher_logits, labels, temperature, alpha):
    return kd_loss(student_logits, teacher_logits, labels, temperature=temperature, alpha=alpha)


def _kd_wrong(t_squared=True, log_input=True, reverse=False, soften_teacher=True):
    def wrong(student_logits, teacher_logits, labels, temperature, alpha):
        t = temperature
        p_s = F.log_softmax(student_logits / t, dim=1)
        p_t = F.softmax(teacher_logits / (t if soften_teacher else 1.0), dim=1)
        if reverse:
            soft = F.kl_div(torch.log(p_t), p_s.exp(), reduction="batchmean")
        else:
            soft = F.kl_div(p_s if log_input else p_s.exp(), p_t, reduction="batchmean")
        return (alpha * (t * t if t_squared else 1.0) * soft + (1 - alpha) * F.cross_entropy(student_logits, labels))
    return wrong


KD_MISTAKES = {
    "a missing T^2": (_kd_wrong(t_squared=False), "the soft term's gradient shrinks like 1/T^2; multiply it by T^2"),
    "KL with probabilities as input": (_kd_wrong(log_input=False), "F.kl_div(input, target) wants log-probabilities "
                                       "as input: log_softmax(student / T)"),
    "the KL the wrong way round": (_kd_wrong(reverse=True), "KL(p_teacher || p_student): the teacher's "
                                   "distribution is the target"),
    "an unsoftened teacher": (_kd_wrong(soften_teacher=False), "divide the teacher's logits by T too"),
}


def _kd_cases():
    y = torch.tensor([0, 3, 9, 3, 1])
    return [{"what": "T = 4, alpha = 0.9", "student_logits": seeded_randn(0, 5, 10),
             "teacher_logits": seeded_randn(1, 5, 10, scale=4), "labels": y, "temperature": 4.0, "alpha": 0.9},
            {"what": "T = 1, alpha = 0.5", "student_logits": seeded_randn(2, 5, 10),
             "teacher_logits": seeded_randn(3, 5, 10), "labels": y, "temperature": 1.0, "alpha": 0.5},
            {"what": "high T = 20, soft term only", "student_logits": seeded_randn(4, 5, 10, scale=3),
             "teacher_logits": seeded_randn(5, 5, 10, scale=6), "labels": y, "temperature": 20.0, "alpha": 1.0},
            {"what": "labels only (alpha = 0)", "student_logits": seeded_randn(6, 5, 10),
             "teacher_logits": seeded_randn(7, 5, 10), "labels": y, "temperature": 2.0, "alpha": 0.0}]


# --- 07: one GRU step, from the gate equations ---------------------------------------------------------------


@torch.no_grad()
def _gru_reference(x, h, cell):
    return cell(x, h)  # torch's own nn.GRUCell: the reference the learner's equations must match


def _gru_cases():
    out = []
    for seed, (inputs, hidden, batch, zero_state) in enumerate([(3, 4, 2, False), (8, 6, 5, False), (1, 2, 1, False),
                                                                 (5, 3, 4, True)]):
        torch.manual_seed(seed)
        cell = nn.GRUCell(inputs, hidden)
        with torch.no_grad():  # biases as large as the weights, so that a misplaced bias shows on every case
            cell.bias_ih.copy_(seeded_randn(100 + seed, 3 * hidden, scale=0.5))
            cell.bias_hh.copy_(seeded_randn(200 + seed, 3 * hidden, scale=0.5))
        h = torch.zeros(batch, hidden) if zero_state else seeded_randn(300 + seed, batch, hidden, scale=0.5)
        out.append({"what": f"GRUCell({inputs}, {hidden}), batch {batch}" + (", h = 0" if zero_state else ""),
                    "x": seeded_randn(400 + seed, batch, inputs), "h": h, "cell": cell})
    return out


def _gru_wrong(order=(0, 1, 2), swap_mix=False, reset_first=False, bias_outside=False, no_bias=False):
    """One GRU step with one classic mistake: gate blocks read in another ``order``, the interpolation swapped,
    the reset gate applied to h before the matrix product, b_hn outside the reset gate, or no biases at all."""
    def wrong(x, h, cell):
        w_ih, w_hh = cell.weight_ih.detach().chunk(3), cell.weight_hh.detach().chunk(3)
        b_ih, b_hh = cell.bias_ih.detach().chunk(3), cell.bias_hh.detach().chunk(3)
        if no_bias:
            b_ih = b_hh = [torch.zeros_like(b) for b in b_ih]
        (wr, wz, wn), (ur, uz, un) = [w_ih[i] for i in order], [w_hh[i] for i in order]
        (br, bz, bn), (cr, cz, cn) = [b_ih[i] for i in order], [b_hh[i] for i in order]
        r = torch.sigmoid(x @ wr.T + br + h @ ur.T + cr)
        z = torch.sigmoid(x @ wz.T + bz + h @ uz.T + cz)
        if reset_first:
            n = torch.tanh(x @ wn.T + bn + (r * h) @ un.T + cn)
        elif bias_outside:
            n = torch.tanh(x @ wn.T + bn + r * (h @ un.T) + cn)
        else:
            n = torch.tanh(x @ wn.T + bn + r * (h @ un.T + cn))
        return z * n + (1 - z) * h if swap_mix else (1 - z) * n + z * h
    return wrong


GRU_MISTAKES = {
    "gates read in the order z, r, n": (_gru_wrong(order=(1, 0, 2)),
                                        "torch stacks the gate blocks of weight_ih and weight_hh as r, z, n"),
    "h' = z * n + (1 - z) * h": (_gru_wrong(swap_mix=True),
                                 "in torch's GRU z keeps the old state: h' = (1 - z) * n + z * h"),
    "the reset gate applied before the matrix product": (
        _gru_wrong(reset_first=True),
        "torch resets the product: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), not W_hn (r * h)"),
    "b_hn outside the reset gate": (_gru_wrong(bias_outside=True),
                                    "b_hn belongs inside the reset: r * (W_hn h + b_hn)"),
    "the biases left out": (_gru_wrong(no_bias=True), "both bias_ih and bias_hh enter every gate"),
}


# --- 08: Huffman code lengths ---------------------------------------------------------------------------------


def _huffman_reference(counts):
    return {s: len(c) for s, c in huffman_code(counts).items()}


def _huffman_no_tie_breaker(counts):
    """heapq entries (count, subtree) with nothing in between: two equal counts compare the subtrees themselves, and a
    leaf (a symbol) against a merged subtree (a tuple) raises TypeError."""
    heap = [(c, s) for s, c in counts.items()]
    heapq.heapify(heap)
    if len(heap) == 1:
        return {heap[0][1]: 1}
    while len(heap) > 1:
        (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
        heapq.heappush(heap, (c1 + c2, (a, b)))
    lengths = {}

    def walk(node, depth):
        if isinstance(node, tuple):
            walk(node[0], depth + 1)
            walk(node[1], depth + 1)
        else:
            lengths[node] = depth

    walk(heap[0][1], 0)
    return lengths


HUFFMAN_MISTAKES = {
    "a fixed-length code": (lambda counts: {s: max(1, math.ceil(math.log2(len(counts)))) for s in counts},
                            "equal lengths ignore the counts: frequent symbols must get shorter codes"),
    "Shannon's lengths ceil(-log2 p)": (lambda counts: {s: max(1, math.ceil(-math.log2(c / sum(counts.values()))))
                                                        for s, c in counts.items()},
                                        "ceil(-log2 p) is a valid code but not optimal: merge the two rarest "
                                        "subtrees repeatedly (heapq) and count each symbol's depth"),
    "a heap without a tie-breaker": (_huffman_no_tie_breaker,
                                     "with equal counts heapq compares the next item of the entries: a symbol "
                                     "against a merged subtree cannot be compared; push (count, order, subtree) with "
                                     "a running counter as the order"),
    "a single symbol of length 0": (lambda counts: {s: n if len(counts) > 1 else 0
                                                    for s, n in _huffman_reference(counts).items()},
                                    "one symbol alone is the root of its tree (depth 0), but a code needs at least "
                                    "one bit per symbol: give it length 1"),
}


def _huffman_cases():
    return [{"what": "skewed counts", "counts": {"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5}},
            {"what": "a single symbol", "counts": {"x": 7}},
            {"what": "two symbols", "counts": {0: 3, 1: 1}},
            {"what": "equal counts", "counts": {s: 4 for s in range(8)}},
            {"what": "k-means indices", "counts": {0: 900, 1: 60, 2: 25, 3: 10, 4: 4, 5: 1}},
            {"what": "a leaf ties a merged subtree", "counts": {"a": 1, "b": 1, "c": 2}}]


# --- 09: group-wise round to nearest ------------------------------------------------------------------------------


def _group_rtn(w, bits, group_size, *, symmetric=False, rows_of=None, truncate=False, half_up=False):
    """Affine fake quantization of each group of ``group_size`` consecutive entries along a row (quantize.qparams per
    group); the keyword arguments make the classic mistakes."""
    m = w.T if rows_of == "columns" else w
    g = m.reshape(-1, group_size if rows_of != "whole rows" else m.shape[1])
    s, z = qparams(g, bits, symmetric=symmetric, per_channel=True)
    q_min, q_max = code_range(bits, symmetric)
    x = g * (1.0 / s)
    r = torch.trunc(x) if truncate else torch.floor(x + 0.5) if half_up else torch.round(x)
    q = torch.clamp(r + z, q_min, q_max)
    out = ((q - z) * s).reshape(m.shape)
    return out.T if rows_of == "columns" else out


GROUP_MISTAKES = {
    "one scale per row": (lambda w, bits, group_size: _group_rtn(w, bits, group_size, rows_of="whole rows"),
                          "each group of group_size columns has its own scale: reshape to (-1, group_size)"),
    "groups down the columns": (lambda w, bits, group_size: _group_rtn(w, bits, group_size, rows_of="columns"),
                                "a group is group_size consecutive *inputs* of one output row (along dim 1)"),
    "a symmetric grid": (lambda w, bits, group_size: _group_rtn(w, bits, group_size, symmetric=True),
                         "affine: codes 0..2^b-1 over [min(g, 0), max(g, 0)] with a zero point per group"),
    "int() instead of round()": (lambda w, bits, group_size: _group_rtn(w, bits, group_size, truncate=True),
                                 "truncating moves every weight towards zero by up to a whole step: round"),
    "rounding half up": (lambda w, bits, group_size: _group_rtn(w, bits, group_size, half_up=True),
                         "floor(x + 0.5) rounds every tie up (2.5 -> 3); torch.round rounds ties to even (2.5 -> 2)"),
}


def _group_cases():
    positive = seeded_randn(7, 2, 16).abs() + 0.2  # groups with no negative weight: the range must still include 0
    # one-sided groups whose max is 15 steps of 0.25: w / s lands exactly on .5 (2.5, 4.5, 8.5) in any precision
    ties = torch.tensor([[3.75, 0.625, 1.125, 0.375, 2.125, 0.1, 1.0, 2.0],
                         [0.2, 3.75, 2.625, 0.875, 3.125, 1.6, 0.5, 1.375]])
    return [{"what": "4 bits, groups of 8", "w": seeded_randn(0, 4, 16), "bits": 4, "group_size": 8},
            {"what": "4 bits, exact ties (w / s = 2.5, 4.5, 8.5, ...)", "w": ties, "bits": 4, "group_size": 8},
            {"what": "3 bits, groups of 16", "w": seeded_randn(1, 3, 32, scale=0.2), "bits": 3, "group_size": 16},
            {"what": "2 bits, an outlier in one group",
             "w": torch.cat([seeded_randn(2, 2, 12), torch.full((1, 12), 3.0)]), "bits": 2, "group_size": 4},
            {"what": "one-sided groups", "w": positive, "bits": 4, "group_size": 8},
            {"what": "a group as wide as the row", "w": seeded_randn(3, 5, 24), "bits": 4, "group_size": 24}]


# --- 10: the 2:4 mask -----------------------------------------------------------------------------------------------


def _two_four(scores):
    return nm_mask(scores, 2, 4)


def _keep_top_half(scores, per_row):
    flat = scores.reshape(scores.shape[0], -1) if per_row else scores.reshape(1, -1)
    keep = torch.topk(flat, flat.shape[1] // 2, dim=1).indices
    return torch.zeros_like(flat).scatter_(1, keep, 1.0).reshape(scores.shape)


TWO_FOUR_MISTAKES = {
    "keeping the two lowest": (lambda scores: 1 - _two_four(scores), "keep the 2 *largest* scores of each group"),
    "groups down the columns": (lambda scores: _two_four(scores.T.contiguous()).T,
                                "a group is 4 consecutive inputs of one row (along dim 1), as the kernel reads them"),
    "half of each row, anywhere": (lambda scores: _keep_top_half(scores, True), "that is 50 % unstructured per row: "
                                   "2:4 needs exactly 2 kept in *every* group of 4"),
    "half of the whole tensor": (lambda scores: _keep_top_half(scores, False), "one ranking over the whole tensor is "
                                 "unstructured pruning; rank within each group of 4"),
}


def _two_four_cases():
    skewed = seeded_randn(3, 4, 8).abs()
    skewed[:, :4] += 5.0  # every large score in the first group of each row
    return [{"what": "random 4x8", "scores": seeded_randn(0, 4, 8).abs()},
            {"what": "one row of 16", "scores": seeded_randn(1, 1, 16).abs()},
            {"what": "8x4, one group per row", "scores": seeded_randn(2, 8, 4).abs()},
            {"what": "large scores bunched in one group", "scores": skewed}]


EXERCISES: dict[str, dict] = {
    "01-code": _exercise("magnitude_mask(w, sparsity) -> keep-mask", _mask_cases, _package_mask,
                         lambda got, expected, case: mask_differs(got, expected, case["w"]),
                         "remove exactly k = round(sparsity * n) entries of smallest |w| (argsort of |w|)",
                         MASK_MISTAKES),
    "02-code": _exercise("prune_neurons(first, second, amount) -> (first, second)", _neuron_cases,
                         _neuron_reference, neuron_pair_differs,
                         "score rows of first.weight by their L1 norm, keep the highest, slice first's rows and "
                         "bias and second's columns", NEURON_MISTAKES),
    "03-code": _exercise("soft_threshold(v, t) -> tensor", _soft_cases, _soft,
                         lambda g, e, c: tensor_differs(g, e, c), "sign(v) * max(|v| - t, 0)", SOFT_MISTAKES),
    "04-code": _exercise("fake_quantize(w, bits, symmetric) -> tensor", _quant_cases, _fake_quant,
                         lambda g, e, c: tensor_differs(g, e, c, atol=1e-6),
                         "scale and zero point as in section 1 (quantize.qparams), round half to even "
                         "(torch.round), clamp, dequantize", QUANT_MISTAKES),
    "05-code": _exercise("low_rank_pair(layer, rank) -> nn.Sequential", _svd_cases, _svd_reference,
                         low_rank_pair_differs, "W = U S V^T: first layer S_r V_r^T (no bias), second U_r with the "
                         "layer's bias", SVD_MISTAKES),
    "06-code": _exercise("kd_loss(student_logits, teacher_logits, labels, temperature, alpha) -> loss",
                         _kd_cases, _kd_reference, scalar_differs,
                         "alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) (batch mean) + (1 - alpha) * CE",
                         KD_MISTAKES),
    "07-code": _exercise("gru_step(x, h, cell) -> new hidden state", _gru_cases, _gru_reference, hidden_state_differs,
                         "split weight_ih, weight_hh and both biases into the blocks r, z, n (chunk(3)); r and z are "
                         "sigmoids of x W^T + b_i + h U^T + b_h; n = tanh(x W_n^T + b_in + r * (h U_n^T + b_hn)); "
                         "h' = (1 - z) * n + z * h", GRU_MISTAKES),
    "08-code": _exercise("huffman_lengths(counts) -> {symbol: code length}", _huffman_cases, _huffman_reference,
                         code_lengths_differ, "repeatedly merge the two subtrees of smallest total count (heap "
                         "entries need a tie-breaker, e.g. (count, order, subtree), when counts are equal); a "
                         "symbol's code length is its depth, at least 1", HUFFMAN_MISTAKES),
    "09-code": _exercise("group_rtn(w, bits, group_size) -> tensor", _group_cases,
                         lambda w, bits, group_size: _group_rtn(w, bits, group_size),
                         lambda g, e, c: tensor_differs(g, e, c, atol=1e-6),
                         "cut each row into groups of group_size columns; per group s = (max - min) / (2^b - 1) "
                         "over [min(g, 0), max(g, 0)], z = -round(min / s), clamp(round(w / s) + z), back",
                         GROUP_MISTAKES),
    "10-code": _exercise("two_four_mask(scores) -> keep-mask", _two_four_cases, _two_four, keep_mask_differs,
                         "reshape to (-1, 4), keep the 2 largest of each row of that view (topk), reshape back",
                         TWO_FOUR_MISTAKES),
}
"""The coding exercises of chapters 01-10 by name: the fields of an ``exercises.CodingExercise``."""
