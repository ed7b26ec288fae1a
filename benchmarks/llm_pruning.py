"""Targets of the language-model pruning issue, measured and printed as tables (chapter 10).

    python benchmarks/llm_pruning.py [--no-notebooks]

Magnitude against Wanda at 50 % and 2:4 over three calibration seeds (16 windows of training text each; perplexity on
32,768 test characters, context 128, stride 128); heads removed (by the loss rise when masked) against perplexity and
latency timed interleaved; the chapter's sparsity slider; the chapter under nbval.
"""

import statistics
import sys

import torch
from _common import chapter_panels, notebook_times, slider_latency, table

from compresskit import data, metrics, prune, structured, timing
from compresskit.train import shipped_baseline

SEEDS = (0, 1, 2)


def main() -> None:
    torch.set_num_threads(1)
    text = data.load_text()
    model = shipped_baseline("transformer")
    test = text.test[:32769]
    base = metrics.perplexity(model, test).perplexity

    rows = [["float32", "", f"{base:.3f}", "", metrics.sparse_lm_bytes(model, format="dense")]]
    for label, kwargs, fmt in (("50 % unstructured", {"sparsity": 0.5}, "bitmask"),
                               ("2:4", {"pattern": (2, 4)}, "2:4")):
        magnitude = prune.prune_lm(model, **kwargs)
        mag = metrics.perplexity(magnitude, test).perplexity
        wanda = [metrics.perplexity(prune.prune_lm(model, method="wanda", calibration=text.train, samples=16,
                                                   seed=s, **kwargs), test).perplexity for s in SEEDS]
        rows.append([label, "magnitude", f"{mag:.3f}", "", metrics.sparse_lm_bytes(magnitude, format=fmt)])
        rows.append(["", "Wanda", f"{statistics.mean(wanda):.3f} ± {statistics.stdev(wanda):.3f}",
                     f"{sum(w < mag for w in wanda)} of 3", metrics.sparse_lm_bytes(magnitude, format=fmt)])
    table(["sparsity", "method", "test perplexity (3 seeds)", "seeds beating magnitude", "file bytes"], rows,
          "One-shot pruning, no weight update (the paper's claim: Wanda beats magnitude)")

    calib = data.calibration_windows(text.train, 129, 16)
    x1, x16 = test[:128][None], test[:2048].reshape(16, 128)
    rows = []
    for count in (0, 4, 8, 12):
        smaller, _ = structured.prune_heads(model, count, calib)
        ppl = metrics.perplexity(smaller, test).perplexity
        verdicts = [timing.compare({"dense": model, "smaller": smaller}, x).verdict("smaller") if count else
                    "reference" for x in (x1, x16)]
        rows.append([count, sum(p.numel() for p in smaller.parameters()), f"{ppl:.3f}", *verdicts])
    table(["heads removed (of 16)", "parameters", "test perplexity", "speed, 1 x 128", "speed, 16 x 128"], rows,
          "Attention heads removed for real, timed interleaved against the dense model (1 thread)")

    panels = chapter_panels("10_llm_pruning.ipynb")
    slider_latency("chapter 10 sparsity slider", panels["sparsity"], "sparsity",
                   (0.2, 0.5, 0.7, 0.3, 0.6, 0.4, 0.5, 0.2), model="transformer")
    if "--no-notebooks" not in sys.argv:
        notebook_times("10_llm_pruning.ipynb")


if __name__ == "__main__":
    main()
