"""Bad input gets a clear error naming the argument, value and allowed range; nothing is silently wrong; the
caller's model is never changed (compresskit.checks and every public function that uses it)."""

from __future__ import annotations

import gzip
import logging
import math

import pytest
import torch
from torch import nn

from compresskit import (
    checks,
    data,
    distill,
    int8,
    lowrank,
    metrics,
    models,
    prune,
    qat,
    quantize,
    rnn,
    sparsify,
    structured,
    timing,
)
from compresskit.train import evaluate, predict, train

# ------------------------------------------------------------------------------------------------ booleans


BOOL_ARGS = [
    ("quantize_model inplace", lambda v: quantize.quantize_model(models.mlp(hidden=(8,)), 4, inplace=v), "inplace"),
    ("quantize_model symmetric", lambda v: quantize.quantize_model(models.mlp(hidden=(8,)), 4, symmetric=v),
     "symmetric"),
    ("quantize_model per_channel", lambda v: quantize.quantize_model(models.mlp(hidden=(8,)), 4, per_channel=v),
     "per_channel"),
    ("quantize_tensor symmetric", lambda v: quantize.quantize_tensor(torch.randn(3, 3), 4, symmetric=v), "symmetric"),
    ("fake_quantize per_channel", lambda v: quantize.fake_quantize(torch.randn(3, 3), 4, per_channel=v),
     "per_channel"),
    ("low_rank inplace", lambda v: lowrank.low_rank(models.mlp(hidden=(8,)), rank=2, inplace=v), "inplace"),
    ("low_rank skip_last", lambda v: lowrank.low_rank(models.mlp(hidden=(8,)), rank=2, skip_last=v), "skip_last"),
    ("low_rank only_if_smaller", lambda v: lowrank.low_rank(models.mlp(hidden=(8,)), rank=2, only_if_smaller=v),
     "only_if_smaller"),
    ("freeze_zeros inplace", lambda v: prune.freeze_zeros(models.mlp(hidden=(8,)), inplace=v), "inplace"),
    ("magnitude_prune inplace", lambda v: prune.magnitude_prune(models.mlp(hidden=(8,)), sparsity=0.5, inplace=v),
     "inplace"),
    ("storage_kwargs per_channel", lambda v: quantize.storage_kwargs("uniform", 4, per_channel=v), "per_channel"),
    ("measure timed", lambda v: metrics.measure(models.mlp(hidden=(8,)), data.load_digits().test, timed=v), "timed"),
]


@pytest.mark.parametrize("what, call, name", BOOL_ARGS, ids=[b[0] for b in BOOL_ARGS])
@pytest.mark.parametrize("value", ["no", 1, 0, None, "False"])
def test_a_bool_argument_that_is_not_a_bool_is_a_type_error(what, call, name, value):
    with pytest.raises(TypeError, match=f"{name} must be a bool"):
        call(value)


def test_inplace_no_leaves_the_callers_model_alone(unchanged):
    model = models.mlp(hidden=(8,))
    for call in (lambda: quantize.quantize_model(model, 2, inplace="no"),
                 lambda: lowrank.low_rank(model, rank=2, inplace="no"),
                 lambda: prune.freeze_zeros(model, inplace="no")):
        with unchanged(model), pytest.raises(TypeError):
            call()


# ------------------------------------------------------------------------------------------------ threads


def test_thread_counts_above_the_cores_are_refused_before_any_thread_starts():
    before = torch.get_num_threads()
    for call in (lambda: timing.latency(models.mlp(hidden=(4,)), torch.rand(1, 1, 8, 8), threads=10**6),
                 lambda: timing.sparse_matmul_timings(size=8, batch=2, sparsities=(0.5,), threads=10**6),
                 lambda: int8.OnnxModel("missing.onnx", threads=10**6),
                 lambda: checks.check_threads(checks.available_cores() + 1)):
        with pytest.raises(ValueError, match=rf"threads must be in \[1, {checks.available_cores()}\]"):
            call()
    assert torch.get_num_threads() == before
    for bad, error in ((0, ValueError), (True, TypeError), (1.0, TypeError)):
        with pytest.raises(error, match="threads"):
            checks.check_threads(bad)


# ------------------------------------------------------------------------------------------------ non-finite


