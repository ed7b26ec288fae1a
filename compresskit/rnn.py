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

from compresskit.models import copy_model, refresh_pruned, replace_module
from compresskit.prune import _check_fraction, _keep, _sliced

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}


class UnrolledRNN(nn.Module):
    """A multi-layer RNN / GRU / LSTM (unidirectional) run step by step from ``ih[layer]`` and ``hh[layer]`` modules.

    Same call and results as the torch module it was built from (``from_torch``): ``forward(x, hx=None)`` returns
    ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, *, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0):
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"mode must be one of {tuple(GATES)}, got {mode!r}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.batch_first, self.dropout = num_layers, batch_first, dropout
        width = GATES[mode] * hidden_size
        self.ih = nn.ModuleList(nn.Linear(input_size if k == 0 else hidden_size, width, bias=bias)
                                for k in range(num_layers))
        self.hh = nn.ModuleList(nn.Linear(hidden_size, width, bias=bias) for _ in range(num_layers))

    @classmethod
    def from_torch(cls, rnn: nn.RNNBase) -> UnrolledRNN:
        """The same network with the same weights (copied; ``rnn`` is not changed). Pruning masks are applied."""
        if not isinstance(rnn, nn.RNNBase):
            raise TypeError(f"rnn must be an nn.RNN, nn.GRU or nn.LSTM, got {type(rnn).__name__}")
        if rnn.bidirectional:
            raise ValueError("bidirectional=True is not supported (the chapter's models read rows left to right)")
        if getattr(rnn, "proj_size", 0):
            raise ValueError(f"proj_size must be 0 (an LSTM without projection), got {rnn.proj_size}")
        refresh_pruned(rnn)
        new = cls(rnn.mode, rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=rnn.bias,
                  batch_first=rnn.batch_first, dropout=rnn.dropout)
        with torch.no_grad():
            for k in range(rnn.num_layers):
                for part, kind in ((new.ih[k], "ih"), (new.hh[k], "hh")):
                    part.weight.copy_(getattr(rnn, f"weight_{kind}_l{k}"))
                    if rnn.bias:
                        part.bias.copy_(getattr(rnn, f"bias_{kind}_l{k}"))
        return new.to(next(rnn.parameters()).device)

    def to_torch(self) -> nn.RNNBase:
        """Back to torch's fused ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with the same weights (a copy). Only for dense
        parts: a factorized matrix has no place in torch's layer (multiply the factors out first if you must)."""
        for k in range(self.num_layers):
            for kind, part in (("ih", self.ih[k]), ("hh", self.hh[k])):
                if not isinstance(part, nn.Linear):
                    raise ValueError(f"{kind}[{k}] is a {type(part).__name__}, not a dense nn.Linear: it has no "
                                     "torch RNN equivalent")
        kw = dict(num_layers=self.num_layers, bias=self.ih[0].bias is not None, batch_first=self.batch_first,
                  dropout=self.dropout)
        if self.mode.startswith("RNN"):
            kw["nonlinearity"] = "tanh" if self.mode == "RNN_TANH" else "relu"
        torch_rnn = {"GRU": nn.GRU, "LSTM": nn.LSTM}.get(self.mode, nn.RNN)(self.input_size, self.hidden_size, **kw)
        with torch.no_grad():
            for k in range(self.num_layers):
                for kind, part in (("ih", self.ih[k]), ("hh", self.hh[k])):
                    getattr(torch_rnn, f"weight_{kind}_l{k}").copy_(part.weight)
                    if part.bias is not None:
                        getattr(torch_rnn, f"bias_{kind}_l{k}").copy_(part.bias)
        return torch_rnn.to(self.ih[0].weight.device)

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


def recurrent_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's recurrent modules (``nn.RNN/GRU/LSTM`` or ``UnrolledRNN``), by name, in order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.RNNBase, UnrolledRNN))]


