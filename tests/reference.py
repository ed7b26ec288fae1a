"""Compression steps done by hand with torch, as a learner would write them: the independent references that the
composition tests (and ``benchmarks/composition.py``) compare compresskit against. Nothing here calls compresskit's
techniques."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


def torch_prune_layers(model: nn.Module, sparsity: float, names=("weight",)) -> nn.Module:
    """torch's own l1_unstructured on every Linear weight (and RNN weights named in ``names``), on a deep copy."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
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
