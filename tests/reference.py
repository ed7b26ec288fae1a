"""Compression steps done by hand with torch, as a learner would write them: the independent references that the
composition tests (and ``benchmarks/composition.py``) compare compresskit against. Nothing here calls compresskit's
techniques."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune


def torch_prune_layers(model: nn.Module, sparsity: float, names=("weight",)) -> nn.Module:
    """torch's own l1_unstructured, on a deep copy, on every tensor whose name contains one of ``names``: Linear and
    Conv weights (called ``weight``) and RNN weights (``weight_ih_l0``, ``weight_hh_l0``...)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and "weight" in names:
            torch_prune.l1_unstructured(module, "weight", amount=sparsity)
        elif isinstance(module, nn.RNNBase):
            for name in module._flat_weights_names:
                if name.startswith("weight") and any(n in name for n in names):
                    torch_prune.l1_unstructured(module, name, amount=sparsity)
    return model


def kept_qparams(w: torch.Tensor, kept: torch.Tensor, bits: int, symmetric: bool):
    """Per-output-channel scale and zero point from the kept weights only, the formula written out."""
    rows = torch.where(kept, w, torch.zeros(())).reshape(w.shape[0], -1)
    lo, hi = rows.min(dim=1).values.clamp(max=0), rows.max(dim=1).values.clamp(min=0)
    if symmetric:
        q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = (torch.maximum(-lo, hi) / ((q_max - q_min) / 2)).clamp(min=torch.finfo(torch.float32).eps)
        return scale, torch.zeros_like(scale, dtype=torch.int32), q_min, q_max
    q_min, q_max = 0, 2**bits - 1
    scale = ((hi - lo) / (q_max - q_min)).clamp(min=torch.finfo(torch.float32).eps)
    return scale, (q_min - torch.round(lo / scale)).clamp(q_min, q_max).to(torch.int32), q_min, q_max


def fake_quant_kept(w: torch.Tensor, kept: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """torch.fake_quantize_per_channel_affine with parameters of the kept weights; pruned entries 0."""
    scale, zp, q_min, q_max = kept_qparams(w, kept, bits, symmetric)
    return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, q_min, q_max) * kept


def binarize_kept(w: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """alpha_i = mean |w| of row i's kept weights; alpha * sign(w) (sign(0) = +1) on kept entries, 0 elsewhere."""
    k = kept.to(w.dtype).reshape(w.shape[0], -1)
    alpha = (w.abs().reshape(w.shape[0], -1) * k).sum(1) / k.sum(1).clamp(min=1)
    return (torch.where(w >= 0, 1.0, -1.0) * alpha.reshape(-1, *[1] * (w.dim() - 1)) * kept).to(w.dtype)


def kmeans_kept(w: torch.Tensor, kept: torch.Tensor, bits: int) -> torch.Tensor:
    """scikit-learn's KMeans (Lloyd, linear initialisation as Deep Compression's) on the kept weights only."""
    from sklearn.cluster import KMeans

    x = w[kept].double().reshape(-1, 1).numpy()
    k = 2**bits
    init = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)[:, None].numpy()
    fit = KMeans(k, init=init, n_init=1, tol=0, max_iter=1000, algorithm="lloyd").fit(x)
    shared = torch.zeros_like(w)
    shared[kept] = torch.from_numpy(fit.cluster_centers_[fit.labels_, 0]).to(w.dtype)
    return shared


def truncated_svd(w: torch.Tensor, rank: int) -> torch.Tensor:
    """U_r S_r V_r^T from torch.linalg.svd."""
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


LINEARS = (1, 3, 5)  # the Linear layers of models.mlp(): Flatten, Linear, ReLU, Linear, ReLU, Linear


def _mlp_forward(model, weights, inputs):
    h = inputs.flatten(1)
    for i in LINEARS:
        h = F.linear(h, weights(i), model[i].bias)
        h = F.relu(h) if i != LINEARS[-1] else h
    return h


def qat_by_hand(torch_pruned, x, y, *, bits, lr, seed, batch_size, epochs=1):
    """QAT of a torch-pruned LeNet-style MLP written out: per-channel symmetric fake quantization (torch's op) of the
    masked weight with parameters from the kept weights, Adam, compresskit.train's minibatch order. Returns the
    quantized weights {layer index: tensor} (changes ``torch_pruned``)."""
    model = torch_pruned
    masks = {}
    for i in LINEARS:
        masks[i] = model[i].weight_mask.bool()
        torch_prune.remove(model[i], "weight")
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def quantized(i):
        w = model[i].weight
        scale, zp, q_min, q_max = kept_qparams(w.detach(), masks[i], bits, True)
        return torch.fake_quantize_per_channel_affine(w * masks[i], scale, zp, 0, q_min, q_max) * masks[i]

    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(_mlp_forward(model, quantized, x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return {i: quantized(i) for i in LINEARS}


def centroid_finetune_by_hand(torch_pruned, x, y, *, bits, lr):
    """Deep Compression's codebook update written out, one full-batch step: the gradient of each centroid is the sum
    of its members' gradients (index_add over the kept weights), SGD with momentum 0.9 on the codebooks only. The
    initial codebooks are scikit-learn's k-means of the kept weights. Returns {layer index: shared weights}."""
    books, members = {}, {}
    for i in LINEARS:
        kept = torch_pruned[i].weight_mask.bool()
        w = torch_pruned[i].weight.detach()
        shared = kmeans_kept(w, kept, bits)
        codebook = torch.unique(shared[kept])
        idx = torch.zeros_like(w, dtype=torch.long)
        idx[kept] = torch.searchsorted(codebook, shared[kept])
        books[i], members[i] = codebook.clone().requires_grad_(), (idx, kept)
    opt = torch.optim.SGD(list(books.values()), lr=lr, momentum=0.9)
    leaves = {i: (books[i].detach()[members[i][0]] * members[i][1]).requires_grad_() for i in LINEARS}
    F.cross_entropy(_mlp_forward(torch_pruned, lambda i: leaves[i], x), y).backward()
    for i in LINEARS:
        idx, kept = members[i]
        books[i].grad = torch.zeros_like(books[i]).index_add_(0, idx[kept], leaves[i].grad[kept])
    opt.step()
    return {i: books[i].detach()[members[i][0]] * members[i][1] for i in LINEARS}
