"""The capstone (深度压缩): Deep Compression's three stages to real packed bytes, and every technique of the workbook
(and their combinations) as points of accuracy against bytes, with the Pareto front.

Deep Compression (Han, Mao & Dally, ICLR 2016): prune with fine-tuning (masks kept) -> share the surviving weights
through a k-means codebook and fine-tune the centroids (zeros stay zero) -> Huffman-code the index streams. Here the
bytes are ``len(encode.pack(model))``, the file the model really takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from compresskit import distill, encode, int8, layers, lowrank, metrics, models, prune, qat, quantize, structured
from compresskit.checks import (
    check_bool,
    check_choice,
    check_fields,
    check_fraction,
    check_int,
    check_items,
    check_module,
    check_number,
    check_seed,
    checked,
    dataset_tensors,
)
from compresskit.prune import iterative_prune
from compresskit.qat import kmeans_finetune
from compresskit.train import evaluate, set_seed, train

__all__ = ["PUBLISHED_LENET_300_100", "Stage", "DeepCompression", "deep_compression", "layer_table", "Point",
           "pareto_front", "best_under", "technique_points"]

PUBLISHED_LENET_300_100 = {"kept %": 8.0, "weight bits": 6, "index bits": 5, "ratio": 40.0,
                           "source": "Han et al. 2016, table 2 (LeNet-300-100 on MNIST, 1070 KB -> 27 KB)"}
"""The paper's row, for the table beside ours (their MNIST model has 266,200 weights; ours, on 8x8 digits, 50,200)."""


@dataclass
class Stage:
    """One stage of the pipeline: what the file takes and what the model scores after it."""

    name: str
    accuracy: float
    bytes: int

    def __post_init__(self):
        check_fields(self, accuracy=(0.0, 1.0))


@dataclass
class DeepCompression:
    """The pipeline's models and file: ``pruned`` (masks), ``shared`` (codebooks fine-tuned), ``blob`` (the file),
    ``unpacked`` (the model read back from it), and one ``Stage`` per step."""

    baseline: nn.Module
    pruned: nn.Module
    shared: nn.Module
    blob: bytes
    unpacked: nn.Module
    stages: list[Stage] = field(default_factory=list)
    recipe: list[str] = field(default_factory=list)  # the steps in words, with their settings

    def __post_init__(self):
        check_fields(self)
        check_items("DeepCompression.stages", self.stages, Stage)

    @property
    def dense_bytes(self) -> int:
        """4 bytes per parameter, as the paper counts the uncompressed model."""
        return 4 * metrics.count_params(self.baseline)

    @property
    def ratio(self) -> float:
        return self.dense_bytes / len(self.blob)


@checked
def deep_compression(model: nn.Module, dataset: Dataset, test: Dataset, *, sparsity: float = 0.95, steps: int = 10,
                     epochs_per_step: int = 10, bits: int = 3, kmeans_epochs: int = 10, kmeans_lr: float = 3e-4,
                     bias_bits: int = 16, seed: int = 0, progress: bool = False) -> DeepCompression:
    """Deep Compression of a copy of ``model``: ``iterative_prune`` to ``sparsity`` (global ranking, cubic schedule,
    ``epochs_per_step`` of fine-tuning after each of ``steps`` steps), ``kmeans_finetune`` at ``bits`` on the kept
    weights, then ``encode.pack`` (Huffman) with biases at ``bias_bits``. Accuracies on ``test``; the last stage is
    the model unpacked from the file. ``model`` is not changed."""
    check_module("model", model)
    dataset_tensors(dataset, "dataset")
    dataset_tensors(test, "test")
    check_fraction("sparsity", sparsity, high_open=True)
    check_int("steps", steps, 1)
    check_int("epochs_per_step", epochs_per_step, 1)
    check_int("bits", bits, 1, 8)
    check_int("kmeans_epochs", kmeans_epochs, 1)
    check_number("kmeans_lr", kmeans_lr, 0, low_open=True)
    check_seed(seed)
    check_bool("progress", progress)
    pruned, _ = iterative_prune(model, dataset, final_sparsity=sparsity, steps=steps, epochs_per_step=epochs_per_step,
                                scope="global", progress=progress)
    shared = kmeans_finetune(pruned, dataset, bits=bits, epochs=kmeans_epochs, lr=kmeans_lr, seed=seed,
                             progress=progress)
    blob = encode.pack(shared, bias_bits=bias_bits)
    unpacked = encode.unpack(blob, like=shared)
    stages = [
        Stage("dense float32", evaluate(model, test), len(encode.pack(model))),
        Stage(f"pruned to {1 - sparsity:.0%} kept (sparse layout, float32 values)", evaluate(pruned, test),
              len(encode.pack(pruned, huffman=False, bias_bits=bias_bits))),
        Stage(f"+ weight sharing, {bits}-bit codebooks (fixed-width codes)", evaluate(shared, test),
              len(encode.pack(shared, huffman=False, bias_bits=bias_bits))),
        Stage("+ Huffman coding (the file)", evaluate(unpacked, test), len(blob)),
    ]
    recipe = [f"magnitude pruning to {1 - sparsity:.0%} kept, {steps} steps x {epochs_per_step} epochs",
              f"k-means {bits}-bit, centroids fine-tuned {kmeans_epochs} epochs",
              f"Huffman coding, {bias_bits}-bit biases"]
    return DeepCompression(model, pruned, shared, blob, unpacked, stages, recipe)


