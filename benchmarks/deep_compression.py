"""Chapter 08's targets: the full Deep Compression pipeline over seeds (real bytes, accuracy loss), pack + unpack
time, the byte-budget slider, and the chapter under nbval.

    python benchmarks/deep_compression.py [--no-notebooks]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from _common import chapter_panels, notebook_times, slider_latency, table

from compresskit import data, encode, pipeline
from compresskit.train import fit_baseline

SEEDS = (0, 1, 2)


def main() -> None:
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)
    rows, losses, ratios, runs = [], [], [], {}
    for seed in SEEDS:
        base = fit_baseline("mlp", split.train, seed=seed, progress=False)
        start = time.perf_counter()
        dc = runs[seed] = pipeline.deep_compression(base, split.train, split.test, seed=seed)
        seconds = time.perf_counter() - start
        loss = 100 * (dc.stages[0].accuracy - dc.stages[-1].accuracy)
        losses.append(loss)
        ratios.append(dc.ratio)
        rows.append([seed, f"{100 * dc.stages[0].accuracy:.2f}", *(f"{s.bytes:,}" for s in dc.stages[1:]),
                     f"{100 * dc.stages[-1].accuracy:.2f}", f"{loss:+.2f}", f"{dc.ratio:.1f}x", f"{seconds:.1f}"])
    rows.append(["mean", "", "", "", "", "", f"{statistics.mean(losses):+.2f}", f"{statistics.mean(ratios):.1f}x", ""])
    table(["seed", "dense %", "pruned B", "+ sharing B", "file B (Huffman)", "file %", "loss (pts)", "smaller",
           "pipeline s"], rows,
          "Deep Compression of LeNet-300-100 (8x8 digits): 5 % kept, 3-bit shared weights, Huffman, float16 biases. "
          "Targets: >= 50x at <= 1 point lost (mean); published: 40x (Deep Compression), 68x in parameters "
          "(sparse variational dropout)")

    dc = runs[0]
    layer_rows = [[r["layer"], f"{r['weights']:,}", f"{r['kept %']:.1f}", r["weight bits"], r["index bits"],
                   f"{r['bytes']:,}", f"{r['ratio']:.1f}x"] for r in pipeline.layer_table(dc.unpacked, dc.blob)]
    table(["layer", "weights", "kept %", "weight bits", "index bits", "bytes", "ratio"], layer_rows,
          "Per layer, seed 0 (the paper's LeNet-300-100 row: 8 % kept, 6-bit weights, 5-bit indices, 40x)")

    times = []
    for _ in range(5):
        start = time.perf_counter()
        encode.unpack(encode.pack(dc.shared, bias_bits=16), like=dc.shared)
        times.append((time.perf_counter() - start) * 1e3)
    table(["pack + unpack of the pipeline's LeNet-300-100", "median ms", "max ms", "target"],
          [["3-bit shared, 5 % kept", f"{statistics.median(times):.0f}", f"{max(times):.0f}", "< 1000"]],
          "Writing and reading the file")

    panels = chapter_panels("08_deep_compression.ipynb")
    slider_latency("byte budget", panels["budget_kb"], "budget_kb", [1.5, 3, 5, 8, 15, 30, 60, 120, 200, 250])
    if "--no-notebooks" not in sys.argv:
        notebook_times("08_deep_compression.ipynb")


if __name__ == "__main__":
    main()
