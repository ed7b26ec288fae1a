"""Weight-only quantization of the language model: groups, GPTQ, AWQ, bytes, bits per layer.

References: torch's own fake-quant op with the same parameters, the formulas written out, GPTQ written out plainly
(a column loop with the explicit inverse Hessian and its rank-one downdate), brute force for the allocation.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from compresskit import data, metrics, models
from compresskit import weightonly as wo
from compresskit.layers import transformer_linears

SEEDS = (0, 1, 2)


def small_lm(seed=0):
    torch.manual_seed(seed)
    return models.transformer_lm(context=32, d_model=64, n_layer=2, n_head=2)


@pytest.fixture(scope="module")
def text():
    return data.load_text()


def correlated_inputs(seed, n=1024, cols=64):
    """Inputs like a layer's: channels of very different size, correlated through a few shared directions."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(8, cols, generator=g)
    return (torch.randn(n, 8, generator=g) @ basis + 0.3 * torch.randn(n, cols, generator=g)) \
        * torch.linspace(0.2, 3.0, cols)


# ------------------------------------------------------------------------------------------------ groups


def _up16(x: torch.Tensor) -> torch.Tensor:
    """Each float32 value rounded up to the nearest float16 at or above it (numpy's float16, value by value)."""
    out = []
    for v in x.flatten().tolist():
        h = np.float16(v)
        out.append(float(np.nextafter(h, np.float16(np.inf)) if float(h) < v else h))
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits", (2, 3, 4, 8))
@pytest.mark.parametrize("group_size", (16, 32, None))
@pytest.mark.parametrize("symmetric", (True, False))
def test_groups_match_torch_fake_quant_with_the_formula_s_parameters(seed, bits, group_size, symmetric):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(12, 64, generator=g) * 0.2 + 0.05
    q, scale, zero = wo.quantize_groups(w, bits, group_size=group_size, symmetric=symmetric)
    size = group_size or 64
    groups = w.reshape(-1, size)
    lo, hi = groups.amin(1).clamp(max=0), groups.amax(1).clamp(min=0)
    if symmetric:  # the formula written out
        s = _up16(torch.maximum(-lo, hi) / ((2**bits - 1) / 2))
        z = torch.zeros_like(s)
        q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        s = _up16((hi - lo) / (2**bits - 1))
        z = torch.clamp(-torch.round(lo / s), 0, 2**bits - 1)
        q_min, q_max = 0, 2**bits - 1
    assert torch.equal(scale.flatten(), s) and torch.equal(zero.flatten(), z)
    reference = torch.fake_quantize_per_channel_affine(groups, s, z.int(), 0, q_min, q_max)
    assert torch.allclose(wo.dequantize_groups(q, scale, zero), reference.reshape(12, 64), atol=1e-6)
    assert int(q.min()) >= q_min and int(q.max()) <= q_max
    assert scale.shape == (12, 64 // size)
    # round to nearest: no level of its group's grid is closer to a weight than the one it got
    err = (wo.fake_quantize_groups(w, bits, group_size=group_size, symmetric=symmetric) - w).abs().reshape(-1, size)
    levels = (torch.arange(q_min, q_max + 1).float()[None, :] - z[:, None]) * s[:, None]  # (groups, 2^bits)
    nearest = (groups[:, :, None] - levels[:, None, :]).abs().amin(dim=2)
    assert bool((err <= nearest + 1e-6).all())


@pytest.mark.parametrize("symmetric", (True, False))
@pytest.mark.parametrize("bits", (2, 3, 4, 8))
def test_the_stored_float16_scale_never_clips_a_group_by_more_than_half_a_step(bits, symmetric):
    """A scale rounded *down* to float16 left the top of a group past the last code: the row [-0.0234, 1.3] at 8 bits
    lost 0.579 of a step at 1.3. Rounded up, every weight is within half a step of its value."""
    rows = [torch.tensor([[-0.0234, 1.3] + [0.5] * 14])]
    g = torch.Generator().manual_seed(bits)
    rows += [torch.randn(64, 16, generator=g) * 10 ** torch.empty(64, 1).uniform_(-3, 1, generator=g)]
    for w in rows:
        q, scale, zero = wo.quantize_groups(w, bits, group_size=None, symmetric=symmetric)
        error = (wo.dequantize_groups(q, scale, zero) - w).abs() / scale
        assert float(error.max()) <= 0.5 + 1e-4
        assert torch.equal(scale, scale.half().float())  # a float16 value: what the file stores


def test_a_smaller_group_never_has_a_larger_error():
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(0))
    w[:, 5] *= 20  # an outlier column coarsens its whole group
    errors = [float((wo.fake_quantize_groups(w, 3, group_size=g) - w).pow(2).sum()) for g in (None, 64, 32, 16)]
    assert errors == sorted(errors, reverse=True)


