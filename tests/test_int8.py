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
