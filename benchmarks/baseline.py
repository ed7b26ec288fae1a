"""Chapter 00 figures: train time and accuracy of each baseline, notebook time under nbval, panel update time.

    python benchmarks/baseline.py [--no-notebooks]
"""

import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from _common import chapter_panels, notebook_times, slider_latency, table  # noqa: E402

from compresskit import data, metrics, models  # noqa: E402
from compresskit.train import evaluate, set_seed, train  # noqa: E402

BASELINES = {  # name: (constructor, epochs, lr), as chapter 00 trains them
    "MLP 300-100": (models.mlp, 30, 1e-3),
    "LeNet (CNN)": (models.lenet, 20, 3e-3),
    "GRU-64": (lambda: models.rnn_classifier("gru"), 30, 3e-3),
    "LSTM-64": (lambda: models.rnn_classifier("lstm"), 30, 3e-3),
}


def main() -> None:
    torch.set_num_threads(1)
    split = data.load_digits(seed=0)
    rows = []
    for name, (make, epochs, lr) in BASELINES.items():
        accs, secs = [], []
        for seed in (0, 1, 2):
            set_seed(seed)
            model = make()
            start = time.perf_counter()
            train(model, split.train, epochs=epochs, lr=lr, progress=False, seed=seed)
            secs.append(time.perf_counter() - start)
            accs.append(100 * evaluate(model, split.test))
        r = metrics.measure(model, split, timed=True)
        rows.append([name, f"{statistics.mean(secs):.2f}",
                     f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}",
                     r.params, r.bytes, r.macs, f"{r.latency_ms:.3f}"])
    table(["model", "train s (1 thread)", "test acc % (3 seeds)", "params", "bytes", "MACs", "latency ms (b=1)"],
          rows, "Baselines on digits")

    slider_latency("chapter 00 width slider", chapter_panels("00_baseline.ipynb")["width"], "width",
                   (4, 8, 16, 32, 64, 128, 256, 512), target_ms=200,
                   model="MLP, one hidden layer (all widths trained before the panel)")

    if "--no-notebooks" not in sys.argv:
        notebook_times("00_baseline.ipynb", target_s=60)

if __name__ == "__main__":
    main()