@checked
def layer_table(model: nn.Module, blob: bytes) -> list[dict]:
    """Per weight tensor of ``model`` packed as ``blob``, in the shape of the paper's table 2: weights, kept %,
    weight bits (codebook), index bits (gap field), bytes in the file, and compression rate against 4 bytes a
    weight."""
    check_module("model", model)
    tensors = dict(layers.named_tensors(model))
    rows = []
    for row in encode.describe(blob):
        if len(row["shape"]) < 2:
            continue
        n = math.prod(row["shape"])
        rows.append({"layer": row["name"], "weights": n, "encoding": row["encoding"],
                     "kept %": 100 * int(torch.count_nonzero(tensors[row["name"]])) / n,
                     "weight bits": math.ceil(math.log2(row["codebook"])) if row["codebook"] else 32,
                     "index bits": row["gap_bits"], "bytes": row["bytes"], "ratio": 4 * n / row["bytes"]})
    return rows


# ------------------------------------------------------------------------------------------------ Pareto


@dataclass
class Point:
    """One recipe on the accuracy-against-bytes plane; ``steps`` says what it is made of."""

    name: str
    group: str  # the technique family it belongs to, one colour in plots.pareto (as Record.group in accuracy_vs_size)
    steps: list[str]
    accuracy: float
    bytes: int
    model: Callable | None = None  # what to time (an nn.Module or an ONNX Runtime session)
    file: str = "pack"  # how the bytes were measured: "pack" (len(encode.pack)) or "onnx" (the .onnx file)
    latency_ms: float | None = None  # filled by a timing (timing.compare), when one is made

    def __post_init__(self):
        check_fields(self, accuracy=(0.0, 1.0), latency_ms=(0.0, None))
        check_choice("Point.file", self.file, ("pack", "onnx"))


@checked
def pareto_front(points: list[Point], *, cost: str = "bytes") -> list[Point]:
    """The points no other beats on both axes (at most the ``cost`` -- ``"bytes"`` or ``"latency_ms"`` -- and at
    least as accurate, one strictly), by cost; ties keep the first."""
    check_items("points", points, Point, empty=False)
    if cost not in ("bytes", "latency_ms"):
        raise ValueError(f"cost must be 'bytes' or 'latency_ms', got {cost!r}")
    if any(getattr(p, cost) is None for p in points):
        raise ValueError(f"every point needs a {cost} (time them with timing.compare first)")
    front = []
    for p in sorted(points, key=lambda p: (getattr(p, cost), -p.accuracy)):
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front


@checked
def best_under(points: list[Point], budget: float) -> Point | None:
    """The most accurate recipe whose file fits in ``budget`` bytes (fewest bytes among equals), or None."""
    check_number("budget", budget, 0, low_open=True)
    check_items("points", points, Point)
    fitting = [p for p in points if p.bytes <= budget]
    return max(fitting, key=lambda p: (p.accuracy, -p.bytes)) if fitting else None


# --------------------------------------------------------------------------------------- every technique


