"""Pruning the language model: Wanda and magnitude, N:M masks, attention heads removed for real.

References: the formulas written out, masks computed by hand in plain loops, masking a head against removing it.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from compresskit import data, models, prune, structured
from compresskit.layers import effective_weight, transformer_linears

SEEDS = (0, 1, 2)


def small_lm(seed=0, heads=4):
    torch.manual_seed(seed)
    return models.transformer_lm(context=32, d_model=64, n_layer=2, n_head=heads).eval()


@pytest.fixture(scope="module")
def text():
    return data.load_text()


@pytest.mark.parametrize("seed", SEEDS)
def test_wanda_scores_and_row_mask_written_out(seed):
    g = torch.Generator().manual_seed(seed)
    w, norms = torch.randn(6, 10, generator=g), torch.rand(10, generator=g) + 0.1
    scores = prune.wanda_scores(w, norms)
    assert torch.allclose(scores, torch.stack([torch.stack([w[i, j].abs() * norms[j] for j in range(10)])
                                               for i in range(6)]))
    mask = prune.row_mask(scores, 0.3)
    for i in range(6):  # by hand: the 3 lowest of each row
        lowest = sorted(range(10), key=lambda j: float(scores[i, j]))[:3]
        assert [j for j in range(10) if mask[i, j] == 0] == sorted(lowest)
    assert torch.equal(prune.row_mask(scores, 0.0), torch.ones_like(scores))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_mask_written_out(seed, n, m):
    scores = torch.rand(5, 16, generator=torch.Generator().manual_seed(seed))
    mask = prune.nm_mask(scores, n, m)
    for i in range(5):
        for start in range(0, 16, m):
            group = scores[i, start:start + m].tolist()
            top = sorted(range(m), key=lambda j: -group[j])[:n]
            assert [j for j in range(m) if mask[i, start + j] == 1] == sorted(top)


def test_nm_mask_breaks_ties_by_position():
    mask = prune.nm_mask(torch.ones(1, 8), 2, 4)
    assert mask.tolist() == [[1, 1, 0, 0, 1, 1, 0, 0]]  # the earlier columns kept, as its docstring says


def test_row_mask_drops_the_earlier_of_equal_scores():
    """The opposite order to nm_mask, as Wanda's reference sorts (ascending, stable) and both docstrings say."""
    assert prune.row_mask(torch.tensor([[1.0, 1.0, 2.0]]), 1 / 3).tolist() == [[0, 1, 1]]
    assert prune.row_mask(torch.ones(2, 4), 0.5).tolist() == [[0, 0, 1, 1]] * 2


