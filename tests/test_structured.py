"""Structured pruning (compresskit.structured): neurons and filters of MLPs and CNNs, hidden units of RNNs. Each
smaller model is checked against the dense model with the removed units silenced (their rows and columns zeroed),
over seeds 0-2, to 1e-5."""

import pytest
import torch
from torch import nn

from compresskit import layers, lowrank, metrics, models, prune, structured

MAKERS = {"mlp": models.mlp, "lenet": models.lenet}
SEEDS = [0, 1, 2]


# ---------------------------------------------------------------------------------------------- structured


def _zeroed_reference(model, amount, norm):
    """The dense model with the removed units silenced: what the smaller model must compute exactly.

    Removing hidden unit i = zeroing row i of its layer and its bias (for an MLP), or zeroing the BatchNorm scale
    and shift of channel i (for a CNN), with the units chosen by the L-norm written out.
    """
    ref = layers.copy_model(model)
    weighted = [m for m in ref if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for layer in weighted[:-1]:
            w = layer.weight
            scores = w.reshape(w.shape[0], -1).abs().pow(norm).sum(1).pow(1 / norm)
            drop = torch.argsort(scores)[: round(amount * w.shape[0])]
            i = list(ref).index(layer)
            following = ref[i + 1]
            if isinstance(following, nn.BatchNorm2d):
                following.weight[drop] = 0
                following.bias[drop] = 0
            else:
                w[drop] = 0
                layer.bias[drop] = 0
    return ref


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("kind", ["mlp", "lenet"])
def test_prune_channels_computes_what_the_silenced_dense_model_computes(kind, norm, seed):
    torch.manual_seed(seed)
    model = MAKERS[kind]()
    if kind == "lenet":  # non-trivial BatchNorm statistics
        model.train()
        model(torch.rand(64, 1, 8, 8))
    model.eval()
    small = structured.prune_channels(model, 0.5, norm=norm).eval()
    ref = _zeroed_reference(model, 0.5, norm).eval()
    x = torch.rand(16, 1, 8, 8)
    assert torch.allclose(small(x), ref(x), atol=1e-5)
    assert metrics.count_params(small) < 0.5 * metrics.count_params(model)
    assert small(x).shape == (16, 10)


def test_prune_channels_shapes_and_callers_model():
    torch.manual_seed(0)
    model = models.mlp(hidden=(300, 100))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = structured.prune_channels(model, 0.5)
    assert [m.out_features for m in small if isinstance(m, nn.Linear)] == [150, 50, 10]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    cnn = structured.prune_channels(models.lenet(), 0.25)
    assert [m.out_channels for m in cnn if isinstance(m, nn.Conv2d)] == [12, 24]
    assert cnn[1].num_features == 12 and cnn[9].in_features == 24 * 4
    assert metrics.macs(small, (1, 8, 8)) == 64 * 150 + 150 * 50 + 50 * 10


@pytest.mark.parametrize("args, error, match", [
    ((1.0,), ValueError, r"amount must be in \[0, 1\)"),
    ((0.999,), ValueError, "would remove all"),
    ((0.5,), ValueError, "norm must be 1 or 2"),
])
def test_prune_channels_bad_arguments(args, error, match):
    kwargs = {"norm": 3} if match.startswith("norm") else {}
    with pytest.raises(error, match=match):
        structured.prune_channels(models.mlp(hidden=(8, 8)), *args, **kwargs)
    with pytest.raises(TypeError, match="nn.Sequential"):
        structured.prune_channels(models.rnn_classifier(), 0.5)


SILENT_GATE = {"RNN_TANH": 0, "RNN_RELU": 0, "GRU": 2, "LSTM": 2}  # zero these rows and the unit stays 0 forever


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_prune_units_equals_the_dense_model_with_those_units_silenced(seed, cell):
    torch.manual_seed(seed)
    model = models.rnn_classifier(cell, hidden_size=12, num_layers=2)
    small = prune.magnitude_prune(model, sparsity=0.3, tensors="weight_hh")  # scores use the effective weights
    smaller = structured.prune_units(small, 0.25, norm=2)
    r = small.rnn
    assert smaller.rnn.hidden_size == 9 and smaller.fc.in_features == 9 and type(smaller.rnn) is type(r)
    assert model.rnn.hidden_size == 12 and small.rnn.hidden_size == 12  # callers unchanged
    gates, silenced = layers.GATES[r.mode], prune.finalize(layers.copy_model(small))
    s = silenced.rnn
    for k in range(2):  # the reference: the same units' scores written out, their candidate rows zeroed
        w = torch.cat([getattr(r, f"weight_{kind}_l{k}").detach().reshape(gates, 12, -1) for kind in ("ih", "hh")], -1)
        scores = w.pow(2).sum(dim=(0, 2)).sqrt()
        dropped = torch.argsort(scores)[:3]
        with torch.no_grad():
            for kind in ("ih", "hh"):
                rows = SILENT_GATE[r.mode] * 12 + dropped
                getattr(s, f"weight_{kind}_l{k}")[rows] = 0
                getattr(s, f"bias_{kind}_l{k}")[rows] = 0
    x = torch.rand(6, 1, 8, 8)
    assert torch.allclose(smaller(x), silenced(x), atol=1e-5)
    assert metrics.count_params(smaller) < metrics.count_params(model)
    for m, h in ((smaller, 9), (model, 12)):  # 8 steps x gates x h x (in + h) per layer, plus the classifier
        assert metrics.macs(m, (8, 8)) == 8 * gates * h * ((8 + h) + (h + h)) + h * 10


def test_prune_units_validates():
    model = models.rnn_classifier("gru", hidden_size=8)
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        structured.prune_units(model, 1.0)
    with pytest.raises(ValueError, match="norm must be 1 or 2"):
        structured.prune_units(model, 0.5, norm=3)
    with pytest.raises(ValueError, match="no recurrent layer"):
        structured.prune_units(models.mlp(), 0.5)
    with pytest.raises(ValueError, match="reads its 8 hidden units"):
        structured.prune_units(nn.Sequential(nn.GRU(8, 8)), 0.5)
    with pytest.raises(TypeError, match="to_torch"):
        structured.prune_units(lowrank.low_rank(model, rank=2), 0.5)
    with pytest.raises(TypeError, match="structured.prune_units"):
        structured.prune_channels(model, 0.5)


# ------------------------------------------------------------------------------------- layers (residual blocks)


def _trained_residual(seed, blocks=6):
    torch.manual_seed(seed)
    model = models.residual_mlp(width=16, hidden=12, blocks=blocks)
    with torch.no_grad():  # weights large enough that every block matters a little, differently
        for p in model.parameters():
            p.mul_(1.5)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    return model.eval(), x, y


def _by_hand(model, x, skip=()):
    """The residual MLP's forward written out, with the blocks in ``skip`` contributing nothing."""
    h = torch.relu(x.flatten(1) @ model.stem[1].weight.T + model.stem[1].bias)
    for i, block in enumerate(model.blocks):
        if i not in skip:
            first, second = block.f[0], block.f[2]
            h = h + torch.relu(h @ first.weight.T + first.bias) @ second.weight.T + second.bias
    return torch.relu(h) @ model.head[1].weight.T + model.head[1].bias


@pytest.mark.parametrize("seed", SEEDS)
def test_a_removed_block_is_the_identity(seed, unchanged):
    model, x, _ = _trained_residual(seed)
    with torch.no_grad():
        assert torch.allclose(model(x), _by_hand(model, x), atol=1e-6)
        for skip in ([0], [3], [5], [1, 4], [0, 1, 2, 3, 4, 5]):
            with unchanged(model):
                shallower = structured.remove_blocks(model, skip)
            assert len(shallower.blocks) == 6 - len(skip)
            identity = layers.copy_model(model)  # the same block's f silenced: x + 0
            for i in skip:
                for p in identity.blocks[i].f[2].parameters():
                    p.data.zero_()
            assert torch.equal(shallower(x), identity(x))
            assert torch.allclose(shallower(x), _by_hand(model, x, skip), atol=1e-6)
            assert metrics.count_params(shallower) == metrics.count_params(model) - len(skip) * (2 * 16 * 12 + 12 + 16)


@pytest.mark.parametrize("seed", SEEDS)
def test_block_importance_by_skipping_and_by_norm_equal_the_formulas(seed, unchanged):
    model, x, y = _trained_residual(seed)
    calibration = torch.utils.data.TensorDataset(x, y)
    model.train()
    with unchanged(model):
        skip = structured.block_importance(model, calibration)
        norm = structured.block_importance(model, calibration, method="norm")
    assert model.training
    base = nn.functional.cross_entropy(_by_hand(model, x), y)
    expected = torch.stack([nn.functional.cross_entropy(_by_hand(model, x, [i]), y) - base for i in range(6)])
    assert torch.allclose(skip, expected.detach(), atol=1e-5)
    ratios, h = [], torch.relu(model.stem[1](x.flatten(1)))
    with torch.no_grad():
        for block in model.blocks:
            f = block.f(h)
            ratios.append((f.norm(dim=1) / h.norm(dim=1)).mean())
            h = h + f
    assert torch.allclose(norm, torch.stack(ratios), rtol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_prune_blocks_removes_the_least_important(seed, unchanged):
    model, x, y = _trained_residual(seed)
    calibration = torch.utils.data.TensorDataset(x, y)
    for method in ("skip", "norm"):
        scores = structured.block_importance(model, calibration, method=method)
        for count in (0, 1, 3, 6):
            with unchanged(model):
                pruned = structured.prune_blocks(model, count, calibration, method=method)
            dropped = torch.argsort(scores, stable=True)[:count].tolist()
            assert torch.equal(pruned(x), structured.remove_blocks(model, dropped)(x))
    assert len(structured.prune_blocks(model, 6, calibration).blocks) == 0  # stem and head alone still run
    assert structured.prune_blocks(model, 6, calibration)(x).shape == (40, 10)


def test_thin_blocks_is_prune_channels_in_every_block(unchanged):
    model, x, _ = _trained_residual(0)
    with unchanged(model):
        thinner = structured.thin_blocks(model, 0.5)
    for block, original in zip(thinner.blocks, model.blocks):
        assert block.f[0].out_features == 6 and block.f[2].in_features == 6 and block.f[2].out_features == 16
        head = x.flatten(1)[:, :16]
        assert torch.equal(block.f(head), structured.prune_channels(original.f, 0.5)(head))


def test_layer_pruning_keeps_dtype_and_mode_and_composes():
    model, x, y = _trained_residual(1)
    model = model.double()
    shallower = structured.remove_blocks(model, [2])
    assert not shallower.training and next(shallower.parameters()).dtype == torch.float64
    assert shallower(x.double()).dtype == torch.float64
    # the shallower model is an ordinary model for the rest of the package
    sparse = prune.magnitude_prune(shallower.float(), sparsity=0.5)
    assert prune.sparsity_report(sparse).total.sparsity == pytest.approx(0.5, abs=0.01)
    assert metrics.macs(shallower.float(), (1, 8, 8)) == metrics.macs(model.float(), (1, 8, 8)) - 2 * 16 * 12


def test_layer_pruning_refuses_bad_input():
    model, x, y = _trained_residual(0, blocks=3)
    calibration = torch.utils.data.TensorDataset(x, y)
    with pytest.raises(TypeError, match="residual blocks"):
        structured.prune_blocks(models.mlp(), 1, calibration)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        structured.remove_blocks("model", [0])
    for count in (-1, 4, 1.0, True):
        with pytest.raises((ValueError, TypeError), match="count"):
            structured.prune_blocks(model, count, calibration)
    for indices, error in (([3], ValueError), ([0, 0], ValueError), ([-1], ValueError), (0, TypeError),
                           ([True], ValueError)):
        with pytest.raises(error, match="indices"):
            structured.remove_blocks(model, indices)
    with pytest.raises(ValueError, match="method must be one of"):
        structured.block_importance(model, calibration, method="random")
    with pytest.raises(ValueError, match="calibration is empty"):
        structured.block_importance(model, torch.utils.data.TensorDataset(x[:0], y[:0]))
    with pytest.raises(ValueError, match="nothing to remove"):
        structured.prune_blocks(structured.remove_blocks(model, [0, 1, 2]), 0, calibration)
    with pytest.raises(ValueError, match="amount"):
        structured.thin_blocks(model, 1.0)


def test_block_influence_is_one_minus_the_cosine_written_out_and_blocks_drop_from_a_language_model():
    from compresskit import data, models

    torch.manual_seed(0)
    model = models.transformer_lm(context=16, d_model=32, n_layer=3, n_head=2).eval()
    windows = data.calibration_windows(data.encode_text(data.read_text()[:4000]), 16, 6)
    scores = structured.block_influence(model, windows)
    with torch.no_grad():  # by hand: each block's input and output hidden states, token by token
        x = model.tok(windows) + model.pos(torch.arange(16))
        expected = []
        for block in model.blocks:
            y = block(x)
            expected.append(1 - torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1).mean())
            x = y
    assert torch.allclose(scores, torch.stack(expected).float(), atol=1e-6)
    shallower = structured.remove_blocks(model, [1])
    assert len(shallower.blocks) == 2 and len(model.blocks) == 3
    with torch.no_grad():
        x = model.tok(windows) + model.pos(torch.arange(16))
        x = model.blocks[2](model.blocks[0](x))
        assert torch.allclose(shallower(windows), model.head(model.ln(x)), atol=1e-5)
    with torch.no_grad():  # a block that adds nothing (its two output projections zeroed) turns nothing: influence 0
        for layer in (model.blocks[1].attn.proj, model.blocks[1].out):
            layer.weight.zero_()
            layer.bias.zero_()
    assert float(structured.block_influence(model, windows)[1]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="windows"):
        structured.block_influence(model, windows + 1000)
