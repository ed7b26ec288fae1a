"""The Hessian of a linear layer's squared output error and the factor of its inverse that GPTQ
(``weightonly.gptq``) and SparseGPT (``sparsegpt.sparsegpt``) both walk column by column: one home for the
second-order code the two share.

For a layer ``y = W x`` and calibration inputs ``X`` ``(n, columns)``, the squared error of one output row is a
quadratic in that row's weights with Hessian ``H = 2 X^T X / n``, the same for every row. The optimal brain surgeon
reads ``H^-1``; visiting the columns in a fixed order, the inverse Hessians of the columns not yet visited are the
rows of one upper Cholesky factor of ``H^-1``.
"""

from __future__ import annotations

import torch

from compresskit.checks import check_number, check_tensor, checked

__all__ = ["hessian_of", "inverse_hessian_factor"]


@checked
def hessian_of(x: torch.Tensor) -> torch.Tensor:
    """``H = 2 X^T X / n`` of a layer's ``n`` calibration inputs ``x`` ``(n, columns)``, in float64: the Hessian of
    the squared error of the layer's outputs in its weights (one row's, the same for every row). GPTQ and SparseGPT
    (``compresskit.sparsegpt``) both start from it."""
    check_tensor("x", x)
    if x.dim() != 2 or not x.numel():
        raise ValueError(f"x must be a non-empty (n, columns) matrix of inputs, got shape {tuple(x.shape)}")
    x = x.detach().double()
    return 2.0 * x.T @ x / len(x)


@checked
def inverse_hessian_factor(hessian: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """The upper Cholesky factor ``L`` of ``(H + damp * mean(diag H) I)^-1`` in float64, and the mask of dead columns
    (``H_jj = 0``: an input that is always zero, given 1 on the diagonal so that ``H`` stays invertible). Row ``j`` of
    ``L``, divided by ``L_jj``, is the OBS update that column ``j``'s error makes to the columns after it once the
    columns before it are fixed (GPTQ's section 3.3); ``L_jj^2 = [H^-1]_jj`` for the columns not yet visited, which
    SparseGPT's saliency reads."""
    check_tensor("hessian", hessian)
    if hessian.dim() != 2 or hessian.shape[0] != hessian.shape[1] or not hessian.numel():
        raise ValueError(f"hessian must be a non-empty square matrix, got shape {tuple(hessian.shape)}")
    check_number("damp", damp, 0.0, 1.0)
    H = hessian.detach().double().clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    H += damp * torch.mean(torch.diagonal(H)) * torch.eye(len(H), dtype=H.dtype)
    try:
        return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True), dead
    except torch.linalg.LinAlgError:
        raise ValueError(f"H + damp * mean(diag H) is singular (damp={damp}): use damp > 0 (paper: 0.01)") from None