@checked
def technique_points(baseline: nn.Module, dataset: Dataset, test: Dataset, *, seed: int = 0, progress: bool = False,
                     deep: DeepCompression | None = None) -> list[Point]:
    """Every technique of chapters 01-07 and their combinations, applied to ``baseline`` (LeNet-300-100), each as a
    ``Point`` with its test accuracy and the bytes of its file: ``len(encode.pack(model))``, or the ``.onnx`` file for
    the real int8 models. Fine-tunes take 5 epochs; the distilled student trains 30 and Deep Compression's pruning
    schedule 100 plus 10 of centroid fine-tuning (each ``Point.steps`` says it). ``deep``: a
    ``deep_compression`` result of the same baseline to reuse (else it is run here)."""
    check_module("baseline", baseline)
    dataset_tensors(dataset, "dataset")
    dataset_tensors(test, "test")
    check_seed(seed)
    check_bool("progress", progress)
    x = test.tensors[0]

    def tuned(model, epochs=5, lr=1e-3):
        train(model, dataset, epochs=epochs, lr=lr, seed=seed, progress=False)
        return model

    points: list[Point] = []
    bar = tqdm(total=15, desc="techniques", disable=not progress, leave=False)

    def add(name, group, steps, model, *, file="pack"):
        size = model.file_bytes if file == "onnx" else len(encode.pack(model))
        # timed as it would run: masks made permanent (a mask hook recomputes the weight on every call)
        runnable = model if file == "onnx" or not prune.is_pruned(model) else prune.finalize(layers.copy_model(model))
        points.append(Point(name, group, steps, evaluate(model, test), size, runnable, file))
        bar.update()

    add("dense float32", "dense", ["LeNet-300-100, float32"], baseline)
    onnx = int8.int8_models(baseline, x[:1])
    add("int8 (ONNX Runtime)", "quantization", ["export to ONNX", "dynamic int8 weights"], onnx["onnx int8 dynamic"],
        file="onnx")
    pruned = tuned(prune.magnitude_prune(baseline, sparsity=0.9, scope="global"))
    add("pruned 90 %", "pruning", ["magnitude pruning 90 % (global)", "5 epochs fine-tuning, masks kept"], pruned)
    add("uniform 8-bit", "quantization", ["uniform 8-bit, per tensor"], quantize.quantize_model(baseline, 8))
    add("uniform 4-bit per channel", "quantization", ["uniform 4-bit, per channel"],
        quantize.quantize_model(baseline, 4, per_channel=True))
    add("k-means 4-bit", "quantization", ["k-means weight sharing, 16 values a layer"],
        quantize.quantize_model(baseline, 4, method="kmeans"))
    add("binary + QAT", "quantization", ["binary weights (alpha per row)", "5 epochs QAT"],
        qat.qat(baseline, dataset, bits=1, method="binary", epochs=5, seed=seed, progress=False))
    low = tuned(lowrank.low_rank(baseline, rank=16))
    add("SVD rank 16", "low-rank", ["truncated SVD, rank 16", "5 epochs fine-tuning"], low)
    narrow = tuned(structured.prune_channels(baseline, 0.5))
    add("structured 50 %", "structured pruning", ["half the neurons removed (L1)", "5 epochs fine-tuning"], narrow)
    set_seed(seed)
    student = models.mlp(hidden=(32, 16))
    distill.distill(student, baseline, dataset, temperature=4.0, alpha=0.9, epochs=30, lr=3e-3, seed=seed,
                    progress=False)
    add("distilled MLP 32-16", "distillation", ["student 64-32-16-10", "distilled, T = 4, alpha = 0.9, 30 epochs"],
        student)
    add("pruned 90 % + k-means 4-bit", "combination", ["magnitude pruning 90 %", "5 epochs fine-tuning",
                                                       "k-means 4-bit on the kept weights"],
        quantize.quantize_model(pruned, 4, method="kmeans"))
    add("SVD rank 16 + k-means 4-bit", "combination",
        ["truncated SVD, rank 16", "5 epochs fine-tuning", "k-means 4-bit"],
        quantize.quantize_model(low, 4, method="kmeans"))
    add("distilled + k-means 4-bit", "combination", ["student 64-32-16-10, distilled", "k-means 4-bit"],
        quantize.quantize_model(student, 4, method="kmeans"))
    narrow_int8 = int8.int8_models(narrow, x[:1])["onnx int8 dynamic"]
    add("structured 50 % + int8", "combination", ["half the neurons removed", "5 epochs fine-tuning",
                                                  "ONNX Runtime dynamic int8"], narrow_int8, file="onnx")
    dc = deep if deep is not None else deep_compression(baseline, dataset, test, seed=seed, progress=progress)
    points.append(Point("Deep Compression", "combination", dc.recipe, dc.stages[-1].accuracy, len(dc.blob),
                        dc.unpacked))
    bar.update()
    bar.close()
    return points