def test_a_group_of_zeros_stays_zero():
    w = torch.zeros(4, 32)
    w[0, :16] = torch.linspace(-1, 1, 16)
    out = wo.fake_quantize_groups(w, 4, group_size=16)
    assert torch.equal(out[1:], w[1:]) and bool(torch.isfinite(out).all())


# ------------------------------------------------------------------------------------------------ GPTQ


def gptq_plain(w, h, bits, group_size, symmetric, damp, block=None):
    """GPTQ as its equations read: columns in order, the explicit inverse Hessian of the columns not yet quantized,
    each error spread by row j of it, then row and column j removed (a rank-one downdate). A group's scale comes from
    the weights as updated so far, or with ``block``, as they were at the start of its block of that many columns
    (the reference code's convention)."""
    W = w.double().clone()
    H = h.double().clone()
    cols = W.shape[1]
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diagonal(H)) * torch.eye(cols, dtype=torch.float64)
    Hinv = torch.linalg.inv(H)
    Q = torch.zeros_like(W)
    g = group_size or cols
    snapshot = W.clone()
    for j in range(cols):
        if block is not None and j % block == 0:
            snapshot = W.clone()
        if j % g == 0:
            scale, zero = wo.group_params((W if block is None else snapshot)[:, j:j + g].float(), bits, symmetric)
        q_min, q_max = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
        codes = torch.clamp(torch.round(W[:, j:j + 1].float() * (1.0 / scale)) + zero, q_min, q_max)
        q = ((codes - zero) * scale)[:, 0].double()
        Q[:, j] = q
        err = (W[:, j] - q) / Hinv[j, j]
        W[:, j:] -= err[:, None] * Hinv[j, j:][None, :]
        Hinv = Hinv - Hinv[:, j:j + 1] @ Hinv[j:j + 1, :] / Hinv[j, j]
    return Q.float()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits,group_size,symmetric", [(4, 16, False), (3, None, False), (3, 32, True), (2, 8, False),
                                                       (2, 4, True)])
@pytest.mark.parametrize("group_scales", ("updated", "block start"))
def test_gptq_equals_the_algorithm_written_out(seed, bits, group_size, symmetric, group_scales):
    x = correlated_inputs(seed)
    w = torch.randn(24, 64, generator=torch.Generator().manual_seed(seed + 10)) * 0.1
    h = 2 * x.T.double() @ x.double() / len(x)
    fast = wo.gptq(w, h, bits, group_size=group_size, symmetric=symmetric, block_size=16, group_scales=group_scales)
    block = 16 if group_scales == "block start" and (group_size or 64) < 16 else None  # a group as large as the
    plain = gptq_plain(w, h, bits, group_size, symmetric, 0.01, block)  # block: the two conventions agree
    same = torch.isclose(fast, plain, atol=1e-5)
    # float64 in both; a weight that lands exactly between two levels may round apart once in a while, nothing more
    assert same.float().mean() >= 0.995, f"{int((~same).sum())} of {same.numel()} differ"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits", (2, 3, 4))
def test_gptq_is_chapter_09s_exercise_step_column_after_column(seed, bits):
    """The exercise's answer (lm_exercise_cases.obs_update: one OBS update with a row of the Cholesky form of H^-1),
    applied column after column with one scale per row, is the package's GPTQ."""
    from compresskit.lm_exercise_cases import obs_update

    x = correlated_inputs(seed)
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(seed + 3)) * 0.1
    h = (2 * x.T @ x / len(x)).double()
    damped = h + 0.01 * h.diagonal().mean() * torch.eye(64, dtype=torch.float64)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(damped)), upper=True)
    W = w.double().clone()
    scale, zero = wo.group_params(W.float(), bits, False)
    for j in range(64):
        codes = torch.clamp(torch.round(W[:, j:j + 1].float() * (1.0 / scale)) + zero, 0, 2**bits - 1)
        W = obs_update(W, ((codes - zero) * scale)[:, 0].double(), j, u)
    same = torch.isclose(W.float(), wo.gptq(w, h, bits, group_size=None), atol=1e-5)
    assert same.float().mean() >= 0.995, f"{int((~same).sum())} of {same.numel()} differ"


