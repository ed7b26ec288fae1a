"""Real int8 inference on the CPU through ONNX Runtime: the file really shrinks and the kernels really are integer.

Fake quantization (``compresskit.quantize``) only shows what accuracy low precision keeps: its weights are still
float32, so the model is neither smaller nor faster. Here the model is exported to ONNX and quantized by ONNX
Runtime, whose MatMulInteger / QLinear kernels compute in int8:

- dynamic: int8 weights; activations quantized on the fly per batch (no calibration data needed);
- static: int8 weights and activations, with activation ranges calibrated on a few batches ("full integer").

And 4-bit weight-only for language models (``int4_models``): ONNX Runtime's ``MatMulNBitsQuantizer`` rewrites each
``MatMul`` with a constant weight into its ``MatMulNBits`` operator (4-bit codes, a scale and a zero point per block
of input channels, dequantized inside the kernel). It rewrites ``MatMul`` nodes only: a ``Linear`` exported with 2-d
input becomes ``Gemm``, which it leaves alone; a transformer's ``Linear`` layers read ``(B, T, C)`` and export as
``MatMul``.

Why not ``torch.ao.quantization``: deprecated in the pinned torch; torchao's int8 CPU kernels were 25x slower than
float32 when tried. ONNX Runtime is the maintained CPU path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from compresskit.checks import (
    check_batch,
    check_bool,
    check_choice,
    check_int,
    check_module,
    check_threads,
    checked,
    dataset_tensors,
)
from compresskit.layers import eval_mode

__all__ = ["MODES", "export_onnx", "quantize_onnx", "NBITS", "quantize_onnx_nbits", "OnnxModel", "int8_models",
           "int4_models"]

MODES = ("dynamic", "static")


@checked
def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike) -> Path:
    """Export ``model`` (eval mode, batch dimension dynamic; for integer token input ``(B, T)`` the sequence length
    too) to an ONNX file; returns its path."""
    check_module("model", model)
    check_batch("example_input", example_input)
    path = Path(path)
    tokens = not example_input.is_floating_point()
    axes = {0: "batch", 1: "sequence"} if tokens else {0: "batch"}
    with eval_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about the legacy TorchScript path
        torch.onnx.export(model, (example_input,), str(path), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": axes, "logits": axes}, dynamo=False)
    return path


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the first batches of a dataset."""

    def __init__(self, dataset: Dataset, batches: int, batch_size: int):
        x = dataset.tensors[0]
        self._batches = iter([{"x": x[i : i + batch_size].numpy()} for i in range(0, min(len(x), batches * batch_size),
                                                                                 batch_size)])

    def get_next(self):
        return next(self._batches, None)


@checked
def quantize_onnx(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, *, mode: str = "dynamic",
                  calibration: Dataset | None = None, batches: int = 8) -> Path:
    """Quantize an ONNX file's weights to int8 (``mode="dynamic"``), or weights and activations (``"static"``,
    needs ``calibration`` data)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    check_choice("mode", mode, MODES)
    check_int("batches", batches, 1)
    if not Path(fp32_path).is_file():
        raise FileNotFoundError(f"no ONNX file at {fp32_path}")
    if calibration is not None:
        dataset_tensors(calibration, "calibration")
    if mode == "static" and calibration is None:
        raise ValueError("mode='static' needs a calibration dataset (a few batches set the activation ranges), got "
                         "calibration=None")
    with _quiet_onnxruntime():  # onnxruntime's "consider pre-processing" advice, on every call
        if mode == "dynamic":
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
        else:
            quantize_static(str(fp32_path), str(int8_path), _Calibration(calibration, batches, 64),
                            quant_format=QuantFormat.QOperator, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)
    return Path(int8_path)


@contextlib.contextmanager
def _quiet_onnxruntime():
    """onnxruntime's quantizers log advice and every node they visit; errors still show."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


NBITS = (2, 4, 8)  # what ONNX Runtime's MatMulNBits quantizer accepts


