"""What every technique shares: which tensors it acts on, the stored and the effective weight of a pruned layer,
recurrent gate layouts, model copies.

One table of layer kinds (``LAYER_KINDS``) says which tensors of which module a technique may compress: the
``weight`` of ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``, and ``weight_ih_l*`` / ``weight_hh_l*`` of ``nn.RNN`` /
``nn.GRU`` / ``nn.LSTM``; never biases. ``sites(model)`` walks a model with it and returns one ``Site`` per tensor.

A layer pruned with ``torch.nn.utils.prune`` holds ``weight_orig`` (stored, trained) and ``weight_mask``; torch
recomputes the attribute ``weight = weight_orig * weight_mask`` only in the next forward, so after an optimizer step
that attribute is stale. ``Site.effective()`` computes the product afresh, so nothing here reads a stale weight, and
``Site.write`` writes where the values live (``weight_orig``), so the next forward keeps them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.prune import BasePruningMethod

from compresskit.checks import check_batch, check_fields, check_finite, check_items, check_module, checked

__all__ = ["GATES", "LAYER_KINDS", "compressible_names", "pruning_hook", "stored_tensor", "mask_of", "effective_weight",
           "refresh_pruned", "named_tensors", "is_compressible", "Site", "sites", "require_sites", "unique_sites",
           "copy_model", "replace_module", "placed_like", "device_dtype", "eval_mode", "inputs_of",
           "transformer_linears", "device_of"]

# gates stacked in weight_ih / weight_hh, by nn.RNNBase.mode (torch's order: GRU r, z, n; LSTM i, f, g, o)
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}
_RNN_PREFIXES = ("weight_ih_l", "weight_hh_l")


def _linear_conv(module: nn.Module) -> list[str]:
    return ["weight"]


def _recurrent(module: nn.RNNBase) -> list[str]:
    return [n for n in module._flat_weights_names if n.startswith(_RNN_PREFIXES)]


LAYER_KINDS: list[tuple[type | tuple[type, ...], Callable[[nn.Module], list[str]]]] = [
    ((nn.Linear, nn.Conv1d, nn.Conv2d), _linear_conv),
    (nn.RNNBase, _recurrent),
]
"""(module type, names of its compressible tensors): the one table every technique consults."""


@checked
def compressible_names(module: nn.Module) -> list[str]:
    """Names of ``module``'s own compressible tensors by ``LAYER_KINDS`` (empty for any other module)."""
    for kind, names in LAYER_KINDS:
        if isinstance(module, kind):
            return names(module)
    return []


# ------------------------------------------------------------------------------------------------ pruned tensors


@checked
def pruning_hook(module: nn.Module, name: str) -> BasePruningMethod | None:
    """The ``torch.nn.utils.prune`` hook that masks ``module.<name>``, or None."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
            return hook
    return None


@checked
def stored_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor that holds ``module.<name>``'s values: ``<name>_orig`` under a pruning mask (the attribute
    ``<name>`` is recomputed from it on every forward, so writing there is lost), else the parameter itself."""
    if not isinstance(getattr(module, name, None), torch.Tensor):
        raise ValueError(f"name must name a tensor of the {type(module).__name__}, got {name!r}")
    orig = getattr(module, f"{name}_orig", None)
    return orig if orig is not None else getattr(module, name)


@checked
def mask_of(module: nn.Module, name: str) -> torch.Tensor | None:
    """The pruning mask of ``module.<name>`` (1 = kept), or None when it is not pruned."""
    return getattr(module, f"{name}_mask", None) if pruning_hook(module, name) is not None else None


@checked
def effective_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """``module.<name>`` as the next forward will use it: ``orig * mask`` computed now (with autograd) when pruned."""
    stored = stored_tensor(module, name)  # refuses a name that is no tensor of module
    mask = mask_of(module, name)
    return stored * mask if mask is not None else getattr(module, name)


@checked
def refresh_pruned(model: nn.Module) -> nn.Module:
    """Recompute every pruned tensor's attribute (``w = w_orig * w_mask``) now, as the next forward would. Training
    calls it once at its end, so that ``layer.weight`` read by a learner is current; the package itself reads
    weights through ``effective_weight``. Returns ``model``."""
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, BasePruningMethod):
                setattr(module, hook._tensor_name, hook.apply_mask(module))
    return model