@pytest.mark.parametrize("seed", SEEDS)
def test_gptq_does_not_depend_on_the_block_size(seed):
    x = correlated_inputs(seed)
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(seed)) * 0.1
    h = 2 * x.T @ x / len(x)
    results = [wo.gptq(w, h, 3, group_size=16, block_size=b, group_scales="updated") for b in (1, 16, 32, 128)]
    for r in results[1:]:
        assert torch.allclose(r, results[0], atol=1e-6)
    # the reference's convention reads a group's scale at its block's start: with blocks of one group, the same
    assert torch.allclose(wo.gptq(w, h, 3, group_size=16, block_size=16, group_scales="block start"), results[0],
                          atol=1e-6)
    with pytest.raises(ValueError, match="group_scales must be one of"):
        wo.gptq(w, h, 3, group_scales="start")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bits", (2, 3, 4))
@pytest.mark.parametrize("act_order", (False, True))
def test_gptq_reconstructs_calibration_outputs_at_least_as_well_as_rtn(seed, bits, act_order):
    x = correlated_inputs(seed)
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(seed + 1)) * 0.1
    h = 2 * x.T @ x / len(x)
    error = lambda v: float(((x @ (v - w).T) ** 2).sum())
    rtn = wo.fake_quantize_groups(w, bits, group_size=16)
    q = wo.gptq(w, h, bits, group_size=16, act_order=act_order)
    assert error(q) <= error(rtn)
    # and every weight it returns is a level of its group's grid (with static groups under act-order)
    codes, scale, zero = wo.quantize_groups(q, bits, group_size=16)
    if not act_order:
        assert q.unique().numel() <= 32 * 4 * 2**bits


def test_gptq_zeroes_columns_whose_input_is_always_zero():
    x = correlated_inputs(0)
    x[:, 3] = 0
    w = torch.randn(8, 64)
    q = wo.gptq(w, 2 * x.T @ x / len(x), 4, group_size=16)
    assert bool((q[:, 3] == 0).all())


def test_gptq_without_dampening_is_refused_only_when_singular():
    x = correlated_inputs(0, n=16)  # 16 inputs: H of rank 16 < 64
    h = 2 * x.T @ x / len(x)
    w = torch.randn(8, 64)
    with pytest.raises(ValueError, match="singular.*damp=0.0"):
        wo.gptq(w, h, 4, group_size=16, damp=0.0)
    assert bool(torch.isfinite(wo.gptq(w, h, 4, group_size=16, damp=0.01)).all())


# ------------------------------------------------------------------------------------------------ AWQ


@pytest.mark.parametrize("seed", SEEDS)
def test_awq_scale_is_never_worse_than_rtn_on_its_inputs(seed):
    x = correlated_inputs(seed)
    ws = [torch.randn(16, 64, generator=torch.Generator().manual_seed(seed + k)) * 0.1 for k in range(3)]
    s, alpha = wo.awq_scale(ws, x, 3, group_size=16)
    assert 0 <= alpha < 1 and s.shape == (64,) and bool((s > 0).all())
    assert math.isclose(float(s.max() * s.min()), 1.0, rel_tol=1e-4)
    error = lambda scale: sum(float(((x @ (wo.fake_quantize_groups(w * scale, 3, group_size=16) / scale - w).T) ** 2)
                                    .sum()) for w in ws)
    assert error(s) <= error(torch.ones(64)) + 1e-6
    # the formula: s = mean|x|^alpha, normalized
    expected = x.abs().mean(0).pow(alpha)
    assert torch.allclose(s, expected / (expected.max() * expected.min()).sqrt(), rtol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_awq_folding_leaves_the_float_model_unchanged(seed, text):
    model = small_lm(seed)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, alphas = wo.awq_fold(model, 3, calibration=text.train[:20000], group_size=16, samples=8, seed=seed)
    x = text.val[:64].reshape(2, 32)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)
    assert len(alphas) == 3 * len(model.blocks)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the caller's model unchanged
    changed = [k for k, v in folded.state_dict().items() if not torch.equal(v, before[k])]
    assert changed or all(a == 0 for a in alphas.values())


