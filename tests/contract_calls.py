"""One valid call of every public function and class of compresskit (the contract test, tests/test_contract.py,
changes one argument at a time to a bad value and requires a refusal that names it).

Each entry maps ``"module.name"`` to a function returning the keyword arguments of a small, fast, valid call, made
afresh for every call (models and tensors are never shared between calls). A key ``"*name"`` holds the values of a
``*name`` parameter. Everything is tiny: the whole contract test runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from matplotlib.lines import Line2D
from torch import nn
from torch.utils.data import TensorDataset

from compresskit import (
    bitstream,
    data,
    encode,
    exercises,
    formats,
    golf,
    layers,
    metrics,
    models,
    outliers,
    pipeline,
    quantize,
    recovery,
    timing,
    weightonly,
    widgets,
)


def seeded(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    split = data.load_digits()
    x, y = split.train.tensors
    return x[:48].clone(), y[:48].clone()


def digits() -> TensorDataset:
    x, y = _digits()
    return TensorDataset(x.clone(), y.clone())


def sequences() -> TensorDataset:
    x, y = _digits()
    return TensorDataset(data.as_sequences(x), y.clone())


@functools.cache
def _ids() -> torch.Tensor:
    return data.encode_text(data.read_text()[:6000])


def ids(n: int = 2000) -> torch.Tensor:
    return _ids()[:n].clone()


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return models.mlp((8,))


def lenet() -> nn.Sequential:
    torch.manual_seed(0)
    return models.lenet((4, 8), 16)


def rnn_model() -> nn.Module:
    torch.manual_seed(0)
    return models.rnn_classifier("gru", 8)


def lm() -> nn.Module:
    torch.manual_seed(0)
    return models.transformer_lm(context=16, d_model=16, n_layer=1, n_head=2)


def _corrected() -> nn.Module:
    return recovery.correct_lm(lm(), lm(), 1, calibration=ids(), samples=2)


def _golf_lm() -> nn.Module:
    return weightonly.quantize_lm(lm(), 3, group_size=8)


def residual() -> nn.Module:
    torch.manual_seed(0)
    return models.residual_mlp(8, 8, 2)


def windows(n: int = 8) -> torch.Tensor:
    return data.calibration_windows(ids(), 16, n)


def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(16, 8)


def conv() -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(4, 6, 3, padding=1)


def image() -> torch.Tensor:
    return torch.rand(1, 1, 8, 8)


def hessian(n: int = 16) -> torch.Tensor:
    x = seeded(1, 64, n)
    return x.T @ x


def record(i: int = 0) -> metrics.Record:
    return metrics.Record(name=f"m{i}", accuracy=0.90 + i / 100, params=100, nonzeros=50 + i, bytes=400 + 10 * i,
                          macs=100)


def point(i: int = 0) -> pipeline.Point:
    return pipeline.Point(name=f"p{i}", group="g", steps=["s"], accuracy=0.90 + i / 100, bytes=400 + 10 * i)


def ax():
    from compresskit import plots
    fig, axes = plots.figure()
    return axes[0]


def figure():
    from compresskit import plots
    fig, (a,) = plots.figure()
    a.plot([0, 1], [0, 1])
    a.set_xlabel("x (units)")
    a.set_ylabel("y (units)")
    return fig


def draw(**values):
    from compresskit import plots
    return plots.curves({"a": ([1.0, 2.0], [3.0, 4.0])}, xlabel="x (units)", ylabel="y (units)")


def controls() -> dict:
    return {"x": widgets.slider(1.0, 0.0, 2.0, 0.5, "x")}


def two_four() -> torch.Tensor:
    from compresskit import prune
    w = seeded(0, 4, 8)
    return w * prune.nm_mask(w.abs(), 2, 4)


def _idx(path: Path, array: torch.Tensor) -> Path:
    import struct
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())
    return path


def idx_files(folder: Path, prefix: str = "") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images = torch.arange(4 * 28 * 28).reshape(4, 28, 28) % 256
    return (_idx(folder / f"{prefix}images-idx3-ubyte", images),
            _idx(folder / f"{prefix}labels-idx1-ubyte", torch.tensor([0, 1, 2, 3])))


def mnist_folder(folder: Path) -> Path:
    for prefix in ("train-", "t10k-"):
        idx_files(folder, prefix)
    return folder


def stream_reader() -> bitstream.Reader:
    return bitstream.Reader(bitstream.write_stream([0, 1, 2, 1], 4, True))


def onnx_file(folder: Path) -> Path:
    from compresskit import int8
    return int8.export_onnx(mlp(), image(), folder / "m.onnx")


def groups():
    return weightonly.quantize_groups(seeded(2, 8, 32), 4, group_size=16)


def speed_comparison() -> timing.SpeedComparison:
    return timing.SpeedComparison("a", {"a": [1.0, 1.1, 0.9, 1.0, 1.05], "b": [2.0, 2.1, 1.9, 2.0, 2.05]}, 1)


def cells():
    import nbformat
    return nbformat.v4.new_code_cell("1", metadata={"tags": []})


def notebook():
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [cells()]
    return nb


def kmeans():
    return quantize.kmeans_quantize(seeded(3, 8, 8), 2)


def packed() -> bytes:
    return encode.pack(mlp())


@functools.cache
def _sensitivity() -> dict:
    return weightonly.layer_sensitivity(lm(), ids(200), (3, 4), group_size=16)


def sensitivity() -> dict:
    return {name: dict(v) for name, v in _sensitivity().items()}


# What each call is given; ``tmp`` is a fresh temporary folder for the calls that write files.
CALLS = {
    # ---------------------------------------------------------------------------------------------- answer checks
    "answer_checks.seeded_randn": lambda tmp: {"seed": 0, "*shape": [3, 4], "scale": 1.0},
    # ---------------------------------------------------------------------------------------------- bitstream
    "bitstream.code_lengths": lambda tmp: {"counts": {0: 3, 1: 1, 2: 1}},
    "bitstream.canonical_code": lambda tmp: {"lengths": {0: 1, 1: 2, 2: 2}},
    "bitstream.Writer": lambda tmp: {},
    "bitstream.pack_bits": lambda tmp: {"bits": "0110101"},
    "bitstream.write_stream": lambda tmp: {"symbols": [0, 1, 2, 1], "alphabet": 4, "huffman": True},
    "bitstream.Reader": lambda tmp: {"data": b"\x00\x01", "where": "blob"},
    "bitstream.read_stream": lambda tmp: {"r": stream_reader(), "count": 4, "alphabet": 4, "what": "codes"},
    # ---------------------------------------------------------------------------------------------- cache
    "cache.keyed": lambda tmp: {"hook": lambda m: None, "*key": [1, "a"]},
    "cache.training_key": lambda tmp: {"model": mlp(), "tensors": _digits(), "settings": {"epochs": 1},
                                       "hooks": {}},
    "cache.structure": lambda tmp: {"model": mlp()},
    "cache.path_for": lambda tmp: {"label": "train", "key": "ab12"},
    "cache.load": lambda tmp: {"path": tmp / "missing.pt", "model": mlp()},
    "cache.store": lambda tmp: {"path": tmp / "x.pt", "model": mlp(), "history": [1.0, 0.5]},
    # ---------------------------------------------------------------------------------------------- checks
    "checks.check_bool": lambda tmp: {"name": "flag", "value": True},
    "checks.check_int": lambda tmp: {"name": "count", "value": 3, "low": 1, "high": 5},
    "checks.check_number": lambda tmp: {"name": "rate", "value": 0.5, "low": 0.0, "high": 1.0, "low_open": False,
                                        "high_open": False},
    "checks.check_fraction": lambda tmp: {"name": "share", "value": 0.5, "high_open": False},
    "checks.check_choice": lambda tmp: {"name": "mode", "value": "a", "choices": ("a", "b")},
    "checks.check_module": lambda tmp: {"name": "net", "value": mlp()},
    "checks.check_tensor": lambda tmp: {"name": "w", "value": torch.ones(2), "floating": True, "finite": True},
    "checks.check_finite": lambda tmp: {"name": "w", "tensor": torch.ones(2)},
    "checks.check_seed": lambda tmp: {"value": 3, "name": "seed"},
    "checks.check_text": lambda tmp: {"name": "title", "value": "a title", "empty": True},
    "checks.check_sizes": lambda tmp: {"name": "hidden", "value": (8, 4), "length": 2, "low": 1},
    "checks.check_path": lambda tmp: {"name": "folder", "value": tmp},
    "checks.check_fractions": lambda tmp: {"name": "sparsities", "values": [0.0, 0.5], "empty": False,
                                           "high_open": False},
    "checks.check_named": lambda tmp: {"name": "bits", "value": {"fc": 4}, "kind": int, "empty": False,
                                       "keys": ["fc"]},
    "checks.check_fields": lambda tmp: {"obj": record(), "**ranges": {"accuracy": (0.0, 100.0)}},
    "checks.check_batch": lambda tmp: {"name": "x", "x": torch.ones(2, 3), "batch_size": 4},
    "checks.check_items": lambda tmp: {"name": "points", "values": [1, 2], "kind": int, "empty": True},
    "checks.checked": lambda tmp: {"fn": seeded},
    "checks.check_threads": lambda tmp: {"threads": 1},
    "checks.dataset_tensors": lambda tmp: {"dataset": digits(), "name": "train"},
    # ---------------------------------------------------------------------------------------------- claims
    "claims.above": lambda tmp: {"value": 2.0, "bound": 1.0},
    "claims.below": lambda tmp: {"value": 1.0, "bound": 2.0},
    "claims.check": lambda tmp: {"holds": True, "claim": "A beats B", "measured": "2 vs 1", "margins": {"A": 0.5}},
    "claims.compare": lambda tmp: {"a": 1.0, "b": 2.0, "names": ("A", "B"), "lower_is_better": True, "spread": 0.1,
                                   "unit": "ms", "fmt": ".3f"},
    "claims.within": lambda tmp: {"value": 1.0, "reference": 1.02, "tolerance": 0.05, "name": "A",
                                  "reference_name": "B"},
    "claims.ClaimError": lambda tmp: {"*args": ["a claim"]},
    # ---------------------------------------------------------------------------------------------- data
    "data.Split": lambda tmp: {"train": digits(), "test": digits()},
    "data.stratified_split": lambda tmp: {"labels": _digits()[1].clone(), "test_fraction": 0.25, "seed": 0},
    "data.verified_file": lambda tmp: {"path": None, "default": str(data.DIGITS_FILE), "sha256": data.DIGITS_SHA256,
                                       "what": "digits", "script": "data/make_digits.py", "needs": "nothing"},
    "data.read_digits": lambda tmp: {"path": None},
    "data.load_digits": lambda tmp: {"seed": 0, "test_fraction": 0.2},
    "data.load_idx": lambda tmp: {"images_path": idx_files(tmp)[0], "labels_path": idx_files(tmp)[1]},
    "data.load_mnist": lambda tmp: {"root": mnist_folder(tmp), "variant": "mnist"},
    "data.as_sequences": lambda tmp: {"images": _digits()[0][:4].clone()},
    "data.TextSplit": lambda tmp: {"train": ids(100), "val": ids(50), "test": ids(50)},
    "data.encode_text": lambda tmp: {"text": "hello"},
    "data.decode_text": lambda tmp: {"ids": ids(10)},
    "data.read_text": lambda tmp: {"path": None},
    "data.windows": lambda tmp: {"ids": ids(100), "context": 16, "stride": 8},
    "data.check_ids": lambda tmp: {"ids": ids(10), "name": "calibration"},
    "data.calibration_windows": lambda tmp: {"ids": ids(200), "context": 16, "samples": 4, "seed": 0},
    # ---------------------------------------------------------------------------------------------- distill
    "distill.soft_targets": lambda tmp: {"logits": seeded(0, 4, 10), "temperature": 2.0},
    "distill.kd_loss": lambda tmp: {"student_logits": seeded(0, 4, 10), "teacher_logits": seeded(1, 4, 10),
                                    "labels": torch.tensor([1, 2, 3, 4]), "temperature": 2.0, "alpha": 0.5},
    "distill.logit_loss": lambda tmp: {"student_logits": seeded(0, 4, 10), "teacher_logits": seeded(1, 4, 10),
                                       "labels": torch.tensor([1, 2, 3, 4]), "alpha": 0.5, "centre": True},
    "distill.distill": lambda tmp: {"student": mlp(), "teacher": mlp(), "dataset": digits(), "temperature": 2.0,
                                    "alpha": 0.5, "epochs": 1, "lr": 1e-3, "loss": "softmax"},
    "distill.Comparison": lambda tmp: {"labels_only": [(90.0, 1.0)], "distilled": [(91.0, 1.0)], "student": mlp()},
    "distill.labelled_fraction": lambda tmp: {"dataset": digits(), "fraction": 0.5, "seed": 0},
    "distill.compare_with_labels": lambda tmp: {"make_student": mlp, "teacher": mlp(), "dataset": digits(),
                                                "test": digits(), "seeds": [0, 1], "temperature": 2.0, "alpha": 0.5,
                                                "epochs": 1, "lr": 1e-3, "fraction": 1.0, "loss": "softmax"},
    # ---------------------------------------------------------------------------------------------- encode
    "encode.huffman_code": lambda tmp: {"counts": {"a": 3, "b": 1, "c": 1}},
    "encode.pack": lambda tmp: {"model": mlp(), "huffman": True, "gap_bits": None, "bias_bits": 32},
    "encode.describe": lambda tmp: {"blob": packed()},
    "encode.unpack": lambda tmp: {"blob": packed(), "like": mlp()},
    "encode.framing_bytes": lambda tmp: {"model": mlp()},
    "encode.pack_two_four": lambda tmp: {"w": two_four()},
    "encode.unpack_two_four": lambda tmp: {"blob": encode.pack_two_four(two_four()), "shape": (4, 8),
                                           "dtype": torch.float32},
    # ---------------------------------------------------------------------------------------------- exercises
    "exercises.check": lambda tmp: {"name": "00-1", "answer": 5.0, "expected": 5.0, "rel_tol": 1e-6, "abs_tol": 0.0,
                                    "hint": "count them"},
    "exercises.CodingExercise": lambda tmp: {"signature": "f(x)", "cases": lambda: [{"what": "one", "x": 1.0}],
                                             "solve": lambda x: 2 * x, "differs": lambda got, expected, case: None,
                                             "hint": "double it", "mistakes": {}},
    "exercises.check_code": lambda tmp: {"name": "01-code", "fn": exercises.CODING["01-code"].solve},
    # ---------------------------------------------------------------------------------------------- int8
    "int8.export_onnx": lambda tmp: {"model": mlp(), "example_input": image(), "path": tmp / "m.onnx"},
    "int8.quantize_onnx": lambda tmp: {"fp32_path": onnx_file(tmp), "int8_path": tmp / "q.onnx", "mode": "dynamic",
                                       "calibration": None, "batches": 2},
    "int8.quantize_onnx_nbits": lambda tmp: {"fp32_path": onnx_file(tmp), "out_path": tmp / "q4.onnx", "bits": 4,
                                             "block_size": 32, "symmetric": False, "exclude": ()},
    "int8.OnnxModel": lambda tmp: {"path": onnx_file(tmp), "threads": 1},
    "int8.int8_models": lambda tmp: {"model": mlp(), "example_input": image(), "calibration": digits(),
                                     "folder": tmp, "threads": 1},
    "int8.int4_models": lambda tmp: {"model": lm(), "example_input": windows(1), "bits": 4, "block_size": 32,
                                     "symmetric": False, "exclude": ("/head/MatMul",), "folder": tmp, "threads": 1},
    # ---------------------------------------------------------------------------------------------- layers
    "layers.compressible_names": lambda tmp: {"module": linear()},
    "layers.pruning_hook": lambda tmp: {"module": linear(), "name": "weight"},
    "layers.stored_tensor": lambda tmp: {"module": linear(), "name": "weight"},
    "layers.mask_of": lambda tmp: {"module": linear(), "name": "weight"},
    "layers.effective_weight": lambda tmp: {"module": linear(), "name": "weight"},
    "layers.refresh_pruned": lambda tmp: {"model": mlp()},
    "layers.named_tensors": lambda tmp: {"model": mlp()},
    "layers.is_compressible": lambda tmp: {"tensor": seeded(0, 4, 4)},
    "layers.Site": lambda tmp: {"name": "0", "module": linear(), "tensor": "weight"},
    "layers.sites": lambda tmp: {"model": mlp(), "tensors": "weight"},
    "layers.require_sites": lambda tmp: {"model": mlp(), "tensors": "weight"},
    "layers.unique_sites": lambda tmp: {"found": layers.sites(mlp())},
    "layers.copy_model": lambda tmp: {"model": mlp()},
    "layers.replace_module": lambda tmp: {"model": mlp(), "name": "1", "new": nn.Linear(64, 8)},
    "layers.placed_like": lambda tmp: {"new": linear(), "old": linear(), "training": None},
    "layers.device_dtype": lambda tmp: {"w": seeded(0, 2)},
    "layers.eval_mode": lambda tmp: {"*models": [mlp()]},
    "layers.inputs_of": lambda tmp: (lambda m: {"model": m, "layer": m[3], "x": _digits()[0][:4].clone(),
                                                "batch_size": 2})(mlp()),
    "layers.transformer_linears": lambda tmp: {"model": lm()},
    "layers.device_of": lambda tmp: {"model": mlp()},
    # ---------------------------------------------------------------------------------------------- lecture
    "lecture.in_lecture": lambda tmp: {"cell": cells()},
    "lecture.lecture_cells": lambda tmp: {"notebook": notebook()},
    "lecture.chapter_path": lambda tmp: {"chapter": "02"},
    "lecture.write_lecture_notebooks": lambda tmp: {"folder": tmp / "lecture"},
    "lecture.voila_config": lambda tmp: {"warm": ["02"]},
    # ---------------------------------------------------------------------------------------------- legible
    "legible.fit_titles": lambda tmp: {"fig": figure(), "margin": 4.0},
    "legible.overflow": lambda tmp: {"fig": figure()},
    "legible.problems": lambda tmp: {"fig": figure()},
    "legible.legend_below": lambda tmp: {"fig": figure(), "handles": [Line2D([], [])], "labels": ["a line"],
                                         "ncol": 2, "gap": 0.1},
    # ---------------------------------------------------------------------------------------------- LM exercises
    "lm_exercise_cases.obs_update": lambda tmp: {"w": seeded(0, 4, 6), "q": seeded(1, 4), "j": 1,
                                                 "hinv": torch.linalg.cholesky(torch.linalg.inv(hessian(6) +
                                                                                               torch.eye(6)),
                                                                               upper=True)},
    # ---------------------------------------------------------------------------------------------- lowrank
    "lowrank.rank_for_energy": lambda tmp: {"singular_values": torch.tensor([3.0, 2.0, 1.0]), "energy": 0.9},
    "lowrank.break_even_rank": lambda tmp: {"out_features": 8, "in_features": 16},
    "lowrank.svd_linear": lambda tmp: {"layer": linear(), "rank": 4, "svd": None},
    "lowrank.svd_of": lambda tmp: {"layer": linear()},
    "lowrank.tucker2": lambda tmp: {"w": seeded(0, 6, 4, 3, 3), "ranks": (3, 2), "hooi_iters": 1},
    "lowrank.tucker_rank_limits": lambda tmp: {"conv": conv()},
    "lowrank.tucker_conv": lambda tmp: {"conv": conv(), "ranks": (3, 2), "hooi_iters": 1},
    "lowrank.cp_rank_limit": lambda tmp: {"shape": (6, 4, 3, 3)},
    "lowrank.cp_als": lambda tmp: {"w": seeded(0, 6, 4, 3, 3), "rank": 3, "iters": 5, "seed": 0, "tol": 1e-7},
    "lowrank.cp_reconstruct": lambda tmp: {"factors": [seeded(i, n, 2) for i, n in enumerate((6, 4, 3, 3))]},
    "lowrank.cp_conv": lambda tmp: {"conv": conv(), "rank": 3, "iters": 5, "seed": 0},
    "lowrank.svd_rnn": lambda tmp: {"rnn": rnn_model().rnn, "rank_ih": 4, "rank_hh": 4},
    "lowrank.low_rank": lambda tmp: {"model": mlp(), "rank": 2, "energy": None, "only_if_smaller": True,
                                     "skip_last": True, "inplace": False},
    # ---------------------------------------------------------------------------------------------- metrics
    "metrics.count_params": lambda tmp: {"model": mlp()},
    "metrics.count_nonzero": lambda tmp: {"model": mlp()},
    "metrics.relative_index_entries": lambda tmp: {"w": seeded(0, 4, 8), "index_bits": 4},
    "metrics.tensor_bits": lambda tmp: {"w": seeded(0, 4, 8), "format": "dense", "value_bits": 32, "index_bits": 32,
                                        "codebook_bits": 0},
    "metrics.storage_bytes": lambda tmp: {"model": mlp(), "format": "dense", "value_bits": None, "index_bits": 32,
                                          "codebook_bits": 0},
    "metrics.macs": lambda tmp: {"model": mlp(), "input_shape": (1, 8, 8)},
    "metrics.Record": lambda tmp: {"name": "m", "accuracy": 0.9, "params": 10, "nonzeros": 5, "bytes": 40,
                                   "macs": 10, "latency_ms": None, "group": "", "extra": {}},
    "metrics.measure": lambda tmp: {"model": mlp(), "dataset": digits(), "name": "m", "group": "", "timed": False,
                                    "batch_size": 1},
    "metrics.torch_file_bytes": lambda tmp: {"model": mlp()},
    "metrics.LMScore": lambda tmp: {"nll": 1.5, "tokens": 100, "context": 16, "stride": 8},
    "metrics.perplexity": lambda tmp: {"model": lm(), "ids": ids(200), "context": 16, "stride": 8, "batch_size": 8},
    "metrics.Fidelity": lambda tmp: {"kl_mean": 0.01, "kl_median": 0.005, "kl_p99": 0.1, "kl_p999": 0.3, "top1": 0.95,
                                     "log_ppl_ratio": 0.01, "tokens": 100},
    "metrics.fidelity": lambda tmp: {"reference": lm(), "model": lm(), "ids": ids(200), "context": 16, "stride": 8,
                                     "batch_size": 8},
    "metrics.sample_text": lambda tmp: {"model": lm(), "prompt": "The ", "length": 8, "seed": 0, "temperature": 0.8},
    "metrics.sparse_lm_bytes": lambda tmp: {"model": lm(), "format": "bitmask", "value_bits": 32},
    # ---------------------------------------------------------------------------------------------- models
    "models.mlp": lambda tmp: {"hidden": (8,), "in_features": 64, "num_classes": 10},
    "models.lenet": lambda tmp: {"channels": (4, 8), "hidden": 16, "num_classes": 10},
    "models.ResidualBlock": lambda tmp: {"width": 8, "hidden": 8},
    "models.ResidualMLP": lambda tmp: {"width": 8, "hidden": 8, "blocks": 2, "in_features": 64, "num_classes": 10},
    "models.residual_mlp": lambda tmp: {"width": 8, "hidden": 8, "blocks": 2, "in_features": 64, "num_classes": 10},
    "models.RNNClassifier": lambda tmp: {"cell": "gru", "input_size": 8, "hidden_size": 8, "num_layers": 1,
                                         "num_classes": 10},
    "models.rnn_classifier": lambda tmp: {"cell": "gru", "hidden_size": 8, "input_size": 8, "num_layers": 1,
                                          "num_classes": 10},
    "models.Attention": lambda tmp: {"d_model": 16, "n_head": 2, "head_dim": 8},
    "models.Block": lambda tmp: {"d_model": 16, "n_head": 2, "mlp_ratio": 4},
    "models.TransformerLM": lambda tmp: {"vocab": 96, "context": 16, "d_model": 16, "n_layer": 1, "n_head": 2},
    "models.transformer_lm": lambda tmp: {"vocab": 96, "context": 16, "d_model": 16, "n_layer": 1, "n_head": 2},
    # ---------------------------------------------------------------------------------------------- pipeline
    "pipeline.Stage": lambda tmp: {"name": "pruned", "accuracy": 0.9, "bytes": 100},
    "pipeline.deep_compression": lambda tmp: {"model": mlp(), "dataset": digits(), "test": digits(),
                                              "sparsity": 0.5, "steps": 1, "epochs_per_step": 1, "bits": 3,
                                              "kmeans_epochs": 1, "kmeans_lr": 3e-4, "bias_bits": 16, "seed": 0,
                                              "progress": False},
    "pipeline.DeepCompression": lambda tmp: {"baseline": mlp(), "pruned": mlp(), "shared": mlp(), "blob": packed(),
                                             "unpacked": mlp(), "stages": [pipeline.Stage("x", 0.9, 100)],
                                             "recipe": ["prune"]},
    "pipeline.technique_points": lambda tmp: {"baseline": mlp(), "dataset": digits(), "test": digits(), "seed": 0,
                                              "progress": False, "deep": None},
    "pipeline.layer_table": lambda tmp: {"model": mlp(), "blob": packed()},
    "pipeline.Point": lambda tmp: {"name": "p", "group": "g", "steps": ["s"], "accuracy": 0.9, "bytes": 100,
                                   "model": None, "file": "pack", "latency_ms": None},
    "pipeline.pareto_front": lambda tmp: {"points": [point(0), point(1)], "cost": "bytes"},
    "pipeline.best_under": lambda tmp: {"points": [point(0), point(1)], "budget": 405.0},
    # ---------------------------------------------------------------------------------------------- plots
    "plots.projector": lambda tmp: {"on": False},
    "plots.accuracy_vs_size": lambda tmp: {"records": [record(0), record(1)], "highlight": 0, "ax": None,
                                           "title": "t", "annotate": True, "ylim": None},
    "plots.label_points": lambda tmp: {"ax": ax(), "labels": [("a", 0.5, 0.5)], "fontsize": 10.0, "color": "black"},
    "plots.digit_grid": lambda tmp: {"images": _digits()[0][:4].clone(), "labels": _digits()[1][:4].clone(), "n": 4,
                                     "cols": 2, "title": "t"},
    "plots.bars": lambda tmp: {"labels": ["a", "b"], "series": {"s": [1.0, 2.0]}, "ylabel": "y (units)",
                               "title": "t", "ax": None, "log": False},
    "plots.vlines": lambda tmp: {"ax": ax(), "xs": [0.5], "ymin": 0.0, "ymax": 1.0},
    "plots.png": lambda tmp: {"fig": figure()},
    "plots.plain_log": lambda tmp: {"axis": ax().yaxis},
    "plots.plot_beside_text": lambda tmp: {"width": 5.6, "height": 4.8, "share": 0.6},
    "plots.figure": lambda tmp: {"ncols": 1, "width": 6.0, "height": 4.6, "nrows": 1, "fit": False},
    "plots.weight_histogram": lambda tmp: {"w": seeded(0, 8, 8), "kept": None, "ax": None, "bins": 20, "title": "t",
                                           "log": True},
    "plots.pixel_map": lambda tmp: {"values": torch.rand(4, 4), "ax": None, "title": "t", "label": "l", "vmax": None,
                                    "fmt": "{:.0f}"},
    "plots.curves": lambda tmp: {"series": {"a": ([1.0, 2.0], [3.0, 4.0])}, "xlabel": "x (u)", "ylabel": "y (u)",
                                 "title": "t", "ax": None, "logx": False, "logy": False, "marker": "o",
                                 "hline": None, "hline_label": ""},
    "plots.errorbars": lambda tmp: {"series": {"a": ([1.0, 2.0], [3.0, 4.0], [0.1, 0.2])}, "xlabel": "x (u)",
                                    "ylabel": "y (u)", "title": "t", "ax": None, "logx": False, "styles": None,
                                    "dodge": 0.03, "hline": None, "hline_label": ""},
    "formats.e2m1_round": lambda tmp: {"x": torch.randn(8)},
    "formats.e4m3_round": lambda tmp: {"x": torch.randn(8)},
    "formats.fake_quantize": lambda tmp: {"w": torch.randn(2, 64), "format": "nf4", "block_size": 32},
    "formats.format_bits": lambda tmp: {"format": "nf4", "numel": 128, "block_size": 64},
    "formats.pack": lambda tmp: {"w": torch.randn(2, 64), "format": "ternary", "block_size": 32},
    "formats.unpack": lambda tmp: {"blob": formats.pack(torch.ones(2, 64), "nf4"), "shape": (2, 64), "format": "nf4",
                                   "block_size": 64},
    "formats.quantize_lm": lambda tmp: {"model": lm(), "format": "nvfp4", "block_size": 16, "inplace": False},
    "formats.lm_bytes": lambda tmp: {"model": lm(), "format": "mxfp4", "block_size": 32},
    "kvquant.minmax_quantize": lambda tmp: {"x": seeded(0, 3, 8), "bits": 2, "dim": -1},
    "kvquant.quantize_keys": lambda tmp: {"k": seeded(0, 1, 2, 8, 4), "bits": 2, "group": 4},
    "kvquant.quantize_values": lambda tmp: {"v": seeded(0, 1, 2, 8, 4), "bits": 2},
    "kvquant.KIVIQuantizer": lambda tmp: {"bits": 2, "window": 8, "group": 4, "keys": "channel"},
    "kvquant.quantize_kv": lambda tmp: {"model": lm(), "bits": 2, "window": 8, "group": 4, "keys": "token",
                                        "inplace": False},
    "kvquant.kv_bytes": lambda tmp: {"model": lm(), "tokens": 20, "bits": 2, "window": 8, "group": 4, "batch": 1},
    "recovery.lowrank_correction": lambda tmp: {"w": seeded(0, 4, 8), "q": seeded(1, 4, 8), "x": seeded(2, 20, 8),
                                                "rank": 2, "damp": 0.01},
    "recovery.CorrectedLinear": lambda tmp: {"layer": nn.Linear(8, 4), "b": seeded(0, 4, 2), "a": seeded(1, 2, 8)},
    "recovery.correct_lm": lambda tmp: {"compressed": lm(), "reference": lm(), "rank": 2, "calibration": ids(),
                                        "samples": 2, "seed": 0, "damp": 0.01, "inplace": False},
    "recovery.correction_bytes": lambda tmp: {"model": lm()},
    "hessian.hessian_of": lambda tmp: {"x": seeded(0, 20, 8)},
    "hessian.inverse_hessian_factor": lambda tmp: {"hessian": torch.eye(8) * 2.0, "damp": 0.01},
    "recovery.tune_corrections": lambda tmp: {"corrected": _corrected(), "reference": lm(), "ids": ids(),
                                              "steps": 1, "batch_size": 2, "lr": 1e-3, "seed": 0, "progress": False,
                                              "inplace": False},
    "golf.grid_of": lambda tmp: {"w": weightonly.fake_quantize_groups(seeded(0, 4, 8), 3, group_size=4), "bits": 3,
                                 "group_size": 4},
    "golf.pack": lambda tmp: {"model": _golf_lm(), "bits": 3, "group_size": 8, "others": 8},
    "golf.unpack": lambda tmp: {"blob": golf.pack(_golf_lm(), 3, group_size=8), "like": _golf_lm()},
    "golf.Entry": lambda tmp: {"name": "a", "recipe": "r", "bytes": 10, "bits_per_char": 1.5, "tokens": 100},
    "golf.score": lambda tmp: {"name": "a", "model": _golf_lm(), "ids": ids(200), "bits": 3, "group_size": 8,
                               "others": 8, "recipe": "r"},
    "golf.board": lambda tmp: {"entries": [golf.Entry("a", "r", 10, 1.5, 100)], "budget": 100},
    "sparsegpt.sparsegpt": lambda tmp: {"w": seeded(0, 4, 8), "hessian": torch.eye(8) * 2.0, "sparsity": 0.5,
                                        "pattern": None, "mask": None, "bits": None, "damp": 0.01, "block_size": 4},
    "sparsegpt.layer_error": lambda tmp: {"w": seeded(0, 4, 8), "new": seeded(1, 4, 8), "x": seeded(2, 5, 8)},
    "sparsegpt.prune_lm": lambda tmp: {"model": lm(), "sparsity": 0.5, "pattern": None, "bits": None,
                                       "calibration": ids(), "samples": 2, "seed": 0, "damp": 0.01, "block_size": 8,
                                       "inplace": False},
    "outliers.input_absmax": lambda tmp: {"model": lm(), "ids": ids(), "samples": 2, "seed": 0},
    "outliers.kurtosis": lambda tmp: {"x": seeded(0, 3, 8)},
    "outliers.plant_outliers": lambda tmp: {"model": lm(), "channels": [1, 2], "factor": 10.0, "inplace": False},
    "outliers.smooth_scales": lambda tmp: {"act_absmax": torch.rand(8) + 0.1, "weights": [seeded(0, 4, 8)],
                                           "alpha": 0.5},
    "outliers.smooth": lambda tmp: {"model": lm(), "calibration": ids(), "alpha": 0.5, "samples": 2, "seed": 0,
                                    "inplace": False},
    "outliers.hadamard": lambda tmp: {"n": 8, "seed": 1},
    "outliers.RMSNorm": lambda tmp: {"eps": 1e-5},
    "outliers.RotatedInput": lambda tmp: {"linear": nn.Linear(8, 4), "rotation": outliers.hadamard(8, seed=0)},
    "outliers.rotate": lambda tmp: {"model": lm(), "seed": 0, "online": True, "inplace": False},
    "outliers.absmax_quantize": lambda tmp: {"x": seeded(0, 3, 8), "bits": 4, "dim": -1},
    "outliers.WAQuantLinear": lambda tmp: {"linear": nn.Linear(8, 4), "w_bits": 4, "a_bits": 8},
    "outliers.quantize_wa": lambda tmp: {"model": lm(), "w_bits": 4, "a_bits": 8, "inplace": False},
    "plotdata.check_series": lambda tmp: {"series": {"a": ([1.0, 2.0], [3.0, 4.0], [0.1, (3.5, 4.5)])}, "parts": 3,
                                          "length": 2},
    "plotdata.check_points": lambda tmp: {"name": "points", "points": [point(0)], "empty": False},
    "plotdata.error_bars": lambda tmp: {"name": "a", "ys": [3.0, 4.0], "errors": [0.1, (3.5, 4.5)]},
    "plots.dodged": lambda tmp: {"xs": [1.0, 2.0], "index": 1, "count": 4, "dodge": 0.03},
    "plots.pareto": lambda tmp: {"points": [point(0), point(1)], "cost": "bytes", "front": None, "highlight": None,
                                 "budget": None, "ax": None, "title": "t"},
    "plots.sample_box": lambda tmp: {"ax": ax(), "text": "hello", "title": "sample", "width": 44, "lines": 14},
    "plots.perplexity_vs_size": lambda tmp: {"series": {"a": ([1.0, 2.0], [3.0, 4.0])}, "baseline": 3.0,
                                             "highlight": None, "sample": None, "ax": None, "title": "t",
                                             "ymax": None},
    # ---------------------------------------------------------------------------------------------- prune
    "prune.prunable": lambda tmp: {"model": mlp(), "tensors": "weight"},
    "prune.magnitude_mask": lambda tmp: {"w": seeded(0, 4, 8), "sparsity": 0.5, "threshold": None},
    "prune.magnitude_prune": lambda tmp: {"model": mlp(), "sparsity": 0.5, "threshold": None, "scope": "layer",
                                          "tensors": None, "inplace": False},
    "prune.freeze_zeros": lambda tmp: {"model": mlp(), "inplace": False},
    "prune.finalize": lambda tmp: {"model": mlp()},
    "prune.is_pruned": lambda tmp: {"model": mlp()},
    "prune.LayerSparsity": lambda tmp: {"name": "0", "shape": (4, 4), "numel": 16, "nonzero": 8},
    "prune.SparsityReport": lambda tmp: {},
    "prune.sparsity_report": lambda tmp: {"model": mlp()},
    "prune.sensitivity_scan": lambda tmp: {"model": mlp(), "dataset": digits(), "sparsities": (0.0, 0.5)},
    "prune.cubic_schedule": lambda tmp: {"final_sparsity": 0.8, "steps": 3, "initial_sparsity": 0.0},
    "prune.iterative_prune": lambda tmp: {"model": mlp(), "dataset": digits(), "final_sparsity": 0.5, "steps": 1,
                                          "epochs_per_step": 1, "lr": 1e-3, "scope": "layer",
                                          "test": None, "progress": False},
    "prune.wanda_scores": lambda tmp: {"w": seeded(0, 4, 8), "input_norms": seeded(1, 8).abs()},
    "prune.row_mask": lambda tmp: {"scores": seeded(0, 4, 8).abs(), "sparsity": 0.5},
    "prune.nm_mask": lambda tmp: {"scores": seeded(0, 4, 8).abs(), "n": 2, "m": 4},
    "prune.input_norms": lambda tmp: {"module": lm(), "linears": [lm().blocks[0].fc], "x": windows(2),
                                      "batch_size": 2},
    "prune.prune_lm": lambda tmp: {"model": lm(), "sparsity": 0.5, "method": "wanda", "pattern": None,
                                   "calibration": ids(400), "samples": 4, "seed": 0, "inplace": False},
    # ---------------------------------------------------------------------------------------------- qat
    "qat.qat": lambda tmp: {"model": mlp(), "dataset": digits(), "bits": 4, "method": "uniform", "symmetric": True,
                            "per_channel": True, "epochs": 1, "lr": 1e-3},
    "qat.kmeans_finetune": lambda tmp: {"model": mlp(), "dataset": digits(), "bits": 2, "epochs": 1, "lr": 1e-3},
    # ---------------------------------------------------------------------------------------------- quantize
    "quantize.code_range": lambda tmp: {"bits": 4, "symmetric": True},
    "quantize.qparams": lambda tmp: {"w": seeded(0, 4, 8), "bits": 4, "symmetric": True, "per_channel": False,
                                     "axis": 0, "mask": None},
    "quantize.quantize_tensor": lambda tmp: {"w": seeded(0, 4, 8), "bits": 4, "symmetric": True,
                                             "per_channel": False, "axis": 0, "mask": None},
    "quantize.dequantize": lambda tmp: dict(zip(("q", "scale", "zero_point"),
                                                quantize.quantize_tensor(seeded(0, 4, 8), 4))),
    "quantize.fake_quantize": lambda tmp: {"w": seeded(0, 4, 8), "bits": 4, "symmetric": True, "per_channel": False,
                                           "axis": 0, "mask": None},
    "quantize.ste_fake_quantize": lambda tmp: {"w": seeded(0, 4, 8), "bits": 4, "symmetric": True,
                                               "per_channel": False, "axis": 0, "mask": None},
    "quantize.kmeans_quantize": lambda tmp: {"w": seeded(0, 4, 8), "bits": 2, "init": "linear", "max_iter": 50,
                                             "mask": None},
    "quantize.centroid_gradients": lambda tmp: {"grad": seeded(0, 8, 8), "indices": kmeans()[1], "k": 4},
    "quantize.binarize": lambda tmp: {"w": seeded(0, 4, 8), "mask": None},
    "quantize.ste_binarize": lambda tmp: {"w": seeded(0, 4, 8), "mask": None},
    "quantize.check_method": lambda tmp: {"method": "uniform", "bits": 4, "allowed": ("uniform", "kmeans", "binary"),
                                          "name": "bits"},
    "quantize.quantize_model": lambda tmp: {"model": mlp(), "bits": 4, "method": "uniform", "symmetric": True,
                                            "per_channel": False, "tensors": None, "inplace": False},
    "quantize.storage_kwargs": lambda tmp: {"method": "uniform", "bits": 4, "per_channel": False, "symmetric": True},
    "quantize.ActivationQuant": lambda tmp: {"bits": 8},
    "quantize.quantize_activations": lambda tmp: {"model": mlp(), "bits": 8, "calibration": digits(), "batches": 2,
                                                  "batch_size": 8},
    # ---------------------------------------------------------------------------------------------- rnn
    "rnn.UnrolledRNN": lambda tmp: {"mode": "GRU", "input_size": 8, "hidden_size": 8, "num_layers": 1,
                                    "bias": True, "batch_first": True, "dropout": 0.0},
    "rnn.recurrent_layers": lambda tmp: {"model": rnn_model()},
    "rnn.hidden_states": lambda tmp: {"model": rnn_model(), "x": sequences().tensors[0][:4]},
    "rnn.hidden_drift": lambda tmp: {"reference": rnn_model(), "compressed": rnn_model(),
                                     "x": sequences().tensors[0][:4]},
    "rnn.state_drift": lambda tmp: {"a": seeded(0, 4, 8, 8), "b": seeded(1, 4, 8, 8)},
    # ---------------------------------------------------------------------------------------------- sparsify
    "sparsify.l1_penalty": lambda tmp: {"model": mlp(), "lam": 1e-4},
    "sparsify.l2_penalty": lambda tmp: {"model": mlp(), "lam": 1e-4},
    "sparsify.soft_threshold": lambda tmp: {"w": seeded(0, 4, 8), "threshold": 0.1},
    "sparsify.proximal_l1_step": lambda tmp: {"model": mlp(), "threshold": 0.01},
    "sparsify.exact_zero_fraction": lambda tmp: {"model": mlp()},
    "sparsify.train_sparse": lambda tmp: {"model": mlp(), "dataset": digits(), "method": "proximal", "lam": 1e-4,
                                          "epochs": 1, "lr": 1e-2, "optimizer": "sgd"},
    # ---------------------------------------------------------------------------------------------- structured
    "structured.channel_scores": lambda tmp: {"weight": seeded(0, 6, 4, 3, 3), "norm": 1},
    "structured.prune_channels": lambda tmp: {"model": lenet(), "amount": 0.5, "norm": 1},
    "structured.prune_units": lambda tmp: {"model": rnn_model(), "amount": 0.5, "norm": 1},
    "structured.remove_blocks": lambda tmp: {"model": residual(), "indices": [0]},
    "structured.block_importance": lambda tmp: {"model": residual(), "calibration": digits(), "method": "skip"},
    "structured.block_influence": lambda tmp: {"model": lm(), "windows": windows(2)},
    "structured.prune_blocks": lambda tmp: {"model": residual(), "count": 1, "calibration": digits(),
                                            "method": "skip"},
    "structured.thin_blocks": lambda tmp: {"model": residual(), "amount": 0.5, "norm": 1},
    "structured.head_importance": lambda tmp: {"model": lm(), "windows": windows(2), "method": "mask"},
    "structured.remove_heads": lambda tmp: {"model": lm(), "heads": {0: [1]}},
    "structured.prune_heads": lambda tmp: {"model": lm(), "count": 1, "windows": windows(2), "method": "mask",
                                           "scores": None},
    # ---------------------------------------------------------------------------------------------- timing
    "timing.Timing": lambda tmp: {"ms": 1.0, "threads": 1, "repeats": 5, "q1_ms": 0.9, "q3_ms": 1.1},
    "timing.latency": lambda tmp: {"model": mlp(), "example_input": image(), "repeats": 3, "warmup": 1,
                                   "threads": 1},
    "timing.median_interval": lambda tmp: {"values": [1.0, 1.2, 0.9, 1.1, 1.0], "confidence": 0.95},
    "timing.SpeedComparison": lambda tmp: {"reference": "a", "times_ms": {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.9]},
                                           "threads": 1, "resolution": 0.15, "confidence": 0.95, "drift": 0.03},
    "timing.compare": lambda tmp: {"models": {"a": mlp(), "b": mlp()}, "example_input": image(), "reference": "a",
                                   "rounds": 3, "max_rounds": 3, "warmup": 1, "threads": 1, "block_ms": 0.5},
    "timing.sparse_matmul_timings": lambda tmp: {"size": 16, "batch": 2, "sparsities": (0.5,), "seed": 0,
                                                 "threads": 1},
    "timing.SparseCSR": lambda tmp: {"model": mlp()},
    # ---------------------------------------------------------------------------------------------- train
    "train.set_seed": lambda tmp: {"seed": 0},
    "train.cross_entropy": lambda tmp: {"model": mlp(), "x": _digits()[0][:4].clone(), "y": _digits()[1][:4].clone()},
    "train.lm_loss": lambda tmp: {"model": lm(), "x": windows(2), "y": windows(2)},
    "train.History": lambda tmp: {"losses": [1.0, 0.5], "loaded_from": None},
    "train.train": lambda tmp: {"model": mlp(), "dataset": digits(), "epochs": 1, "lr": 1e-3, "batch_size": 16,
                                "optimizer": "adam", "weight_decay": 0.0, "objective": None, "penalty": None,
                                "after_step": None, "seed": 0, "progress": False, "desc": "train"},
    "train.predict": lambda tmp: {"model": mlp(), "dataset": digits(), "batch_size": 16},
    "train.evaluate": lambda tmp: {"model": mlp(), "dataset": digits()},
    "train.Recipe": lambda tmp: {"make": mlp, "epochs": 1, "lr": 1e-3, "batch_size": 16, "objective": None},
    "train.fit_baseline": lambda tmp: {"name": "mlp", "dataset": digits(), "seed": 0, "progress": False},
    "train.shipped_baseline": lambda tmp: {"name": "transformer"},
    # ---------------------------------------------------------------------------------------------- weightonly
    "weightonly.group_params": lambda tmp: {"w": seeded(0, 8, 16), "bits": 4, "symmetric": False},
    "weightonly.quantize_groups": lambda tmp: {"w": seeded(0, 8, 32), "bits": 4, "group_size": 16,
                                               "symmetric": False},
    "weightonly.dequantize_groups": lambda tmp: dict(zip(("q", "scale", "zero"), groups())),
    "weightonly.fake_quantize_groups": lambda tmp: {"w": seeded(0, 8, 32), "bits": 4, "group_size": 16,
                                                    "symmetric": False},
    "weightonly.gptq": lambda tmp: {"w": seeded(0, 8, 16), "hessian": hessian(), "bits": 4, "group_size": 8,
                                    "symmetric": False, "damp": 0.01, "block_size": 8, "act_order": False,
                                    "group_scales": "block start"},
    "weightonly.awq_scale": lambda tmp: {"ws": [seeded(0, 8, 16)], "x": seeded(1, 32, 16), "bits": 4,
                                         "group_size": 8, "symmetric": False, "grid": 4},
    "weightonly.awq_fold": lambda tmp: {"model": lm(), "bits": 4, "calibration": ids(400), "group_size": 16,
                                        "symmetric": False, "samples": 4, "seed": 0, "grid": 4, "inplace": False},
    "weightonly.quantize_lm": lambda tmp: {"model": lm(), "bits": 4, "group_size": 16, "symmetric": False,
                                           "method": "gptq", "calibration": ids(400), "samples": 4, "seed": 0,
                                           "damp": 0.01, "act_order": False, "grid": 4, "inplace": False},
    "weightonly.Setting": lambda tmp: {"bits": 4, "group_size": 16, "symmetric": False},
    "weightonly.settings_for": lambda tmp: {"model": lm(), "bits": 4, "group_size": 16, "symmetric": False},
    "weightonly.layer_bytes": lambda tmp: {"layer": linear(), "setting": weightonly.Setting(4, 8)},
    "weightonly.lm_bytes": lambda tmp: {"model": lm(), "settings": None},
    "weightonly.pack_groups": lambda tmp: dict(zip(("q", "scale", "zero"), groups()), bits=4, symmetric=False),
    "weightonly.unpack_groups": lambda tmp: {"blob": weightonly.pack_groups(*groups(), 4, symmetric=False), "rows": 8,
                                             "columns": 32, "bits": 4, "group_size": 16, "symmetric": False},
    "weightonly.layer_sensitivity": lambda tmp: {"model": lm(), "ids": ids(200), "bits": (3, 4), "group_size": 16,
                                                 "symmetric": False, "around": None, "progress": None},
    "weightonly.allocate_bits": lambda tmp: {"sensitivity": sensitivity(), "model": lm(), "budget": 10**6,
                                             "group_size": 16, "symmetric": False, "unit": 16},
    # ---------------------------------------------------------------------------------------------- widgets
    "widgets.slider": lambda tmp: {"value": 1.0, "low": 0.0, "high": 2.0, "step": 0.5, "description": "x",
                                   "fmt": None, "continuous": False},
    "widgets.choice_slider": lambda tmp: {"value": "a", "options": ["a", "b"], "description": "x"},
    "widgets.Panel": lambda tmp: {"update": draw, "controls": controls(), "main": False, "title": "t",
                                  "cache": True},
    "widgets.panel": lambda tmp: {"update": draw, "main": False, "title": "t", "cache": True,
                                  "**controls": controls()},
}

NAN = math.nan
