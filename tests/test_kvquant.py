"""KIVI's KV-cache quantization (compresskit.kvquant) against the method written out: min-max rounding by formula,
keys per channel in groups of tokens, values per token, and attention query by query with a cache that holds the
tokens KIVI has flushed (quantized) and its float residual, as a streaming implementation would."""

import math

import pytest
import torch

from compresskit import data, kvquant, metrics, models


def minmax_by_hand(x: torch.Tensor, bits: int) -> torch.Tensor:
    """One range over all of ``x``, asymmetric, written out."""
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return x.clone()
    scale = (hi - lo) / (2 ** bits - 1)
    return torch.round((x - lo) / scale) * scale + lo


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_minmax_quantize_is_the_formula_with_at_most_two_to_the_bits_levels(bits):
    x = torch.randn(3, 50, generator=torch.Generator().manual_seed(bits))
    got = kvquant.minmax_quantize(x, bits, dim=-1)
    for row in range(3):
        assert torch.allclose(got[row], minmax_by_hand(x[row], bits), atol=1e-6)
        assert got[row].unique().numel() <= 2 ** bits
    assert float(got.amin(-1).sub(x.amin(-1)).abs().max()) < 1e-6  # the range's ends are levels
    assert torch.equal(kvquant.minmax_quantize(torch.full((2, 4), 0.5), 2, dim=-1), torch.full((2, 4), 0.5))


@pytest.mark.parametrize("t, group", [(64, 32), (70, 32), (5, 8)])
def test_keys_get_a_range_per_channel_per_group_of_tokens_and_values_per_token(t, group):
    g = torch.Generator().manual_seed(t)
    k = torch.randn(2, 3, t, 8, generator=g) * torch.linspace(0.2, 6, 8)  # channels of different sizes
    got = kvquant.quantize_keys(k, 2, group)
    for start in range(0, t, group):
        for c in range(8):
            expected = minmax_by_hand(k[1, 2, start:start + group, c], 2)
            assert torch.allclose(got[1, 2, start:start + group, c], expected, atol=1e-5)
    v = torch.randn(2, 3, t, 8, generator=g)
    values = kvquant.quantize_values(v, 3)
    assert torch.allclose(values[0, 1, t - 1], minmax_by_hand(v[0, 1, t - 1], 3), atol=1e-6)


def attention_streamed(q, k, v, quantizer: kvquant.KIVIQuantizer) -> torch.Tensor:
    """Query by query: the cache after i + 1 tokens holds its first (i + 1) // window * window tokens quantized
    (keys per channel in groups, or per token; values per token) and the rest in float."""
    t, out = q.shape[2], []
    for i in range(t):
        n_old = (i + 1) // quantizer.window * quantizer.window
        keys, values = k[:, :, : i + 1].clone(), v[:, :, : i + 1].clone()
        if n_old:
            old_k = k[:, :, :n_old]
            keys[:, :, :n_old] = (kvquant.quantize_keys(old_k, quantizer.bits, quantizer.group)
                                  if quantizer.keys == "channel" else kvquant.quantize_values(old_k, quantizer.bits))
            values[:, :, :n_old] = kvquant.quantize_values(v[:, :, :n_old], quantizer.bits)
        scores = q[:, :, i : i + 1] @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])
        out.append(torch.softmax(scores, -1) @ values)
    return torch.cat(out, dim=2)


@pytest.mark.parametrize("bits, window, group, keys", [(2, 8, 4, "channel"), (3, 16, 8, "channel"),
                                                       (2, 8, 8, "token"), (4, 4, 4, "channel")])
def test_simulated_attention_equals_a_streamed_cache_query_by_query(bits, window, group, keys):
    g = torch.Generator().manual_seed(bits * 100 + window)
    q, k, v = (torch.randn(2, 2, 37, 8, generator=g, dtype=torch.float64) for _ in range(3))
    k[..., 3] += 5.0  # a key channel large for every token, as in real models
    quantizer = kvquant.KIVIQuantizer(bits, window, group, keys)
    assert torch.allclose(quantizer(q, k, v), attention_streamed(q, k, v, quantizer), atol=1e-10)


def test_with_sixteen_bits_the_quantized_cache_is_the_float_model_and_the_caller_keeps_its_own():
    torch.manual_seed(0)
    model = models.transformer_lm(context=32, d_model=32, n_layer=2, n_head=2).eval()
    ids = data.encode_text(data.read_text()[:3000])
    q = kvquant.quantize_kv(model, 16, window=8, group=8)
    assert all(b.attn.kv_quant is None for b in model.blocks)
    x = ids[:96].reshape(3, 32)
    with torch.no_grad():
        assert torch.allclose(q(x), model(x), atol=1e-3)
        two = kvquant.quantize_kv(model, 2, window=8, group=8)(x)
    assert not torch.allclose(two, model(x), atol=1e-3)
    with pytest.raises(ValueError, match="whole windows"):
        q(x[:, :4], models.KVCache())
    assert len(metrics.sample_text(q, "def ", 20)) == 20  # generation falls back to whole windows


def test_kv_bytes_by_hand():
    model = models.transformer_lm()  # 4 blocks, 4 heads of 32
    assert kvquant.kv_bytes(model, 100) == 4 * 2 * 100 * 128 * 2  # float16 keys and values
    # 2 bits, window 32, group 32, 100 tokens: 96 flushed, 4 in float16
    codes = 2 * 96 * 128 * 2
    key_ranges = 3 * 128 * 2 * 16
    value_ranges = 96 * 4 * 2 * 16
    residual = 2 * 4 * 128 * 16
    assert kvquant.kv_bytes(model, 100, bits=2) == 4 * (codes + key_ranges + value_ranges + residual) // 8
    assert kvquant.kv_bytes(model, 100, bits=2, batch=3) == 3 * kvquant.kv_bytes(model, 100, bits=2)
    assert kvquant.kv_bytes(model, 0, bits=4) == 0


@pytest.mark.parametrize("kwargs, match", [({"window": 40}, "window"), ({"window": 0}, "window"),
                                           ({"group": 0}, "group"), ({"keys": "head"}, "keys"), ({"bits": 0}, "bits")])
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        kvquant.quantize_kv(models.transformer_lm(context=16, d_model=16, n_layer=1, n_head=2),
                            **{"bits": 2, **kwargs})