# ------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize("method", wo.METHODS)
def test_quantize_lm_returns_a_copy_with_group_levels(method, text):
    model = small_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = wo.quantize_lm(model, 4, group_size=16, method=method, calibration=text.train[:20000], samples=8)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for name, layer in transformer_linears(q).items():
        w = layer.weight.detach()
        if method != "awq":  # AWQ's levels are those of W * s, divided back by s after folding: per column, not group
            groups = w.reshape(-1, 16)
            assert max(len(g.unique()) for g in groups) <= 2**4, name
    assert torch.equal(q.tok.weight, model.tok.weight) and torch.equal(q.head.weight, model.head.weight)
    ppl = metrics.perplexity(q, text.val[:2000]).perplexity
    assert math.isfinite(ppl)


def test_quantize_lm_takes_bits_per_layer(text):
    model = small_lm()
    names = list(transformer_linears(model))
    bits = {n: (8 if i % 2 else 2) for i, n in enumerate(names)}
    q = wo.quantize_lm(model, bits, group_size=16)
    for n, layer in transformer_linears(q).items():
        assert layer.weight.unique().numel() <= layer.weight.shape[0] * layer.weight.shape[1] // 16 * 2 ** bits[n]
        assert torch.allclose(layer.weight, wo.fake_quantize_groups(transformer_linears(model)[n].weight,
                                                                     bits[n], group_size=16))


def test_lm_bytes_is_the_formula_written_out():
    model = small_lm()
    assert wo.lm_bytes(model) == 4 * sum(p.numel() for p in model.parameters())
    settings = wo.settings_for(model, 4, group_size=16)
    expected = 4 * sum(p.numel() for p in model.parameters())
    for layer in transformer_linears(model).values():
        rows, cols = layer.weight.shape
        expected += -4 * rows * cols + rows * cols * 4 // 8 + rows * cols // 16 * (16 + 4) // 8
    assert wo.lm_bytes(model, settings) == expected
    sym = wo.settings_for(model, 4, group_size=16, symmetric=True)
    assert wo.lm_bytes(model, sym) < wo.lm_bytes(model, settings)


def test_allocate_bits_is_exact_against_brute_force():
    torch.manual_seed(0)
    model = models.transformer_lm(context=8, d_model=16, n_layer=1, n_head=2)
    names = list(transformer_linears(model))
    g = torch.Generator().manual_seed(3)
    rises = {n: {2: 1 + float(torch.rand(1, generator=g)) * 5, 3: float(torch.rand(1, generator=g)),
                 4: float(torch.rand(1, generator=g)) * 0.1} for n in names}
    sensitivity = {"": {32: 10.0}, **{n: {b: 10.0 + r for b, r in v.items()} for n, v in rises.items()}}
    layers = transformer_linears(model)
    for budget in (wo.lm_bytes(model, wo.settings_for(model, b, group_size=16)) for b in (2, 3, 4)):
        budget += 40
        got = wo.allocate_bits(sensitivity, model, budget, group_size=16, unit=1)
        best = None
        for combo in itertools.product((2, 3, 4), repeat=len(names)):
            bits = dict(zip(names, combo))
            if wo.lm_bytes(model, wo.settings_for(model, bits, group_size=16)) <= budget:
                cost = sum(rises[n][b] for n, b in bits.items())
                best = cost if best is None or cost < best else best
        assert got is not None
        assert wo.lm_bytes(model, wo.settings_for(model, got, group_size=16)) <= budget
        assert math.isclose(sum(rises[n][b] for n, b in got.items()), best, rel_tol=1e-9)
        assert set(got) == set(layers)
    assert wo.allocate_bits(sensitivity, model, 100, group_size=16) is None


