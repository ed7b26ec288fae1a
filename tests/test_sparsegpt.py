"""SparseGPT (compresskit.sparsegpt) against the algorithm written out with the explicit inverse Hessian in float64:
the optimal brain surgeon update of every column in order, the inverse Hessian of the columns not yet visited
updated after each (the paper's equations 3-4, before the Cholesky form and the lazy blocks); its masks (exact
sparsity per block, N:M per group); never worse than Wanda's mask without updates on the calibration outputs."""

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from compresskit import data, models, prune, sparsegpt
from compresskit.layers import inputs_of, transformer_linears


def correlated(seed: int, n: int, cols: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(cols) + 0.5 * torch.randn(cols, cols, generator=g) / cols ** 0.5
    x = torch.randn(n, cols, generator=g, dtype=torch.float64) @ mix.double()
    x[:, 1] *= 8.0  # an input channel far larger than the rest
    return x


def hessian(x: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    h = 2 * x.T @ x / len(x)
    return h, h + damp * h.diagonal().mean() * torch.eye(len(h), dtype=h.dtype)


def obs_written_out(w: torch.Tensor, h_damped: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Column by column: zero the pruned entries of column j, spread the error over the columns after j with the
    explicit inverse Hessian of the columns from j on, then drop j from that inverse (OBS's rank-one downdate)."""
    w, hinv = w.double().clone(), torch.linalg.inv(h_damped)
    for j in range(w.shape[1]):
        q = w[:, j] * keep[:, j]
        err = (w[:, j] - q) / hinv[j, j]
        w[:, j:] -= err[:, None] * hinv[j, j:][None, :]
        w[:, j] = q
        hinv = hinv - hinv[:, j:j + 1] @ hinv[j:j + 1, :] / hinv[j, j]
    return w


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_size", [4, 16, 128])
def test_a_given_mask_gives_the_written_out_obs_updates(seed, block_size):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 16, generator=g, dtype=torch.float64)
    x = correlated(seed, 200, 16)
    h, h_damped = hessian(x)
    keep = (torch.rand(6, 16, generator=g) > 0.5).double()
    got, mask = sparsegpt.sparsegpt(w, h, mask=keep, block_size=block_size)
    assert torch.equal(mask, keep)
    assert torch.allclose(got, obs_written_out(w, h_damped, keep), atol=1e-10)
    assert bool((got[keep == 0] == 0).all())


@pytest.mark.parametrize("sparsity, block_size", [(0.5, 8), (0.3, 16), (0.75, 5)])
def test_the_adaptive_mask_removes_the_exact_share_of_each_block_by_the_obs_saliency(sparsity, block_size):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(10, 20, generator=g, dtype=torch.float64)
    h, h_damped = hessian(correlated(7, 300, 20))
    got, keep = sparsegpt.sparsegpt(w, h, sparsity, block_size=block_size)
    for start in range(0, 20, block_size):
        block = keep[:, start:start + block_size]
        assert int((block == 0).sum()) == round(sparsity * block.numel())
    # the first block's choice, written out: the saliency w^2 / [L]_jj^2 of the untouched weights (L: the upper
    # Cholesky factor of H^-1, whose squared diagonal is the inverse Hessian of the columns from j on)
    ell = torch.linalg.cholesky(torch.linalg.inv(h_damped), upper=True)
    saliency = w[:, :block_size] ** 2 / ell.diagonal()[None, :block_size] ** 2
    assert torch.equal(keep[:, :block_size], prune.magnitude_mask(saliency, sparsity=sparsity).double())
    assert torch.allclose(got, obs_written_out(w, h_damped, keep), atol=1e-10)  # the same updates as with that mask


def test_two_four_keeps_two_of_every_four_in_each_row():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 32, generator=g)
    h, _ = hessian(correlated(3, 200, 32))
    got, keep = sparsegpt.sparsegpt(w, h, pattern=(2, 4), block_size=16)
    assert bool((keep.reshape(8, 8, 4).sum(-1) == 2).all())
    assert bool((got[keep == 0] == 0).all()) and got.dtype == w.dtype


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_worse_than_wanda_on_the_calibration_outputs(seed):
    """Wanda keeps its weights as they are; SparseGPT's updates minimize the output error on the same inputs."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(24, 32, generator=g, dtype=torch.float64)
    x = correlated(seed, 256, 32)
    h, _ = hessian(x)
    wanda = w * prune.row_mask(w.abs() * x.norm(dim=0)[None, :], 0.5)
    ours, _ = sparsegpt.sparsegpt(w, h, 0.5)
    assert sparsegpt.layer_error(w, ours, x) < sparsegpt.layer_error(w, wanda, x)
    two_four = w * prune.nm_mask(w.abs() * x.norm(dim=0)[None, :], 2, 4)
    ours_24, _ = sparsegpt.sparsegpt(w, h, pattern=(2, 4))
    assert sparsegpt.layer_error(w, ours_24, x) < sparsegpt.layer_error(w, two_four, x)


def test_joint_pruning_and_four_bit_rounding_keeps_at_most_fifteen_levels_per_row():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, 32, generator=g)
    h, _ = hessian(correlated(5, 200, 32))
    got, keep = sparsegpt.sparsegpt(w, h, 0.5, bits=4)
    scale = w.abs().amax(dim=1, keepdim=True) / 7
    codes = got / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4) and float(codes.abs().max()) <= 7 + 1e-4
    assert bool((got[keep == 0] == 0).all())


def test_prune_lm_prunes_every_block_linear_keeps_masks_and_beats_wanda_on_the_shipped_model():
    text = data.load_text()
    from compresskit.train import shipped_baseline

    model = shipped_baseline("transformer")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = sparsegpt.prune_lm(model, 0.5, calibration=text.train, samples=8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for name, m in transformer_linears(pruned).items():
        assert torch_prune.is_pruned(m)
        assert float((m.weight == 0).double().mean()) == pytest.approx(0.5, abs=0.01), name
    wanda = prune.prune_lm(model, 0.5, method="wanda", calibration=text.train, samples=8)
    windows = data.calibration_windows(text.train, model.context, 8, seed=0)
    layer = "blocks.0.fc"
    x = inputs_of(model, transformer_linears(model)[layer], windows).reshape(-1, 128).double()
    w = transformer_linears(model)[layer].weight.detach()
    ours = transformer_linears(pruned)[layer].weight.detach()
    theirs = transformer_linears(wanda)[layer].weight.detach()
    assert sparsegpt.layer_error(w, ours, x) < sparsegpt.layer_error(w, theirs, x)


@pytest.mark.parametrize("kwargs, match", [({}, "exactly one"), ({"sparsity": 0.5, "pattern": (2, 4)}, "exactly one"),
                                           ({"pattern": (2, 3)}, "divide"), ({"mask": torch.full((2, 8), 0.5)},
                                                                             "mask")])
def test_bad_choices_are_refused_by_name(kwargs, match):
    w = torch.randn(2, 8)
    with pytest.raises((ValueError, TypeError), match=match):
        sparsegpt.sparsegpt(w, torch.eye(8), **kwargs)


def test_a_tiny_model_runs_through_prune_lm_with_a_pattern():
    torch.manual_seed(0)
    model = models.transformer_lm(context=16, d_model=16, n_layer=1, n_head=2)
    ids = data.encode_text(data.read_text()[:3000])
    pruned = sparsegpt.prune_lm(model, pattern=(2, 4), calibration=ids, samples=4, block_size=8)
    for m in transformer_linears(pruned).values():
        assert bool((m.weight.detach().reshape(m.out_features, -1, 4).ne(0).sum(-1) <= 2).all())