def _poisoned(value=float("nan")):
    model = models.mlp(hidden=(8,))
    with torch.no_grad():
        model[3].weight[2, 1] = value
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_the_layer(value, unchanged):
    model = _poisoned(value)
    for call in (lambda: quantize.quantize_model(model, 4), lambda: quantize.quantize_model(model, 2, method="kmeans"),
                 lambda: prune.magnitude_prune(model, sparsity=0.5), lambda: lowrank.low_rank(model, rank=2),
                 lambda: structured.prune_channels(model, 0.5),
                 lambda: quantize.quantize_model(model, 1, method="binary")):
        with unchanged(model), pytest.raises(ValueError, match=r"'3\.weight'.*non-finite|non-finite"):
            call()


def test_non_finite_tensors_inputs_logits_and_rates_are_refused():
    w = torch.tensor([0.1, float("nan"), 0.3])
    for call in (lambda: quantize.quantize_tensor(w, 8), lambda: quantize.binarize(w),
                 lambda: quantize.kmeans_quantize(w, 2), lambda: sparsify.soft_threshold(w, 0.1)):
        with pytest.raises(ValueError, match="w holds 1 non-finite"):
            call()
    logits, labels = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    with pytest.raises(ValueError, match="teacher_logits holds"):
        distill.kd_loss(logits, logits.clone().fill_(float("inf")), labels, temperature=2.0, alpha=0.5)
    split = data.load_digits()
    for lr in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(ValueError, match="lr must be"):
            train(models.mlp(hidden=(8,)), split.train, epochs=1, lr=lr)
    x = split.test.tensors[0].clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(models.mlp(hidden=(8,)), torch.utils.data.TensorDataset(x, split.test.tensors[1]))
    with pytest.raises(ValueError, match="training loss became"):
        train(models.mlp(hidden=(8,)), split.train, epochs=3, lr=1e30, progress=False)


def test_nan_never_becomes_an_int32_min_code():
    with pytest.raises(ValueError):
        quantize.quantize_tensor(torch.tensor([float("nan"), 1.0]), 8)


# ------------------------------------------------------------------------------------------------ wrong types


WRONG_TYPES = [
    (lambda: prune.magnitude_prune(None, sparsity=0.5), "model must be an nn.Module"),
    (lambda: prune.magnitude_prune(torch.randn(3, 3), sparsity=0.5), "model must be an nn.Module"),
    (lambda: quantize.quantize_model(torch.randn(3, 3), 4), "model must be an nn.Module"),
    (lambda: quantize.quantize_tensor(models.mlp(), 4), "w must be a torch.Tensor"),
    (lambda: quantize.binarize(None), "w must be a torch.Tensor"),
    (lambda: lowrank.low_rank(None, rank=2), "model must be an nn.Module"),
    (lambda: lowrank.svd_linear(torch.randn(3, 3), 2), "layer must be an nn.Linear"),
    (lambda: metrics.storage_bytes(None), "model must be an nn.Module"),
    (lambda: metrics.count_params("mlp"), "model must be an nn.Module"),
    (lambda: metrics.macs(None, (1, 8, 8)), "model must be an nn.Module"),
    (lambda: timing.latency(None, None), "model must be an nn.Module or a callable"),
    (lambda: evaluate(models.mlp(), None), "dataset must be"),
    (lambda: evaluate(None, data.load_digits().test), "model must be an nn.Module"),
    (lambda: distill.kd_loss(None, torch.randn(2, 3), torch.tensor([0, 1]), temperature=1.0, alpha=0.5),
     "student_logits must be a torch.Tensor"),
    (lambda: distill.distill(models.mlp(), None, data.load_digits().train, temperature=2.0, alpha=0.5, epochs=1),
     "teacher must be an nn.Module"),
    (lambda: rnn.hidden_states(None, torch.randn(2, 8, 8)), "model must be an nn.Module"),
    (lambda: structured.prune_channels(None, 0.5), "model must be an nn.Module"),
    (lambda: qat.qat(None, data.load_digits().train, bits=4), "model must be an nn.Module"),
    (lambda: prune.sparsity_report(torch.randn(2)), "model must be an nn.Module"),
    (lambda: train(models.mlp(), data.load_digits().train, epochs=1, lr=1e-3, penalty=3), "penalty must be a function"),
]


@pytest.mark.parametrize("call, message", WRONG_TYPES, ids=[m for _, m in WRONG_TYPES])
def test_a_wrong_type_is_a_type_error_naming_the_argument(call, message):
    with pytest.raises(TypeError, match=message):
        call()


