"""The 4-bit number formats and ternary weights (compresskit.formats) against the published tables and the formats'
rules written out value by value in float64: NF4's levels (QLoRA's table), E2M1 and E4M3 rounding (every value of
each format enumerated), each format's block scales, and files whose length is the bits the format promises."""

import math

import pytest
import torch

from compresskit import formats

# bitsandbytes' NF4 table, as published with QLoRA (Dettmers et al. 2023, appendix E): an outside reference
NF4_PUBLISHED = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]


def test_nf4_levels_are_the_published_table():
    assert formats.nf4_levels().tolist() == pytest.approx(NF4_PUBLISHED, abs=1e-6)


def _nearest_even(x: float, grid: list[float]) -> float:
    """Round |x| to the nearest grid value, ties to the even index, saturating; the sign kept (a -0 stays -0)."""
    a = min(abs(x), grid[-1])
    best = min(range(len(grid)), key=lambda i: (abs(a - grid[i]), i % 2))
    return math.copysign(grid[best], x)


def test_e2m1_rounding_is_nearest_ties_to_even_and_saturates():
    grid = list(formats.E2M1_VALUES)
    ties = [(a + b) / 2 for a, b in zip(grid, grid[1:])]
    torch.manual_seed(0)
    xs = ties + [-t for t in ties] + grid + [7.0, -9.0, 1e6] + (torch.randn(2000) * 3).tolist()
    got = formats.e2m1_round(torch.tensor(xs)).tolist()
    assert got == [_nearest_even(x, grid) for x in xs]
    assert formats.e2m1_round(torch.tensor([0.25, 0.75, 2.5, 5.0])).tolist() == [0.0, 1.0, 2.0, 4.0]


def test_e4m3_rounding_is_nearest_of_every_e4m3_value_ties_to_even():
    every = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    grid = sorted({v for v in every.tolist() if math.isfinite(v) and v >= 0})  # 0 .. 448
    assert grid[-1] == 448.0 and len(grid) == 127
    ties = [(a + b) / 2 for a, b in zip(grid, grid[1:])]
    torch.manual_seed(1)
    xs = ties + grid + [500.0, -1000.0] + (torch.randn(3000) * 40).tolist() + (torch.rand(1000) * 0.02).tolist()
    got = formats.e4m3_round(torch.tensor(xs, dtype=torch.float64)).tolist()
    assert got == [_nearest_even(x, grid) for x in xs]


def _written_out(w: torch.Tensor, fmt: str, block: int) -> torch.Tensor:
    """Each format's rule, block by block in float64 with Python scalars (no code shared with the package)."""
    e2m1 = list(formats.E2M1_VALUES)
    nf4 = NF4_PUBLISHED
    blocks = w.double().reshape(-1, block).tolist()
    top = max(abs(v) for row in blocks for v in row)
    out = []
    for row in blocks:
        amax = max(abs(v) for v in row)
        if fmt == "nf4":
            out.append([min(nf4, key=lambda lv: abs(v / amax - lv)) * amax if amax else 0.0 for v in row])
        elif fmt == "ternary":
            gamma = sum(abs(v) for v in row) / len(row)
            out.append([max(-1, min(1, round(v / gamma))) * gamma if gamma else 0.0 for v in row])
        elif fmt == "mxfp4":  # OCP MX v1.0: X = 2^(floor(log2(amax)) - emax), emax = 2 for E2M1
            x = 2.0 ** (math.floor(math.log2(amax)) - 2) if amax else 0.0
            out.append([_nearest_even(v / x, e2m1) * x if x else 0.0 for v in row])
        else:  # nvfp4: tensor scale amax / (6 * 448), block scale in E4M3 of amax_b / 6 / tensor scale
            t = top / (6 * 448)
            s = float(formats.e4m3_round(torch.tensor([amax / 6 / t], dtype=torch.float64))[0])
            out.append([_nearest_even(v / (s * t), e2m1) * s * t if s else 0.0 for v in row])
    return torch.tensor(out, dtype=torch.float64).reshape(w.shape)


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_format_is_its_rule_written_out(fmt, seed):
    torch.manual_seed(seed)
    w = torch.randn(8, 128) * 0.05
    w[0, :64] = 0.0  # a block of zeros stays zeros
    w[1, 5] = 0.4  # an outlier in one block
    got = formats.fake_quantize(w, fmt).double()
    expected = _written_out(w, fmt, formats.DEFAULT_BLOCK[fmt])
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-9), (got - expected).abs().max()
    assert torch.all(got[0, :64] == 0)


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("shape", [(4, 64), (3, 320), (1, 192)])
def test_a_packed_file_holds_the_promised_bits_and_reads_back_bit_for_bit(fmt, shape):
    torch.manual_seed(sum(shape))
    w = torch.randn(shape) * 0.1
    blob = formats.pack(w, fmt)
    bits = formats.format_bits(fmt, w.numel())
    assert len(blob) == math.ceil(bits / 8)
    per_weight = {"nf4": 4 + 32 / 64, "mxfp4": 4 + 8 / 32, "nvfp4": 4 + 8 / 16, "ternary": 8 / 5 + 32 / 64}[fmt]
    assert bits / w.numel() == pytest.approx(per_weight + (32 / w.numel() if fmt == "nvfp4" else 0), abs=8 / w.numel())
    assert torch.equal(formats.unpack(blob, shape, fmt), formats.fake_quantize(w, fmt))


