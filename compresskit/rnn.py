"""Recurrent networks (循环神经网络) for compression: the recurrence written out, and the hidden state over time.

``UnrolledRNN`` computes exactly what ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` compute, but its input-to-hidden and
hidden-to-hidden maps are ordinary modules (one ``nn.Linear`` each per layer, all gates stacked as in torch). Any
of them can then be replaced by a factorized ``Sequential`` (``lowrank.svd_rnn``), and everything that understands
``nn.Linear`` (pruning, quantization, ``storage_bytes``, ``macs``) sees them. Gate equations, as torch documents
them (gates stacked in this order in ``weight_ih`` / ``weight_hh``):

    RNN   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)                      (or relu)
    GRU   r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z);  n = tanh(gi_n + r * gh_n);  h' = (1 - z) n + z h
    LSTM  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (gi + gh);  c' = f c + i g;  h' = o tanh(c')

``prune_units`` is structured pruning for recurrent layers: it removes whole hidden units (a row of every gate in
``weight_ih`` / ``weight_hh``, the matching ``weight_hh`` column and the classifier's input column), so the result is
a smaller fused ``nn.GRU`` that really runs faster.

``hidden_states`` / ``hidden_drift`` record the first recurrent layer's output at every time step, so one can see
how a compressed network's state wanders away from the original's as errors compound through the recurrence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from compresskit.checks import check_bool, check_choice, check_int, check_module, check_number, check_tensor, checked
from compresskit.layers import GATES, device_dtype, effective_weight, eval_mode, mask_of, stored_tensor

__all__ = ["UnrolledRNN", "recurrent_layers", "hidden_states", "hidden_drift", "state_drift"]


def _carry(src: nn.Module, src_name: str, dst: nn.Module, dst_name: str) -> None:
    """Copy ``src.<src_name>``'s effective values into ``dst.<dst_name>``, and its pruning mask if it has one."""
    with torch.no_grad():
        getattr(dst, dst_name).copy_(effective_weight(src, src_name))
    mask = mask_of(src, src_name)
    if mask is not None:
        torch_prune.custom_from_mask(dst, dst_name, mask.clone())


