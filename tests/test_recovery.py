"""The closed-form low-rank correction of a layer's compression error (compresskit.recovery) against Eckart-Young
written out: its output error on the calibration inputs is the sum of the squared singular values of (W - Q) S beyond
the rank (X^T X = S S^T), never more than a plain SVD of W - Q gives, zero at full rank; and on the shipped model a
correction of 3-bit weights brings the model closer to float32 on held-out text."""

import pytest
import torch

from compresskit import data, metrics, recovery, weightonly
from compresskit.train import shipped_baseline


def problem(seed: int, rows: int = 12, cols: int = 16, n: int = 200):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    q = torch.round(w * 2) / 2  # a coarse rounding: the error to correct
    mix = torch.eye(cols, dtype=torch.float64) + 0.5 * torch.randn(cols, cols, generator=g, dtype=torch.float64)
    return w, q, torch.randn(n, cols, generator=g, dtype=torch.float64) @ mix


def output_error(w, q, b, a, x) -> float:
    return float(((w - q - b.double() @ a.double()) @ x.T).pow(2).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rank", [1, 4, 8])
def test_the_error_left_is_eckart_young_on_the_whitened_error(seed, rank):
    w, q, x = problem(seed)
    b, a = recovery.lowrank_correction(w, q, x, rank, damp=0.0)
    s = torch.linalg.cholesky(x.T @ x)
    sigma = torch.linalg.svdvals((w - q) @ s)
    assert output_error(w, q, b, a, x) == pytest.approx(float((sigma[rank:] ** 2).sum()), rel=1e-5)
    u, sv, vh = torch.linalg.svd(w - q)  # the plain SVD weighs every input direction alike: never better
    plain = output_error(w, q, u[:, :rank] * sv[:rank], vh[:rank], x)
    assert output_error(w, q, b, a, x) <= plain * (1 + 1e-9)
    assert b.shape == (12, rank) and a.shape == (rank, 16) and b.dtype == a.dtype == torch.float32


def test_full_rank_removes_the_error_and_the_inputs_are_untouched():
    w, q, x = problem(3)
    copies = [t.clone() for t in (w, q, x)]
    b, a = recovery.lowrank_correction(w, q, x, 12, damp=0.0)
    assert output_error(w, q, b, a, x) < 1e-6 * float(((w - q) @ x.T).pow(2).sum())
    assert all(torch.equal(t, c) for t, c in zip((w, q, x), copies))


def test_corrected_linear_adds_the_factors_to_the_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 12)
    b, a = torch.randn(12, 3), torch.randn(3, 16)
    corrected = recovery.CorrectedLinear(layer, b, a)
    x = torch.randn(5, 7, 16)
    assert torch.allclose(corrected(x), layer(x) + (x @ a.T) @ b.T, atol=1e-6)
    assert corrected.rank == 3
    with pytest.raises(ValueError, match="a must be"):
        recovery.CorrectedLinear(layer, torch.randn(12, 3), torch.randn(2, 16))


def test_a_correction_of_three_bit_weights_brings_the_shipped_model_closer_to_float():
    text = data.load_text()
    model = shipped_baseline("transformer")
    q = weightonly.quantize_lm(model, 3, group_size=128)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    fixed = recovery.correct_lm(q, model, 8, calibration=text.train, samples=8)
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())  # the compressed model is not changed
    test = text.test[:2049]
    kl_q, kl_fixed = (metrics.fidelity(model, m, test).kl_mean for m in (q, fixed))
    assert kl_fixed < 0.8 * kl_q  # measured: 0.129 -> 0.080 (rank 32: 0.031)
    per_layer = [8 * (m.in_features + m.out_features) for m in
                 (model.blocks[0].attn.q, model.blocks[0].attn.proj, model.blocks[0].fc, model.blocks[0].out)]
    assert recovery.correction_bytes(fixed) == 2 * len(model.blocks) * (3 * per_layer[0] + sum(per_layer[1:]))


# --- tune_corrections: a short fine-tune of the factors alone ------------------------------------------------------


def _small():
    torch.manual_seed(0)
    from compresskit import models

    reference = models.transformer_lm(context=16, d_model=32, n_layer=2, n_head=2)
    ids = torch.randint(0, 96, (4000,), generator=torch.Generator().manual_seed(1))
    quantized = weightonly.quantize_lm(reference, 2, group_size=16)
    return reference, quantized, ids


def _mean_kl(reference, model, windows) -> float:
    with torch.no_grad():
        p = torch.log_softmax(reference(windows), -1)
        q = torch.log_softmax(model(windows), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def test_tuning_moves_only_the_factors_lowers_the_divergence_and_leaves_the_inputs_alone():
    reference, quantized, ids = _small()
    start = recovery.correct_lm(quantized, reference, 2, calibration=ids, samples=8)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    reference_before = {k: v.clone() for k, v in reference.state_dict().items()}
    tuned = recovery.tune_corrections(start, reference, ids, steps=20, batch_size=8, lr=3e-3, progress=False)
    after = tuned.state_dict()
    for name, value in before.items():
        moved = not torch.equal(value, after[name])
        assert moved == name.endswith((".a", ".b")), name  # the factors move; the frozen model does not
        assert torch.equal(start.state_dict()[name], value)  # the caller's model untouched
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in reference_before.items())
    windows = data.windows(ids[:20 * 8 * 16 + 1], 16).tensors[0]  # the training windows themselves
    assert _mean_kl(reference, tuned, windows) < 0.9 * _mean_kl(reference, start, windows)
    assert all(p.requires_grad for p in tuned.parameters())  # nothing left frozen for the caller
    assert recovery.correction_bytes(tuned) == recovery.correction_bytes(start)


def test_tuning_refuses_a_model_without_corrections_and_too_little_text():
    reference, quantized, ids = _small()
    with pytest.raises(ValueError, match="CorrectedLinear"):
        recovery.tune_corrections(quantized, reference, ids, steps=1, progress=False)
    start = recovery.correct_lm(quantized, reference, 2, calibration=ids, samples=8)
    with pytest.raises(ValueError, match="ids holds 4,000 tokens"):
        recovery.tune_corrections(start, reference, ids, steps=100, batch_size=8, progress=False)