@checked
def quantize_onnx_nbits(fp32_path: str | os.PathLike, out_path: str | os.PathLike, *, bits: int = 4,
                        block_size: int = 32, symmetric: bool = False, exclude: tuple[str, ...] = ()) -> Path:
    """Weight-only quantization of an ONNX file by ONNX Runtime's own tool (``MatMulNBitsQuantizer``): every
    ``MatMul`` with a constant weight, except the nodes named in ``exclude``, becomes ``MatMulNBits`` with ``bits``-bit
    codes and a scale (and, affine, a zero point) per ``block_size`` input channels."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    check_int("bits", bits, 2, 8)
    if bits not in NBITS:
        raise ValueError(f"bits must be one of {NBITS} (ONNX Runtime's MatMulNBits), got {bits}")
    check_int("block_size", block_size, 16)
    if block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of 2 >= 16 (ONNX Runtime's MatMulNBits), got {block_size}")
    check_bool("symmetric", symmetric)
    if not Path(fp32_path).is_file():
        raise FileNotFoundError(f"no ONNX file at {fp32_path}")
    with _quiet_onnxruntime():
        quantizer = MatMulNBitsQuantizer(str(fp32_path), bits=bits, block_size=block_size, is_symmetric=symmetric,
                                         nodes_to_exclude=list(exclude))
        quantizer.process()
        quantizer.model.save_model_to_file(str(out_path), use_external_data_format=False)
    return Path(out_path)


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call, so ``evaluate`` and ``latency`` work on it as on torch.

    The file is read into memory (``onnx_bytes``) and the session built from those bytes, so the file may be deleted
    afterwards: ``int8_models`` and ``int4_models`` without a folder write into a temporary one and remove it.
    ``path`` is where the file was read from. ``threads`` pins ONNX Runtime's own thread pool (torch's setting does
    not reach it).
    """

    @checked
    def __init__(self, path: str | os.PathLike, *, threads: int = 1):
        super().__init__()
        import onnxruntime as ort

        check_threads(threads)
        if not Path(path).is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = Path(path)
        self.onnx_bytes = self.path.read_bytes()
        self.session = ort.InferenceSession(self.onnx_bytes, options, providers=["CPUExecutionProvider"])

    @property
    def file_bytes(self) -> int:
        """The size of the ONNX file, graph included."""
        return len(self.onnx_bytes)

    @property
    def op_types(self) -> list[str]:
        """The graph's operator types, in order: shows which ops the quantizer really made integer (e.g.
        ``DynamicQuantizeLSTM``, ``MatMulInteger``) and which it left in float (e.g. ``GRU``)."""
        import onnx

        return [node.op_type for node in onnx.load_from_string(self.onnx_bytes).graph.node]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = np.int64 if self.session.get_inputs()[0].type == "tensor(int64)" else np.float32
        out = self.session.run(None, {"x": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype)})[0]
        return torch.from_numpy(out)


@contextlib.contextmanager
def _files_in(folder, kind: str):
    """``folder`` as a Path, or a temporary folder removed when the block ends (the sessions hold the files' bytes:
    nothing is left in the temporary directory)."""
    if folder is not None:
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix=f"compresskit-{kind}-") as temporary:
        yield Path(temporary)


@checked
def int8_models(model: nn.Module, example_input: torch.Tensor, *, calibration: Dataset | None = None,
                folder: str | os.PathLike | None = None, threads: int = 1) -> dict[str, OnnxModel]:
    """``{"onnx fp32", "onnx int8 dynamic", ["onnx int8 static"]}`` sessions of ``model``, files in ``folder`` (when
    None, in a temporary folder that is removed again: the sessions keep the files' bytes). Static quantization is
    included when ``calibration`` is given."""
    check_threads(threads)
    with _files_in(folder, "int8") as where:
        fp32 = export_onnx(model, example_input, where / "model_fp32.onnx")
        paths = {"onnx fp32": fp32,
                 "onnx int8 dynamic": quantize_onnx(fp32, where / "model_int8_dynamic.onnx", mode="dynamic")}
        if calibration is not None:
            paths["onnx int8 static"] = quantize_onnx(fp32, where / "model_int8_static.onnx", mode="static",
                                                      calibration=calibration)
        return {name: OnnxModel(p, threads=threads) for name, p in paths.items()}


@checked
def int4_models(model: nn.Module, example_input: torch.Tensor, *, bits: int = 4, block_size: int = 32,
                symmetric: bool = False, exclude: tuple[str, ...] = ("/head/MatMul",),
                folder: str | os.PathLike | None = None, threads: int = 1) -> dict[str, OnnxModel]:
    """``{"onnx fp32", "onnx int4"}`` sessions of a language model (``example_input``: token ids ``(B, T)``), the
    second quantized by ``quantize_onnx_nbits`` (by default everything but the output head, as in chapter 09), files in
    ``folder`` (when None, in a temporary folder removed again). The key is ``"onnx int{bits}"`` for other bit
    widths."""
    check_threads(threads)
    with _files_in(folder, "int4") as where:
        fp32 = export_onnx(model, example_input, where / "model_fp32.onnx")
        low = quantize_onnx_nbits(fp32, where / f"model_int{bits}.onnx", bits=bits, block_size=block_size,
                                  symmetric=symmetric, exclude=exclude)
        return {"onnx fp32": OnnxModel(fp32, threads=threads), f"onnx int{bits}": OnnxModel(low, threads=threads)}
