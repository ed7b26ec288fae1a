"""Targets of the pruning issue, measured and printed as tables (chapters 01-03).

    python benchmarks/pruning.py [--no-notebooks]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from _common import chapter_panels, notebook_times, slider_latency, table  # noqa: E402

from compresskit import data, metrics, models, prune, sparsify, structured, timing  # noqa: E402
from compresskit.train import evaluate, fit_baseline, set_seed, train  # noqa: E402

SEEDS = (0, 1, 2)


def main() -> None:
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)

    slider_latency("chapter 01 sparsity slider", chapter_panels("01_pruning.ipynb")["sparsity"], "sparsity",
                   (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.5, 0.8, 0.9, 0.99))

    rows = []
    for seed in SEEDS:
        base = fit_baseline("mlp", split.train, seed=seed, progress=False)
        b = evaluate(base, split.test)
        oneshot = prune.magnitude_prune(base, sparsity=0.9, scope="global")
        o = evaluate(oneshot, split.test)
        train(oneshot, split.train, epochs=8, lr=1e-3, progress=False, seed=seed)
        gradual, _ = prune.iterative_prune(base, split.train, final_sparsity=0.9, steps=3, epochs_per_step=4,
                                           scope="global")
        rows.append([seed, f"{100 * b:.2f}", f"{100 * o:.2f}", f"{100 * evaluate(oneshot, split.test):.2f}",
                     f"{100 * evaluate(gradual, split.test):.2f}",
                     f"{prune.sparsity_report(oneshot).total.sparsity:.1%}",
                     metrics.storage_bytes(oneshot, format="bitmask")])
    table(["seed", "dense %", "90% one-shot %", "90% + 8 ep FT %", "90% gradual %", "sparsity", "bitmask bytes"],
          rows, "LeNet-300-100 at 90 % global sparsity (target: >= 90 % pruned, <= 1 point loss)")

    set_seed(0)
    wide = models.mlp(hidden=(1024, 1024))
    train(wide, split.train, epochs=8, lr=1e-3, progress=False)
    x = split.test.tensors[0][:64]
    rows, dense_ms = [], []
    for amount in (0.25, 0.5, 0.75):
        small = structured.prune_channels(wide, amount)
        budget = 1 - metrics.count_params(small) / metrics.count_params(wide)
        finalized = prune.finalize(prune.magnitude_prune(wide, sparsity=budget, scope="global"))
        speed = timing.compare({"dense": wide, "structured": small, "unstructured": finalized}, x)
        dense_ms.append(speed.median_ms("dense"))
        rows.append([f"{amount:.0%}", f"{metrics.macs(wide, (1, 8, 8)) / metrics.macs(small, (1, 8, 8)):.2f}x",
                     speed.verdict("structured"), speed.verdict("unstructured"),
                     f"{100 * evaluate(small, split.test):.2f}"])
    table(["neurons removed", "MACs ratio", "structured (interleaved)", "same budget unstructured", "acc % (no FT)"],
          rows, f"MLP 1024-1024, batch 64, 1 thread, dense {min(dense_ms):.3f}-{max(dense_ms):.3f} ms, verdicts "
          "against dense with the 95 % interval of the median (target: 50 % -> >= 1.6x)")

    rows = []
    for seed in SEEDS:
        set_seed(seed)
        dense = models.mlp()
        sparsify.train_sparse(dense, split.train, method="none", lam=0.0, epochs=30, lr=0.05, progress=False, seed=seed)
        set_seed(seed)
        model = models.mlp()
        sparsify.train_sparse(model, split.train, method="proximal", lam=6e-3, epochs=30, lr=0.05, progress=False,
                              seed=seed)
        frozen = prune.freeze_zeros(model)
        train(frozen, split.train, epochs=10, lr=1e-3, progress=False, seed=seed)
        d, a = evaluate(dense, split.test), evaluate(frozen, split.test)
        rows.append([seed, f"{100 * d:.2f}", f"{100 * a:.2f}", f"{100 * (d - a):+.2f}",
                     f"{sparsify.exact_zero_fraction(frozen):.1%}"])
    table(["seed", "dense (SGD) %", "proximal + debias %", "loss (points)", "exact zeros"], rows,
          "Proximal L1, lambda = 6e-3 (target: >= 80 % zeros, <= 1 point loss)")

    rows = [[f"{r['sparsity']:.2f}", f"{r['dense_ms']:.3f}", f"{r['csr_ms']:.3f}", f"{r['coo_ms']:.3f}",
             r["csr"]] for r in timing.sparse_matmul_timings()]
    table(["sparsity", "dense ms", "CSR ms", "COO ms", "CSR against dense (interleaved)"], rows,
          "1024x1024 weight @ batch 64, one thread")

    # layer-level against neuron-level pruning of the residual MLP (chapter 02, section 5), over seeds
    rows = []
    for seed in SEEDS:
        res = fit_baseline("resmlp", split.train, seed=seed, progress=False)
        calibration = torch.utils.data.TensorDataset(*(t[:512] for t in split.train.tensors))
        base = evaluate(res, split.test)
        for k in (2, 4, 6):
            shallower, thinner = structured.prune_blocks(res, k, calibration), structured.thin_blocks(res, k / 8)
            for m in (shallower, thinner):
                train(m, split.train, epochs=5, lr=1e-3, progress=False, seed=seed)
            speeds = {b: timing.compare({"unpruned": res, "blocks": shallower, "neurons": thinner},
                                         split.test.tensors[0][:b]) for b in (1, 64)}
            rows.append([seed, k, f"{100 * base:.2f}", f"{100 * evaluate(shallower, split.test):.2f}",
                         f"{100 * evaluate(thinner, split.test):.2f}",
                         *(speeds[b].verdict("blocks", against="neurons") for b in (1, 64))])
    table(["seed", "blocks removed", "unpruned %", "blocks + 5 ep FT %", "neurons (same budget) + 5 ep FT %",
           "blocks vs neurons, batch 1", "batch 64"], rows,
          "Residual MLP (8 blocks): removing k blocks against k/8 of every block's neurons, interleaved timings")

    if "--no-notebooks" not in sys.argv:
        notebook_times("01_pruning.ipynb", "02_structured_pruning.ipynb", "03_sparsity_l1.ipynb", target_s=60)

if __name__ == "__main__":
    main()
