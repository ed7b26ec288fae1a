import pytest
import torch

from compresskit import data, models, sparsify
from compresskit.train import set_seed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_penalties_by_formula_and_gradient(seed):
    torch.manual_seed(seed)
    model = models.mlp(hidden=(16,))
    weights = [model[1].weight, model[3].weight]
    assert sparsify.l1_penalty(model, 0.1).item() == pytest.approx(0.1 * sum(w.abs().sum().item() for w in weights),
                                                                     rel=1e-5)
    assert sparsify.l2_penalty(model, 0.1).item() == pytest.approx(0.1 * sum((w**2).sum().item() for w in weights),
                                                                     rel=1e-5)
    sparsify.l1_penalty(model, 0.1).backward()
    assert torch.allclose(model[1].weight.grad, 0.1 * torch.sign(model[1].weight))
    assert model[1].bias.grad is None  # biases are never penalized


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_threshold_is_the_prox_of_the_l1_norm(seed):
    torch.manual_seed(seed)
    w = torch.randn(200)
    t = 0.3
    written_out = torch.tensor([x - t if x > t else x + t if x < -t else 0.0 for x in w.tolist()])
    assert torch.allclose(sparsify.soft_threshold(w, t), written_out, atol=1e-7)
    # prox definition: argmin_x 0.5 (x - w)^2 + t |x|, checked on a fine grid for a few entries
    grid = torch.linspace(-4, 4, 80001)
    for x in w[:5]:
        best = grid[torch.argmin(0.5 * (grid - x) ** 2 + t * grid.abs())]
        assert sparsify.soft_threshold(x, t).item() == pytest.approx(best.item(), abs=2e-4)


def test_proximal_training_makes_exact_zeros_and_plain_l1_does_not():
    split = data.load_digits()
    zeros = {}
    for method in ("l1", "proximal", "l2"):
        set_seed(0)
        m = models.mlp(hidden=(64,))
        sparsify.train_sparse(m, split.train, method=method, lam=1e-2, epochs=5, lr=0.05, progress=False)
        zeros[method] = sparsify.exact_zero_fraction(m)
    assert zeros["proximal"] > 0.2
    assert zeros["l1"] < 0.01 and zeros["l2"] < 0.01


def test_bad_arguments():
    m = models.mlp(hidden=(4,))
    with pytest.raises(ValueError, match="lam must be a finite float >= 0, got -1"):
        sparsify.l1_penalty(m, -1)
    with pytest.raises(TypeError, match="lam"):
        sparsify.l2_penalty(m, "0.1")
    with pytest.raises(ValueError, match="method must be one of"):
        sparsify.train_sparse(m, data.load_digits().train, method="l0", lam=0.1, epochs=1, lr=0.1)
