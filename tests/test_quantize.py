import math
import warnings

import pytest
import torch
from torch import nn

from compresskit import data, layers, metrics, models, qat, quantize
from compresskit.train import evaluate, set_seed, train

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

SEEDS = [0, 1, 2]
BITS = [2, 3, 4, 5, 8, 12, 16]


def _observer(bits, symmetric, per_channel, axis=0):
    """torch's own observer configured for `bits`: the reference for scale and zero point."""
    q_min, q_max = quantize.code_range(bits, symmetric)
    dtype = (torch.qint8 if symmetric else torch.quint8) if bits <= 8 else torch.qint32
    if per_channel:
        scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        return PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=scheme, quant_min=q_min, quant_max=q_max)
    scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return MinMaxObserver(dtype=dtype, qscheme=scheme, quant_min=q_min, quant_max=q_max)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_per_tensor_matches_torch_observer_and_fake_quant(seed, bits, symmetric):
    torch.manual_seed(seed)
    w = torch.randn(40, 30) * 0.2 + (0.05 if seed == 2 else 0.0)
    obs = _observer(bits, symmetric, False)
    obs(w)
    ref_scale, ref_zp = obs.calculate_qparams()
    q, scale, zp = quantize.quantize_tensor(w, bits, symmetric=symmetric)
    assert torch.allclose(scale.flatten(), ref_scale, rtol=1e-6) and int(zp) == int(ref_zp)
    q_min, q_max = quantize.code_range(bits, symmetric)
    ref = torch.fake_quantize_per_tensor_affine(w, float(scale), int(zp), q_min, q_max)
    assert torch.equal(quantize.fake_quantize(w, bits, symmetric=symmetric), ref)
    assert int(q.min()) >= q_min and int(q.max()) <= q_max
    assert torch.equal(quantize.dequantize(q, scale, zp), ref)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_matches_torch(seed, bits, symmetric, axis):
    torch.manual_seed(seed)
    w = torch.randn(6, 5, 3, 3) * torch.rand(6, 1, 1, 1)
    obs = _observer(bits, symmetric, True, axis)
    obs(w)
    ref_scale, ref_zp = obs.calculate_qparams()
    q, scale, zp = quantize.quantize_tensor(w, bits, symmetric=symmetric, per_channel=True, axis=axis)
    assert torch.allclose(scale.flatten(), ref_scale, rtol=1e-6) and torch.equal(zp.flatten(), ref_zp.int())
    q_min, q_max = quantize.code_range(bits, symmetric)
    ref = torch.fake_quantize_per_channel_affine(w, scale.flatten(), zp.flatten(), axis, q_min, q_max)
    assert torch.equal(quantize.fake_quantize(w, bits, symmetric=symmetric, per_channel=True, axis=axis), ref)


def test_rounding_is_half_to_even_and_clamped():
    w = torch.tensor([-1.0, -0.25, 0.25, 0.75, 1.0])  # scale 1/127.5 at 8 bits symmetric
    q, scale, zp = quantize.quantize_tensor(w, 8)
    assert q.tolist() == torch.round(w / scale.flatten()).clamp(-128, 127).int().tolist()
    half = torch.tensor([0.5, 1.5, 2.5, -0.5, 7.0])  # exact halves: scale 7 / 7.5 -> check half-to-even on codes
    q, scale, _ = quantize.quantize_tensor(half, 4)
    assert torch.equal(q.float(), torch.round(half * (1.0 / scale)).clamp(-8, 7))


def test_bad_bits_and_inputs():
    w = torch.randn(3, 3)
    for bits, error in ((1, ValueError), (17, ValueError), (0, ValueError), (4.0, TypeError)):
        with pytest.raises(error, match="bits"):
            quantize.quantize_tensor(w, bits)
    with pytest.raises(ValueError, match="binarize"):
        quantize.fake_quantize(w, 1)
    with pytest.raises(TypeError, match="floating-point"):
        quantize.quantize_tensor(torch.arange(4), 4)
    with pytest.raises(ValueError, match="axis"):
        quantize.quantize_tensor(w, 4, per_channel=True, axis=2)


