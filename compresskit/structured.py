"""Structured pruning (结构化剪枝): remove whole neurons, filters and recurrent hidden units.

Unstructured pruning (``compresskit.prune``) writes zeros that a dense kernel still multiplies. Here the units
themselves go: a hidden neuron is a row of its layer's weight and a column of the next layer's; a filter is a
slice of a convolution and of the next layer's input channels (and of BatchNorm between them); a recurrent hidden
unit is a row of every gate in ``weight_ih`` / ``weight_hh``, a column of ``weight_hh`` and of whatever reads the
state. The result is a smaller *dense* model: fewer MACs, really faster, in the caller's dtype, device and mode.

References: Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017); Wen et al., "Learning Structured
Sparsity in Deep Neural Networks" (NeurIPS 2016).
"""

from __future__ import annotations

import torch
from torch import nn

from compresskit.checks import (
    check_choice,
    check_fraction,
    check_int,
    check_module,
    check_tensor,
    checked,
    dataset_tensors,
)
from compresskit.layers import (
    GATES,
    copy_model,
    device_dtype,
    effective_weight,
    eval_mode,
    placed_like,
    replace_module,
    require_sites,
)
from compresskit.models import Block, ResidualBlock
from compresskit.rnn import UnrolledRNN

__all__ = ["NORMS", "channel_scores", "prune_channels", "prune_units", "remove_blocks", "BLOCK_SCORES",
           "block_importance", "block_influence", "prune_blocks", "thin_blocks", "HEAD_SCORES", "head_importance",
           "remove_heads", "prune_heads"]

NORMS = (1, 2)


def _check_norm(norm) -> None:
    if isinstance(norm, bool) or norm not in NORMS:
        raise ValueError(f"norm must be 1 or 2, got {norm!r}")


@checked
def channel_scores(weight: torch.Tensor, norm: int = 1) -> torch.Tensor:
    """L-``norm`` of each output unit: a row of a Linear weight, a whole filter of a Conv weight."""
    _check_norm(norm)
    check_tensor("weight", weight)
    if weight.dim() < 2 or weight.numel() == 0:
        raise ValueError(f"weight must be a Linear or Conv weight (at least 2-d, not empty), got shape "
                         f"{tuple(weight.shape)}")
    return torch.linalg.vector_norm(weight.detach().reshape(weight.shape[0], -1).float(), ord=norm, dim=1)