# ------------------------------------------------------------------------------------------------ dtype, device, mode


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_new_layers_keep_dtype_and_mode(dtype):
    mlp = models.mlp(hidden=(16, 8)).to(dtype).eval()
    cnn = models.lenet((4, 8), 16).to(dtype).eval()
    gru = models.rnn_classifier("gru", hidden_size=8).to(dtype).eval()
    x = torch.rand(3, 1, 8, 8, dtype=dtype)
    for made in (structured.prune_channels(mlp, 0.5), structured.prune_channels(cnn, 0.5),
                 lowrank.low_rank(mlp, rank=2),
                 lowrank.low_rank(cnn, rank=2), structured.prune_units(gru, 0.5), lowrank.low_rank(gru, rank=2),
                 quantize.quantize_model(mlp, 4), quantize.quantize_model(mlp, 2, method="kmeans"),
                 prune.magnitude_prune(cnn, sparsity=0.5)):
        assert {p.dtype for p in made.parameters()} == {dtype}
        assert not any(m.training for m in made.modules()), "a new layer came back in training mode"
        assert made(x).dtype == dtype


def test_prune_channels_keeps_eval_mode_so_batchnorm_uses_running_statistics(split):
    cnn = models.lenet((4, 8), 16)
    train(cnn, split.train, epochs=1, lr=3e-3, progress=False)
    pruned = structured.prune_channels(cnn, 0.0)  # removes nothing: must compute exactly what the model computes
    assert not pruned.training
    x = split.test.tensors[0][:5]
    with torch.no_grad():
        assert torch.equal(pruned(x), cnn(x))


def test_batchnorm_without_affine_parameters_or_running_statistics():
    for bn in (nn.BatchNorm1d(6, affine=False), nn.BatchNorm1d(6, track_running_stats=False)):
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), bn, nn.ReLU(), nn.Linear(6, 3)).eval()
        small = structured.prune_channels(model, 0.5)
        assert small[1].out_features == 3 and small[2].num_features == 3 and small(torch.rand(4, 64)).shape == (4, 3)


# ------------------------------------------------------------------------------------------------ edge cases


def test_lenet_through_low_rank_at_every_rank():
    cnn = models.lenet().eval()
    for rank in range(1, 65):
        out = lowrank.low_rank(cnn, rank=rank, only_if_smaller=False)
        assert out(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert lowrank.tucker_rank_limits(cnn[0]) == (1, 9)  # 1 input channel; 16 outputs but a 9-column unfolding


def test_empty_layers_and_models_with_nothing_to_compress_get_a_clear_message():
    with pytest.raises(ValueError, match="empty weight of shape"):
        prune.magnitude_prune(nn.Sequential(nn.Linear(4, 0)), sparsity=0.5)
    for call in (lambda m: prune.magnitude_prune(m, sparsity=0.5), lambda m: quantize.quantize_model(m, 4),
                 lambda m: lowrank.low_rank(m, rank=2)):
        with pytest.raises(ValueError, match="nothing to compress"):
            call(nn.Sequential(nn.ReLU()))


def test_per_channel_on_a_1d_tensor_is_one_scale_per_entry():
    w = torch.tensor([-0.7, 0.1, 0.0, 2.0])
    q, scale, zp = quantize.quantize_tensor(w, 8, symmetric=False, per_channel=True)
    assert scale.shape == (4,)
    expected = torch.fake_quantize_per_channel_affine(w, scale, zp, 0, 0, 255)
    assert torch.equal(quantize.dequantize(q, scale, zp), expected)


def test_weight_norm_layers_are_refused_not_skipped():
    parametrized = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)))
    with pytest.raises(ValueError, match="parametrization"):
        quantize.quantize_model(parametrized, 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        old_style = nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 3)))
    with pytest.raises(ValueError, match="remove_weight_norm"):
        prune.magnitude_prune(old_style, sparsity=0.5)


def test_tied_weights_stay_tied():
    first, second = nn.Linear(6, 6), nn.Linear(6, 6)
    second.weight = first.weight
    model = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), nn.Linear(6, 2))
    pruned = prune.magnitude_prune(model, sparsity=0.5, scope="global")
    assert pruned[0].weight_orig is pruned[2].weight_orig and torch.equal(pruned[0].weight_mask, pruned[2].weight_mask)
    q = quantize.quantize_model(pruned, 3, method="kmeans")
    assert q[0].weight_orig is q[2].weight_orig
    factored = lowrank.low_rank(model, rank=2, only_if_smaller=False)
    assert factored[0][0].weight is factored[2][0].weight and factored[0][1].weight is factored[2][1].weight
    assert metrics.count_params(model) == 6 * 6 + 6 + 6 + 6 * 2 + 2  # the shared matrix counts once