@pytest.mark.parametrize("seed", SEEDS)
def test_binarize_formula(seed):
    torch.manual_seed(seed)
    w = torch.randn(4, 3, 2)
    w[0, 0, 0] = 0.0
    b = quantize.binarize(w)
    alpha = w.abs().mean(dim=(1, 2))
    for c in range(4):
        expected = torch.where(w[c] >= 0, alpha[c], -alpha[c])
        assert torch.allclose(b[c], expected)
    assert b[0, 0, 0] > 0  # sign(0) = +1, not torch.sign's 0
    assert torch.allclose(b[1].abs(), alpha[1].expand(3, 2))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_kmeans_is_a_lloyd_fixed_point(seed, bits):
    torch.manual_seed(seed)
    w = torch.randn(50, 20)
    codebook, idx = quantize.kmeans_quantize(w, bits)
    assert codebook.shape == (2**bits,) and idx.shape == w.shape
    # each weight is assigned to its nearest centroid...
    nearest = torch.argmin((w.reshape(-1, 1) - codebook[None]).abs(), dim=1).reshape(w.shape)
    assert torch.equal(idx, nearest)
    # ...and each used centroid is the mean of its members
    for k in idx.unique():
        assert codebook[k].item() == pytest.approx(w[idx == k].mean().item(), abs=1e-5)
    # better than uniform at the same bits (k-means minimises the squared error)
    if bits >= 2:
        err_km = (codebook[idx] - w).pow(2).sum()
        err_u = (quantize.fake_quantize(w, bits, symmetric=False) - w).pow(2).sum()
        assert err_km <= err_u


def test_kmeans_linear_init_and_centroid_gradients():
    w = torch.tensor([0.0, 0.1, 0.9, 1.0])
    codebook, idx = quantize.kmeans_quantize(w, 1)
    assert codebook.tolist() == pytest.approx([0.05, 0.95]) and idx.tolist() == [0, 0, 1, 1]
    g = quantize.centroid_gradients(torch.tensor([1.0, 2.0, 3.0, 4.0]), idx, 2)
    assert g.tolist() == [3.0, 7.0]