@torch.no_grad()
def hidden_states(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first recurrent layer's output for input ``x``, as ``(batch, time, hidden)`` (model run in eval mode)."""
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(f"model has no recurrent layer (nn.RNN/GRU/LSTM or UnrolledRNN): {type(model).__name__}")
    layer = layers[0][1]
    seen = []
    handle = layer.register_forward_hook(lambda m, inp, out: seen.append(out[0]))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    out = seen[0]
    return out if layer.batch_first or out.dim() == 2 else out.transpose(0, 1)


def hidden_drift(reference: nn.Module, compressed: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Relative distance of the compressed model's hidden state from the reference's at every time step:
    ``||H_c(t) - H(t)||_F / ||H(t)||_F`` over the batch, a tensor of shape ``(time,)``."""
    return state_drift(hidden_states(reference, x), hidden_states(compressed, x))


def state_drift(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``hidden_drift`` on states already computed, ``(batch, time, hidden)`` each: ``a`` the reference's, ``b`` the
    compressed model's. A panel computes the reference's states once, not on every slider move."""
    if a.shape != b.shape:
        raise ValueError(f"the hidden states differ in shape: {tuple(a.shape)} vs {tuple(b.shape)} (same hidden size "
                         "needed; a distilled student has its own state space)")
    return torch.linalg.vector_norm(b - a, dim=(0, 2)) / torch.linalg.vector_norm(a, dim=(0, 2)).clamp_min(1e-12)


def _unit_rows(keep: torch.Tensor, gates: int, hidden: int) -> torch.Tensor:
    """Rows of a gate-stacked matrix (gates * hidden rows) that belong to the kept units."""
    return torch.cat([g * hidden + keep for g in range(gates)])


def _first_reader(model: nn.Module, name: str, hidden: int) -> str | None:
    """Name of the first ``nn.Linear`` after module ``name`` (in registration order) taking ``hidden`` inputs."""
    after = False
    for n, m in model.named_modules():
        if n == name:
            after = True
        elif after and isinstance(m, nn.Linear) and m.in_features == hidden:
            return n
    return None


def prune_units(model: nn.Module, amount: float, *, norm: int = 1) -> nn.Module:
    """Remove the ``round(amount * hidden)`` hidden units of lowest L-``norm`` from every layer of each recurrent
    layer (``nn.RNN/GRU/LSTM``), and the matching inputs of the next recurrent layer and of the ``nn.Linear`` that
    reads the hidden state. A unit's score is the norm of all weights that compute it (its row in every gate of
    ``weight_ih`` and ``weight_hh``). Returns a smaller dense copy; ``model`` is not changed.
    """
    _check_fraction("amount", amount, high_open=True)
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm!r}")
    target = refresh_pruned(copy_model(model))
    found = recurrent_layers(target)
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
        keeps = []
        for k in range(old.num_layers):
            rows = torch.cat([getattr(old, f"weight_{kind}_l{k}").detach().reshape(gates, hidden, -1)
                              for kind in ("ih", "hh")], dim=-1)  # (gates, hidden, in + hidden)
            scores = torch.linalg.vector_norm(rows.transpose(0, 1).reshape(hidden, -1), ord=norm, dim=1)
            keeps.append(_keep(scores, amount))
        kw = dict(num_layers=old.num_layers, bias=old.bias, batch_first=old.batch_first, dropout=old.dropout)
        if old.mode.startswith("RNN"):
            kw["nonlinearity"] = old.nonlinearity
        new = type(old)(old.input_size, len(keeps[0]), **kw).to(old.weight_ih_l0.device)
        with torch.no_grad():
            for k, keep in enumerate(keeps):
                rows = _unit_rows(keep, gates, hidden)
                w_ih = getattr(old, f"weight_ih_l{k}").detach()[rows]
                getattr(new, f"weight_ih_l{k}").copy_(w_ih if k == 0 else w_ih[:, keeps[k - 1]])
                getattr(new, f"weight_hh_l{k}").copy_(getattr(old, f"weight_hh_l{k}").detach()[rows][:, keep])
                if old.bias:
                    for kind in ("ih", "hh"):
                        getattr(new, f"bias_{kind}_l{k}").copy_(getattr(old, f"bias_{kind}_l{k}").detach()[rows])
        replace_module(target, name, new)
        replace_module(target, reader_name, _sliced(target.get_submodule(reader_name), None, keeps[-1]))
    return target
