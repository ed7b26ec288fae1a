"""Targets of the quantization issue, measured and printed as tables (chapter 04).

    python benchmarks/quantization.py [--no-notebooks]
"""

import sys

import torch
from _common import chapter_panels, notebook_times, slider_latency, table, trained

from compresskit import data, int8, metrics, models, qat, quantize, timing
from compresskit.train import evaluate, fit_baseline

SEEDS = (0, 1, 2)


def main() -> None:
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)
    slider_latency("chapter 04 bits slider", chapter_panels("04_quantization.ipynb")["bits"], "bits",
                   (2, 3, 4, 5, 6, 7, 8, 4, 2, 8))

    rows = []
    for seed in SEEDS:
        base = fit_baseline("mlp", split.train, seed=seed, progress=False)
        b = evaluate(base, split.test)
        acc = {
            "8-bit PTQ": evaluate(quantize.quantize_model(base, 8), split.test),
            "4-bit per-channel PTQ": evaluate(quantize.quantize_model(base, 4, per_channel=True), split.test),
            "2-bit PTQ": evaluate(quantize.quantize_model(base, 2, per_channel=True), split.test),
            "2-bit QAT": evaluate(qat.qat(base, split.train, bits=2, epochs=10, progress=False, seed=seed),
                                  split.test),
            "k-means 4-bit": evaluate(quantize.quantize_model(base, 4, method="kmeans"), split.test),
            "binary QAT": evaluate(qat.qat(base, split.train, bits=1, method="binary", epochs=10, progress=False,
                                                seed=seed), split.test),
        }
        rows.append([seed, f"{100 * b:.2f}"] + [f"{100 * (a - b):+.2f}" for a in acc.values()])
    table(["seed", "fp32 %"] + [f"{k} (pts)" for k in acc], rows,
          "Accuracy change against float32 (targets: 8b >= -0.5, 4b/ch >= -2, 2b QAT >= -3, k-means 4b >= -1)")

    wide = trained(lambda: models.mlp(hidden=(1024, 1024)), split, 0, epochs=5)
    x = split.test.tensors[0][:64]
    runs = {"torch float32": wide, "torch fake-quant 8 bit": quantize.quantize_model(wide, 8, per_channel=True)}
    runs.update(int8.int8_models(wide, x, calibration=split.train))
    fp32_bytes = metrics.torch_file_bytes(wide)
    speed = timing.compare(runs, x)  # interleaved, against torch float32
    rows = []
    for name, model in runs.items():
        size = model.file_bytes if isinstance(model, int8.OnnxModel) else metrics.torch_file_bytes(model)
        rows.append([name, size, f"{size / fp32_bytes:.2f}x", f"{speed.median_ms(name):.3f}", speed.verdict(name),
                     f"{100 * evaluate(model, split.test):.2f}"])
    table(["model (MLP 1024-1024, batch 64, 1 thread)", "file bytes", "vs fp32", "median ms", "against fp32",
           "acc %"], rows, "Real int8, timed interleaved, verdicts with the 95 % interval of the median "
          "(targets: file <= 0.3x, speed-up >= 1.5x)")

    if "--no-notebooks" not in sys.argv:
        notebook_times("04_quantization.ipynb")

if __name__ == "__main__":
    main()
