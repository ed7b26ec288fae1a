"""Targets of the language-model quantization issue, measured and printed as tables (chapter 09).

    python benchmarks/llm_quantization.py [--no-notebooks]

Perplexity on 32,768 characters of test text (context 128, stride 128) for float32, RTN, GPTQ and AWQ at 4 and 3 bits
with groups of 32 and 128, over three calibration seeds (16 windows of training text each); the mixed-precision
allocation against uniform bits at the same bytes; ONNX Runtime's int4 file and its latency timed interleaved; the
chapter's sliders; the chapter under nbval.
"""

import statistics
import sys

import torch
from _common import chapter_panels, notebook_times, slider_latency, table

from compresskit import data, int8, metrics, timing, weightonly
from compresskit.train import shipped_baseline

SEEDS = (0, 1, 2)


def main() -> None:
    torch.set_num_threads(1)
    text = data.load_text()
    model = shipped_baseline("transformer")
    test, val = text.test[:32769], text.val[:8193]
    base = metrics.perplexity(model, test).perplexity
    fp32 = weightonly.lm_bytes(model)

    rows = [["float32", "", fp32, f"{base:.3f}", "", ""]]
    for bits in (4, 3):
        for g in (32, 128):
            size = weightonly.lm_bytes(model, weightonly.settings_for(model, bits, group_size=g))
            rtn = metrics.perplexity(weightonly.quantize_lm(model, bits, group_size=g), test).perplexity
            rows.append([f"{bits} bits, groups of {g}", "RTN", size, f"{rtn:.3f}", f"{100 * (rtn / base - 1):+.1f}",
                         ""])
            for method in ("gptq", "awq"):
                ppl = [metrics.perplexity(weightonly.quantize_lm(model, bits, group_size=g, method=method,
                                                                  calibration=text.train, samples=16, seed=s),
                                          test).perplexity for s in SEEDS]
                mean = statistics.mean(ppl)
                rows.append(["", method.upper(), size, f"{mean:.3f} ± {statistics.stdev(ppl):.3f}",
                             f"{100 * (mean / base - 1):+.1f}", f"{sum(p < rtn for p in ppl)} of 3"])
    table(["setting", "method", "bytes", "perplexity (mean ± sd, 3 seeds)", "vs fp32 %", "seeds beating RTN"], rows,
          "Weight-only quantization, test perplexity (targets: 4 bits, groups <= 64, best method within a few % of "
          "float32; 3 bits: RTN - GPTQ gap with its spread)")

    sensitivity = weightonly.layer_sensitivity(model, val, (2, 3, 4), group_size=64)
    rows = []
    for bits in (2, 3, 4):
        budget = weightonly.lm_bytes(model, weightonly.settings_for(model, bits, group_size=64))
        uniform = metrics.perplexity(weightonly.quantize_lm(model, bits, group_size=64), test).perplexity
        chosen = weightonly.allocate_bits(sensitivity, model, budget, group_size=64)
        mixed = metrics.perplexity(weightonly.quantize_lm(model, chosen, group_size=64), test).perplexity
        size = weightonly.lm_bytes(model, weightonly.settings_for(model, chosen, group_size=64))
        counts = {b: sum(v == b for v in chosen.values()) for b in (2, 3, 4)}
        rows.append([f"{bits} bits uniform", budget, f"{uniform:.3f}", size, f"{mixed:.3f}",
                     ", ".join(f"{n} x {b}b" for b, n in counts.items() if n)])
    table(["budget", "bytes", "uniform ppl", "allocation bytes", "allocation ppl", "bits chosen"], rows,
          "Bits per layer against uniform bits at the same bytes (target: allocation no worse)")

    for label, x in (("one sequence (1, 128)", test[:128][None]), ("batch of 16 (16, 128)",
                                                                   test[:2048].reshape(16, 128))):
        runs = {"torch float32": model, **int8.int4_models(model, x, block_size=32)}
        speed = timing.compare(runs, x)
        rows = [[name, m.file_bytes if isinstance(m, int8.OnnxModel) else metrics.torch_file_bytes(m),
                 f"{speed.median_ms(name):.3f}", speed.verdict(name),
                 speed.verdict(name, against="onnx fp32") if name == "onnx int4" else ""]
                for name, m in runs.items()]
        table(["model", "file bytes", "median ms", "against torch fp32", "against onnx fp32"], rows,
              f"Real int4 (ONNX Runtime MatMulNBits, blocks of 32), {label}, 1 thread, interleaved")

    panels = chapter_panels("09_llm_quantization.ipynb")
    slider_latency("chapter 09 bits slider", panels["bits"], "bits", (8, 4, 3, 2, 3, 4, 8, 2, 4, 3),
                   model="transformer")
    if "--no-notebooks" not in sys.argv:
        notebook_times("09_llm_quantization.ipynb")


if __name__ == "__main__":
    main()
