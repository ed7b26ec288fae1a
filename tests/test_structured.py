"""Structured pruning (compresskit.structured): neurons and filters of MLPs and CNNs, hidden units of RNNs. Each
smaller model is checked against the dense model with the removed units silenced (their rows and columns zeroed),
over seeds 0-2, to 1e-5."""

import pytest
import torch
from torch import nn

from compresskit import lowrank, metrics, models, prune, rnn

MAKERS = {"mlp": models.mlp, "lenet": models.lenet}
SEEDS = [0, 1, 2]


# ---------------------------------------------------------------------------------------------- structured


def _zeroed_reference(model, amount, norm):
    """The dense model with the removed units silenced: what the smaller model must compute exactly.

    Removing hidden unit i = zeroing row i of its layer and its bias (for an MLP), or zeroing the BatchNorm scale
    and shift of channel i (for a CNN), with the units chosen by the L-norm written out.
    """
    ref = models.copy_model(model)
    layers = [m for m in ref if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for layer in layers[:-1]:
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
    small = prune.prune_channels(model, 0.5, norm=norm).eval()
    ref = _zeroed_reference(model, 0.5, norm).eval()
    x = torch.rand(16, 1, 8, 8)
    assert torch.allclose(small(x), ref(x), atol=1e-5)
    assert metrics.count_params(small) < 0.5 * metrics.count_params(model)
    assert small(x).shape == (16, 10)


def test_prune_channels_shapes_and_callers_model():
    torch.manual_seed(0)
    model = models.mlp(hidden=(300, 100))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = prune.prune_channels(model, 0.5)
    assert [m.out_features for m in small if isinstance(m, nn.Linear)] == [150, 50, 10]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    cnn = prune.prune_channels(models.lenet(), 0.25)
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
        prune.prune_channels(models.mlp(hidden=(8, 8)), *args, **kwargs)
    with pytest.raises(TypeError, match="nn.Sequential"):
        prune.prune_channels(models.rnn_classifier(), 0.5)


SILENT_GATE = {"RNN_TANH": 0, "RNN_RELU": 0, "GRU": 2, "LSTM": 2}  # zero these rows and the unit stays 0 forever


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_prune_units_equals_the_dense_model_with_those_units_silenced(seed, cell):
    torch.manual_seed(seed)
    model = models.rnn_classifier(cell, hidden_size=12, num_layers=2)
    small = prune.magnitude_prune(model, sparsity=0.3, tensors="weight_hh")  # scores use the effective weights
    smaller = rnn.prune_units(small, 0.25, norm=2)
    r = small.rnn
    assert smaller.rnn.hidden_size == 9 and smaller.fc.in_features == 9 and type(smaller.rnn) is type(r)
    assert model.rnn.hidden_size == 12 and small.rnn.hidden_size == 12  # callers unchanged
    gates, silenced = rnn.GATES[r.mode], prune.finalize(models.copy_model(small))
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
        rnn.prune_units(model, 1.0)
    with pytest.raises(ValueError, match="norm must be 1 or 2"):
        rnn.prune_units(model, 0.5, norm=3)
    with pytest.raises(ValueError, match="no recurrent layer"):
        rnn.prune_units(models.mlp(), 0.5)
    with pytest.raises(ValueError, match="reads its 8 hidden units"):
        rnn.prune_units(nn.Sequential(nn.GRU(8, 8)), 0.5)
    with pytest.raises(TypeError, match="to_torch"):
        rnn.prune_units(lowrank.low_rank(model, rank=2), 0.5)
    with pytest.raises(TypeError, match="rnn.prune_units"):
        prune.prune_channels(model, 0.5)
