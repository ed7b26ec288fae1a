"""The workbook's models: plain ``nn.Module``s, nothing special inside.

``mlp`` and ``lenet`` are ``nn.Sequential`` so structured pruning can walk them layer by layer.
"""

from __future__ import annotations

import torch
from torch import nn

from compresskit.checks import check_choice, check_int, checked

__all__ = ["RNN_CELLS", "KVCache", "mlp", "lenet", "ResidualBlock", "ResidualMLP", "residual_mlp", "RNNClassifier",
           "rnn_classifier", "Attention", "Block", "TransformerLM", "transformer_lm"]

RNN_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _check_width(name: str, value: int) -> None:
    check_int(name, value, 1)


def _positive(**sizes: int) -> None:
    for name, value in sizes.items():
        _check_width(name, value)


def _heads_divide(d_model: int, n_head: int) -> None:
    if d_model % n_head:
        raise ValueError(f"d_model ({d_model}) must be a multiple of n_head ({n_head})")


@checked
def mlp(hidden: tuple[int, ...] = (300, 100), *, in_features: int = 64, num_classes: int = 10) -> nn.Sequential:
    """A fully connected classifier; the default is LeNet-300-100 (LeCun et al. 1998) on 8x8 inputs.

    ``Flatten -> [Linear -> ReLU] * len(hidden) -> Linear``; input ``(N, 1, 8, 8)`` or ``(N, 64)``.
    With the defaults: 64*300+300 + 300*100+100 + 100*10+10 = 50,610 parameters.
    """
    hidden = tuple(hidden)
    for i, h in enumerate(hidden):
        _check_width(f"hidden[{i}]", h)
    _check_width("in_features", in_features)
    _check_width("num_classes", num_classes)
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@checked
def lenet(channels: tuple[int, int] = (16, 32), hidden: int = 64, *, num_classes: int = 10) -> nn.Sequential:
    """A small CNN for 8x8 single-channel images (LeNet-style, with BatchNorm).

    ``(N, 1, 8, 8) -> conv3x3 c1 -> BN -> ReLU -> pool -> (N, c1, 4, 4) -> conv3x3 c2 -> BN -> ReLU -> pool
    -> (N, c2, 2, 2) -> Flatten -> Linear(4*c2, hidden) -> ReLU -> Linear(hidden, 10)``.
    """
    c1, c2 = channels
    for name, v in (("channels[0]", c1), ("channels[1]", c2), ("hidden", hidden), ("num_classes", num_classes)):
        _check_width(name, v)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 2 * 2, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


class ResidualBlock(nn.Module):
    """``x + f(x)`` with ``f = Linear(width, hidden) -> ReLU -> Linear(hidden, width)`` (an ``nn.Sequential``, so
    structured pruning can thin its hidden layer). Removing the block is the same as replacing ``f`` by zero."""

    @checked
    def __init__(self, width: int, hidden: int):
        super().__init__()
        _check_width("width", width)
        _check_width("hidden", hidden)
        self.f = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class ResidualMLP(nn.Module):
    """``Flatten -> Linear(in, width) -> ReLU -> blocks (x + f(x)) -> ReLU -> Linear(width, classes)``.

    The blocks sit in ``self.blocks`` (an ``nn.ModuleList`` of ``ResidualBlock``): a network whose depth can be
    pruned (层级剪枝) by removing blocks, because each one only adds a correction to the signal that skips it.
    """

    @checked
    def __init__(self, width: int = 64, hidden: int = 64, blocks: int = 8, *, in_features: int = 64,
                 num_classes: int = 10):
        super().__init__()
        check_int("blocks", blocks, 0, 1000)
        for name, v in (("width", width), ("hidden", hidden), ("in_features", in_features),
                        ("num_classes", num_classes)):
            _check_width(name, v)
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU())
        self.blocks = nn.ModuleList(ResidualBlock(width, hidden) for _ in range(blocks))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@checked
def residual_mlp(width: int = 64, hidden: int = 64, blocks: int = 8, *, in_features: int = 64,
                 num_classes: int = 10) -> ResidualMLP:
    """A residual MLP for 8x8 digits: ``blocks`` residual blocks of ``width`` -> ``hidden`` -> ``width``. The default
    has 8 blocks and 71,370 parameters: 4,160 in the stem, 8 x 8,320 in the blocks, 650 in the head."""
    return ResidualMLP(width, hidden, blocks, in_features=in_features, num_classes=num_classes)


class RNNClassifier(nn.Module):
    """A recurrent layer reading an image row by row, then a Linear on the last hidden state.

    Input ``(N, T, F)`` (a sequence) or ``(N, 1, T, F)`` (an image, whose rows become the time steps).
    """

    @checked
    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, num_classes: int):
        check_choice("cell", cell, tuple(RNN_CELLS))
        _positive(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, num_classes=num_classes)
        super().__init__()
        self.cell = cell
        self.rnn = RNN_CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # (N, 1, T, F) -> (N, T, F)
            x = x[:, 0]
        out, _ = self.rnn(x)  # out: (N, T, hidden); the state is a tensor (RNN/GRU) or an (h, c) tuple (LSTM)
        return self.fc(out[:, -1])


