"""Targets of the low-rank and distillation issue, measured and printed as tables (chapters 05 and 06).

    python benchmarks/lowrank_distill.py [--no-notebooks]
"""

import statistics
import sys

import torch
from _common import GAP_COLUMNS, chapter_panels, distillation_gaps, notebook_times, slider_latency, table

from compresskit import data, distill, lowrank, metrics, models, timing
from compresskit.train import evaluate, fit_baseline, set_seed, train

SEEDS = (0, 1, 2)
# chapter 06's students and recipe: the teacher's shape with fewer channels and units
CNN_STUDENTS = ((1, 2, 8), (2, 4, 8), (2, 4, 16), (4, 8, 16), (8, 16, 32))
KD = {"temperature": 4.0, "alpha": 0.9, "epochs": 60}


def main() -> None:
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)
    slider_latency("chapter 05 rank slider", chapter_panels("05_low_rank.ipynb")["rank"], "rank",
                   (1, 4, 8, 16, 24, 32, 48, 64, 16, 8))

    rows = []
    for seed in SEEDS:
        base = fit_baseline("mlp", split.train, seed=seed, progress=False)
        model = lowrank.low_rank(base, rank=16)
        share = sum(p.numel() for i in (1, 3) for p in model[i].parameters()) / \
            sum(p.numel() for i in (1, 3) for p in base[i].parameters())
        before = evaluate(model, split.test)
        train(model, split.train, epochs=5, lr=1e-3, progress=False, seed=seed)
        rows.append([seed, f"{100 * evaluate(base, split.test):.2f}", f"{share:.1%}", f"{100 * before:.2f}",
                     f"{100 * evaluate(model, split.test):.2f}",
                     f"{100 * (evaluate(model, split.test) - evaluate(base, split.test)):+.2f}"])
    table(["seed", "dense %", "big layers' params kept", "rank 16 %", "+5 ep FT %", "change (pts)"], rows,
          "SVD of LeNet-300-100's big layers (target: <= 30 % of params, within 1 point after fine-tuning)")

    set_seed(0)
    wide, x = torch.nn.Linear(2048, 2048), torch.randn(64, 2048)
    svd = lowrank.svd_of(wide)  # one decomposition, sliced for every rank
    factored = {r: lowrank.svd_linear(wide, r, svd=svd) for r in (64, 256, 512, 1024)}
    speed = timing.compare({"dense": wide, **{f"rank {r}": f for r, f in factored.items()}}, x)
    rows = [[r, f"{metrics.macs(wide, (2048,)) / metrics.macs(f, (2048,)):.2f}x", speed.verdict(f"rank {r}")]
            for r, f in factored.items()]
    table(["rank", "MACs ratio", "measured (interleaved)"], rows,
          f"2048x2048 Linear, batch 64, 1 thread, dense {speed.median_ms('dense'):.3f} ms, verdicts with the 95 % "
          "interval of the median (target: rank 256 >= 2x)")

    teacher = fit_baseline("lenet", split.train, seed=0, progress=False)
    label = f"LeNet teacher {100 * evaluate(teacher, split.test):.2f} %, {metrics.count_params(teacher):,} params"
    rows = distillation_gaps(lambda shape: models.lenet(channels=shape[:2], hidden=shape[2]), teacher, split.train,
                             split.test, CNN_STUDENTS, range(10), **KD)
    table(["student (c1, c2, hidden)", *GAP_COLUMNS], rows,
          f"Distillation into LeNet-shaped students ({label}), T = {KD['temperature']:g}, alpha = {KD['alpha']:g}, "
          f"{KD['epochs']} epochs, seeds 0-9 "
          "(target: distilled > labels only on average at the smallest sizes)")
    rows = distillation_gaps(lambda w: models.mlp(hidden=(w,)), teacher, split.train, split.test, (4, 8, 16, 32),
                             range(10), **KD)
    table(["MLP student width", *GAP_COLUMNS], rows,
          "The same teacher and recipe into one-hidden-layer MLP students (a student of another shape), seeds 0-9")

    rows = []
    for width in (8, 16, 32):
        gaps = distill.compare_with_labels(lambda w=width: models.mlp(hidden=(w,)), teacher, split.train, split.test,
                                           seeds=range(5), temperature=4.0, alpha=0.9, epochs=150, lr=3e-3,
                                           fraction=0.1, progress=False).gaps
        rows.append([width, f"{statistics.mean(gaps):+.1f} ± {statistics.stdev(gaps):.1f}",
                     " / ".join(f"{g:+.1f}" for g in gaps)])
    table(["student width", "gap (pts)", "seeds 0-4"], rows,
          "A tenth of the labels (143 images, a random tenth per seed), T = 4, alpha = 0.9, 150 epochs: "
          "distilled - labels only")

    rows = []  # logit matching against the softened softmax, the 550-parameter student of chapter 06, section 5
    softmax = distill.compare_with_labels(lambda: models.lenet(channels=(2, 4), hidden=16), teacher, split.train,
                                          split.test, seeds=range(5), **KD, lr=3e-3, progress=False)
    logits = distill.compare_with_labels(lambda: models.lenet(channels=(2, 4), hidden=16), teacher, split.train,
                                         split.test, seeds=range(5), alpha=KD["alpha"], epochs=KD["epochs"],
                                         lr=3e-3, loss="logits", progress=False)
    for name, runs in (("labels only", softmax.labels_only), (f"softmax, T = {KD['temperature']:g}", softmax.distilled),
                       ("logits (centred)", logits.distilled)):
        test = [t for _, t in runs]
        rows.append([name, f"{statistics.mean(test):.2f} ± {statistics.stdev(test):.2f}",
                     " / ".join(f"{t:.1f}" for t in test)])
    table(["objective", "test % (mean ± sd)", "seeds 0-4"], rows,
          "LeNet (2, 4, 16) student, 550 params: labels, softened softmax and logit matching (same seeds and recipe)")

    if "--no-notebooks" not in sys.argv:
        notebook_times("05_low_rank.ipynb", "06_distillation.ipynb")

if __name__ == "__main__":
    main()
