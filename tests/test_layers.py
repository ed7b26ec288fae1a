"""compresskit.layers: the one table of compressible tensors, stored vs effective weights, tied weights, copies."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compresskit import layers, models


def test_sites_follow_the_layer_table_and_never_take_biases():
    gru = models.rnn_classifier("lstm", hidden_size=4, num_layers=2)
    names = [s.name for s in layers.sites(gru)]
    assert names == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1", "fc.weight"]
    assert [s.name for s in layers.sites(models.lenet())] == ["0.weight", "4.weight", "9.weight", "11.weight"]
    assert layers.GATES == {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}
    with pytest.raises(ValueError, match="matches none"):
        layers.sites(gru, "weight_xx")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_effective_weight_is_current_after_an_optimizer_step(seed):
    """torch recomputes weight = orig * mask only in the next forward; effective_weight computes it now."""
    torch.manual_seed(seed)
    layer = nn.Linear(5, 4)
    torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    layer(torch.rand(2, 5)).sum().backward()
    torch.optim.SGD(layer.parameters(), lr=0.5).step()
    stale = layer.weight.detach().clone()
    fresh = layers.effective_weight(layer).detach()
    assert torch.equal(fresh, (layer.weight_orig * layer.weight_mask).detach()) and not torch.equal(fresh, stale)
    site = layers.sites(nn.Sequential(layer))[0]
    assert site.stored is layer.weight_orig and torch.equal(site.kept(), layer.weight_mask.bool())
    site.write(torch.ones(4, 5))
    assert torch.equal(layers.effective_weight(layer), layer.weight_mask)  # written where the values live


def test_kept_without_a_mask_is_the_nonzero_entries():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight[0, 1] = 0
    kept = layers.sites(nn.Sequential(layer))[0].kept()
    assert kept.sum() == 5 and not kept[0, 1]


def test_unique_sites_group_tied_weights_and_copies_keep_them_tied():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    groups = layers.unique_sites(layers.sites(model))
    assert [len(g) for g in groups] == [2]
    copy = layers.copy_model(model)
    assert copy[0].weight is copy[1].weight and copy[0].weight is not a.weight


def test_copy_model_after_a_forward_of_a_pruned_model_and_like():
    model = models.mlp(hidden=(6,))
    torch_prune.l1_unstructured(model[1], "weight", amount=0.5)
    model(torch.rand(2, 1, 8, 8))
    copy = layers.copy_model(model)
    assert torch.equal(copy[1].weight_mask, model[1].weight_mask)
    new = layers.placed_like(nn.Linear(2, 2), model.double().eval())
    assert new.weight.dtype == torch.float64 and not new.training
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        layers.copy_model(torch.zeros(2))


def test_every_function_that_switches_modes_restores_each_submodules_own_flag(tmp_path):
    from compresskit import data, int8, metrics, models, prune, rnn, structured, timing, weightonly
    from compresskit.train import predict

    def mixed(model):
        model.train()
        children = list(model.modules())[1:]
        for m in children[::2]:
            m.eval()
        return [(m, m.training) for m in model.modules()]

    def unchanged(flags):
        return all(m.training == flag for m, flag in flags)

    split = data.load_digits()
    x = split.test.tensors[0][:4]
    mlp = models.mlp(hidden=(8, 8))
    for call in (lambda: predict(mlp, split.test), lambda: metrics.macs(mlp, (1, 8, 8)),
                 lambda: timing.latency(mlp, x, repeats=2, warmup=0),
                 lambda: timing.compare({"a": mlp, "b": models.mlp(hidden=(4,))}, x, rounds=3, max_rounds=3)):
        flags = mixed(mlp)
        call()
        assert unchanged(flags)
    gru = models.rnn_classifier("gru", 8)
    flags = mixed(gru)
    rnn.hidden_states(gru, x[:, 0])
    assert unchanged(flags)
    res = models.residual_mlp(blocks=2)
    flags = mixed(res)
    structured.block_importance(res, split.train)
    assert unchanged(flags)
    lm = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    windows = data.calibration_windows(data.load_text().train, 17, 2)
    for method in ("mask", "gradient"):
        flags = mixed(lm)
        structured.head_importance(lm, windows, method=method)
        assert unchanged(flags)
    flags = mixed(lm)
    metrics.perplexity(lm, windows)
    assert unchanged(flags)
    # calibration: GPTQ and Wanda run the model on calibration text, in place; exporting to ONNX traces it
    text = data.load_text().train[:4000]
    for call in (lambda: weightonly.quantize_lm(lm, 4, group_size=16, method="gptq", calibration=text, samples=2,
                                                inplace=True),
                 lambda: prune.prune_lm(lm, 0.5, method="wanda", calibration=text, samples=2, inplace=True),
                 lambda: weightonly.layer_sensitivity(lm, windows, bits=(4,), group_size=16),
                 lambda: int8.export_onnx(mlp, x, tmp_path / "mlp.onnx")):
        flags = mixed(lm) + mixed(mlp)
        call()
        assert unchanged(flags)
