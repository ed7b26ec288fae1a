"""The coding exercises on the language-model chapters' central methods: one GPTQ column step (chapter 09), Wanda's
per-row mask (chapter 10), SmoothQuant's scales (chapter 11) and SparseGPT's mask of a lazy block (chapter 12). Like
``compresskit.exercise_cases``: cases (keyword arguments and a ``"what"``), the package's answer, how a result is
judged (``compresskit.answer_checks``), and the classic mistakes with what each gets wrong;
``compresskit.exercises.CODING`` runs them.
"""

from __future__ import annotations

import torch

from compresskit.answer_checks import keep_mask_differs, seeded_randn, tensor_differs
from compresskit.checks import check_int, check_tensor
from compresskit.outliers import smooth_scales
from compresskit.prune import magnitude_mask, row_mask

__all__ = ["LM_EXERCISES", "OBS_MISTAKES", "WANDA_MISTAKES", "SMOOTH_MISTAKES", "SPARSEGPT_MISTAKES", "obs_update"]


# --- 09: one column of GPTQ -----------------------------------------------------------------------------------------


def obs_update(w: torch.Tensor, q: torch.Tensor, j: int, hinv: torch.Tensor) -> torch.Tensor:
    """The optimal brain surgeon update GPTQ makes after rounding column ``j`` of ``w`` to ``q``: the error of that
    column, divided by ``[H^-1]_jj``, spread over the row ``j`` of ``H^-1`` (the paper's eq. 3 for every output row at
    once): ``w - ((w_j - q) / hinv_jj) hinv_j``. Column ``j`` becomes ``q``; columns whose entry of ``hinv``'s row is
    0 (already quantized, in the Cholesky form) do not move. A new tensor; ``w`` is not changed."""
    for name, t, dims in (("w", w, 2), ("q", q, 1), ("hinv", hinv, 2)):
        check_tensor(name, t)
        if t.dim() != dims or not t.numel():
            raise ValueError(f"{name} must be a non-empty {dims}-d tensor, got shape {tuple(t.shape)}")
    if len(q) != len(w) or hinv.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"q must hold one value per row of w ({len(w)}) and hinv be ({w.shape[1]}, {w.shape[1]}), got "
                         f"q {tuple(q.shape)}, hinv {tuple(hinv.shape)}")
    check_int("j", j, 0, w.shape[1] - 1)
    err = (w[:, j] - q) / hinv[j, j]  # (rows,)
    return w - err[:, None] * hinv[j][None, :]


def _obs(no_division=False, added=False, column=False, squared=False, keep_j=False):
    def wrong(w, q, j, hinv):
        row = hinv[:, j] if column else hinv[j]
        d = hinv[j, j] ** 2 if squared else 1.0 if no_division else hinv[j, j]
        out = (w + (w[:, j] - q)[:, None] / d * row[None, :]) if added else \
            (w - (w[:, j] - q)[:, None] / d * row[None, :])
        if keep_j:
            out = out.clone()
            out[:, j] = w[:, j]
        return out
    return wrong


OBS_MISTAKES = {
    "no division by [H^-1]_jj": (_obs(no_division=True), "the error is scaled by 1 / [H^-1]_jj before it is spread: "
                                 "(w_j - q) / hinv[j, j], so that column j lands exactly on q"),
    "the update added": (_obs(added=True), "the other columns move *against* the error: w - delta, not w + delta"),
    "a column of H^-1 instead of its row": (_obs(column=True), "the update of column k reads hinv[j, k], row j: in the "
                                            "Cholesky form H^-1 is not symmetric and hinv[:, j] is another vector"),
    "dividing by [H^-1]_jj squared": (_obs(squared=True), "divide once: delta = (w_j - q) / hinv_jj * hinv_j"),
    "column j left as it was": (_obs(keep_j=True), "column j is quantized too: the update sets it to q exactly "
                                "(w_j - (w_j - q) / hinv_jj * hinv_jj = q)"),
}


def _spd(seed: int, n: int) -> torch.Tensor:
    """A Hessian 2 X X^T / m of correlated inputs, damped as GPTQ damps it."""
    x = seeded_randn(seed, 4 * n, n) @ (torch.eye(n) + 0.5 * seeded_randn(seed + 50, n, n))
    h = 2 * x.T @ x / len(x)
    return h + 0.01 * h.diagonal().mean() * torch.eye(n)


def _obs_cases():
    cases = []
    for i, (rows, cols, j, form) in enumerate([(4, 6, 0, "inverse"), (3, 8, 5, "cholesky"), (5, 5, 2, "inverse"),
                                               (2, 7, 6, "cholesky")]):
        w = seeded_randn(10 + i, rows, cols)
        inverse = torch.linalg.inv(_spd(20 + i, cols))
        hinv = inverse if form == "inverse" else torch.linalg.cholesky(inverse, upper=True)
        q = torch.round(w[:, j] * 4) / 4  # column j rounded to a grid of step 0.25
        what = f"{rows}x{cols}, column {j}, " + ("the explicit inverse Hessian" if form == "inverse" else
                                                 "the upper Cholesky factor of H^-1 (GPTQ's form)")
        cases.append({"what": what, "w": w, "q": q, "j": j, "hinv": hinv})
    return cases


