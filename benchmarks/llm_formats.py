"""Chapter 11's targets: number formats for the language model's weights, weights and activations with SmoothQuant
and rotation on the shipped model and the planted-outlier control, and the quantized KV cache.

    python benchmarks/llm_formats.py [--no-notebook]

Every linear of the shipped transformer's blocks in INT4 groups (chapter 09's round to nearest, groups of 32 and 64),
NF4 (blocks of 64), MXFP4 (E2M1, an E8M0 scale per 32), NVFP4 (E2M1, an E4M3 scale per 16 and a float32 tensor
scale) and ternary (blocks of 64): bits per weight of those linears (codes and scales), the file's bytes, the weights'
relative squared error, perplexity on 32,768 characters of test text and the divergence from the float32 model on the
same tokens (mean and 99.9th-percentile KL in nats, top-1 agreement; metrics.fidelity). None of these formats is
calibrated, so one run is the result: there are no calibration seeds to vary.

Then W8A8, W4A8 and W4A4 (outliers.quantize_wa: per-channel weights, per-token activations) on the shipped model and on
the control with channels 3, 77 and 101 planted 30x larger (outliers.plant_outliers), plain, with SmoothQuant
(alpha 0.5, maxima from 16 windows at calibration seeds 0-2) and rotated (randomized Hadamard, seeds 0-2): mean and
range over the seeds of perplexity, mean KL, top-1 agreement; the linears' bytes at the weights' bits. Then KIVI's KV
cache at 2, 3 and 4 bits with keys per channel and per token (no calibration: one run), and its bytes at 4,096 tokens.
Last, the chapter's two sliders and the chapter under nbval.
"""

import statistics
import sys
import time

import torch
from _common import chapter_panels, notebook_times, slider_latency, table

from compresskit import data, formats, kvquant, layers, metrics, outliers, weightonly
from compresskit.train import shipped_baseline

SEEDS = (0, 1, 2)
PLANTED = ([3, 77, 101], 30.0)  # the chapter's control


def spread(values: list[float], fmt: str) -> str:
    """Mean and range over the seeds."""
    return f"{statistics.mean(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})" if len(values) > 1 else \
        f"{values[0]:{fmt}}"


def prepared(variant: str, source, text, seed: int):
    """The model a W/A setting quantizes: as it is, smoothed (maxima at calibration ``seed``) or rotated (``seed``)."""
    if variant == "SmoothQuant 0.5":
        return outliers.smooth(source, text.train, 0.5, seed=seed)
    return outliers.rotate(source, seed=seed) if variant == "rotated" else source


def weights_and_activations(model, text, test, base: float) -> None:
    planted = outliers.plant_outliers(model, *PLANTED)
    linears = layers.transformer_linears(model).values()
    n, rows_out = sum(m.weight.numel() for m in linears), sum(m.out_features for m in linears)
    rows = []
    for which, source in (("shipped", model), ("planted", planted)):
        for variant in ("RTN", "SmoothQuant 0.5", "rotated"):
            for setting, (w_bits, a_bits) in {"W8A8": (8, 8), "W4A8": (4, 8), "W4A4": (4, 4)}.items():
                seeds = (0,) if variant == "RTN" else SEEDS
                found = [metrics.fidelity(model, outliers.quantize_wa(prepared(variant, source, text, seed), w_bits,
                                                                      a_bits), test) for seed in seeds]
                ppl = [base * torch.tensor(f.log_ppl_ratio).exp().item() for f in found]
                rows.append([which, variant, setting, len(seeds), spread(ppl, ".3f"),
                             spread([f.kl_mean for f in found], ".4f"), spread([f.top1 for f in found], ".3f"),
                             n * w_bits // 8 + 2 * rows_out])  # codes and a float16 scale per output row
    table(["model", "method", "setting", "seeds", "perplexity", "mean KL", "top-1 agree", "linear weight bytes"],
          rows, title=f"Weights and activations quantized (float32 perplexity {base:.3f}); mean (range) over seeds")


def kv_cache(model, test) -> None:
    rows = []
    for bits in (2, 3, 4):
        for keys in kvquant.KEY_AXES:
            f = metrics.fidelity(model, kvquant.quantize_kv(model, bits, window=32, keys=keys), test)
            rows.append([bits, keys, f"{f.kl_mean:.4f}", f"{f.kl_p999:.3f}", f"{f.top1:.3f}",
                         kvquant.kv_bytes(model, 4096, bits=bits), kvquant.kv_bytes(model, 4096)])
    table(["bits", "keys per", "mean KL", "KL p99.9", "top-1 agree", "cache bytes at 4,096 tokens", "float16 cache"],
          rows, title="KIVI's KV cache (window 32, groups of 32), one forward per window of 128")


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    text = data.load_text()
    model = shipped_baseline("transformer")
    test = text.test[:32769]
    linears = layers.transformer_linears(model)
    n = sum(layer.weight.numel() for layer in linears.values())
    base = metrics.perplexity(model, test).perplexity
    other = weightonly.lm_bytes(model) - 4 * n  # embeddings, LayerNorms, biases, head: float32 in every file

    candidates = {}
    for g in (32, 64):
        settings = weightonly.settings_for(model, 4, group_size=g)
        candidates[f"INT4, groups of {g}"] = (weightonly.quantize_lm(model, 4, group_size=g),
                                              weightonly.lm_bytes(model, settings))
    for fmt in formats.FORMATS:
        candidates[f"{fmt.upper()}, blocks of {formats.DEFAULT_BLOCK[fmt]}"] = (formats.quantize_lm(model, fmt),
                                                                                 formats.lm_bytes(model, fmt))
    rows = [["float32", 32.0, other + 4 * n, 0.0, f"{base:.3f}", 0.0, 0.0, 1.0]]
    for name, (q, size) in candidates.items():
        qlin = layers.transformer_linears(q)
        with torch.no_grad():
            err = sum(float(((qlin[k].weight - w.weight) ** 2).sum()) for k, w in linears.items()) / sum(
                float((w.weight ** 2).sum()) for w in linears.values())
        fid = metrics.fidelity(model, q, test)
        ppl = metrics.perplexity(q, test).perplexity
        rows.append([name, 8 * (size - other) / n, size, err, f"{ppl:.3f}", fid.kl_mean, fid.kl_p999, fid.top1])
    table(["weights of the block linears", "bits/weight", "file bytes", "rel. sq. error", "perplexity",
           "mean KL", "KL p99.9", "top-1 agree"], rows,
          title=f"The shipped model ({n:,} weights in its block linears), 32,768 test characters")
    weights_and_activations(model, text, test, base)
    kv_cache(model, test)
    panels = chapter_panels("11_llm_outliers_formats.ipynb")
    slider_latency("chapter 11 alpha slider", panels["alpha"], "alpha", [0.0, 0.25, 0.5, 0.75, 1.0],
                   model="transformer (precomputed)")
    slider_latency("chapter 11 KV bits slider", panels["bits"], "bits", [2, 3, 4], model="transformer (precomputed)")
    if "--no-notebook" not in sys.argv:
        notebook_times("11_llm_outliers_formats.ipynb", target_s=60)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