# ------------------------------------------------------------------------------------------------ sites


@checked
def named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter and buffer as the model *uses* it.

    A module pruned with ``torch.nn.utils.prune`` holds ``weight_orig`` and ``weight_mask``; its effective
    weight (``orig * mask``, computed now: ``layers.effective_weight``) is what is yielded, under the name
    ``...weight``. A tensor shared by several modules (tied weights) is yielded once, as a file stores it once.
    """
    check_module("model", model)
    seen = set()
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if name.endswith("_orig") and pruning_hook(module, name[: -len("_orig")]) is not None:
                name = name[: -len("_orig")]
                p = effective_weight(module, name)
            yield prefix + name, p
        for name, b in module.named_buffers(recurse=False):
            if b is None or name.endswith("_mask"):
                continue
            yield prefix + name, b


@checked
def is_compressible(tensor: torch.Tensor) -> bool:
    """Weight matrices and kernels (``dim >= 2``): what pruning and quantization act on."""
    return tensor.dim() >= 2 and tensor.is_floating_point()


@dataclass(frozen=True)
class Site:
    """One compressible tensor: ``module.<tensor>``, called ``name`` in the model."""

    name: str
    module: nn.Module
    tensor: str

    def __post_init__(self):
        check_fields(self)

    @property
    def stored(self) -> torch.Tensor:
        """Where the values live (``weight_orig`` when pruned): write here."""
        return stored_tensor(self.module, self.tensor)

    @property
    def mask(self) -> torch.Tensor | None:
        return mask_of(self.module, self.tensor)

    def effective(self) -> torch.Tensor:
        """The weight the next forward uses (pruned entries are 0), computed now."""
        return effective_weight(self.module, self.tensor)

    def kept(self) -> torch.Tensor:
        """Boolean map of the weights a technique should fit to: the pruning mask when there is one, else the
        nonzero entries (exact zeros, e.g. from a finalized pruning or proximal L1, count as pruned)."""
        mask = self.mask
        return mask.bool() if mask is not None else self.effective().detach() != 0

    @torch.no_grad()
    def write(self, values: torch.Tensor) -> None:
        """Store new values (pruned entries stay masked)."""
        self.stored.copy_(values)


def _refuse_reparametrized(name: str, module: nn.Module, tensor: str) -> None:
    if parametrize.is_parametrized(module, tensor):
        raise ValueError(f"layer '{name}' computes its {tensor} through a parametrization "
                         f"({type(module.parametrizations[tensor][0]).__name__}): compresskit would compress a value "
                         "that is recomputed on every forward; bake it in first with "
                         f"torch.nn.utils.parametrize.remove_parametrizations(layer, '{tensor}')")
    if hasattr(module, f"{tensor}_g") and hasattr(module, f"{tensor}_v"):
        raise ValueError(f"layer '{name}' uses weight_norm ({tensor}_g, {tensor}_v): its {tensor} is recomputed on "
                         f"every forward; bake it in first with torch.nn.utils.remove_weight_norm(layer, '{tensor}')")


@checked
def sites(model: nn.Module, tensors: str | Sequence[str] | None = None) -> list[Site]:
    """Every compressible tensor of ``model`` in model order (``LAYER_KINDS``), optionally only those whose qualified
    name contains one of ``tensors`` (e.g. ``"weight_hh"``). Refuses parametrized (weight-norm) layers and empty
    weights with a ValueError naming the layer; naming nothing that exists is a ValueError too."""
    check_module("model", model)
    found = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for tensor in compressible_names(module):
            _refuse_reparametrized(mod_name or type(module).__name__, module, tensor)
            site = Site(prefix + tensor, module, tensor)
            if site.stored.numel() == 0:
                raise ValueError(f"layer '{mod_name}' has an empty {tensor} of shape {tuple(site.stored.shape)}: "
                                 "nothing to compress; remove the layer")
            found.append(site)
    if tensors is None:
        return found
    wanted = [tensors] if isinstance(tensors, str) else list(tensors) if isinstance(tensors, (list, tuple)) else None
    if not wanted or not all(isinstance(w, str) and w for w in wanted):
        raise TypeError(f"tensors must be a non-empty string or a sequence of them, got {tensors!r}")
    chosen = [s for s in found if any(w in s.name for w in wanted)]
    if not chosen:
        raise ValueError(f"tensors={tensors!r} matches none of the prunable tensors {[s.name for s in found]}")
    return chosen


@checked
def require_sites(model: nn.Module, tensors=None) -> list[Site]:
    """``sites`` that refuses a model with nothing to compress, and non-finite weights (naming the tensor)."""
    found = sites(model, tensors)
    if not found:
        raise ValueError(f"model ({type(model).__name__}) has nothing to compress: no Linear, Conv1d/2d or "
                         "RNN/GRU/LSTM weights")
    for s in found:
        check_finite(f"weight '{s.name}'", s.stored)
    return found


@checked
def unique_sites(found: list[Site]) -> list[list[Site]]:
    """Sites grouped by the tensor that stores them: tied weights (one Parameter in several modules) form one group,
    so a technique computes once per tensor and applies to every module that shares it (they stay tied)."""
    check_items("found", found, Site)
    groups: dict[int, list[Site]] = {}
    for s in found:
        groups.setdefault(id(s.stored), []).append(s)
    return list(groups.values())


# ------------------------------------------------------------------------------------------------ models


@checked
def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy that also works for models pruned with ``torch.nn.utils.prune`` after a forward pass.

    Such a module holds its masked weight as a plain attribute computed in the last forward, a non-leaf tensor
    that ``copy.deepcopy`` refuses. Those tensors are given to deepcopy as detached copies (the copy's own hook
    recomputes them); tied parameters stay tied in the copy; the caller's model is not touched.
    """
    check_module("model", model)
    memo = {}
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, BasePruningMethod):
                t = getattr(module, hook._tensor_name, None)
                if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                    memo[id(t)] = t.detach().clone()
    return copy.deepcopy(model, memo)