# --- 10: Wanda's mask -----------------------------------------------------------------------------------------------


def _wanda(w, norms, sparsity):
    return row_mask(w.abs() * norms[None, :], sparsity)


def _global_mask(scores, sparsity):
    k = round(sparsity * scores.numel())
    mask = torch.ones(scores.numel())
    mask[torch.sort(scores.flatten(), stable=True).indices[:k]] = 0
    return mask.reshape(scores.shape)


def _int_mask(scores, sparsity):
    k = int(sparsity * scores.shape[1])
    mask = torch.ones_like(scores)
    return mask.scatter_(1, torch.sort(scores, dim=1, stable=True).indices[:, :k], 0.0)


WANDA_MISTAKES = {
    "magnitude only": (lambda w, norms, sparsity: row_mask(w.abs(), sparsity),
                       "Wanda's score is |W_ij| * ||X_j||: the weight times the norm of the input it reads"),
    "one ranking over the whole matrix": (lambda w, norms, sparsity: _global_mask(w.abs() * norms[None, :], sparsity),
                                          "Wanda compares the scores within each output row: every row keeps the same "
                                          "number of inputs"),
    "the squared norm": (lambda w, norms, sparsity: row_mask(w.abs() * norms[None, :] ** 2, sparsity),
                         "the score uses the L2 norm ||X_j|| itself, not its square"),
    "int() instead of round()": (lambda w, norms, sparsity: _int_mask(w.abs() * norms[None, :], sparsity),
                                 "drop round(sparsity * in) weights per row: 0.35 of 10 inputs is 3.5, which rounds "
                                 "to 4"),
    "dropping the largest scores": (lambda w, norms, sparsity: 1 - row_mask(w.abs() * norms[None, :], 1 - sparsity),
                                    "the weights with the *smallest* scores go"),
}


def _wanda_cases():
    outlier = seeded_randn(3, 5).abs() + 0.5
    outlier[2] = 40.0  # one input channel with activations far larger than the rest (an outlier feature)
    return [{"what": "random 6x10, half", "w": seeded_randn(0, 6, 10), "norms": seeded_randn(1, 10).abs() + 0.1,
             "sparsity": 0.5},
            {"what": "an outlier input channel, 4x5 at 40 %", "w": seeded_randn(2, 4, 5), "norms": outlier,
             "sparsity": 0.4},
            {"what": "3x10 at 35 % (3.5 per row rounds to 4)", "w": seeded_randn(4, 3, 10),
             "norms": seeded_randn(5, 10).abs() + 0.1, "sparsity": 0.35},
            {"what": "8x4 at 75 %", "w": seeded_randn(6, 8, 4), "norms": seeded_randn(7, 4).abs() + 0.1,
             "sparsity": 0.75}]


# --- 11: SmoothQuant's scales ---------------------------------------------------------------------------------------


def _smooth(x_max, w, alpha):
    return smooth_scales(x_max, [w], alpha)


SMOOTH_MISTAKES = {
    "the weights' maximum over each row": (lambda x_max, w, alpha: x_max ** alpha / w.abs().amax(1) ** (1 - alpha),
                                           "channel j's weights are column j of w (every output reads input j): "
                                           "the maximum over dim 0"),
    "the exponents swapped": (lambda x_max, w, alpha: x_max ** (1 - alpha) / w.abs().amax(0) ** alpha,
                              "alpha is the activations' share: max|X_j|^alpha over max|W_j|^(1 - alpha)"),
    "no exponent on the weights": (lambda x_max, w, alpha: x_max ** alpha / w.abs().amax(0),
                                   "the weights' maximum is raised to 1 - alpha: at alpha = 1 it drops out"),
    "a product instead of a ratio": (lambda x_max, w, alpha: x_max ** alpha * w.abs().amax(0) ** (1 - alpha),
                                     "s divides the activations and multiplies the weights: large activations and "
                                     "small weights both ask for a larger s"),
    "the weights' mean": (lambda x_max, w, alpha: x_max ** alpha / w.abs().mean(0) ** (1 - alpha),
                          "the scale balances the largest values, the ones that set the rounding's range"),
}