class UnrolledRNN(nn.Module):
    """A multi-layer RNN / GRU / LSTM (unidirectional) run step by step from ``ih[layer]`` and ``hh[layer]`` modules.

    Same call and results as the torch module it was built from (``from_torch``): ``forward(x, hx=None)`` returns
    ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM.
    """

    @checked
    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, *, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        check_choice("mode", mode, tuple(GATES))
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            check_int(name, v, 1)
        check_bool("bias", bias)
        check_bool("batch_first", batch_first)
        check_number("dropout", dropout, 0.0, 1.0, high_open=True)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.batch_first, self.dropout = num_layers, batch_first, dropout
        width = GATES[mode] * hidden_size
        kw = {"bias": bias, "device": device, "dtype": dtype}
        self.ih = nn.ModuleList(nn.Linear(input_size if k == 0 else hidden_size, width, **kw)
                                for k in range(num_layers))
        self.hh = nn.ModuleList(nn.Linear(hidden_size, width, **kw) for _ in range(num_layers))

    @classmethod
    def from_torch(cls, rnn: nn.RNNBase) -> UnrolledRNN:
        """The same network with the same weights (copied; ``rnn`` is not changed), dtype, device and mode. A pruned
        ``weight_ih_l{k}`` / ``weight_hh_l{k}`` keeps its mask on ``ih[k]`` / ``hh[k]``, so its zeros stay zero."""
        if not isinstance(rnn, nn.RNNBase):
            raise TypeError(f"rnn must be an nn.RNN, nn.GRU or nn.LSTM, got {type(rnn).__name__}")
        if rnn.bidirectional:
            raise ValueError("bidirectional=True is not supported (the chapter's models read rows left to right)")
        if getattr(rnn, "proj_size", 0):
            raise ValueError(f"proj_size must be 0 (an LSTM without projection), got {rnn.proj_size}")
        new = cls(rnn.mode, rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=rnn.bias,
                  batch_first=rnn.batch_first, dropout=rnn.dropout, **device_dtype(stored_tensor(rnn, "weight_ih_l0")))
        for k in range(rnn.num_layers):
            for part, kind in ((new.ih[k], "ih"), (new.hh[k], "hh")):
                _carry(rnn, f"weight_{kind}_l{k}", part, "weight")
                if rnn.bias:
                    with torch.no_grad():
                        part.bias.copy_(getattr(rnn, f"bias_{kind}_l{k}"))
        return new.train(rnn.training)

    def to_torch(self) -> nn.RNNBase:
        """Back to torch's fused ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with the same weights (a copy; pruning masks
        carried over), dtype, device and mode. Only for dense parts: a factorized matrix has no place in torch's layer
        (multiply the factors out first if you must)."""
        for k in range(self.num_layers):
            for kind, part in (("ih", self.ih[k]), ("hh", self.hh[k])):
                if not isinstance(part, nn.Linear):
                    raise ValueError(f"{kind}[{k}] is a {type(part).__name__}, not a dense nn.Linear: it has no "
                                     "torch RNN equivalent")
        kw = dict(num_layers=self.num_layers, bias=self.ih[0].bias is not None, batch_first=self.batch_first,
                  dropout=self.dropout, **device_dtype(stored_tensor(self.ih[0], "weight")))
        if self.mode.startswith("RNN"):
            kw["nonlinearity"] = "tanh" if self.mode == "RNN_TANH" else "relu"
        torch_rnn = {"GRU": nn.GRU, "LSTM": nn.LSTM}.get(self.mode, nn.RNN)(self.input_size, self.hidden_size, **kw)
        for k in range(self.num_layers):
            for kind, part in (("ih", self.ih[k]), ("hh", self.hh[k])):
                _carry(part, "weight", torch_rnn, f"weight_{kind}_l{k}")
                if part.bias is not None:
                    with torch.no_grad():
                        getattr(torch_rnn, f"bias_{kind}_l{k}").copy_(part.bias)
        return torch_rnn.train(self.training)

    def _cell(self, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        if self.mode == "GRU":
            ir, iz, i_n = gi.chunk(3, -1)
            hr, hz, h_n = gh.chunk(3, -1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(i_n + r * h_n)
            return (1 - z) * n + z * h, None
        if self.mode == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        return (torch.tanh if self.mode == "RNN_TANH" else torch.relu)(gi + gh), None

    def forward(self, x: torch.Tensor, hx=None):
        unbatched = x.dim() == 2
        if x.dim() not in (2, 3):
            raise ValueError(f"x must be (batch, time, features) or (time, features), got shape {tuple(x.shape)}")
        x = x.unsqueeze(0) if unbatched else (x if self.batch_first else x.transpose(0, 1))  # -> (N, T, F)
        lstm = self.mode == "LSTM"
        if lstm and hx is not None and not isinstance(hx, tuple):
            raise TypeError("an LSTM's hx is an (h_0, c_0) tuple")
        if not lstm and isinstance(hx, tuple):
            raise TypeError(f"a {self.mode} takes a single hidden tensor h_0, not a tuple (only an LSTM has (h, c))")
        zeros = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
        h0, c0 = (hx if lstm else (hx, None)) if hx is not None else (zeros, zeros if lstm else None)
        if unbatched and hx is not None:
            h0, c0 = h0.unsqueeze(1), (c0.unsqueeze(1) if c0 is not None else None)
        last_h, last_c = [], []
        for k in range(self.num_layers):
            if k > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout)
            gi = self.ih[k](x)  # all time steps at once: (N, T, gates * hidden)
            h, c, steps = h0[k], (c0[k] if lstm else None), []
            for t in range(x.shape[1]):
                h, c = self._cell(gi[:, t], self.hh[k](h), h, c)
                steps.append(h)
            x = torch.stack(steps, 1)
            last_h.append(h)
            last_c.append(c)
        h_n = torch.stack(last_h)
        state = (h_n, torch.stack(last_c)) if lstm else h_n
        if unbatched:
            return x[0], ((state[0][:, 0], state[1][:, 0]) if lstm else state[:, 0])
        return (x if self.batch_first else x.transpose(0, 1)), state


@checked
def recurrent_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's recurrent modules (``nn.RNN/GRU/LSTM`` or ``UnrolledRNN``), by name, in order."""
    check_module("model", model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.RNNBase, UnrolledRNN))]


@checked
@torch.no_grad()
def hidden_states(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first recurrent layer's output for input ``x``, as ``(batch, time, hidden)`` (model run in eval mode)."""
    check_module("model", model)
    check_tensor("x", x)
    if x.dim() not in (2, 3, 4) or x.numel() == 0:
        raise ValueError(f"x must be a sequence (time, features), a batch (batch, time, features) or images (batch, 1, "
                         f"rows, columns), got shape {tuple(x.shape)}")
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(f"model has no recurrent layer (nn.RNN/GRU/LSTM or UnrolledRNN): {type(model).__name__}")
    layer = layers[0][1]
    seen = []
    handle = layer.register_forward_hook(lambda m, inp, out: seen.append(out[0]))
    try:
        with eval_mode(model):  # every submodule's own mode comes back
            model(x)
    finally:
        handle.remove()
    out = seen[0]
    return out if layer.batch_first or out.dim() == 2 else out.transpose(0, 1)


@checked
def hidden_drift(reference: nn.Module, compressed: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Relative distance of the compressed model's hidden state from the reference's at every time step:
    ``||H_c(t) - H(t)||_F / ||H(t)||_F`` over the batch, a tensor of shape ``(time,)``."""
    return state_drift(hidden_states(reference, x), hidden_states(compressed, x))


@checked
def state_drift(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``hidden_drift`` on states already computed, ``(batch, time, hidden)`` each: ``a`` the reference's, ``b`` the
    compressed model's. A panel computes the reference's states once, not on every slider move."""
    check_tensor("a", a)
    check_tensor("b", b)
    if a.dim() != 3:
        raise ValueError(f"a must be hidden states (batch, time, hidden), as hidden_states returns them, got shape "
                         f"{tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"b must have a's shape (the hidden states differ in shape): a {tuple(a.shape)}, b "
                         f"{tuple(b.shape)} (same hidden size "
                         "needed; a distilled student has its own state space)")
    return torch.linalg.vector_norm(b - a, dim=(0, 2)) / torch.linalg.vector_norm(a, dim=(0, 2)).clamp_min(1e-12)
