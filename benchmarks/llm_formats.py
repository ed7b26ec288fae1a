"""Number formats for the language model's weights at about 4 bits (and ternary), measured (issue: chapter 11).

    python benchmarks/llm_formats.py

Every linear of the shipped transformer's blocks in INT4 groups (chapter 09's round to nearest, groups of 32 and 64),
NF4 (blocks of 64), MXFP4 (E2M1, an E8M0 scale per 32), NVFP4 (E2M1, an E4M3 scale per 16 and a float32 tensor
scale) and ternary (blocks of 64): bits per weight of those linears (codes and scales), the file's bytes, the weights'
relative squared error, perplexity on 32,768 characters of test text and the divergence from the float32 model on the
same tokens (mean and 99.9th-percentile KL in nats, top-1 agreement; metrics.fidelity). None of these formats is
calibrated, so one run is the result: there are no calibration seeds to vary.
"""

import time

import torch
from _common import table

from compresskit import data, formats, layers, metrics, weightonly
from compresskit.train import shipped_baseline


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
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
