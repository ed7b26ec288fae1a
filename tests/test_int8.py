import pytest
import torch

from compresskit import data, int8, models
from compresskit.train import evaluate, set_seed, train

pytest.importorskip("onnxruntime")


def test_int8_models_are_smaller_integer_and_agree(tmp_path):
    split = data.load_digits()
    set_seed(0)
    model = models.mlp(hidden=(256, 256))
    train(model, split.train, epochs=5, lr=1e-3, progress=False)
    runs = int8.int8_models(model, split.test.tensors[0][:8], calibration=split.train, folder=tmp_path)
    assert set(runs) == {"onnx fp32", "onnx int8 dynamic", "onnx int8 static"}
    x = split.test.tensors[0][:32]
    with torch.no_grad():
        assert torch.allclose(runs["onnx fp32"](x), model(x), atol=1e-4)  # export is faithful
    fp32 = runs["onnx fp32"].file_bytes
    for name in ("onnx int8 dynamic", "onnx int8 static"):
        assert runs[name].file_bytes < 0.3 * fp32
        assert evaluate(runs[name], split.test) >= evaluate(model, split.test) - 0.01
    import onnx

    ops = {n.op_type for n in onnx.load(str(runs["onnx int8 static"].path)).graph.node}
    assert ops & {"QLinearMatMul", "MatMulInteger", "QGemm"}, ops  # integer kernels, not float ones
    with pytest.raises(ValueError, match="calibration"):
        int8.quantize_onnx(runs["onnx fp32"].path, tmp_path / "x.onnx", mode="static")


def test_int4_language_model_is_onnx_runtimes_matmulnbits_and_agrees_with_rtn(tmp_path):
    from compresskit import metrics, weightonly

    torch.manual_seed(0)
    model = models.transformer_lm(context=32, d_model=64, n_layer=2, n_head=2).eval()
    x = torch.randint(0, 96, (2, 32))
    runs = int8.int4_models(model, x, block_size=32, folder=tmp_path)
    assert set(runs) == {"onnx fp32", "onnx int4"}
    ops = runs["onnx int4"].op_types
    assert ops.count("MatMulNBits") == 12  # q, k, v, proj, fc, out in each of the 2 blocks; the head stays MatMul
    with torch.no_grad():
        assert torch.allclose(runs["onnx fp32"](x), model(x), atol=1e-4)
        assert torch.allclose(runs["onnx fp32"](x[:, :7]), model(x[:, :7]), atol=1e-4)  # the sequence is dynamic
    assert runs["onnx int4"].file_bytes < 0.45 * runs["onnx fp32"].file_bytes
    # ONNX Runtime's 4-bit blocks of 32 inputs and compresskit's RTN groups of 32 round the same weights alike
    ids = data.load_text().val[:3000]
    ours = metrics.perplexity(weightonly.quantize_lm(model, 4, group_size=32), ids).perplexity
    theirs = metrics.perplexity(runs["onnx int4"], ids, context=32).perplexity
    base = metrics.perplexity(model, ids).perplexity
    assert abs(theirs - ours) < 0.25 * abs(ours - base) + 0.01 * base


def test_int4_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        int8.quantize_onnx_nbits(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    for bad in (dict(bits=3), dict(block_size=24), dict(block_size=8)):
        with pytest.raises(ValueError):
            int8.quantize_onnx_nbits(tmp_path / "missing.onnx", tmp_path / "out.onnx", **bad)


def test_a_missing_onnx_file_is_named(tmp_path):
    for call in (lambda: int8.OnnxModel(tmp_path / "gone.onnx"),
                 lambda: int8.quantize_onnx(tmp_path / "gone.onnx", tmp_path / "out.onnx")):
        with pytest.raises(FileNotFoundError, match="gone.onnx"):
            call()


def test_without_a_folder_nothing_is_left_in_the_temporary_directory(monkeypatch, tmp_path):
    """int8_models and int4_models without a folder used to leave a folder of ONNX files per call (about 40 per test
    run, and one per run of chapters 07 and 09 on a learner's machine). The sessions now hold the files' bytes."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory and mkdtemp write
    split = data.load_digits()
    set_seed(0)
    mlp = models.mlp(hidden=(32,))
    lm = models.transformer_lm(context=32, d_model=64, n_layer=1, n_head=2).eval()
    eight = int8.int8_models(mlp, split.test.tensors[0][:4], calibration=split.train)
    four = int8.int4_models(lm, torch.randint(0, 96, (1, 32)), block_size=32)
    assert list(tmp_path.iterdir()) == []
    for name, run in [*eight.items(), *four.items()]:  # the files are gone, the models still work and know sizes
        assert not run.path.exists() and run.file_bytes == len(run.onnx_bytes) > 1000, name
        assert run.op_types
    with torch.no_grad():
        assert torch.allclose(eight["onnx fp32"](split.test.tensors[0][:4]), mlp(split.test.tensors[0][:4]), atol=1e-4)
