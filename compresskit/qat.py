"""Training with the quantizer in the loop (re-exported by ``compresskit.quantize``).

- ``qat``: quantization-aware training. Every Linear / Conv weight (and an RNN's gate matrices, trained as an
  ``rnn.UnrolledRNN``) is seen through a fake quantizer; the backward pass is the clipped straight-through
  estimator (exactly where torch's fake-quant ops pass gradient); the optimizer updates float "shadow" weights;
  the quantized values are kept at the end.
- ``kmeans_finetune``: Deep Compression's second stage. Each weight tensor becomes ``codebook[indices] * mask``
  with a trainable codebook: autograd sums the gradients of every weight in a cluster into its centroid, the
  assignment stays fixed, and pruned weights stay zero.

Both keep a pruned model pruned: its mask is the quantizer's ``mask`` while training (pruned weights are 0 and get
no gradient) and is put back on the layer afterwards, so a later fine-tune keeps the zeros too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune
from torch.utils.data import Dataset

from compresskit.checks import check_bool, check_int, check_module, check_number, checked, dataset_tensors
from compresskit.layers import copy_model, mask_of, replace_module, require_sites
from compresskit.quantize import check_method, kmeans_quantize, ste_binarize, ste_fake_quantize
from compresskit.rnn import UnrolledRNN
from compresskit.train import train

__all__ = ["qat", "kmeans_finetune"]


class _FakeQuant(nn.Module):
    """Parametrization: the layer sees quantized weights; the optimizer updates the float "shadow" weights."""

    def __init__(self, bits: int, method: str, symmetric: bool, per_channel: bool, mask: torch.Tensor | None):
        super().__init__()
        self.bits, self.method, self.symmetric, self.per_channel = bits, method, symmetric, per_channel
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        mask = self.mask.bool() if self.mask is not None else None
        if self.method == "binary":
            return ste_binarize(w, mask=mask)
        return ste_fake_quantize(w, self.bits, symmetric=self.symmetric, per_channel=self.per_channel, mask=mask)


class _SharedWeights(nn.Module):
    """Parametrization: the weight is ``codebook[indices] * mask``; only the codebook trains."""

    def __init__(self, w: torch.Tensor, bits: int, mask: torch.Tensor | None):
        super().__init__()
        codebook, indices = kmeans_quantize(w, bits, mask=mask)
        self.codebook = nn.Parameter(codebook.to(w.dtype))
        self.register_buffer("indices", indices)
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        shared = self.codebook[self.indices]  # backward: index_add of the members' gradients into each centroid
        return shared * self.mask.to(shared.dtype) if self.mask is not None else shared


def _in_the_loop(model: nn.Module, dataset: Dataset, make: Callable[[torch.Tensor, torch.Tensor | None], nn.Module],
                 *, epochs: int, lr: float, train_kwargs: dict) -> nn.Module:
    """A copy of ``model`` with ``make(weight, mask)`` as the parametrization of every Linear / Conv weight (recurrent
    layers as UnrolledRNN), trained, then baked in; pruning masks are put back. ``model`` is not changed."""
    target = copy_model(model)
    recurrent = [name for name, m in target.named_modules() if isinstance(m, nn.RNNBase)]
    for name in recurrent:  # torch's fused RNNs take no parametrization: train the same recurrence from Linear parts
        replace_module(target, name, UnrolledRNN.from_torch(target.get_submodule(name)))
    layers = [s for s in require_sites(target) if s.tensor == "weight"]
    masks = []
    for site in layers:
        mask = mask_of(site.module, "weight")
        mask = mask.clone() if mask is not None else None
        kept = site.kept()
        if mask is not None:
            torch_prune.remove(site.module, "weight")  # weight = orig * mask, a plain parameter while training
        masks.append(mask)
        parametrize.register_parametrization(site.module, "weight", make(site.module.weight.detach(),
                                                                         None if bool(kept.all()) else kept))
    train(target, dataset, epochs=epochs, lr=lr, **train_kwargs)
    for site, mask in zip(layers, masks):
        parametrize.remove_parametrizations(site.module, "weight", leave_parametrized=True)
        if mask is not None:
            torch_prune.custom_from_mask(site.module, "weight", mask)
    for name in recurrent:
        replace_module(target, name, target.get_submodule(name).to_torch())
    return target


def _check_training(model, dataset, epochs, lr) -> None:
    check_module("model", model)
    dataset_tensors(dataset)
    check_int("epochs", epochs, 1)
    check_number("lr", lr, 0, low_open=True)
    require_sites(model)  # refuses weight-norm, NaN and empty models before anything is copied or trained


@checked
def qat(model: nn.Module, dataset: Dataset, *, bits: int, method: str = "uniform", symmetric: bool = True,
        per_channel: bool = True, epochs: int = 5, lr: float = 1e-3, **train_kwargs) -> nn.Module:
    """Quantization-aware training: fine-tune a copy whose Linear/Conv layers see fake-quantized weights (clipped
    STE in the backward pass), then freeze the quantized values. Returns the quantized copy.

    ``method="uniform"`` (bits 2..16) or ``"binary"`` (bits 1). Recurrent layers (``nn.RNN/GRU/LSTM``) train as
    ``rnn.UnrolledRNN`` (the same recurrence with ``Linear`` parts, which take the fake quantizer; torch's fused
    layers do not) and are returned as the torch layer they were. A pruned model stays pruned: scales and alphas are
    fitted to the kept weights, pruned weights stay 0 and keep their masks.
    """
    _check_training(model, dataset, epochs, lr)
    check_method(method, bits, ("uniform", "binary"))
    check_bool("symmetric", symmetric)
    check_bool("per_channel", per_channel)
    return _in_the_loop(model, dataset, lambda w, mask: _FakeQuant(bits, method, symmetric, per_channel, mask),
                        epochs=epochs, lr=lr, train_kwargs=train_kwargs)


@checked
def kmeans_finetune(model: nn.Module, dataset: Dataset, *, bits: int, epochs: int = 5, lr: float = 1e-3,
                    **train_kwargs) -> nn.Module:
    """Deep Compression's weight sharing with centroid fine-tuning (Han et al. 2016, section 3.3).

    Each weight tensor of a copy of ``model`` is clustered into 2^bits shared values (``kmeans_quantize`` on the kept
    weights only), then trained for ``epochs`` with only the codebooks free: the gradient of each centroid is the
    sum of the gradients of the weights that share it (``centroid_gradients``), the assignments never change and
    pruned weights stay 0. Returns the copy, whose weights are the fine-tuned ``codebook[indices]`` (masks kept).
    """
    _check_training(model, dataset, epochs, lr)
    check_int("bits", bits, 1, 8)
    return _in_the_loop(model, dataset, lambda w, mask: _SharedWeights(w, bits, mask),
                        epochs=epochs, lr=lr, train_kwargs=train_kwargs)