def _keep(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Indices (sorted) of the units kept: all but the ``round(amount * n)`` lowest-scoring."""
    n = scores.numel()
    drop = round(amount * n)
    if drop >= n:
        raise ValueError(f"amount={amount} would remove all {n} units of a layer; use amount < {(n - 0.5) / n:.3f}")
    return torch.sort(torch.topk(scores, n - drop, largest=True).indices).values


def _sliced(layer: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Module:
    """A new dense Linear / Conv / BatchNorm keeping the given output and input indices, like ``layer`` (dtype,
    device, train/eval mode); BatchNorm with or without affine parameters and running statistics."""
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        idx = out_idx
        ref = next((t for t in (layer.weight, layer.running_mean) if t is not None), None)
        kw = device_dtype(ref) if ref is not None else {}
        new = type(layer)(len(idx), eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                          track_running_stats=layer.track_running_stats, **kw)
        with torch.no_grad():
            if layer.affine:
                new.weight.copy_(layer.weight[idx])
                new.bias.copy_(layer.bias[idx])
            if layer.track_running_stats and layer.running_mean is not None:
                new.running_mean.copy_(layer.running_mean[idx])
                new.running_var.copy_(layer.running_var[idx])
                new.num_batches_tracked.copy_(layer.num_batches_tracked)
        return new.train(layer.training)
    w = effective_weight(layer).detach()
    b = layer.bias.detach() if getattr(layer, "bias", None) is not None else None
    if out_idx is not None:
        w, b = w[out_idx], (b[out_idx] if b is not None else None)
    if in_idx is not None:
        w = w[:, in_idx]
    if isinstance(layer, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, **device_dtype(w))
    else:
        new = type(layer)(w.shape[1], w.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding,
                          dilation=layer.dilation, bias=b is not None, padding_mode=layer.padding_mode,
                          **device_dtype(w))
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new.train(layer.training)


@checked
def prune_channels(model: nn.Sequential, amount: float, *, norm: int = 1) -> nn.Sequential:
    """Structured pruning: remove the ``round(amount * n)`` lowest-norm neurons / filters of every hidden layer.

    Works on an ``nn.Sequential`` of Linear / Conv1d / Conv2d layers with element-wise layers (ReLU, pooling,
    dropout), BatchNorm and one Flatten between them, e.g. ``Conv -> BN -> ReLU -> Pool -> Flatten -> Linear``.
    Each hidden layer loses output units; the next layer loses the matching inputs (after a Flatten, the
    ``H*W`` features of each removed channel); BatchNorm loses the matching entries. The output layer keeps
    its size. Returns a new, smaller *dense* model in ``model``'s dtype, device and mode; ``model`` is not changed.

    Args:
        amount: fraction in [0, 1) of the units of each hidden layer to remove.
        norm: 1 (sum of |w|, Li et al. 2017) or 2.
    """
    check_module("model", model)
    if not isinstance(model, nn.Sequential):
        hint = ("; for the hidden units of an RNN/GRU/LSTM use compresskit.structured.prune_units"
                if any(isinstance(m, nn.RNNBase) for m in model.modules()) else "")
        raise TypeError(f"model must be an nn.Sequential (a plain MLP or CNN), got {type(model).__name__}{hint}")
    check_fraction("amount", amount, high_open=True)
    _check_norm(norm)
    require_sites(model)
    layers = list(model)
    for j, layer in enumerate(layers):
        if isinstance(layer, nn.Sequential) and any(p.numel() for p in layer.parameters()):
            raise ValueError(f"layer {j} is a factorized layer (a Sequential, as low_rank makes): remove neurons "
                             "first, then factorize (prune_channels, then low_rank)")
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if len(weighted) < 2:
        raise ValueError("model needs at least two Linear/Conv layers: only hidden layers are pruned")
    for i in weighted:
        if getattr(layers[i], "groups", 1) != 1:
            raise ValueError(f"layer {i} is a grouped convolution (groups={layers[i].groups}): not supported")
    new_layers = [copy_model(m) for m in layers]
    in_idx = None  # indices of the inputs the current layer keeps
    for pos, i in enumerate(weighted):
        layer = layers[i]
        weight = effective_weight(layer)  # also under a pruning mask: its zeros count
        out_idx = _keep(channel_scores(weight, norm), amount) if pos < len(weighted) - 1 else None
        new_layers[i] = _sliced(layer, out_idx, in_idx)
        if out_idx is None:
            break
        in_idx = out_idx
        for j in range(i + 1, weighted[pos + 1]):  # between this layer and the next weighted one
            between = layers[j]
            if isinstance(between, nn.modules.batchnorm._BatchNorm):
                new_layers[j] = _sliced(between, out_idx, None)
            elif isinstance(between, nn.Flatten):
                nxt = layers[weighted[pos + 1]]
                per_channel, rest = divmod(nxt.weight.shape[1], weight.shape[0])
                if rest or not isinstance(nxt, nn.Linear):
                    raise ValueError(f"cannot map {weight.shape[0]} channels through Flatten to {type(nxt).__name__}")
                in_idx = (out_idx[:, None] * per_channel + torch.arange(per_channel, device=out_idx.device)).reshape(-1)
            elif any(p.numel() for p in between.parameters()):
                raise ValueError(f"layer {j} ({type(between).__name__}) has weights that prune_channels cannot slice")
    return nn.Sequential(*new_layers).train(model.training)


# ------------------------------------------------------------------------------------------------ recurrent units


def _unit_rows(keep: torch.Tensor, gates: int, hidden: int) -> torch.Tensor:
    """Rows of a gate-stacked matrix (gates * hidden rows) that belong to the kept units."""
    return torch.cat([g * hidden + keep for g in range(gates)])


def _first_reader(model: nn.Module, name: str, hidden: int) -> str | None:
    """Name of the first ``nn.Linear`` after module ``name`` (in registration order) taking ``hidden`` inputs."""
    after = False
    for n, m in model.named_modules():
        if n == name:
            after = True
        elif after and not n.startswith(f"{name}.") and isinstance(m, nn.Linear) and m.in_features == hidden:
            return n
    return None


def _unit_scores(old: nn.RNNBase, k: int, norm: int) -> torch.Tensor:
    """Norm of every weight that computes each hidden unit of layer k: its row in every gate of ih and hh."""
    gates, hidden = GATES[old.mode], old.hidden_size
    rows = torch.cat([effective_weight(old, f"weight_{kind}_l{k}").detach().reshape(gates, hidden, -1)
                      for kind in ("ih", "hh")], dim=-1)  # (gates, hidden, in + hidden)
    return torch.linalg.vector_norm(rows.transpose(0, 1).reshape(hidden, -1).float(), ord=norm, dim=1)


@checked
def prune_units(model: nn.Module, amount: float, *, norm: int = 1) -> nn.Module:
    """Remove the ``round(amount * hidden)`` hidden units of lowest L-``norm`` from every layer of each recurrent
    layer (``nn.RNN/GRU/LSTM``), and the matching inputs of the next recurrent layer and of the ``nn.Linear`` that
    reads the hidden state. A unit's score is the norm of all weights that compute it (its row in every gate of
    ``weight_ih`` and ``weight_hh``). Returns a smaller dense copy (dtype, device, mode kept); ``model`` is not changed.
    """
    check_module("model", model)
    check_fraction("amount", amount, high_open=True)
    _check_norm(norm)
    require_sites(model)
    target = copy_model(model)
    found = [(n, m) for n, m in target.named_modules() if isinstance(m, (nn.RNNBase, UnrolledRNN))]
    if not found:
        raise ValueError(f"model has no recurrent layer (nn.RNN/GRU/LSTM): {type(model).__name__}")
    for name, old in found:
        if not isinstance(old, nn.RNNBase):
            raise TypeError(f"{name} is an {type(old).__name__}: convert it back with to_torch() first")
        if old.bidirectional or getattr(old, "proj_size", 0):
            raise ValueError(f"{name}: bidirectional or projected RNNs are not supported")
        gates, hidden = GATES[old.mode], old.hidden_size
        reader_name = _first_reader(target, name, hidden)
        if reader_name is None:
            raise ValueError(f"no nn.Linear after {name} reads its {hidden} hidden units: cannot remove any")
        keeps = [_keep(_unit_scores(old, k, norm), amount) for k in range(old.num_layers)]
        kw = dict(num_layers=old.num_layers, bias=old.bias, batch_first=old.batch_first, dropout=old.dropout)
        if old.mode.startswith("RNN"):
            kw["nonlinearity"] = old.nonlinearity
        new = type(old)(old.input_size, len(keeps[0]), **kw, **device_dtype(old.weight_ih_l0))
        with torch.no_grad():
            for k, keep in enumerate(keeps):
                rows = _unit_rows(keep, gates, hidden)
                w_ih = effective_weight(old, f"weight_ih_l{k}").detach()[rows]
                getattr(new, f"weight_ih_l{k}").copy_(w_ih if k == 0 else w_ih[:, keeps[k - 1]])
                getattr(new, f"weight_hh_l{k}").copy_(effective_weight(old, f"weight_hh_l{k}").detach()[rows][:, keep])
                if old.bias:
                    for kind in ("ih", "hh"):
                        getattr(new, f"bias_{kind}_l{k}").copy_(getattr(old, f"bias_{kind}_l{k}").detach()[rows])
        replace_module(target, name, placed_like(new, old, training=old.training))
        replace_module(target, reader_name, _sliced(target.get_submodule(reader_name), None, keeps[-1]))
    return target



# ------------------------------------------------------------------------------------ whole layers (depth)


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The residual blocks of ``model``, refused with what is expected when there are none."""
    check_module("model", model)
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(isinstance(b, (ResidualBlock, Block)) for b in blocks):
        raise TypeError(f"model must keep its residual blocks in `model.blocks`, an nn.ModuleList of "
                        f"models.ResidualBlock or models.Block (models.residual_mlp(), models.transformer_lm()); a "
                        f"{type(model).__name__} has none: only a block that computes x + f(x) can be removed "
                        f"without breaking the network")
    if len(blocks) == 0:
        raise ValueError("model has no residual blocks left (model.blocks is empty): nothing to remove")
    return blocks