def test_quantize_model_copies_validates_and_prices():
    torch.manual_seed(0)
    model = models.lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize.quantize_model(model, 4, per_channel=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(q[0].weight, quantize.fake_quantize(model[0].weight, 4, per_channel=True))
    assert torch.equal(q[0].bias, model[0].bias)
    assert all(len(row.unique()) <= 16 for row in q[9].weight)  # per channel: 16 levels per row
    with pytest.raises(ValueError, match="method must be one of"):
        quantize.quantize_model(model, 4, method="log")
    with pytest.raises(ValueError, match="bits must be 1"):
        quantize.quantize_model(model, 2, method="binary")
    # storage: k-means 4 bits = 4 bits per weight + 16 float32 centroids per tensor
    mlp = models.mlp()
    weights = 64 * 300 + 300 * 100 + 100 * 10
    biases = 300 + 100 + 10
    km = metrics.storage_bytes(mlp, **quantize.storage_kwargs("kmeans", 4))
    assert km == sum((n * 4 + 16 * 32 + 7) // 8 for n in (19200, 30000, 1000)) + 4 * biases
    u8 = metrics.storage_bytes(mlp, **quantize.storage_kwargs("uniform", 8, per_channel=True))
    assert u8 == weights + 4 * (300 + 100 + 10) + 4 * biases
    gru = quantize.quantize_model(models.rnn_classifier("gru"), 3)
    assert len(gru.rnn.weight_hh_l0.unique()) <= 8


def test_ste_gradients():
    w = torch.tensor([-2.0, -0.5, 0.3, 0.9], requires_grad=True)
    quantize.ste_binarize(w).sum().backward()
    assert w.grad.tolist() == [0.0, 1.0, 1.0, 1.0]  # clipped where |w| > 1
    v = torch.tensor([-1.0, 0.2, 0.5, 1.0], requires_grad=True)
    out = quantize.ste_fake_quantize(v, 4)
    assert torch.equal(out.detach(), quantize.fake_quantize(v.detach(), 4))
    out.sum().backward()
    # torch passes gradient where round(w * (1 / scale)) lies in the code range: 1.0 * float32(1 / (1 / 7.5)) rounds
    # to code 7, inside; torch's own backward says the same
    reference = v.detach().clone().requires_grad_()
    torch.fake_quantize_per_tensor_affine(reference, 1 / 7.5, 0, -8, 7).sum().backward()
    assert v.grad.tolist() == reference.grad.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_qat_recovers_two_bit_accuracy_and_full_integer_calibration():
    split = data.load_digits()
    set_seed(0)
    model = models.mlp()
    train(model, split.train, epochs=30, lr=1e-3, progress=False)
    ptq = evaluate(quantize.quantize_model(model, 2), split.test)
    q = qat.qat(model, split.train, bits=2, per_channel=True, epochs=8, progress=False)
    assert evaluate(q, split.test) >= max(ptq, evaluate(model, split.test) - 0.03)
    assert len(q[1].weight[0].unique()) <= 4 and not any("parametrizations" in n for n, _ in q.named_parameters())
    full = quantize.quantize_activations(quantize.quantize_model(model, 8, per_channel=True), 8, split.train)
    acts = [m for m in full if isinstance(m, quantize.ActivationQuant)]
    assert len(acts) == 3 and all(not a.calibrating and a.hi > a.lo for a in acts)
    assert evaluate(full, split.test) >= evaluate(model, split.test) - 0.01
    x = split.test.tensors[0][:4]
    with pytest.raises(TypeError, match="nn.Sequential"):
        quantize.quantize_activations(models.rnn_classifier(), 8, split.train)
    assert full(x).shape == (4, 10)


# ------------------------------------------------------------------------------------------------ STE against torch


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", list(range(2, 17)))
def test_ste_backward_equals_torch_fake_quant_backward(seed, symmetric, bits):
    """The gradient mask is torch's: the rounded code round(w * (1 / s)) + z within [q_min, q_max]. Inputs reach
    beyond the fitted range (the scale comes from the first half only) so both ends are exercised."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(40, 30, generator=gen) * 3
    scale, zp = quantize.qparams(w[:20], bits, symmetric=symmetric)
    q_min, q_max = quantize.code_range(bits, symmetric)
    upstream = torch.randn(w.shape, generator=gen)

    # per tensor: our STE with the parameters fitted on w[:20] must equal torch's op with the same parameters
    ours = w.clone().requires_grad_()
    codes = quantize._codes(ours, scale, zp)
    inside = (codes >= q_min) & (codes <= q_max)
    theirs = w.clone().requires_grad_()
    torch.fake_quantize_per_tensor_affine(theirs, float(scale), int(zp), q_min, q_max).backward(upstream)
    assert torch.equal(upstream * inside, theirs.grad)

    # the full function (its own fit) against torch with the fit it made
    full = w.clone().requires_grad_()
    out = quantize.ste_fake_quantize(full, bits, symmetric=symmetric)
    out.backward(upstream)
    s, z = quantize.qparams(w, bits, symmetric=symmetric)
    ref = w.clone().requires_grad_()
    ref_out = torch.fake_quantize_per_tensor_affine(ref, float(s), int(z), q_min, q_max)
    ref_out.backward(upstream)
    assert torch.equal(out.detach(), ref_out.detach()) and torch.equal(full.grad, ref.grad)

    # per channel (axis 0)
    pc = w.clone().requires_grad_()
    out = quantize.ste_fake_quantize(pc, bits, symmetric=symmetric, per_channel=True)
    out.backward(upstream)
    s, z = quantize.qparams(w, bits, symmetric=symmetric, per_channel=True)
    ref = w.clone().requires_grad_()
    ref_out = torch.fake_quantize_per_channel_affine(ref, s.flatten(), z.flatten(), 0, q_min, q_max)
    ref_out.backward(upstream)
    assert torch.equal(out.detach(), ref_out.detach()) and torch.equal(pc.grad, ref.grad)


def test_ste_extreme_weights_keep_learning():
    """The largest weight of a tensor sets the scale, so its code is q_max (symmetric) and it gets gradient: the
    old rule cut the gradient half a step early at both ends."""
    w = torch.tensor([-1.0, -0.3, 0.2, 0.7], requires_grad=True)
    for bits in (2, 3, 4, 8):
        w.grad = None
        quantize.ste_fake_quantize(w, bits, symmetric=False).sum().backward()
        assert w.grad.tolist() == [1.0, 1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------ k-means


def _linear_init(x: torch.Tensor, k: int):
    return torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("bits", [2, 4, 5, 6])
def test_kmeans_fixed_point_no_empty_cluster_and_no_worse_than_sklearn(seed, bits):
    """Every weight at its nearest centroid, every centroid the mean of its members (tolerance 1e-9 in float64), no
    empty cluster, and distortion no worse than scikit-learn's KMeans (Lloyd, same linear initialisation, tol=0) to
    1e-9 relative. Heavy-tailed weights, like trained ones: the tails leave linear-init clusters empty."""
    from sklearn.cluster import KMeans

    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 300, generator=gen) * torch.rand(64, 1, generator=gen) ** 3
    codebook, idx = quantize.kmeans_quantize(w, bits)
    x = w.double().flatten()
    c = codebook.double()
    assert torch.bincount(idx.flatten(), minlength=2**bits).min() > 0, "an empty cluster"
    nearest = (x[:, None] - c[None, :]).abs().min(dim=1).values
    assert torch.all((x - c[idx.flatten()]).abs() <= nearest + 1e-9)
    for j in range(2**bits):
        assert abs(float(x[idx.flatten() == j].mean()) - float(c[j])) <= 1e-6 * max(1.0, abs(float(c[j])))
    ours = float(((x - c[idx.flatten()]) ** 2).sum())
    ref = KMeans(2**bits, init=_linear_init(x, 2**bits)[:, None].numpy(), n_init=1, tol=0, max_iter=1000,
                 algorithm="lloyd").fit(x[:, None].numpy())
    assert ours <= ref.inertia_ * (1 + 1e-9) + 1e-12


def test_kmeans_few_distinct_values_and_mask():
    w = torch.tensor([0.5, 0.5, -1.0, 2.0, 0.0, 0.0])
    codebook, idx = quantize.kmeans_quantize(w, 3)
    assert torch.equal(codebook[idx], w)  # 4 distinct values, 8 centroids: exact
    mask = w != 0
    codebook, idx = quantize.kmeans_quantize(w, 1, mask=mask)  # 2 centroids for the 4 kept weights only
    shared = codebook[idx] * mask
    # linear init (-1, 2): {-1, 0.5, 0.5} (0.5 is halfway: the smaller centroid) and {2}; means 0 and 2, a fixed point
    assert torch.equal(shared[~mask], torch.zeros(2)) and codebook.tolist() == [0.0, 2.0]


@pytest.mark.parametrize("bits", [5, 6])
def test_kmeans_wastes_no_centroid_on_trained_weights(trained_mlp, bits):
    """Linear initialisation puts centroids in the empty tails of trained weights; relocation fills them."""
    for i in (1, 3):
        _, idx = quantize.kmeans_quantize(trained_mlp[i].weight, bits)
        assert len(idx.unique()) == 2**bits


# ------------------------------------------------------------------------------------------------ bits per layer


@pytest.mark.parametrize("method, widths", [("uniform", {"1.weight": 8, "5.weight": 3}),
                                            ("kmeans", {"1.weight": 2, "3.weight": 5, "5.weight": 1})])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bits_per_layer_equal_each_layer_quantized_by_hand_and_priced_at_its_own_width(method, widths, seed):
    set_seed(seed)
    model = models.mlp(hidden=(24, 16))
    mixed = quantize.quantize_model(model, widths, method=method, per_channel=method == "uniform")
    by_hand = model
    for name, bits in widths.items():  # one tensor at a time, with the one-width call
        by_hand = quantize.quantize_model(by_hand, bits, method=method, per_channel=method == "uniform",
                                          tensors=name)
    for (name, a), (_, b) in zip(layers.named_tensors(mixed), layers.named_tensors(by_hand)):
        assert torch.equal(a, b), name
    untouched = dict(layers.named_tensors(model))
    for name, t in layers.named_tensors(mixed):
        if name not in widths:
            assert torch.equal(t, untouched[name]), f"{name} is not in the dict and must stay float"
    kwargs = quantize.storage_kwargs(method, widths, per_channel=method == "uniform")
    expected = 0
    for name, t in layers.named_tensors(model):
        if name in widths:
            table = 32 * 2 ** widths[name] if method == "kmeans" else 32 * t.shape[0]  # per-channel float32 scales
            expected += math.ceil((t.numel() * widths[name] + table) / 8)
        else:
            expected += t.numel() * 4
    assert metrics.storage_bytes(mixed, **kwargs) == expected


def test_bits_per_layer_refusals_name_the_tensor():
    model = models.mlp(hidden=(8, 8))
    with pytest.raises(ValueError, match=r"bits names \['9.weight'\], which are no compressible tensors"):
        quantize.quantize_model(model, {"9.weight": 4})
    with pytest.raises(ValueError, match=r"bits\['1.weight'\] must be in \[2, 16\], got 17"):
        quantize.quantize_model(model, {"1.weight": 17})
    with pytest.raises(TypeError, match=r"bits\['1.weight'\] must be an int"):
        quantize.quantize_model(model, {"1.weight": 4.0})
    with pytest.raises(ValueError, match="bits is an empty dict"):
        quantize.quantize_model(model, {})
    with pytest.raises(ValueError, match="either tensors="):
        quantize.quantize_model(model, {"1.weight": 4}, tensors="1.weight")
    with pytest.raises(ValueError, match=r"value_bits names \['1.bias'\], which are no compressible tensors"):
        metrics.storage_bytes(model, value_bits={"1.bias": 4})
    with pytest.raises(ValueError, match=r"value_bits\['1.weight'\] must be in \[1, 64\], got 0"):
        metrics.storage_bytes(model, value_bits={"1.weight": 0})
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    with pytest.raises(ValueError, match="one tied weight: give them one bit width"):
        quantize.quantize_model(tied, {"0.weight": 4, "1.weight": 8})
    shared = quantize.quantize_model(tied, {"0.weight": 4})
    assert shared[1].weight is shared[0].weight and len(torch.unique(shared[0].weight)) <= 16


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("call", [lambda w: quantize.quantize_tensor(w, 4), lambda w: quantize.fake_quantize(w, 4),
                                  lambda w: quantize.kmeans_quantize(w, 2), lambda w: quantize.binarize(w)])
def test_empty_tensors_are_refused_by_every_quantizer(call):
    with pytest.raises(ValueError, match=r"w is empty \(shape \(0, 3\)\): there is nothing to quantize"):
        call(torch.empty(0, 3))


def test_bits_zero_and_mismatched_parameters_are_refused():
    w = torch.randn(6, 8)
    with pytest.raises(ValueError, match=r"bits must be in \[2, 16\], got 0"):
        quantize.quantize_tensor(w, 0)
    with pytest.raises(ValueError, match=r"bits must be in \[1, 8\], got 0"):
        quantize.kmeans_quantize(w, 0)
    q = torch.zeros(6, 8, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"scale \(5, 1\) and zero_point \(5, 1\) must broadcast against q \(6, 8\)"):
        quantize.dequantize(q, torch.ones(5, 1), torch.zeros(5, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="must broadcast against q"):
        quantize.dequantize(q, torch.ones(6, 8, 2), torch.zeros(1, dtype=torch.int32))  # would grow q
    assert quantize.dequantize(q, torch.ones(6, 1), torch.zeros(6, 1, dtype=torch.int32)).shape == (6, 8)
