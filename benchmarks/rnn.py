"""Targets of the recurrent-network issue, measured and printed as tables (chapter 07).

    python benchmarks/rnn.py [--no-notebooks]
"""

import statistics
import sys

import torch
from _common import GAP_COLUMNS, chapter_panels, distillation_gaps, notebook_times, slider_latency, table, trained

from compresskit import data, int8, layers, lowrank, metrics, models, prune, qat, quantize, rnn, structured, timing
from compresskit.train import evaluate, fit_baseline, train

SEEDS = (0, 1, 2)


def main() -> None:
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)
    bases = {seed: fit_baseline("gru", split.train, seed=seed, progress=False) for seed in SEEDS}
    panels = chapter_panels("07_rnn_compression.ipynb")
    slider_latency("chapter 07 sparsity slider", panels["sparsity"], "sparsity",
                   (0.0, 0.3, 0.5, 0.7, 0.9, 0.6, 0.4, 0.8), target_ms=300, model="GRU-64")
    slider_latency("chapter 07 bits slider", panels["bits"], "bits", (2, 3, 4, 5, 6, 8, 4), target_ms=300,
                   model="GRU-64")

    rows = []
    for seed, base in bases.items():
        b = evaluate(base, split.test)
        pruned = prune.magnitude_prune(base, sparsity=0.7, scope="global")
        train(pruned, split.train, epochs=10, lr=3e-3, progress=False, seed=seed)
        dense = layers.copy_model(base)
        train(dense, split.train, epochs=10, lr=3e-3, progress=False, seed=seed)
        q8 = quantize.quantize_model(base, 8)
        q8c = quantize.quantize_model(base, 8, per_channel=True)
        change = [f"{100 * (evaluate(m, split.test) - b):+.2f}" for m in (pruned, dense, q8, q8c)]
        rows.append([seed, f"{100 * b:.2f}", f"{prune.sparsity_report(pruned).total.sparsity:.1%}", *change])
    table(["seed", "GRU-64 %", "sparsity", "pruned + 10 ep (pts)", "dense + 10 ep (pts)", "8-bit (pts)",
           "8-bit per channel (pts)"], rows,
          "GRU-64: 70 % global magnitude pruning + fine-tuning (target: within 1 point); 8-bit (target: within 0.5)")

    rows = []
    for seed, base in bases.items():
        b = evaluate(base, split.test)
        row = [seed]
        for bits in (3, 2):
            ptq = quantize.quantize_model(base, bits, per_channel=True)
            trained_q = qat.qat(base, split.train, bits=bits, per_channel=True, epochs=5, lr=1e-3, progress=False,
                                seed=seed)
            row += [f"{100 * (evaluate(m, split.test) - b):+.2f}" for m in (ptq, trained_q)]
        rows.append(row)
    table(["seed", "3-bit PTQ (pts)", "3-bit QAT 5 ep (pts)", "2-bit PTQ (pts)", "2-bit QAT 5 ep (pts)"], rows,
          "GRU-64 below 4 bits, per channel: post-training vs quantization-aware training")

    rows = []
    for seed, base in bases.items():
        b = evaluate(base, split.test)
        row = [seed]
        for which in ("weight_ih", "weight_hh"):
            model = prune.magnitude_prune(base, sparsity=0.7, tensors=which)
            drift = rnn.hidden_drift(base, model, split.test.tensors[0])
            row += [f"{100 * (evaluate(model, split.test) - b):+.1f}", f"{drift[0]:.2f} -> {drift[-1]:.2f}"]
        rows.append(row)
    table(["seed", "70 % of weight_ih (pts)", "drift step 1 -> 8", "70 % of weight_hh (pts)", "drift step 1 -> 8"],
          rows, "Which matrix is more sensitive (no fine-tuning)")

    rows = []
    x64 = split.test.tensors[0][:64]
    for seed, base in bases.items():
        b = evaluate(base, split.test)
        halved = structured.prune_units(base, 0.5)
        train(halved, split.train, epochs=10, lr=3e-3, progress=False, seed=seed)
        zeros = prune.finalize(prune.magnitude_prune(base, sparsity=0.7, scope="global"))
        speed = timing.compare({"dense": base, "32 units": halved, "70 % zeros": zeros}, x64)
        rows.append([seed, f"{100 * (evaluate(halved, split.test) - b):+.2f}", f"{speed.median_ms('dense'):.3f}",
                     speed.verdict("32 units"), speed.verdict("70 % zeros")])
    table(["seed", "64 -> 32 units + 10 ep (pts)", "dense ms", "32 units against dense", "70 % zeros against dense"],
          rows, "Structured: removing hidden units (structured.prune_units) vs scattered zeros, batch 64, 1 thread, "
          "timed interleaved, verdicts with the 95 % interval of the median")

    rows = []
    for which, rank in [("rank_hh", r) for r in (8, 16, 32)] + [("rank_ih", r) for r in (2, 4, 6)]:
        changes, shares = [], []
        for seed, base in bases.items():
            model = layers.copy_model(base)
            model.rnn = lowrank.svd_rnn(base.rnn, **{which: rank})
            train(model, split.train, epochs=5, lr=1e-3, progress=False, seed=seed)
            changes.append(100 * (evaluate(model, split.test) - evaluate(base, split.test)))
            shares.append(metrics.count_params(model) / metrics.count_params(base))
        rows.append([f"{which} {rank}", f"{statistics.mean(shares):.1%}", " / ".join(f"{c:+.2f}" for c in changes)])
    table(["matrix, rank", "params kept", "change after 5 ep FT, seeds 0-2 (pts)"], rows,
          "SVD of one gate matrix (the other dense)")

    rows = []
    for seed in SEEDS:
        lstm = fit_baseline("lstm", split.train, seed=seed, progress=False)
        b = evaluate(lstm, split.test)
        pruned = prune.magnitude_prune(lstm, sparsity=0.7, scope="global")
        train(pruned, split.train, epochs=10, lr=3e-3, progress=False, seed=seed)
        halved = structured.prune_units(lstm, 0.5)
        train(halved, split.train, epochs=10, lr=3e-3, progress=False, seed=seed)
        low = layers.copy_model(lstm)
        low.rnn = lowrank.svd_rnn(lstm.rnn, rank_hh=16)
        train(low, split.train, epochs=5, lr=1e-3, progress=False, seed=seed)
        q8 = quantize.quantize_model(lstm, 8, per_channel=True)
        rows.append([seed, f"{100 * b:.2f}", *(f"{100 * (evaluate(m, split.test) - b):+.2f}"
                                              for m in (pruned, halved, q8, low))])
    table(["seed", "LSTM-64 %", "70 % + 10 ep", "half the units + 10 ep", "8-bit per channel", "SVD rank_hh 16 + 5 ep"],
          rows, "The same calls on an LSTM-64 (change in points)")

    rows = distillation_gaps(lambda h: models.rnn_classifier("gru", hidden_size=h), bases[0], split.train,
                             split.test, (8, 16, 32), SEEDS)
    table(["student hidden", *GAP_COLUMNS], rows,
          "GRU-64 teacher (seed 0) -> smaller GRU, T = 2, alpha = 0.5, 30 epochs, student seeds 0-2")
    cnn = fit_baseline("lenet", split.train, seed=0, progress=False)
    rows = distillation_gaps(lambda h: models.rnn_classifier("gru", hidden_size=h), cnn, split.train, split.test,
                             (8, 16, 32), SEEDS, temperature=4.0, alpha=0.9, epochs=60)
    table(["student hidden", *GAP_COLUMNS], rows,
          f"Chapter 06's LeNet teacher ({100 * evaluate(cnn, split.test):.2f} %) and recipe (T = 4, alpha = 0.9, "
          "60 epochs) -> GRU students, seeds 0-2")

    rows = []
    for hidden in (64, 256):
        lstm = trained(lambda h=hidden: models.rnn_classifier("lstm", hidden_size=h), split, 0, lr=3e-3)
        versions = {"torch fp32": lstm, **int8.int8_models(lstm, x64)}
        speeds = {batch: timing.compare(versions, x64[:batch]) for batch in (64, 1)}
        for name, model in versions.items():
            size = metrics.torch_file_bytes(model) if model is lstm else model.file_bytes
            int8_vs_onnx = " / ".join(speeds[b].verdict(name, against="onnx fp32") for b in (64, 1)) \
                if name == "onnx int8 dynamic" else ""
            rows.append([f"LSTM-{hidden} {name}", size, f"{100 * evaluate(model, split.test):.2f}",
                         *(f"{speeds[b].median_ms(name):.3f}  {speeds[b].verdict(name)}" for b in (64, 1)),
                         int8_vs_onnx])
    table(["model", "file bytes", "accuracy %", "batch 64: median ms, against torch fp32", "batch 1: the same",
           "int8 against onnx fp32 (batch 64 / 1)"], rows,
          "Real int8 LSTM through ONNX Runtime (dynamic quantization, DynamicQuantizeLSTM), 1 thread, timed "
          "interleaved, verdicts with the 95 % interval of the median")

    if "--no-notebooks" not in sys.argv:
        notebook_times("07_rnn_compression.ipynb")

if __name__ == "__main__":
    main()
