"""Techniques composed: every pair that makes sense gives the model you get by doing the two steps by hand with torch
(``tests/reference.py``), over seeds 0-2. Tolerances: exact where both sides run the same float32 operations,
1e-6 relative where only the summation order differs (means, SVD products), stated per test."""

from __future__ import annotations

import pytest
import torch

from compresskit import distill, lowrank, models, prune, qat, quantize, structured
from compresskit.layers import effective_weight
from compresskit.train import evaluate, set_seed

from . import reference as ref

SEEDS = [0, 1, 2]
LINEARS = (1, 3, 5)  # the Linear layers of models.mlp()


def _mlp(seed, hidden=(300, 100)):
    set_seed(seed)
    return models.mlp(hidden=hidden)


def _kept(by_hand, i):
    return by_hand[i].weight_mask.bool()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_prune_then_uniform_quantize(seed, symmetric):
    model = _mlp(seed)
    q = quantize.quantize_model(prune.magnitude_prune(model, sparsity=0.8), 4, symmetric=symmetric, per_channel=True)
    by_hand = ref.torch_prune_layers(model, 0.8)
    for i in LINEARS:
        expected = ref.fake_quant_kept(by_hand[i].weight.detach(), _kept(by_hand, i), 4, symmetric)
        got = effective_weight(q[i]).detach()
        assert torch.equal(got, expected)  # exact: the same float32 operations
        assert torch.equal(q[i].weight_mask, by_hand[i].weight_mask)  # masks kept for a later fine-tune


@pytest.mark.parametrize("seed", SEEDS)
def test_prune_then_binarize_fits_alpha_to_kept_weights(seed):
    model = _mlp(seed)
    q = quantize.quantize_model(prune.magnitude_prune(model, sparsity=0.9), 1, method="binary")
    by_hand = ref.torch_prune_layers(model, 0.9)
    for i in LINEARS:
        expected = ref.binarize_kept(by_hand[i].weight.detach(), _kept(by_hand, i))
        torch.testing.assert_close(effective_weight(q[i]).detach(), expected, rtol=1e-6, atol=0)
        assert (effective_weight(q[i])[~_kept(by_hand, i)] == 0).all()


def test_pruned_then_binarized_lenet_300_100_keeps_its_accuracy(split, trained_mlp):
    """The issue's case: alpha averaged over the pruned zeros made every kept weight tiny and every pruned one
    +-alpha (measured: 10 %, chance). Fitted to the kept weights, binarizing costs a few points (measured: 80.5 %
    pruned, 76.9 % pruned and binarized, seed 0)."""
    pruned = prune.magnitude_prune(trained_mlp, sparsity=0.9, scope="global")
    pruned_binary = evaluate(quantize.quantize_model(pruned, 1, method="binary"), split.test)
    assert pruned_binary >= evaluate(pruned, split.test) - 0.1 and pruned_binary > 0.6
    averaged_in = prune.magnitude_prune(trained_mlp, sparsity=0.9, scope="global")
    for i in LINEARS:  # the old behaviour, written out: binarize the whole row, zeros included, then mask
        averaged_in[i].weight_orig.data.copy_(quantize.binarize(averaged_in[i].weight.detach()))
    assert evaluate(averaged_in, split.test) < 0.3