def test_magnitude_lm_pruning_is_magnitude_mask_per_layer(text):
    model = small_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune.prune_lm(model, 0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the caller's model unchanged
    for name, layer in transformer_linears(pruned).items():
        original = transformer_linears(model)[name].weight
        assert torch.equal(effective_weight(layer), original * prune.magnitude_mask(original, sparsity=0.5))
    assert torch.equal(pruned.tok.weight, model.tok.weight) and torch.equal(pruned.head.weight, model.head.weight)


@pytest.mark.parametrize("seed", SEEDS)
def test_wanda_uses_the_input_norms_of_the_pruned_model_so_far(seed, text):
    model = small_lm(seed)
    pruned = prune.prune_lm(model, 0.5, method="wanda", calibration=text.train, samples=8, seed=seed)
    windows = data.calibration_windows(text.train, 32, 8, seed=seed)
    with torch.no_grad():  # block 0, q: its input is ln1 of the embeddings; written out
        emb = model.tok(windows) + model.pos(torch.arange(32))
        x = model.blocks[0].ln1(emb).reshape(-1, 64)
    norms = x.pow(2).sum(0).sqrt()
    q = model.blocks[0].attn.q.weight
    expected = q * prune.row_mask(q.abs() * norms, 0.5)
    assert torch.allclose(effective_weight(pruned.blocks[0].attn.q), expected)
    for layer in transformer_linears(pruned).values():  # every row keeps exactly half its inputs
        assert bool(((effective_weight(layer) != 0).sum(1) == layer.in_features // 2).all())
    # block 1 reads block 0 *pruned*: its fc norms differ from the dense model's
    with torch.no_grad():
        dense_in = model.blocks[0](emb)
        pruned_in = pruned.blocks[0](emb)
    assert not torch.allclose(dense_in, pruned_in)


def test_two_four_pattern_and_masks_that_survive_fine_tuning(text):
    model = small_lm()
    pruned = prune.prune_lm(model, pattern=(2, 4), method="wanda", calibration=text.train, samples=8)
    for layer in transformer_linears(pruned).values():
        w = effective_weight(layer).reshape(-1, 4)
        assert bool(((w != 0).sum(1) == 2).all())
    from compresskit.train import lm_loss, train

    train(pruned, data.windows(text.train[:4000], 32), epochs=1, lr=1e-3, objective=lm_loss, progress=False)
    for layer in transformer_linears(pruned).values():
        assert bool(((effective_weight(layer).reshape(-1, 4) != 0).sum(1) <= 2).all())


def test_lm_pruning_refusals(text):
    model = small_lm()
    with pytest.raises(ValueError, match="exactly one of sparsity or pattern"):
        prune.prune_lm(model)
    with pytest.raises(ValueError, match="exactly one"):
        prune.prune_lm(model, 0.5, pattern=(2, 4))
    with pytest.raises(ValueError, match="sparsity"):
        prune.prune_lm(model, 1.5)
    with pytest.raises(ValueError, match="calibration"):
        prune.prune_lm(model, 0.5, method="wanda")
    with pytest.raises(ValueError, match="pattern n"):
        prune.prune_lm(model, pattern=(4, 4))
    with pytest.raises(TypeError, match="pattern"):
        prune.prune_lm(model, pattern=[2, 4])
    with pytest.raises(ValueError, match="method"):
        prune.prune_lm(model, 0.5, method="random")
    with pytest.raises(ValueError, match="multiple of m"):
        prune.nm_mask(torch.ones(2, 6), 2, 4)
    with pytest.raises(ValueError, match="input_norms"):
        prune.wanda_scores(torch.ones(2, 3), torch.ones(4))


# ------------------------------------------------------------------------------------------------ heads


def loss(model, windows):
    with torch.no_grad():
        return float(F.cross_entropy(model(windows[:, :-1]).flatten(0, 1), windows[:, 1:].flatten()))


@pytest.mark.parametrize("seed", SEEDS)
def test_head_importance_by_masking_is_the_loss_rise_written_out(seed, text):
    model = small_lm(seed)
    windows = data.calibration_windows(text.train, 33, 6, seed=seed)
    scores = structured.head_importance(model, windows)
    base = loss(model, windows)
    for i, block in enumerate(model.blocks):
        for h in range(4):
            gate = torch.ones(4)
            gate[h] = 0
            block.attn.head_mask = gate
            assert math.isclose(float(scores[i, h]), loss(model, windows) - base, abs_tol=1e-5)
            block.attn.head_mask = None


def test_head_importance_gradient_is_the_mean_absolute_derivative_of_each_windows_loss(text):
    """Michel et al.'s eq. 2, I_h = E_x |dL(x) / d xi_h|, written out with central differences per window."""
    model = small_lm(1).double()  # float64: the central differences below must not drown in rounding
    windows = data.calibration_windows(text.train, 33, 6)
    scores = structured.head_importance(model, windows, method="gradient")
    eps = 1e-5
    signs = set()
    for i, block in enumerate(model.blocks):  # central differences of each window's loss in each head's gate
        for h in range(4):
            derivatives = []
            for window in windows:
                up, down = torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
                up[h], down[h] = 1 + eps, 1 - eps
                block.attn.head_mask = up
                high = loss(model, window[None])
                block.attn.head_mask = down
                low = loss(model, window[None])
                block.attn.head_mask = None
                derivatives.append((high - low) / (2 * eps))
            signs.add(frozenset(d > 0 for d in derivatives))
            expected = sum(abs(d) for d in derivatives) / len(derivatives)
            assert math.isclose(float(scores[i, h]), expected, rel_tol=1e-3, abs_tol=1e-7)
    assert any(len(s) == 2 for s in signs)  # some head's derivatives differ in sign between windows: abs of the mean
    # would be a different (smaller) score, so the test tells the two apart
    assert all(b.attn.head_mask is None for b in model.blocks) and not model.training


@pytest.mark.parametrize("method", structured.HEAD_SCORES)
def test_head_importance_of_blocks_with_different_head_counts(method, text):
    small = structured.remove_heads(small_lm(0), {0: [1, 3]})  # block 0 keeps 2 heads, block 1 all 4
    windows = data.calibration_windows(text.train, 33, 4)
    scores = structured.head_importance(small, windows, method=method)
    assert scores.shape == (2, 4) and torch.all(scores[0, 2:] == 0) and torch.all(scores[1] != 0)
    assert torch.isfinite(scores).all() and all(b.attn.head_mask is None for b in small.blocks)


@pytest.mark.parametrize("seed", SEEDS)
def test_removing_heads_equals_masking_them_and_shrinks_the_matrices(seed, text):
    model = small_lm(seed)
    small = structured.remove_heads(model, {0: [1, 3], 1: [0]})
    assert small.blocks[0].attn.q.weight.shape == (32, 64) and small.blocks[0].attn.proj.weight.shape == (64, 32)
    assert small.blocks[1].attn.n_head == 3 and model.blocks[0].attn.n_head == 4  # the caller's model unchanged
    for i, gone in ((0, [1, 3]), (1, [0])):
        gate = torch.ones(4)
        gate[gone] = 0
        model.blocks[i].attn.head_mask = gate
    x = data.calibration_windows(text.train, 32, 4, seed=seed)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in model.parameters()) - 3 * (
        3 * (64 * 16 + 16) + 64 * 16)


def test_prune_heads_removes_the_least_important_and_keeps_one_per_block(text):
    model = small_lm()
    windows = data.calibration_windows(text.train, 33, 6)
    scores = structured.head_importance(model, windows)
    small, removed = structured.prune_heads(model, 6, windows)
    assert sum(len(v) for v in removed.values()) == 6 and all(a.n_head >= 1 for a in structured._attentions(small))
    first = min((float(scores[i, h]), i, h) for i in range(2) for h in range(4))
    assert first[2] in removed[first[1]]
    with pytest.raises(ValueError, match="count"):
        structured.prune_heads(model, 7, windows)
    with pytest.raises(ValueError, match="leave none"):
        structured.remove_heads(model, {0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="distinct"):
        structured.remove_heads(model, {0: [1, 1]})
    with pytest.raises(TypeError, match="transformer"):
        structured.head_importance(models.mlp(), windows)


def test_sparse_lm_bytes_is_the_formula_written_out():
    from compresskit import metrics

    model = small_lm()
    total = 4 * sum(p.numel() for p in model.parameters())
    assert metrics.sparse_lm_bytes(model, format="dense") == total
    pruned = prune.prune_lm(model, pattern=(2, 4))
    linear = sum(m.weight.numel() for m in transformer_linears(model).values())
    # 2:4: per 4 weights, 2 values of 32 bits and 2 positions of 2 bits; bitmask: a bit per weight and the kept values
    assert metrics.sparse_lm_bytes(pruned, format="2:4") == total - 4 * linear + linear // 4 * (2 * 32 + 2 * 2) // 8
    assert metrics.sparse_lm_bytes(pruned, format="bitmask") == total - 4 * linear + (linear + linear // 2 * 32) // 8
    assert metrics.sparse_lm_bytes(pruned, format="2:4", value_bits=16) < metrics.sparse_lm_bytes(pruned,
                                                                                                  format="2:4")
    with pytest.raises(ValueError, match="at most 2 nonzeros"):
        metrics.sparse_lm_bytes(prune.prune_lm(model, 0.2), format="2:4")


def test_prune_heads_takes_scores_computed_before(text):
    model = small_lm()
    windows = data.calibration_windows(text.train, 33, 6)
    scores = structured.head_importance(model, windows)
    a, removed_a = structured.prune_heads(model, 3, windows)
    b, removed_b = structured.prune_heads(model, 3, scores=scores)
    assert removed_a == removed_b
    with pytest.raises(ValueError, match="scores must be"):
        structured.prune_heads(model, 3, scores=scores[:1])
    with pytest.raises(ValueError, match="calibration windows"):
        structured.prune_heads(model, 3)