def _smooth_cases():
    wide = seeded_randn(11, 6, 4)
    wide[2, 1] = -5.0  # the largest weight of channel 1 is negative
    x_max = seeded_randn(12, 4).abs() + 0.2
    x_max[3] = 30.0  # an outlier channel
    return [{"what": "6 outputs x 4 channels, alpha 0.5, an outlier channel", "x_max": x_max, "w": wide,
             "alpha": 0.5},
            {"what": "3 x 8, alpha 0.85", "x_max": seeded_randn(13, 8).abs() + 0.1, "w": seeded_randn(14, 3, 8),
             "alpha": 0.85},
            {"what": "5 x 5 (square), alpha 0.25", "x_max": seeded_randn(15, 5).abs() + 0.5,
             "w": seeded_randn(16, 5, 5), "alpha": 0.25}]


# --- 12: SparseGPT's mask of a lazy block ----------------------------------------------------------------------------


def _sparsegpt_mask(w, d, sparsity):
    return magnitude_mask(w ** 2 / d[None, :] ** 2, sparsity=sparsity)


SPARSEGPT_MISTAKES = {
    "magnitude only": (lambda w, d, sparsity: magnitude_mask(w, sparsity=sparsity),
                       "the saliency of removing w_ij is the error it leaves, w_ij^2 / [L]_jj^2: a large weight may go "
                       "when its input carries little (a large [L]_jj)"),
    "one ranking per row": (lambda w, d, sparsity: row_mask(w ** 2 / d[None, :] ** 2, sparsity),
                            "SparseGPT ranks the whole block at once: rows may keep different numbers of weights"),
    "divided by [L]_jj, not its square": (lambda w, d, sparsity: magnitude_mask(w ** 2 / d[None, :], sparsity=sparsity),
                                          "the OBS error is w^2 / [H^-1]_jj and [H^-1]_jj = [L]_jj^2 in the Cholesky "
                                          "form: divide by the square"),
    "multiplied by [L]_jj squared": (lambda w, d, sparsity: magnitude_mask(w ** 2 * d[None, :] ** 2,
                                                                           sparsity=sparsity),
                                     "divide by it: a large [L]_jj (an input that carries little) makes a removal "
                                     "cheap"),
    "the highest saliencies dropped": (lambda w, d, sparsity: 1 - magnitude_mask(w ** 2 / d[None, :] ** 2,
                                                                                 sparsity=1 - sparsity),
                                       "the weights whose removal costs *least* go"),
}


def _sparsegpt_cases():
    varied = seeded_randn(31, 6).abs() + 0.05
    varied[1] = 3.0  # one column whose error is expensive to spread
    return [{"what": "4x6 block at 50 %, one large [L]_jj", "w": seeded_randn(30, 4, 6), "d": varied,
             "sparsity": 0.5},
            {"what": "2x5 at 38 % (3.8 weights round to 4)", "w": seeded_randn(32, 2, 5),
             "d": seeded_randn(33, 5).abs() + 0.2, "sparsity": 0.38},
            {"what": "5x4 at 25 %, [L]_jj from 0.1 to 2", "w": seeded_randn(34, 5, 4),
             "d": torch.tensor([0.1, 2.0, 0.5, 1.0]), "sparsity": 0.25}]


LM_EXERCISES: dict[str, dict] = {
    "09-gptq": {"signature": "obs_update(w, q, j, hinv) -> updated weights", "cases": _obs_cases, "solve": obs_update,
                "differs": lambda g, e, c: tensor_differs(g, e, c, atol=1e-5),
                "hint": "err = (w[:, j] - q) / hinv[j, j], one number per output row; subtract err times row j of "
                        "hinv from every column (an outer product)", "mistakes": OBS_MISTAKES},
    "10-wanda": {"signature": "wanda_mask(w, norms, sparsity) -> keep-mask", "cases": _wanda_cases, "solve": _wanda,
                 "differs": keep_mask_differs,
                 "hint": "score = |w| * norms (one norm per input column); in each row drop the round(sparsity * in) "
                         "smallest scores", "mistakes": WANDA_MISTAKES},
    "11-smooth": {"signature": "smooth_scales(x_max, w, alpha) -> one scale per input channel",
                  "cases": _smooth_cases, "solve": _smooth,
                  "differs": lambda g, e, c: tensor_differs(g, e, c, atol=1e-5),
                  "hint": "balance each channel's largest activation against the largest weight that reads it, "
                          "alpha setting the activations' share", "mistakes": SMOOTH_MISTAKES},
    "12-sparsegpt": {"signature": "sparsegpt_mask(w, d, sparsity) -> keep-mask of the block",
                     "cases": _sparsegpt_cases, "solve": _sparsegpt_mask, "differs": keep_mask_differs,
                     "hint": "score each weight by the error its removal leaves once the others are corrected "
                             "(OBS), then drop the lowest scores of the whole block",
                     "mistakes": SPARSEGPT_MISTAKES},
}
"""The coding exercises on chapters 09-12's central methods, by name (fields of ``exercises.CodingExercise``)."""
