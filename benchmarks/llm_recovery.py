"""Targets of the second-order pruning, recovery and byte-budget issue, measured and printed as tables (chapter 12).

    python benchmarks/llm_recovery.py [--no-notebooks]

SparseGPT against Wanda and magnitude at 50 % and 2:4 over three calibration seeds (16 windows of training text each;
perplexity and mean KL from float32 on 32,768 test characters, context 128, stride 128); block influence and the
perplexity without each block, a dropped block against eight removed heads timed interleaved; the low-rank correction
at ranks 0-32 over three calibration seeds and its fine-tune, with bytes and seconds; the char-golf board under three
budgets; the chapter's sparsity slider; the chapter under nbval.
"""

import math
import os
import statistics
import sys
import tempfile
import time

import torch
from _common import chapter_panels, notebook_times, slider_latency, table

from compresskit import data, golf, metrics, prune, recovery, sparsegpt, structured, timing, weightonly
from compresskit.train import shipped_baseline

SEEDS = (0, 1, 2)


def spread(values: list[float], fmt: str = ".3f") -> str:
    return f"{statistics.mean(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    torch.set_num_threads(1)
    text = data.load_text()
    model = shipped_baseline("transformer")
    test = text.test[:32769]
    base = metrics.perplexity(model, test)

    def scored(m):
        f = metrics.fidelity(model, m, test)
        return base.perplexity * math.exp(f.log_ppl_ratio), f.kl_mean

    rows = [["float32", "", f"{base.perplexity:.3f}", "0", ""]]
    for label, kwargs in (("50 % unstructured", {"sparsity": 0.5}), ("2:4", {"pattern": (2, 4)})):
        magnitude = scored(prune.prune_lm(model, **kwargs))
        rows.append([label, "magnitude", f"{magnitude[0]:.3f}", f"{magnitude[1]:.3f}", ""])
        for name in ("Wanda", "SparseGPT"):
            runs, seconds = [], []
            for seed in SEEDS:
                began = time.perf_counter()
                if name == "Wanda":
                    pruned = prune.prune_lm(model, method="wanda", calibration=text.train, samples=16, seed=seed,
                                            **kwargs)
                else:
                    pruned = sparsegpt.prune_lm(model, calibration=text.train, samples=16, seed=seed, **kwargs)
                seconds.append(time.perf_counter() - began)
                runs.append(scored(pruned))
            rows.append(["", name, spread([r[0] for r in runs]), spread([r[1] for r in runs]),
                         f"{statistics.median(seconds):.2f}"])
    table(["sparsity", "method", "perplexity, mean (range) of 3 seeds", "mean KL from float32", "seconds"], rows,
          "One-shot pruning of the blocks' linears (32,768 test characters)")

    calib = data.calibration_windows(text.train, model.context, 16)
    influence = structured.block_influence(model, calib)
    dropped = {i: structured.remove_blocks(model, [i]) for i in range(len(model.blocks))}
    table(["block", "influence 1 - cos", "perplexity without it"],
          [[i, f"{float(influence[i]):.3f}", f"{metrics.perplexity(m, test).perplexity:.3f}"]
           for i, m in dropped.items()], "Block influence (ShortGPT) and the perplexity without each block")
    least = int(influence.argmin())
    heads, _ = structured.prune_heads(model, 8, scores=structured.head_importance(
        model, data.calibration_windows(text.train, model.context + 1, 16)))
    rows = []
    for shape in ((1, 128), (16, 128)):
        x = test[:shape[0] * shape[1]].reshape(*shape)
        speed = timing.compare({"dense": model, "block dropped": dropped[least], "8 heads removed": heads}, x)
        rows.append([f"{shape[0]} x {shape[1]}", speed.verdict("block dropped"), speed.verdict("8 heads removed")])
    table(["batch", f"block {least} dropped ({metrics.perplexity(dropped[least], test).perplexity:.3f})",
           f"8 heads removed ({metrics.perplexity(heads, test).perplexity:.3f})"], rows,
          "Latency against dense, interleaved (1 thread; perplexity in the headers)")

    rows = []
    for bits, group, ranks in ((2, 64, (0, 4, 8, 16, 32)), (3, 128, (0, 4, 8, 16, 32))):
        quantized = weightonly.quantize_lm(model, bits, group_size=group)
        size = weightonly.lm_bytes(model, weightonly.settings_for(model, bits, group_size=group))
        for r in ranks:
            runs, extra, seconds = [], 0, []
            for seed in SEEDS if r else SEEDS[:1]:
                began = time.perf_counter()
                fixed = recovery.correct_lm(quantized, model, r, calibration=text.train, seed=seed) if r else quantized
                seconds.append(time.perf_counter() - began)
                extra = recovery.correction_bytes(fixed) if r else 0
                runs.append(scored(fixed))
            rows.append([f"{bits}-bit g{group}", r, size + extra, extra, spread([k for _, k in runs]),
                         spread([p for p, _ in runs]), f"{statistics.median(seconds):.2f}" if r else ""])
        start = recovery.correct_lm(quantized, model, 8, calibration=text.train)
        seconds, previous = [], os.environ.get("COMPRESSKIT_CACHE")
        with tempfile.TemporaryDirectory() as folder:  # benchmarks run without the cache: one of their own, for this
            os.environ["COMPRESSKIT_CACHE"] = folder
            try:
                for _ in range(2):  # trained, then loaded from the training cache
                    began = time.perf_counter()
                    tuned = recovery.tune_corrections(start, model, text.train, progress=False)
                    seconds.append(time.perf_counter() - began)
            finally:
                os.environ["COMPRESSKIT_CACHE"] = previous or "off"
        ppl, kl = scored(tuned)
        rows.append([f"{bits}-bit g{group}", "8, tuned", size + recovery.correction_bytes(tuned),
                     recovery.correction_bytes(tuned), f"{kl:.3f}", f"{ppl:.3f}",
                     f"{seconds[0]:.1f} (cached: {seconds[1]:.2f})"])
    table(["weights", "rank", "file bytes", "extra bytes", "mean KL (3 calibration seeds)", "perplexity", "seconds"],
          rows, "Low-rank correction of round-to-nearest weights (float16 factors), and its 64-step fine-tune")

    def gptq(m, bits, group, seed=0):
        return weightonly.quantize_lm(m, bits, group_size=group, method="gptq", calibration=text.train, samples=16,
                                      seed=seed)

    two = weightonly.quantize_lm(model, 2, group_size=64)
    contenders = [("RTN 8-bit", weightonly.quantize_lm(model, 8, group_size=None), 8, None),
                  ("RTN 4-bit g128", weightonly.quantize_lm(model, 4, group_size=128), 4, 128),
                  ("RTN 3-bit g128", weightonly.quantize_lm(model, 3, group_size=128), 3, 128),
                  ("RTN 2-bit g64", two, 2, 64),
                  ("GPTQ 4-bit g128", gptq(model, 4, 128), 4, 128),
                  ("GPTQ 3-bit g128", gptq(model, 3, 128), 3, 128),
                  ("GPTQ 3-bit g64", gptq(model, 3, 64), 3, 64),
                  ("GPTQ 2-bit g64", gptq(model, 2, 64), 2, 64),
                  ("SparseGPT 50 % + 4-bit", sparsegpt.prune_lm(model, 0.5, bits=4, calibration=text.train,
                                                                samples=16), 4, None),
                  (f"block {least} dropped + GPTQ 3-bit", gptq(dropped[least], 3, 128), 3, 128),
                  ("RTN 2-bit + tuned rank 8", recovery.tune_corrections(recovery.correct_lm(
                      two, model, 8, calibration=text.train), model, text.train, progress=False), 2, 64)]
    entries = [golf.score(name, m, test, bits, group_size=group, others=8) for name, m, bits, group in contenders]
    table(["entry", "file bytes (lzma)", "bits per character"],
          [[e.name, e.bytes, f"{e.bits_per_char:.4f}"] for e in sorted(entries, key=lambda e: e.bytes)],
          f"Char-golf entries (32,768 test characters; float32 {base.bits_per_char:.4f} bits per character)")
    rows = []
    for budget_kb in (256, 384, 512):
        ranked = golf.board(entries, budget_kb * 1024)
        rows.append([f"{budget_kb} KB", ranked[0].name if ranked else "nothing fits",
                     f"{ranked[0].bits_per_char:.4f}" if ranked else "", ranked[1].name if len(ranked) > 1 else ""])
    table(["budget", "best entry", "bits per character", "runner-up"], rows, "The board under three budgets")
    gptq3 = [golf.score("GPTQ 3-bit", gptq(model, 3, 128, seed), test, 3, group_size=128, others=8).bits_per_char
             for seed in SEEDS]
    print(f"GPTQ 3-bit g128 over calibration seeds 0-2: {spread(gptq3, '.4f')} bits per character")

    panels = chapter_panels("12_llm_recovery.ipynb")
    slider_latency("chapter 12 sparsity slider", panels["sparsity"], "sparsity", (0.3, 0.5, 0.7, 0.6, 0.5, 0.3),
                   model="transformer")
    slider_latency("chapter 12 budget slider", panels["budget_kb"], "budget_kb", (128, 384, 1024, 256, 512),
                   model="transformer")
    if "--no-notebooks" not in sys.argv:
        notebook_times("12_llm_recovery.ipynb")


if __name__ == "__main__":
    main()