@pytest.mark.parametrize("seed", SEEDS)
def test_prune_then_kmeans_clusters_the_survivors(seed):
    model = _mlp(seed)
    q = quantize.quantize_model(prune.magnitude_prune(model, sparsity=0.8), 3, method="kmeans")
    by_hand = ref.torch_prune_layers(model, 0.8)
    for i in LINEARS:
        expected = ref.kmeans_kept(by_hand[i].weight.detach(), _kept(by_hand, i), 3)
        got = effective_weight(q[i]).detach()
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
        assert len(got[_kept(by_hand, i)].unique()) == 8 and (got[~_kept(by_hand, i)] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_prune_then_low_rank_factorizes_the_pruned_weight(seed):
    model = _mlp(seed)
    factorized = lowrank.low_rank(prune.magnitude_prune(model, sparsity=0.5), rank=16)
    by_hand = ref.torch_prune_layers(model, 0.5)
    for i in (1, 3):
        product = (factorized[i][1].weight @ factorized[i][0].weight).detach().double()
        torch.testing.assert_close(product, ref.truncated_svd(by_hand[i].weight.detach(), 16), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_low_rank_then_prune_masks_the_factors_as_torch_does(seed):
    factorized = lowrank.low_rank(_mlp(seed), rank=16)
    pruned = prune.magnitude_prune(factorized, sparsity=0.5)
    by_hand = ref.torch_prune_layers(factorized, 0.5)
    ours = [m.weight_mask for m in pruned.modules() if hasattr(m, "weight_mask")]
    theirs = [m.weight_mask for m in by_hand.modules() if hasattr(m, "weight_mask")]
    assert len(ours) == len(theirs) == 5 and all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("seed", SEEDS)
def test_prune_then_qat_equals_qat_by_hand(split, seed):
    model = _mlp(seed, hidden=(32, 16))
    x, y = split.train.tensors
    small = torch.utils.data.TensorDataset(x[:256], y[:256])
    out = qat.qat(prune.magnitude_prune(model, sparsity=0.7), small, bits=3, per_channel=True, epochs=1,
                       lr=1e-2, batch_size=64, seed=seed, progress=False)
    expected = ref.qat_by_hand(ref.torch_prune_layers(model, 0.7), x[:256], y[:256], bits=3, lr=1e-2, seed=seed,
                               batch_size=64)
    for i in LINEARS:
        torch.testing.assert_close(effective_weight(out[i]).detach(), expected[i], rtol=1e-5, atol=1e-6)
        assert hasattr(out[i], "weight_mask") and (effective_weight(out[i])[~out[i].weight_mask.bool()] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_prune_kmeans_then_centroid_fine_tuning_equals_the_formula(split, seed):
    """Deep Compression's codebook update written out: grad(centroid) = sum of its members' gradients, SGD with
    momentum 0.9 on the codebooks only; pruned weights stay 0."""
    model = _mlp(seed, hidden=(32, 16))
    x, y = split.train.tensors[0][:128], split.train.tensors[1][:128]
    pruned = prune.magnitude_prune(model, sparsity=0.6)
    out = qat.kmeans_finetune(pruned, torch.utils.data.TensorDataset(x, y), bits=2, epochs=1, lr=0.05,
                                   optimizer="sgd", batch_size=128, seed=seed, progress=False)
    expected = ref.centroid_finetune_by_hand(ref.torch_prune_layers(model, 0.6), x, y, bits=2, lr=0.05)
    for i in LINEARS:
        torch.testing.assert_close(effective_weight(out[i]).detach(), expected[i], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_distill_then_prune_and_quantize(split, seed):
    set_seed(seed)
    teacher, student = models.mlp(hidden=(32,)), models.mlp(hidden=(16,))
    distill.distill(student, teacher, split.train, temperature=4.0, alpha=0.9, epochs=1, progress=False, seed=seed)
    ours = prune.magnitude_prune(student, sparsity=0.5)
    theirs = ref.torch_prune_layers(student, 0.5)
    assert all(torch.equal(ours[i].weight_mask, theirs[i].weight_mask) for i in (1, 3))
    q = quantize.quantize_model(student, 8, per_channel=True)
    for i in (1, 3):
        w = student[i].weight.detach()
        assert torch.equal(q[i].weight, ref.fake_quant_kept(w, torch.ones_like(w, dtype=torch.bool), 8, True))


@pytest.mark.parametrize("seed", SEEDS)
def test_rnn_prune_weight_hh_then_quantize(seed):
    set_seed(seed)
    gru = models.rnn_classifier("gru", hidden_size=16)
    q = quantize.quantize_model(prune.magnitude_prune(gru, sparsity=0.5, tensors="weight_hh"), 4, per_channel=True)
    by_hand = ref.torch_prune_layers(gru, 0.5, names=("weight_hh",))
    kept = by_hand.rnn.weight_hh_l0_mask.bool()
    expected = ref.fake_quant_kept(by_hand.rnn.weight_hh_l0.detach(), kept, 4, True)
    assert torch.equal(effective_weight(q.rnn, "weight_hh_l0").detach(), expected)
    w_ih = gru.rnn.weight_ih_l0.detach()
    assert torch.equal(q.rnn.weight_ih_l0.detach(), ref.fake_quant_kept(w_ih, torch.ones_like(w_ih).bool(), 4, True))


@pytest.mark.parametrize("seed", SEEDS)
def test_rnn_prune_then_qat_keeps_zeros_and_masks(split, seed):
    set_seed(seed)
    gru = models.rnn_classifier("gru", hidden_size=16)
    pruned = prune.magnitude_prune(gru, sparsity=0.6)
    out = qat.qat(pruned, split.train, bits=3, epochs=1, seed=seed, progress=False)
    assert isinstance(out.rnn, torch.nn.GRU)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        mask = getattr(out.rnn, f"{name}_mask")
        assert torch.equal(mask, getattr(pruned.rnn, f"{name}_mask"))
        w = effective_weight(out.rnn, name).detach()
        assert (w[~mask.bool()] == 0).all()
        assert max(len(row[m.bool()].unique()) for row, m in zip(w, mask)) <= 2**3


def test_orders_that_make_no_sense_say_what_to_do():

    gru = models.rnn_classifier("gru", hidden_size=8)
    factorized_gru = copy_gru = prune.magnitude_prune(gru, sparsity=0.0)
    factorized_gru.rnn = lowrank.svd_rnn(copy_gru.rnn, rank_hh=4)
    with pytest.raises(TypeError, match="to_torch"):  # structured pruning needs torch's fused layer
        structured.prune_units(factorized_gru, 0.5)
    with pytest.raises(ValueError, match="already factorized"):
        lowrank.svd_rnn(factorized_gru.rnn, rank_hh=2)
    with pytest.raises(TypeError, match="prune_units"):
        structured.prune_channels(gru, 0.5)
    factorized = lowrank.low_rank(models.mlp(), rank=8)
    with pytest.raises(ValueError, match="prune_channels, then low_rank"):
        structured.prune_channels(factorized, 0.5)
    under_qat = models.mlp()
    torch.nn.utils.parametrize.register_parametrization(under_qat[1], "weight", torch.nn.Identity())
    for compress in (lambda m: prune.magnitude_prune(m, sparsity=0.5), lambda m: quantize.quantize_model(m, 4),
                     lambda m: lowrank.low_rank(m, rank=4)):
        with pytest.raises(ValueError, match="remove_parametrizations"):
            compress(under_qat)
