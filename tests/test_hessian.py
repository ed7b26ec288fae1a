"""GPTQ's and SparseGPT's shared second-order code (compresskit.hessian) against the formulas written out."""

import pytest
import torch

from compresskit.hessian import hessian_of, inverse_hessian_factor


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_factor_is_the_cholesky_of_the_damped_inverse(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(50, 6, generator=g) @ (torch.eye(6) + 0.4 * torch.randn(6, 6, generator=g))
    x[:, 4] = 0.0  # a dead input
    h = hessian_of(x)
    assert torch.allclose(h, 2 * x.double().T @ x.double() / 50)
    factor, dead = inverse_hessian_factor(h, 0.01)
    assert dead.tolist() == [False] * 4 + [True, False]
    fixed = h.clone()
    fixed[4, 4] = 1.0
    damped = fixed + 0.01 * fixed.diagonal().mean() * torch.eye(6, dtype=torch.float64)
    assert torch.allclose(factor.T @ factor, torch.linalg.inv(damped), atol=1e-10)
    assert torch.equal(factor, factor.triu()) and factor.dtype == torch.float64


def test_bad_hessians_are_refused_by_name():
    with pytest.raises(ValueError, match="hessian must be a non-empty square matrix"):
        inverse_hessian_factor(torch.ones(3, 4))
    with pytest.raises(ValueError, match="singular"):
        inverse_hessian_factor(torch.ones(3, 3), 0.0)
    with pytest.raises(ValueError, match="x must be a non-empty"):
        hessian_of(torch.ones(5))