# ------------------------------------------------------------------------------------------------ data files


def _idx(path, payload: bytes, *, gz: bool = False):
    (gzip.open if gz else open)(path, "wb").write(payload)
    return path


def test_bad_data_files_are_value_errors_naming_the_file(tmp_path):
    images = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(8)
    labels = bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([1, 2])
    good_i, good_l = _idx(tmp_path / "i", images), _idx(tmp_path / "l", labels)
    assert len(data.load_idx(good_i, good_l)) == 2
    truncated_gz = tmp_path / "t.gz"
    truncated_gz.write_bytes(gzip.compress(images)[:-12])
    corrupt_gz = tmp_path / "c.gz"
    corrupt_gz.write_bytes(b"\x1f\x8b" + bytes(30))
    cases = [
        (_idx(tmp_path / "magic", b"\x08\x00\x08\x03" + images[4:]), good_l, "not an IDX file"),
        (_idx(tmp_path / "short", images[:-3]), good_l, "header promises"),
        (_idx(tmp_path / "huge", bytes([0, 0, 8, 3]) + (2**31).to_bytes(4, "big") * 3), good_l, "more than"),
        (_idx(tmp_path / "hdr", bytes([0, 0, 8, 3, 0, 0])), good_l, "truncated"),
        (truncated_gz, good_l, "corrupt or truncated"),
        (corrupt_gz, good_l, "corrupt or truncated"),
        (good_i, _idx(tmp_path / "neg", bytes([0, 0, 9, 1]) + (2).to_bytes(4, "big") + bytes([1, 255])), ">= 0"),
        (_idx(tmp_path / "e_i", bytes([0, 0, 8, 3]) + bytes(4) + (2).to_bytes(4, "big") * 2),
         _idx(tmp_path / "e_l", bytes([0, 0, 8, 1]) + bytes(4)), "empty"),
    ]
    for images_path, labels_path, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            data.load_idx(images_path, labels_path)
        assert str(tmp_path) in str(err.value)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name, payload in (("train-images-idx3-ubyte", images), ("t10k-images-idx3-ubyte", images),
                          ("train-labels-idx1-ubyte", labels[:-2] + bytes([1, 12])),
                          ("t10k-labels-idx1-ubyte", labels)):
        (mnist / name).write_bytes(payload)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], got 12"):
        data.load_mnist(tmp_path, "mnist")


def test_empty_datasets_are_refused():
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    for call in (lambda: evaluate(models.mlp(), empty), lambda: train(models.mlp(), empty, epochs=1, lr=1e-3)):
        with pytest.raises(ValueError, match="empty"):
            call()


# ------------------------------------------------------------------------------------------------ numerics, state


@pytest.mark.parametrize("temperature", [1e-4, 1e-2, 1.0, 20.0, 1e4])
def test_kd_loss_is_finite_at_any_temperature(temperature):
    gen = torch.Generator().manual_seed(0)
    student = (torch.randn(8, 10, generator=gen) * 50).requires_grad_()
    teacher = torch.randn(8, 10, generator=gen) * 50
    loss = distill.kd_loss(student, teacher, torch.arange(8), temperature=temperature, alpha=0.7)
    loss.backward()
    assert math.isfinite(loss.item()) and bool(torch.isfinite(student.grad).all())


def test_decreasing_schedules_are_refused():
    with pytest.raises(ValueError, match="initial_sparsity"):
        prune.cubic_schedule(0.5, 3, initial_sparsity=0.8)
    with pytest.raises(ValueError, match="decreases"):
        prune.iterative_prune(models.mlp(hidden=(8,)), data.load_digits().train, final_sparsity=0.5,
                              schedule=lambda final, steps: [0.6, 0.5])


def test_evaluate_restores_the_mode_even_when_the_forward_fails():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), Broken()).train()
    with pytest.raises(RuntimeError, match="boom"):
        predict(model, data.load_digits().test)
    assert all(m.training for m in model.modules())


def test_quantize_onnx_restores_the_root_logger(tmp_path):
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        model = models.mlp(hidden=(8,))
        path = int8.export_onnx(model, torch.rand(1, 1, 8, 8), tmp_path / "m.onnx")
        int8.quantize_onnx(path, tmp_path / "q.onnx")
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)
