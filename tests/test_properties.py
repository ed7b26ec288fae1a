"""Property-based checks of the public API (hypothesis; bounded and derandomized, so CI sees the same examples every
run): random valid inputs never crash and give results with the documented properties, random invalid ones get a
ValueError/TypeError naming the argument, and the caller's model is bit for bit unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compresskit import distill, layers, lowrank, metrics, models, prune, quantize, widgets

from .conftest import assert_unchanged, snapshot

FAST = settings(max_examples=30, deadline=None, derandomize=True)


@st.composite
def tensors(draw, min_dims=1, max_dims=3):
    shape = draw(st.lists(st.integers(1, 6), min_size=min_dims, max_size=max_dims))
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3]))
    seed = draw(st.integers(0, 2**16))
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale
    if draw(st.booleans()):  # ties and exact zeros
        w = torch.round(w / scale * 2) / 2 * scale
    return w


@st.composite
def small_models(draw):
    kind = draw(st.sampled_from(["mlp", "lenet", "gru"]))
    torch.manual_seed(draw(st.integers(0, 1000)))
    if kind == "mlp":
        return models.mlp(hidden=tuple(draw(st.lists(st.integers(1, 12), min_size=1, max_size=2))))
    if kind == "lenet":
        return models.lenet((draw(st.integers(1, 4)), draw(st.integers(1, 4))), draw(st.integers(1, 8)))
    return models.rnn_classifier("gru", hidden_size=draw(st.integers(1, 8)))


BAD_NUMBERS = st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.5, 1.5, 2, -1]),
                        st.floats(min_value=1.0001, max_value=1e9), st.floats(max_value=-1e-9, min_value=-1e9))
WRONG_KINDS = st.sampled_from([None, "0.5", [0.5], True, torch.tensor(0.5)])


@FAST
@given(w=tensors(), bits=st.integers(2, 16), symmetric=st.booleans(), per_channel=st.booleans())
def test_uniform_quantization_properties(w, bits, symmetric, per_channel):
    q, scale, zp = quantize.quantize_tensor(w, bits, symmetric=symmetric, per_channel=per_channel)
    q_min, q_max = quantize.code_range(bits, symmetric)
    assert q.dtype == torch.int32 and int(q.min()) >= q_min and int(q.max()) <= q_max
    error = (quantize.dequantize(q, scale, zp) - w).abs()
    assert bool((error <= scale * (1 + 1e-5) + 1e-30).all())  # within one step (half a step, plus the clamped edge)
    assert bool((quantize.fake_quantize(w, bits, symmetric=symmetric)[w == 0] == 0).all())  # zero is exact


@FAST
@given(w=tensors(), bits=st.integers(1, 6))
def test_kmeans_properties(w, bits):
    codebook, idx = quantize.kmeans_quantize(w, bits)
    assert codebook.shape == (2**bits,) and idx.shape == w.shape and int(idx.min()) >= 0
    assert int(idx.max()) < 2**bits
    x, c = w.double().flatten(), codebook.double()
    nearest = (x[:, None] - c[None, :]).abs().min(dim=1).values
    assert bool(((x - c[idx.flatten()]).abs() <= nearest + 1e-6 * (1 + x.abs())).all())


@FAST
@given(w=tensors(min_dims=2))
def test_binarize_properties(w):
    b = quantize.binarize(w)
    for row_w, row_b in zip(w.reshape(w.shape[0], -1), b.reshape(w.shape[0], -1)):
        alpha = row_w.abs().mean()
        assert torch.allclose(row_b.abs(), alpha.expand_as(row_b)) and bool(((row_b >= 0) == (row_w >= 0)).all())


@FAST
@given(model=small_models(), sparsity=st.floats(0, 1), scope=st.sampled_from(["layer", "global"]))
def test_magnitude_prune_properties(model, sparsity, scope):
    before = snapshot(model)
    pruned = prune.magnitude_prune(model, sparsity=sparsity, scope=scope)
    assert_unchanged(model, before)
    report = prune.sparsity_report(pruned)
    if scope == "layer":
        for r in report:
            assert r.numel - r.nonzero >= round(sparsity * r.numel)
    else:
        assert report.total.numel - report.total.nonzero >= round(sparsity * report.total.numel)


@FAST
@given(model=small_models(), method=st.sampled_from(["uniform", "kmeans", "binary"]), bits=st.integers(2, 8),
       sparsity=st.sampled_from([0.0, 0.5, 0.9]))
def test_quantize_model_properties(model, method, bits, sparsity):
    source = prune.magnitude_prune(model, sparsity=sparsity) if sparsity else model
    before = snapshot(source)
    q = quantize.quantize_model(source, 1 if method == "binary" else bits, method=method)
    assert_unchanged(source, before)
    for name, t in layers.named_tensors(q):
        assert bool(torch.isfinite(t).all()), name
    if sparsity:  # zeros stay exactly zero
        for old, new in zip(prune.sparsity_report(source), prune.sparsity_report(q)):
            assert new.nonzero <= old.nonzero


@FAST
@given(model=small_models(), rank=st.integers(1, 20), only=st.booleans())
def test_low_rank_properties(model, rank, only):
    before = snapshot(model)
    out = lowrank.low_rank(model, rank=rank, only_if_smaller=only)
    assert_unchanged(model, before)
    x = torch.rand(2, 1, 8, 8)
    assert out(x).shape == (2, 10)


@FAST
@given(bad=st.one_of(BAD_NUMBERS, WRONG_KINDS))
def test_invalid_sparsity_names_the_argument(bad):
    model = models.mlp(hidden=(4,))
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError), match="sparsity"):
        prune.magnitude_prune(model, sparsity=bad)
    assert_unchanged(model, before)


@FAST
@given(bad=st.one_of(st.integers(-5, 1), st.integers(17, 100), WRONG_KINDS, st.floats(2, 16)))
def test_invalid_bits_name_the_argument(bad):
    with pytest.raises((ValueError, TypeError), match="bits"):
        quantize.quantize_tensor(torch.randn(3, 3), bad)
    model = models.mlp(hidden=(4,))
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError), match="bits"):
        quantize.quantize_model(model, bad)
    assert_unchanged(model, before)


@FAST
@given(bad=st.one_of(st.integers(-5, 0), WRONG_KINDS, st.floats(1, 10)))
def test_invalid_rank_names_the_argument(bad):
    with pytest.raises((ValueError, TypeError), match="rank"):
        lowrank.low_rank(models.mlp(hidden=(4,)), rank=bad)


@FAST
@given(temperature=st.floats(1e-3, 1e3), alpha=st.floats(0, 1), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       seed=st.integers(0, 1000))
def test_kd_loss_is_finite_and_non_negative_at_alpha_1(temperature, alpha, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    s, t = torch.randn(4, 10, generator=gen) * scale, torch.randn(4, 10, generator=gen) * scale
    loss = distill.kd_loss(s, t, torch.arange(4), temperature=temperature, alpha=alpha)
    assert math.isfinite(loss.item())
    assert distill.kd_loss(s, t, torch.arange(4), temperature=temperature, alpha=1.0).item() >= -1e-9  # KL >= 0


@FAST
@given(bad=st.one_of(st.sampled_from([0, 0.0, -1.0, float("nan"), float("inf"), -float("inf")]),
                    st.floats(max_value=0.0, min_value=-1e9), WRONG_KINDS))
def test_invalid_temperature_names_the_argument(bad):
    with pytest.raises((ValueError, TypeError), match="temperature"):
        distill.kd_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), temperature=bad, alpha=0.5)


@FAST
@given(model=small_models(), fmt=st.sampled_from(["dense", "bitmask", "csr", "relative"]),
       value_bits=st.integers(1, 32), index_bits=st.integers(1, 32))
def test_storage_bytes_properties(model, fmt, value_bits, index_bits):
    size = metrics.storage_bytes(model, format=fmt, value_bits=value_bits, index_bits=index_bits)
    assert isinstance(size, int) and size > 0


@FAST
@given(w=tensors(), bad=st.one_of(BAD_NUMBERS, WRONG_KINDS))
def test_invalid_mask_sparsity_names_the_argument(w, bad):
    before = w.clone()
    with pytest.raises((ValueError, TypeError), match="sparsity"):
        prune.magnitude_mask(w, sparsity=bad)
    assert torch.equal(w, before)


@FAST
@given(out_ch=st.integers(1, 6), in_ch=st.integers(1, 6), k=st.integers(1, 3), extra=st.integers(1, 50))
def test_cp_ranks_beyond_the_kernel_are_refused(out_ch, in_ch, k, extra):
    shape = (out_ch, in_ch, k, k)
    limit = lowrank.cp_rank_limit(shape)
    assert limit == math.prod(shape) // max(shape)
    with pytest.raises(ValueError, match=rf"rank must be in \[1, {limit}\], got {limit + extra}"):
        lowrank.cp_als(torch.randn(shape), limit + extra)


@FAST
@given(low=st.floats(-10, 10), width=st.floats(0.1, 10), outside=st.floats(0.01, 100), above=st.booleans())
def test_slider_values_outside_their_range_are_refused_not_clamped(low, width, outside, above):
    high = low + width
    value = high + outside if above else low - outside
    with pytest.raises(ValueError, match="value must be in"):
        widgets.slider(value, low, high, width / 10, "x")