def test_layer_sensitivity_quantizes_one_layer_at_a_time(text):
    model = small_lm()
    ids = text.val[:1000]
    sens = wo.layer_sensitivity(model, ids, (2, 8), group_size=16)
    assert math.isclose(sens[""][32], metrics.perplexity(model, ids).perplexity)
    name = next(iter(transformer_linears(model)))
    one = wo.quantize_lm(model, {n: 2 if n == name else 8 for n in transformer_linears(model)}, group_size=16)
    assert set(sens) == {""} | set(transformer_linears(model))
    # only `name` at 2 bits: the model above also has every other layer at 8 bits, which moves little
    assert math.isclose(sens[name][2], metrics.perplexity(one, ids).perplexity, rel_tol=0.02)
    # around an operating point: every other layer at 3 bits, exactly what quantize_lm gives with those bits
    windows = data.calibration_windows(text.train, 33, 8)
    around = wo.layer_sensitivity(model, windows, (2, 3, 4), group_size=16, around=3)
    assert around[""][3] == around[name][3] == metrics.perplexity(wo.quantize_lm(model, 3, group_size=16),
                                                                  windows).perplexity
    mixed = {n: 4 if n == name else 3 for n in transformer_linears(model)}
    assert math.isclose(around[name][4], metrics.perplexity(wo.quantize_lm(model, mixed, group_size=16),
                                                            windows).perplexity, rel_tol=1e-6)


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_input_is_refused(text):
    model = small_lm()
    w = torch.randn(4, 32)
    for bits in (1, 9, 0, 2.0, True):
        with pytest.raises((ValueError, TypeError), match="bits"):
            wo.quantize_groups(w, bits)
    with pytest.raises(ValueError, match="group_size must divide the 32"):
        wo.quantize_groups(w, 4, group_size=24)
    with pytest.raises(ValueError, match="matrix"):
        wo.quantize_groups(torch.randn(2, 3, 4), 4, group_size=None)
    with pytest.raises(ValueError, match="non-finite|NaN"):
        wo.quantize_groups(torch.tensor([[float("nan"), 1.0]]), 4, group_size=None)
    with pytest.raises(ValueError, match="calibration"):
        wo.quantize_lm(model, 4, method="gptq")
    with pytest.raises(ValueError, match="calibration text holds 40 tokens"):
        wo.quantize_lm(model, 4, method="gptq", calibration=text.train[:40], group_size=16)
    with pytest.raises(ValueError, match="method"):
        wo.quantize_lm(model, 4, method="nf4")
    with pytest.raises(TypeError, match="inplace"):
        wo.quantize_lm(model, 4, group_size=16, inplace=1)
    with pytest.raises(ValueError, match="bits must name every"):
        wo.quantize_lm(model, {"blocks.0.fc": 4}, group_size=16)
    bad = small_lm()
    with torch.no_grad():
        bad.blocks[0].fc.weight[0, 0] = float("nan")
    before = bad.blocks[1].fc.weight.clone()
    with pytest.raises(ValueError, match="blocks.0.fc.weight"):
        wo.quantize_lm(bad, 4, group_size=16, inplace=True)
    assert torch.equal(bad.blocks[1].fc.weight, before)
    with pytest.raises(ValueError, match="hessian"):
        wo.gptq(w, torch.eye(8), 4, group_size=None)
    with pytest.raises(TypeError, match="transformer"):
        transformer_linears(models.mlp())


@pytest.mark.parametrize("bits", (2, 3, 4, 5, 8))
@pytest.mark.parametrize("group_size", (16, None))
@pytest.mark.parametrize("symmetric", (False, True))
def test_packed_groups_round_trip_and_take_the_bytes_reported(bits, group_size, symmetric):
    w = torch.randn(24, 48, generator=torch.Generator().manual_seed(bits))
    q, scale, zero = wo.quantize_groups(w, bits, group_size=group_size, symmetric=symmetric)
    blob = wo.pack_groups(q, scale, zero, bits, symmetric=symmetric)
    layer = torch.nn.Linear(48, 24)
    assert len(blob) == wo.layer_bytes(layer, wo.Setting(bits, group_size, symmetric))
    back = wo.unpack_groups(blob, 24, 48, bits, group_size=group_size, symmetric=symmetric)
    for a, b in zip(back, (q, scale, zero)):
        assert torch.equal(a.float(), b.float())
    with pytest.raises(ValueError, match="blob holds"):
        wo.unpack_groups(blob[:-1], 24, 48, bits, group_size=group_size, symmetric=symmetric)
