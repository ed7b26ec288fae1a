"""Recurrent networks: UnrolledRNN against torch's own RNN/GRU/LSTM, the SVD of gate matrices, pruning and
quantization of weight_ih / weight_hh separately, hidden-state drift, real int8 for an LSTM."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compresskit import data, int8, layers, lowrank, metrics, models, prune, qat, quantize, rnn
from compresskit.train import evaluate, set_seed, train

SEEDS = [0, 1, 2]
CELLS = {"RNN_TANH": lambda *a, **k: nn.RNN(*a, **k), "RNN_RELU": lambda *a, **k: nn.RNN(*a, nonlinearity="relu", **k),
         "GRU": nn.GRU, "LSTM": nn.LSTM}


def _state(hx):
    return torch.cat([t.flatten() for t in hx]) if isinstance(hx, tuple) else hx.flatten()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("layers,batch_first", [(1, True), (2, False)])
def test_unrolled_rnn_equals_torch(seed, mode, layers, batch_first):
    torch.manual_seed(seed)
    ref = CELLS[mode](5, 7, num_layers=layers, batch_first=batch_first)
    unrolled = rnn.UnrolledRNN.from_torch(ref)
    assert unrolled.mode == ref.mode
    x = torch.randn(4, 6, 5)  # (N, T, F) or (T, N, F): both are valid inputs
    for args in ((x,), (x[0],)):  # batched, unbatched
        (a, ha), (b, hb) = ref(*args), unrolled(*args)
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
        assert torch.allclose(_state(ha), _state(hb), atol=1e-5)
    h0 = torch.randn(layers, 6 if not batch_first else 4, 7)
    hx = (h0, torch.randn_like(h0)) if mode == "LSTM" else h0
    (a, ha), (b, hb) = ref(x, hx), unrolled(x, hx)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(_state(ha), _state(hb), atol=1e-5)


def test_unrolled_rnn_rejects_what_it_cannot_run():
    with pytest.raises(ValueError, match="bidirectional"):
        rnn.UnrolledRNN.from_torch(nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size"):
        rnn.UnrolledRNN.from_torch(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="nn.RNN"):
        rnn.UnrolledRNN.from_torch(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="mode must be one of"):
        rnn.UnrolledRNN("gru", 3, 4)
    gru, lstm = rnn.UnrolledRNN("GRU", 3, 4), rnn.UnrolledRNN("LSTM", 3, 4)
    x, h = torch.randn(2, 5, 3), torch.zeros(1, 2, 4)
    with pytest.raises(TypeError, match="single hidden tensor"):
        gru(x, (h, h))
    with pytest.raises(TypeError, match=r"\(h_0, c_0\) tuple"):
        lstm(x, h)
    with pytest.raises(ValueError, match="shape"):
        gru(torch.randn(1, 2, 5, 3))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["GRU", "LSTM"])
def test_svd_rnn_factors_each_gate_matrix_optimally(seed, mode):
    torch.manual_seed(seed)
    ref = CELLS[mode](8, 16, batch_first=True)
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    x = torch.randn(3, 8, 8)
    full = lowrank.svd_rnn(ref, rank_ih=8, rank_hh=16)
    assert torch.allclose(full(x)[0], ref(x)[0], atol=1e-5)  # full rank reproduces the layer
    for rank in (2, 5):
        small = lowrank.svd_rnn(ref, rank_hh=rank)
        assert isinstance(small.ih[0], nn.Linear)  # left dense
        w = ref.weight_hh_l0.detach().double()
        approx = (small.hh[0][1].weight @ small.hh[0][0].weight).detach().double()
        bound = math.sqrt(float((torch.linalg.svd(w).S[rank:] ** 2).sum()))  # Eckart-Young, written out
        assert float(torch.linalg.norm(w - approx)) == pytest.approx(bound, rel=1e-4)
        assert small.hh[0][0].weight.shape == (rank, 16)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in before.items())  # the caller's layer is unchanged


def test_svd_rnn_validates_ranks():
    gru = nn.GRU(8, 16)
    with pytest.raises(ValueError, match=r"rank_hh must be in \[1, 16\]"):
        lowrank.svd_rnn(gru, rank_hh=17)
    with pytest.raises(ValueError, match=r"rank_ih must be in \[1, 8\]"):
        lowrank.svd_rnn(gru, rank_ih=0)
    with pytest.raises(TypeError, match="rank_ih"):
        lowrank.svd_rnn(gru, rank_ih=2.5)
    with pytest.raises(ValueError, match="already factorized"):
        lowrank.svd_rnn(lowrank.svd_rnn(gru, rank_hh=4), rank_hh=2)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_low_rank_model_factorizes_recurrent_matrices_and_counts_them(cell):
    set_seed(0)
    model = models.rnn_classifier(cell, hidden_size=32)
    gates, hidden = (3 if cell == "gru" else 4), 32
    small = lowrank.low_rank(model, rank=6)
    assert isinstance(model.rnn, nn.RNNBase)  # the caller's model is unchanged
    assert isinstance(small.rnn, rnn.UnrolledRNN) and isinstance(small.fc, nn.Linear)  # output layer kept
    # W_ih (gates*32 x 8) breaks even at rank 8*g*32/(g*32+8) > 6: factorized; W_hh at g*32*32/(g*32+32) > 6: too
    assert isinstance(small.rnn.ih[0], nn.Sequential) and isinstance(small.rnn.hh[0], nn.Sequential)
    weights = 6 * (8 + gates * hidden) + 6 * (hidden + gates * hidden)
    biases = 2 * gates * hidden
    assert metrics.count_params(small) == weights + biases + model.fc.weight.numel() + model.fc.bias.numel()
    # MACs: 8 steps of (input projection + recurrent projection) + the classifier, written out
    assert metrics.macs(small, (8, 8)) == 8 * weights + hidden * 10
    assert metrics.macs(rnn.UnrolledRNN.from_torch(model.rnn), (8, 8)) == metrics.macs(model.rnn, (8, 8))
    assert metrics.storage_bytes(small) == 4 * metrics.count_params(small)
    assert lowrank.low_rank(model, rank=8).rnn.ih[0].__class__ is nn.Linear  # 8 >= break-even for W_ih: dense
    energy = lowrank.low_rank(model, energy=0.9)
    x = torch.rand(5, 1, 8, 8)
    assert energy(x).shape == (5, 10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("which", ["weight_ih", "weight_hh"])
def test_prune_one_kind_of_recurrent_matrix_like_torch(seed, which):
    torch.manual_seed(seed)
    model = models.rnn_classifier("lstm", hidden_size=16, num_layers=2)
    pruned = prune.magnitude_prune(model, sparsity=0.6, tensors=which)
    reference = layers.copy_model(model)
    for k in range(2):
        torch_prune.l1_unstructured(reference.rnn, f"{which}_l{k}", amount=0.6)
    for name, t in pruned.rnn.named_buffers():
        assert torch.equal(t, dict(reference.rnn.named_buffers())[name])
    other = "weight_hh" if which == "weight_ih" else "weight_ih"
    assert all(not n.startswith(other) for n, _ in pruned.rnn.named_buffers())
    assert torch.equal(pruned.fc.weight, model.fc.weight) and not prune.is_pruned(model)
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(pruned(x), reference(x), atol=1e-6)


def test_tensors_selection_validates_and_reaches_unrolled_parts():
    model = models.rnn_classifier("gru", hidden_size=16)
    with pytest.raises(ValueError, match="matches none of the prunable tensors"):
        prune.magnitude_prune(model, sparsity=0.5, tensors="weight_xx")
    with pytest.raises(TypeError, match="tensors"):
        prune.magnitude_prune(model, sparsity=0.5, tensors=3)
    small = lowrank.low_rank(model, rank=4)
    hh = [n for n, _, _ in prune.prunable(small, "hh.")]
    assert hh == ["rnn.hh.0.0.weight", "rnn.hh.0.1.weight"]


@pytest.mark.parametrize("seed", SEEDS)
def test_quantize_only_the_recurrent_matrix(seed):
    torch.manual_seed(seed)
    model = models.rnn_classifier("gru", hidden_size=16)
    q = quantize.quantize_model(model, 4, tensors="weight_hh")
    assert torch.equal(q.rnn.weight_ih_l0, model.rnn.weight_ih_l0) and torch.equal(q.fc.weight, model.fc.weight)
    expected = torch.fake_quantize_per_tensor_affine(  # torch's own fake-quant, symmetric 4 bit
        model.rnn.weight_hh_l0.detach(), float(model.rnn.weight_hh_l0.detach().abs().max() / 7.5), 0, -8, 7)
    assert torch.allclose(q.rnn.weight_hh_l0, expected, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_hidden_drift_matches_the_formula(seed):
    torch.manual_seed(seed)
    model = models.rnn_classifier("lstm", hidden_size=12)
    noisy = layers.copy_model(model)
    with torch.no_grad():
        noisy.rnn.weight_hh_l0.add_(0.05 * torch.randn_like(noisy.rnn.weight_hh_l0))
    x = torch.rand(9, 1, 8, 8)
    drift = rnn.hidden_drift(model, noisy, x)
    with torch.no_grad():
        a, b = model.rnn(x[:, 0])[0], noisy.rnn(x[:, 0])[0]  # (N, T, H)
    expected = [float(torch.sqrt(((b[:, t] - a[:, t]) ** 2).sum() / (a[:, t] ** 2).sum())) for t in range(8)]
    assert drift.shape == (8,) and drift.tolist() == pytest.approx(expected, rel=1e-5)
    assert float(rnn.hidden_drift(model, model, x).abs().max()) == 0.0
    states = rnn.hidden_states(model, x), rnn.hidden_states(noisy, x)
    assert torch.equal(rnn.state_drift(*states), drift)  # the same on states computed beforehand
    with pytest.raises(ValueError, match="differ in shape"):
        rnn.state_drift(states[0], states[1][:, :, :5])
    unrolled = layers.copy_model(model)
    unrolled.rnn = rnn.UnrolledRNN.from_torch(model.rnn)
    assert float(rnn.hidden_drift(model, unrolled, x).max()) < 1e-5
    assert rnn.hidden_states(model, x).shape == (9, 8, 12)
    with pytest.raises(ValueError, match="differ in shape"):
        rnn.hidden_drift(model, models.rnn_classifier("lstm", hidden_size=6), x)
    with pytest.raises(ValueError, match="no recurrent layer"):
        rnn.hidden_states(models.mlp(), x)


def test_real_int8_lstm_is_smaller_and_agrees(tmp_path):
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)
    set_seed(0)
    model = models.rnn_classifier("lstm")
    train(model, split.train, epochs=8, lr=3e-3, progress=False, seed=0)
    x = split.test.tensors[0][:64]
    sessions = int8.int8_models(model, x, folder=tmp_path)
    fp32, q8 = sessions["onnx fp32"], sessions["onnx int8 dynamic"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(q8.path)).graph.node}  # read independently of op_types
    assert "DynamicQuantizeLSTM" in ops and q8.op_types.count("DynamicQuantizeLSTM") == 1  # really int8
    assert "LSTM" in fp32.op_types
    assert torch.allclose(fp32(x), model(x), atol=1e-4)
    assert q8.file_bytes < 0.4 * fp32.file_bytes
    assert abs(evaluate(q8, split.test) - evaluate(model, split.test)) <= 0.01


@pytest.mark.parametrize("mode", list(CELLS))
def test_unrolled_rnn_goes_back_to_the_same_torch_layer(mode):
    torch.manual_seed(0)
    ref = CELLS[mode](5, 7, num_layers=2, batch_first=True)
    back = rnn.UnrolledRNN.from_torch(ref).to_torch()
    assert type(back) is type(ref) and back.mode == ref.mode and back.batch_first
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in back.state_dict().items())
    with pytest.raises(ValueError, match="not a dense nn.Linear"):
        lowrank.svd_rnn(ref, rank_hh=3).to_torch()


def test_qat_trains_recurrent_weights_through_the_fake_quantizer():
    split = data.load_digits(seed=0)
    set_seed(0)
    model = models.rnn_classifier("gru", hidden_size=32)
    train(model, split.train, epochs=15, lr=3e-3, progress=False, seed=0)
    ptq = evaluate(quantize.quantize_model(model, 2, per_channel=True), split.test)
    q = qat.qat(model, split.train, bits=2, per_channel=True, epochs=6, lr=3e-3, progress=False, seed=0)
    assert isinstance(q.rnn, nn.GRU) and isinstance(model.rnn, nn.GRU)  # returned as the torch layer it was
    for name in ("weight_ih_l0", "weight_hh_l0"):
        w = getattr(q.rnn, name).detach()
        for row in w:  # each output channel on its own symmetric 2-bit grid: k * step, k in {-2, -1, 0, 1}
            step = row[row != 0].abs().min()
            assert len(row.unique()) <= 4 and torch.allclose(row / step, (row / step).round(), atol=1e-4)
            assert set((row / step).round().int().tolist()) <= {-2, -1, 0, 1}
    assert evaluate(q, split.test) > ptq + 0.05  # trained with the quantizer in the loop, not after it


@pytest.mark.parametrize("seed", SEEDS)
def test_l1_penalty_and_proximal_step_reach_recurrent_weights(seed):
    from compresskit import sparsify

    torch.manual_seed(seed)
    model = models.rnn_classifier("lstm", hidden_size=10)
    r = model.rnn
    expected = 0.01 * sum(float(w.detach().abs().sum()) for w in (r.weight_ih_l0, r.weight_hh_l0, model.fc.weight))
    assert float(sparsify.l1_penalty(model, 0.01).detach()) == pytest.approx(expected, rel=1e-5)  # no biases
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        sparsify.proximal_l1_step(model, 0.05)
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight"):
        w0, w = before[name], dict(model.named_parameters())[name]
        assert torch.equal(w, torch.sign(w0) * (w0.abs() - 0.05).clamp_min(0))  # the prox of the L1 norm
    assert torch.equal(model.rnn.bias_hh_l0, before["rnn.bias_hh_l0"])
    assert sparsify.exact_zero_fraction(model) > 0.1
    x = torch.rand(3, 1, 8, 8)
    assert model(x).shape == (3, 10)  # the fused LSTM still runs on the thresholded weights


def test_low_rank_by_energy_picks_each_gate_matrix_rank():
    torch.manual_seed(0)
    model = models.rnn_classifier("gru", hidden_size=32)
    small = lowrank.low_rank(model, energy=0.6)
    for kind, part in (("ih", small.rnn.ih[0]), ("hh", small.rnn.hh[0])):
        s = torch.linalg.svdvals(getattr(model.rnn, f"weight_{kind}_l0").detach().double())
        share = torch.cumsum(s**2, 0) / (s**2).sum()
        wanted = int((share < 0.6 - 1e-12).sum()) + 1  # the smallest r keeping 60 % of sum s_i^2, written out
        m, n = getattr(model.rnn, f"weight_{kind}_l0").shape
        if wanted < m * n / (m + n):
            assert isinstance(part, nn.Sequential) and part[0].out_features == wanted
        else:
            assert isinstance(part, nn.Linear)


class _TimeMajor(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.fc = nn.GRU(8, 6), nn.Linear(6, 10)  # batch_first=False: (T, N, F)

    def forward(self, x):
        return self.fc(self.rnn(x[:, 0].transpose(0, 1))[0][-1])


def test_hidden_states_are_batch_major_whatever_the_layer_uses():
    torch.manual_seed(0)
    model, x = _TimeMajor(), torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        expected = model.rnn(x[:, 0].transpose(0, 1))[0].transpose(0, 1)
    assert torch.equal(rnn.hidden_states(model, x), expected)
    assert rnn.hidden_states(model, x).shape == (5, 8, 6)