@checked
def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` (as in ``named_modules``) is, in place."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@checked
def placed_like(new: nn.Module, old: nn.Module | torch.Tensor, *, training: bool | None = None) -> nn.Module:
    """``new`` on the device and in the dtype of ``old`` (a module's first parameter, or a tensor), in ``old``'s
    train/eval mode: a layer built to replace another behaves like it (BatchNorm in eval stays in eval)."""
    if not isinstance(old, (nn.Module, torch.Tensor)):
        raise TypeError(f"old must be an nn.Module or a tensor, got {type(old).__name__} {old!r:.40}")
    ref = old if isinstance(old, torch.Tensor) else next(old.parameters(), None)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    mode = training if training is not None else getattr(old, "training", None)
    if mode is not None:
        new.train(mode)
    return new


@checked
def device_dtype(w: torch.Tensor) -> dict:
    """``device=`` and ``dtype=`` keywords that build a new layer like the tensor ``w``."""
    return {"device": w.device, "dtype": w.dtype}


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Every module of ``models`` in evaluation mode inside the block; afterwards each submodule gets back its *own*
    training flag (a model whose parts were in different modes comes back exactly as it was), even on an error."""
    for i, model in enumerate(models):
        check_module(f"models[{i}]", model)
    flags = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class _Stop(Exception):
    """Raised by an input hook once it has its layer's input: the rest of the forward pass is not needed."""


@checked
@torch.no_grad()
def inputs_of(model: nn.Module, layer: nn.Module, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """The input ``layer`` gets when ``model`` runs on ``x`` (in batches), concatenated along the batch; the forward
    pass stops at the layer."""
    check_batch("x", x, batch_size=batch_size)
    rows = []

    def hook(module, args):
        rows.append(args[0].detach().float())
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        for i in range(0, len(x), batch_size):
            try:
                model(x[i:i + batch_size])
            except _Stop:
                pass
    finally:
        handle.remove()
    return torch.cat(rows)


@checked
def transformer_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers of a transformer's blocks by name, in forward order (attention q, k, v, proj; MLP fc, out):
    what weight-only quantization and language-model pruning act on. Embeddings, LayerNorms and the output head are
    not among them: they are a small share of the bytes and the most sensitive to rounding and pruning."""
    check_module("model", model)
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"model must be a transformer with a ModuleList `blocks` (models.transformer_lm), got "
                        f"{type(model).__name__}")
    return {f"blocks.{name}": m for name, m in blocks.named_modules() if isinstance(m, nn.Linear)}


@checked
def device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
