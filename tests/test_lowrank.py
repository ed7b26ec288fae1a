import math

import pytest
import torch
from torch import nn

from compresskit import lowrank, metrics, models

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rank", [1, 5, 20])
def test_svd_linear_reaches_the_eckart_young_bound(seed, rank):
    torch.manual_seed(seed)
    layer = nn.Linear(30, 20)
    factored = lowrank.svd_linear(layer, rank)
    w = layer.weight.detach().double()
    approx = (factored[1].weight @ factored[0].weight).detach().double()
    s = torch.linalg.svd(w).S  # reference: torch.linalg.svd, the bound written out
    bound = math.sqrt(float((s[rank:] ** 2).sum()))
    assert float(torch.linalg.norm(w - approx)) == pytest.approx(bound, rel=1e-4, abs=1e-5)
    assert torch.equal(factored[1].bias, layer.bias) and factored[0].bias is None
    x = torch.rand(7, 30)
    assert torch.allclose(factored(x), x @ approx.float().T + layer.bias, atol=1e-5)
    if rank == 20:  # full rank reproduces the layer
        assert torch.allclose(factored(x), layer(x), atol=1e-5)


def test_svd_linear_validates_rank():
    layer = nn.Linear(4, 3)
    for bad in (0, 4):
        with pytest.raises(ValueError, match=r"rank must be in \[1, 3\]"):
            lowrank.svd_linear(layer, bad)
    with pytest.raises(TypeError):
        lowrank.svd_linear(layer, 2.0)
    with pytest.raises(TypeError, match="nn.Linear"):
        lowrank.svd_linear(nn.Conv2d(1, 1, 1), 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_tucker_full_rank_reproduces_and_hooi_is_no_worse(seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 10, 3, stride=2, padding=2, dilation=2)
    x = torch.rand(2, 6, 11, 11)
    full = lowrank.tucker_conv(conv, (6, 10))
    assert torch.allclose(full(x), conv(x), atol=1e-5)
    w = conv.weight.detach().double()

    def error(core, u_out, u_in):
        return float(torch.linalg.norm(w - torch.einsum("srhw,os,ir->oihw", core, u_out, u_in)))

    hosvd, hooi = lowrank.tucker2(w, (3, 4)), lowrank.tucker2(w, (3, 4), hooi_iters=10)
    assert error(*hooi) <= error(*hosvd) + 1e-9
    small = lowrank.tucker_conv(conv, (3, 4), hooi_iters=10)
    assert [m.out_channels for m in small] == [3, 4, 10] and small[1].stride == conv.stride
    kernel = torch.einsum("srhw,os,ir->oihw", small[1].weight.detach().double(),
                          small[2].weight[:, :, 0, 0].detach().double(),
                          small[0].weight[:, :, 0, 0].T.detach().double())
    assert float(torch.linalg.norm(w - kernel)) == pytest.approx(error(*hooi), rel=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
def test_cp_conv_computes_the_convolution_with_the_cp_kernel(seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(4, 5, 3, padding=1, stride=(1, 2))
    cp = lowrank.cp_conv(conv, 6, seed=seed)
    a = cp[3].weight[:, :, 0, 0]
    b = cp[0].weight[:, :, 0, 0].T
    c = cp[1].weight[:, 0, :, 0].T
    d = cp[2].weight[:, 0, 0, :].T
    reference = nn.Conv2d(4, 5, 3, padding=1, stride=(1, 2))
    with torch.no_grad():
        reference.weight.copy_(lowrank.cp_reconstruct([a, b, c, d]))
        reference.bias.copy_(conv.bias)
    x = torch.rand(2, 4, 9, 9)
    assert torch.allclose(cp(x), reference(x), atol=1e-5)
    # at the largest useful rank (4 * 3 * 3 = 36 for a 5x4x3x3 kernel) CP fits the kernel exactly; beyond is refused
    assert lowrank.cp_rank_limit(conv.weight.shape) == 36
    big = lowrank.cp_als(conv.weight.detach(), 36, iters=300, seed=seed)
    w = conv.weight.detach().double()
    assert float(torch.linalg.norm(w - lowrank.cp_reconstruct(big))) < 1e-6 * float(torch.linalg.norm(w))
    with pytest.raises(ValueError, match=r"rank must be in \[1, 36\], got 37"):
        lowrank.cp_als(conv.weight.detach(), 37)
    with pytest.raises(ValueError, match=r"rank must be in \[1, 36\], got 1000000"):
        lowrank.cp_conv(conv, 10**6)


def test_rank_for_energy_and_low_rank_model():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])
    total = float((s**2).sum())
    assert lowrank.rank_for_energy(s, 9 / total) == 1 and lowrank.rank_for_energy(s, 13.5 / total) == 3
    assert lowrank.rank_for_energy(s, 1.0) == 4
    torch.manual_seed(0)
    model = models.mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = lowrank.low_rank(model, rank=16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(small[1], nn.Sequential) and small[1][0].out_features == 16
    assert isinstance(small[5], nn.Linear)  # the output layer stays dense
    assert metrics.count_params(small) == (64 * 16 + 16 * 300 + 300) + (300 * 16 + 16 * 100 + 100) + 1010
    assert metrics.macs(small, (1, 8, 8)) == 64 * 16 + 16 * 300 + 300 * 16 + 16 * 100 + 1000
    assert isinstance(lowrank.low_rank(model, rank=60)[3], nn.Sequential)  # 60 < 300*100/400 = 75
    assert isinstance(lowrank.low_rank(model, rank=80)[3], nn.Linear)  # would not save: left dense
    cnn = lowrank.low_rank(models.lenet(), rank=8)
    assert isinstance(cnn[4], nn.Sequential) and cnn(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="exactly one of rank or energy"):
        lowrank.low_rank(model)
    with pytest.raises(ValueError, match=r"energy must be in \(0, 1\]"):
        lowrank.low_rank(model, energy=1.5)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("stride", [1, 2])
def test_cp_conv_keeps_the_padding_mode(mode, stride):
    """Each depthwise factor pads its own direction with the layer's mode: the factorized layer equals the full
    convolution with the CP kernel, padded as the layer pads (1e-5)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, stride=stride, padding=1, padding_mode=mode)
    factored = lowrank.cp_conv(conv, 4)
    assert all(m.padding_mode == mode for m in factored[1:3])
    kernel = lowrank.cp_reconstruct(lowrank.cp_als(conv.weight.detach(), 4)).float()
    x = torch.rand(2, 3, 7, 7)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="constant" if mode == "zeros" else mode)
    expected = torch.nn.functional.conv2d(padded, kernel, conv.bias, stride=stride)
    torch.testing.assert_close(factored(x), expected, rtol=1e-5, atol=1e-5)
    same = torch.nn.Conv2d(3, 5, 3, padding="same")
    assert lowrank.cp_conv(same, 4)(x).shape == same(x).shape


def test_svd_linear_from_one_decomposition_equals_its_own():
    torch.manual_seed(0)
    layer = nn.Linear(40, 30)
    svd = lowrank.svd_of(layer)
    for rank in (1, 5, 30):
        a, b = lowrank.svd_linear(layer, rank), lowrank.svd_linear(layer, rank, svd=svd)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="svd is of a 30 x 40 matrix"):
        lowrank.svd_linear(nn.Linear(30, 40), 2, svd=svd)
    with pytest.raises(TypeError, match="svd must be"):
        lowrank.svd_linear(layer, 2, svd=[1, 2, 3])


def test_kernels_of_the_wrong_shape_and_ranks_beyond_them_are_refused():
    for call in (lambda w: lowrank.tucker2(w, (1, 1)), lambda w: lowrank.cp_als(w, 2)):
        with pytest.raises(ValueError, match=r"w must be a non-empty 4-d kernel \(out, in, kh, kw\), got shape"):
            call(torch.randn(2, 3, 4))
        with pytest.raises(ValueError, match="w must be a non-empty 4-d kernel"):
            call(torch.empty(0, 3, 3, 3))
    w = torch.randn(5, 4, 3, 3)
    with pytest.raises(ValueError, match=r"ranks\[0\] \(r_in\) must be in \[1, 4\], got 5"):
        lowrank.tucker2(w, (5, 2))
    with pytest.raises(TypeError, match="ranks must be a pair"):
        lowrank.tucker2(w, 2)
    with pytest.raises(ValueError, match="singular_values must be a non-empty 1-d tensor"):
        lowrank.rank_for_energy(torch.ones(2, 2), 0.9)
    with pytest.raises(ValueError, match="singular_values must be a non-empty 1-d tensor"):
        lowrank.rank_for_energy(torch.tensor([1.0, -1.0]), 0.9)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_is_honoured_by_cp_and_tucker(padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=padding)
    x = torch.rand(2, 3, 7, 7)
    exact = lowrank.tucker_conv(conv, (3, 4))  # full ranks (r_in = 3, r_out = 4)
    assert torch.allclose(exact(x), conv(x), atol=1e-5)  # full Tucker ranks: the same convolution
    assert lowrank.cp_conv(conv, 4)(x).shape == conv(x).shape