@checked
def remove_blocks(model: nn.Module, indices) -> nn.Module:
    """A copy of ``model`` without the residual blocks at ``indices`` (positions in ``model.blocks``): a shallower
    network that computes exactly what ``model`` computes with those blocks replaced by the identity. ``model`` is
    not changed; the copy keeps its dtype, device and mode."""
    blocks = _blocks(model)
    if isinstance(indices, (int, bool)) or not hasattr(indices, "__iter__"):
        raise TypeError(f"indices must be a list of block positions, got {type(indices).__name__}")
    indices = list(indices)
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(blocks):
            raise ValueError(f"indices must be distinct block positions in [0, {len(blocks) - 1}], got {i!r}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"indices must be distinct block positions, got {indices}")
    shallower = copy_model(model)
    shallower.blocks = nn.ModuleList(b for i, b in enumerate(shallower.blocks) if i not in set(indices))
    return shallower


BLOCK_SCORES = ("skip", "norm")


@checked
@torch.no_grad()
def block_influence(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """ShortGPT's block influence (Men et al. 2024) of each block of a ``models.TransformerLM``: ``1 - cos(x_in,
    x_out)`` between the hidden state a block reads and the one it writes, averaged over every token of ``windows``
    (``(B, T)`` token ids of *training* text, ``data.calibration_windows``). A block that barely turns the residual
    stream scores near 0 and is the first to drop (``remove_blocks``). Eval mode here; the model's mode comes back."""
    blocks = _blocks(model)
    if not all(isinstance(b, Block) for b in blocks):
        raise TypeError("model must be a models.TransformerLM: block influence compares hidden states of tokens")
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.dtype != torch.int64 or \
            not windows.numel():
        raise TypeError(f"windows must be a non-empty (B, T) int64 tensor of token ids, got "
                        f"{getattr(windows, 'dtype', type(windows).__name__)} of shape "
                        f"{tuple(getattr(windows, 'shape', ()))}")
    vocab = model.tok.num_embeddings
    if int(windows.min()) < 0 or int(windows.max()) >= vocab:
        raise ValueError(f"windows must hold token ids in [0, {vocab - 1}], got {int(windows.min())}.."
                         f"{int(windows.max())}")
    found = []

    def hook(block, inputs, output):
        cos = nn.functional.cosine_similarity(inputs[0].double(), output.double(), dim=-1)  # (B, T)
        found.append(1.0 - cos.mean())

    handles = [b.register_forward_hook(hook) for b in blocks]
    try:
        with eval_mode(model):
            model(windows)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(found).float()


@checked
@torch.no_grad()
def block_importance(model: nn.Module, calibration, *, method: str = "skip") -> torch.Tensor:
    """One importance score per residual block (higher: more important), measured on ``calibration`` (a
    ``TensorDataset`` of inputs and labels; use training data, never the test set you report).

    ``"skip"``: how much the cross-entropy loss rises when only that block is removed (one forward pass per block).
    ``"norm"``: the cheap proxy, the mean over images of ``||f(x)|| / ||x||`` at the block's input (one forward pass):
    a block whose correction is small against the signal it is added to changes little when removed.
    The model's mode is restored; it runs in eval mode here.
    """
    blocks = _blocks(model)
    check_choice("method", method, BLOCK_SCORES)
    x, y = dataset_tensors(calibration, "calibration")
    with eval_mode(model):  # every submodule's own mode comes back
        if method == "skip":
            base = nn.functional.cross_entropy(model(x), y)
            return torch.stack([nn.functional.cross_entropy(remove_blocks(model, [i])(x), y) - base
                                for i in range(len(blocks))]).float()
        ratios = []

        def hook(block, inputs, output):
            inp = inputs[0].flatten(1)
            correction = (output - inputs[0]).flatten(1)  # f(x) = block(x) - x
            ratios.append((correction.norm(dim=1) / inp.norm(dim=1).clamp_min(1e-12)).mean())

        handles = [b.register_forward_hook(hook) for b in blocks]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        return torch.stack(ratios).float()


@checked
def prune_blocks(model: nn.Module, count: int, calibration, *, method: str = "skip") -> nn.Module:
    """Layer-level pruning (层级剪枝): a copy of ``model`` without its ``count`` least important residual blocks
    (``block_importance(model, calibration, method=method)``; ties: the later block goes first). ``model`` is not
    changed. ``count`` may be 0 (a copy) up to the number of blocks (only stem and head left)."""
    blocks = _blocks(model)
    check_int("count", count, 0, len(blocks))
    scores = block_importance(model, calibration, method=method)
    order = sorted(range(len(blocks)), key=lambda i: (scores[i].item(), -i))
    return remove_blocks(model, order[:count])


@checked
def thin_blocks(model: nn.Module, amount: float, *, norm: int = 1) -> nn.Module:
    """Neuron-level pruning inside each residual block: ``prune_channels`` on every block's ``f``, which removes the
    ``round(amount * hidden)`` lowest-norm hidden units of each block (rows of the first Linear, columns of the
    second). The same depth, narrower blocks; the copy is returned, ``model`` is not changed."""
    blocks = _blocks(model)
    check_fraction("amount", amount, high_open=True)
    _check_norm(norm)
    thinner = copy_model(model)
    for i in range(len(blocks)):
        thinner.blocks[i].f = prune_channels(thinner.blocks[i].f, amount, norm=norm)
    return thinner


# ------------------------------------------------------------------------------------------------ attention heads

HEAD_SCORES = ("mask", "gradient")


def _attentions(model: nn.Module) -> list:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(hasattr(b, "attn") for b in blocks):
        raise TypeError(f"model must be a transformer with blocks of attention (models.transformer_lm), got "
                        f"{type(model).__name__}")
    return [b.attn for b in blocks]


def _lm_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Mean next-token cross-entropy over ``windows`` (N, T + 1), as a tensor (differentiable when grad is on)."""
    total = 0.0
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size]
        logits = model(w[:, :-1])
        total = total + nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum")
    return total / (len(windows) * (windows.shape[1] - 1))


@checked
def head_importance(model: nn.Module, windows: torch.Tensor, *, method: str = "mask") -> torch.Tensor:
    """Importance of every attention head, ``(layers, heads)``, on calibration ``windows`` ``(N, T + 1)``.

    ``"mask"``: the rise of the mean loss when that head alone is masked (its output multiplied by 0), one forward
    pass per head. ``"gradient"``: Michel, Levy & Neubig's proxy ("Are Sixteen Heads Really Better than One?",
    NeurIPS 2019, eq. 2): with a gate ``xi_h = 1`` on each head's output, ``E_x |dL(x) / d xi_h|``, the absolute
    derivative of each window's loss averaged over the windows (one backward pass per window, all heads at once): a
    first-order estimate of the loss change, taken per example so that opposite signs do not cancel. The model is
    not changed (its heads' gates are restored)."""
    attentions = _attentions(model)
    check_choice("method", method, HEAD_SCORES)
    if not isinstance(windows, torch.Tensor) or windows.dim() != 2 or windows.dtype != torch.int64 \
            or windows.shape[1] < 2 or len(windows) == 0:
        raise TypeError("windows must be a non-empty (N, T + 1) int64 tensor of token ids (data.calibration_windows)")
    saved = [a.head_mask for a in attentions]
    try:
        with eval_mode(model):  # every submodule's own mode comes back
            return _head_scores(model, attentions, windows, method, saved)
    finally:
        for a, mask in zip(attentions, saved):
            a.head_mask = mask


def _head_scores(model, attentions, windows, method, saved) -> torch.Tensor:
    if method == "gradient":
        gates = [torch.ones(a.n_head, requires_grad=True) for a in attentions]
        for a, g in zip(attentions, gates):
            a.head_mask = g
        total = torch.zeros(len(attentions), max(a.n_head for a in attentions))
        with torch.enable_grad():
            for window in windows:  # E_x |dL(x) / d xi|: one example at a time, so that signs do not cancel
                for i, g in enumerate(torch.autograd.grad(_lm_loss(model, window[None]), gates)):
                    total[i, :len(g)] += g.abs()  # blocks that lost heads keep zeros past their last head
        return total / len(windows)
    with torch.no_grad():
        base = _lm_loss(model, windows)
        scores = torch.zeros(len(attentions), max(a.n_head for a in attentions))
        for i, a in enumerate(attentions):
            for h in range(a.n_head):
                gate = torch.ones(a.n_head)
                gate[h] = 0.0
                a.head_mask = gate
                scores[i, h] = _lm_loss(model, windows) - base
            a.head_mask = saved[i]
        return scores


@checked
def remove_heads(model: nn.Module, heads: dict[int, list[int]]) -> nn.Module:
    """A copy of the transformer with the given heads removed for real: ``heads`` maps a block index to the heads it
    loses; their rows of q, k and v and their columns of proj are cut out, so the four matrices get smaller (the
    model is smaller and does fewer MACs, unlike masking). Every block keeps at least one head."""
    attentions = _attentions(model)
    if not isinstance(heads, dict):
        raise TypeError(f"heads must be a dict {{block index: [head, ...]}}, got {type(heads).__name__}")
    for i, hs in heads.items():
        check_int("block index", i, 0, len(attentions) - 1)
        n = attentions[i].n_head
        if not isinstance(hs, (list, tuple)) or len(set(hs)) != len(hs):
            raise ValueError(f"heads[{i}] must be a list of distinct head indices, got {hs!r}")
        for h in hs:
            check_int(f"heads[{i}] entry", h, 0, n - 1)
        if len(hs) >= n:
            raise ValueError(f"block {i} has {n} heads: removing {len(hs)} would leave none; keep at least one")
    target = copy_model(model)
    for i, attn in enumerate(_attentions(target)):
        gone = set(heads.get(i, ()))
        if not gone:
            continue
        keep = [h for h in range(attn.n_head) if h not in gone]
        rows = torch.cat([torch.arange(h * attn.head_dim, (h + 1) * attn.head_dim) for h in keep])
        for name in ("q", "k", "v"):
            setattr(attn, name, _sliced(getattr(attn, name), rows, None))
        attn.proj = _sliced(attn.proj, None, rows)
        if attn.head_mask is not None:
            attn.head_mask = attn.head_mask[keep]
        attn.n_head = len(keep)
    return target


@checked
def prune_heads(model: nn.Module, count: int, windows: torch.Tensor | None = None, *, method: str = "mask",
                scores: torch.Tensor | None = None) -> tuple[nn.Module, dict[int, list[int]]]:
    """Remove the ``count`` least important heads of the whole model (``head_importance`` on ``windows``, or the
    ``scores`` it returned before), never the last head of a block; returns the smaller model and the heads removed
    per block."""
    attentions = _attentions(model)
    if scores is None:
        if windows is None:
            raise ValueError("give calibration windows (or the scores head_importance returned)")
        scores = head_importance(model, windows, method=method)
    elif not isinstance(scores, torch.Tensor) or scores.shape != (len(attentions), max(a.n_head for a in attentions)):
        raise ValueError(f"scores must be head_importance's (blocks, heads) tensor for this model, got "
                         f"{getattr(scores, 'shape', type(scores).__name__)}")
    total = sum(a.n_head for a in attentions)
    check_int("count", count, 0, total - len(attentions))
    order = sorted(((float(scores[i, h]), i, h) for i, a in enumerate(attentions) for h in range(a.n_head)))
    left = [a.n_head for a in attentions]
    chosen: dict[int, list[int]] = {}
    for _, i, h in order:
        if sum(len(v) for v in chosen.values()) == count:
            break
        if left[i] > 1:
            chosen.setdefault(i, []).append(h)
            left[i] -= 1
    return remove_heads(model, {i: sorted(v) for i, v in chosen.items()}), chosen