@checked
def rnn_classifier(
    cell: str = "gru", hidden_size: int = 64, *, input_size: int = 8, num_layers: int = 1, num_classes: int = 10
) -> RNNClassifier:
    """A GRU / LSTM / vanilla-RNN classifier for digits read as 8 time steps of 8 pixels."""
    if cell not in RNN_CELLS:
        raise ValueError(f"cell must be one of {tuple(RNN_CELLS)}, got {cell!r}")
    for name, v in (("hidden_size", hidden_size), ("input_size", input_size), ("num_layers", num_layers),
                    ("num_classes", num_classes)):
        _check_width(name, v)
    return RNNClassifier(cell, input_size, hidden_size, num_layers, num_classes)


# ---------------------------------------------------------------------------------------------- language model


class Attention(nn.Module):
    """Causal multi-head self-attention with separate q, k, v projections (so heads can be removed, chapter 10).

    ``n_head`` heads of ``head_dim`` each: q, k, v map ``d_model -> n_head * head_dim``, ``proj`` maps back. With
    every head kept, ``n_head * head_dim == d_model``; removing heads shrinks the four matrices, not ``head_dim``.
    """

    @checked
    def __init__(self, d_model: int, n_head: int, head_dim: int):
        _positive(d_model=d_model, n_head=n_head, head_dim=head_dim)
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        inner = n_head * head_dim
        self.q, self.k, self.v = (nn.Linear(d_model, inner) for _ in range(3))
        self.proj = nn.Linear(inner, d_model)
        self.head_mask: torch.Tensor | None = None  # (n_head,) multiplies each head's output when set (chapter 10)
        self.kv_quant: nn.Module | None = None  # attention through a quantized KV cache when set (kvquant, chapter 11)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, C)
        q, k, v = (lin(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2) for lin in (self.q, self.k, self.v))
        if self.kv_quant is not None:  # a quantized cache, simulated over the whole window (kvquant)
            if cache is not None:
                raise ValueError("a quantized KV cache (kvquant.quantize_kv) is simulated over whole windows: call the "
                                 "model without a KVCache")
            y = self.kv_quant(q, k, v)
        elif cache is None:
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
        else:  # the keys and values of the tokens before these, these appended; new token i sees every cached token
            past = cache.length  # and the new ones up to itself
            k, v = cache.extend(layer, k, v)
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
            y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if self.head_mask is not None:
            y = y * self.head_mask.view(1, -1, 1, 1)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` (GELU, ``4 * d_model`` wide)."""

    @checked
    def __init__(self, d_model: int, n_head: int, mlp_ratio: int = 4):
        _positive(d_model=d_model, n_head=n_head, mlp_ratio=mlp_ratio)
        _heads_divide(d_model, n_head)
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_head, d_model // n_head)
        self.fc = nn.Linear(d_model, mlp_ratio * d_model)
        self.out = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.out(nn.functional.gelu(self.fc(self.ln2(x))))


class TransformerLM(nn.Module):
    """A decoder-only character language model (GPT-style, after nanoGPT): token and position embeddings, ``n_layer``
    pre-LN blocks, a final LayerNorm and an untied output head. Input ``(B, T)`` token ids with ``T <= context``;
    output ``(B, T, vocab)`` logits of the next token at every position.

    ``forward(idx, cache)`` with a ``KVCache`` reads ``idx`` as the tokens that follow the ``cache.length`` already
    seen (positions from there on) and appends their keys and values to the cache: generating one token at a time
    then costs one position's work per token instead of the whole window's (``metrics.sample_text``)."""

    @checked
    def __init__(self, vocab: int, context: int, d_model: int, n_layer: int, n_head: int):
        _positive(vocab=vocab, context=context, d_model=d_model, n_layer=n_layer, n_head=n_head)
        _heads_divide(d_model, n_head)
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a models.KVCache or None, got {type(cache).__name__}")
        t = idx.shape[-1]
        start = 0 if cache is None else cache.length
        if start + t > self.context:
            raise ValueError(f"the input holds {t} tokens{f' after {start} cached' if start else ''}, more than the "
                             f"model's context of {self.context}")
        x = self.tok(idx) + self.pos(torch.arange(start, start + t, device=idx.device))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += t
        return self.head(self.ln(x))


class KVCache:
    """The keys and values a ``TransformerLM`` computed for the tokens it has seen, per block, shape
    ``(B, n_head, length, head_dim)``: pass the same cache to successive ``model(idx, cache)`` calls to feed a
    sequence a piece at a time. ``length`` counts the tokens seen; ``bytes()`` is what the cache holds."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0

    @checked
    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append block ``layer``'s new keys and values; return all of that block's keys and values so far."""
        check_int("layer", layer, 0, len(self.keys))
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]

    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@checked
def transformer_lm(vocab: int = 96, context: int = 128, d_model: int = 128, n_layer: int = 4, n_head: int = 4
                   ) -> TransformerLM:
    """The workbook's small language model; the default (96 characters, context 128, 4 blocks of width 128 with 4
    heads) has 834,304 parameters: 12,288 + 16,384 in the embeddings, 4 x 198,272 in the blocks (66,048 attention,
    131,712 MLP, 512 LayerNorm), 256 in the final LayerNorm and 12,288 in the head."""
    return TransformerLM(vocab, context, d_model, n_layer, n_head)