def test_at_equal_bits_small_blocks_beat_one_scale_per_row_on_gaussian_weights():
    """The format comparison the chapter makes, on weights where the answer is known: with a scale per 16 or 64
    values, 4-bit formats hold a normal matrix far better than ternary weights; NF4's normal levels beat uniform
    E2M1 at a shared power-of-two scale (MXFP4's coarser scales cost it)."""
    torch.manual_seed(0)
    w = torch.randn(128, 256)
    mse = {f: float(((formats.fake_quantize(w, f) - w) ** 2).mean()) for f in formats.FORMATS}
    assert mse["nf4"] < mse["mxfp4"] and mse["nvfp4"] < mse["mxfp4"] and max(mse["nf4"], mse["nvfp4"]) < mse[
        "ternary"] / 5


def test_bad_inputs_are_refused_by_name():
    w = torch.randn(4, 64)
    cases = [
        (lambda: formats.fake_quantize(w, "fp4"), "format"),
        (lambda: formats.fake_quantize(w.reshape(-1), "nf4"), "2-d"),
        (lambda: formats.fake_quantize(w, "mxfp4", block_size=16), "fixed by the format"),
        (lambda: formats.fake_quantize(torch.randn(4, 48), "nf4"), "blocks of block_size=64"),
        (lambda: formats.fake_quantize(torch.full((4, 64), float("nan")), "nf4"), "w"),
        (lambda: formats.format_bits("nf4", 100), "numel=100"),
        (lambda: formats.unpack(formats.pack(w, "nf4")[:-1], (4, 64), "nf4"), "blob holds"),
        (lambda: formats.unpack(b"", (4,), "nf4"), "shape"),
    ]
    for call, name in cases:
        with pytest.raises((ValueError, TypeError), match=name):
            call()


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_a_language_model_in_each_format_is_priced_by_its_packed_weights(fmt, unchanged):
    """quantize_lm puts exactly the transformer linears' weights in the format (a copy; the original untouched);
    lm_bytes is the packed weights' length plus every other tensor at float32."""
    from compresskit import layers, models

    torch.manual_seed(0)
    model = models.transformer_lm(context=16, d_model=64, n_layer=2, n_head=2)
    with unchanged(model):
        q = formats.quantize_lm(model, fmt)
    linears, quantized = layers.transformer_linears(model), layers.transformer_linears(q)
    for name, layer in linears.items():
        assert torch.equal(quantized[name].weight, formats.fake_quantize(layer.weight, fmt))
        assert torch.equal(quantized[name].bias, layer.bias)
    assert torch.equal(q.head.weight, model.head.weight) and torch.equal(q.tok.weight, model.tok.weight)
    packed = sum(len(formats.pack(layer.weight, fmt)) for layer in linears.values())
    others = sum(p.numel() * 4 for n, p in model.named_parameters()
                 if not any(n == f"{name}.weight" for name in linears))
    assert formats.lm_bytes(model, fmt) == packed + others
    assert formats.quantize_lm(model, fmt, inplace=True) is model
    with pytest.raises(TypeError, match="inplace"):
        formats.quantize_lm(model, fmt, inplace=1)
