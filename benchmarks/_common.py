"""Shared by the benchmark scripts: tables, nbval timings, the chapters' own panels, seeded baselines."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# benchmarks measure a learner's first run: every training runs (compresskit.cache would load the ones an earlier run
# of a benchmark or a chapter left), unless COMPRESSKIT_CACHE is set on purpose
os.environ.setdefault("COMPRESSKIT_CACHE", "off")

from compresskit.train import set_seed, train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def table(headers: list[str], rows: list[list], title: str = "") -> None:
    """Print rows as an aligned text table (numbers right-aligned)."""
    cells = [[f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v) for v in r]
             for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))


def nbval_seconds(notebook: str) -> tuple[float, bool]:
    """Wall-clock seconds of `pytest --nbval-lax notebooks/<notebook>`, and whether it passed: one process, no xdist
    workers, and cold (``COMPRESSKIT_CACHE=off``: every training runs, as on a learner's first run)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "--nbval-lax", "-p", "no:cacheprovider",
                           f"notebooks/{notebook}"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COMPRESSKIT_CACHE": "off"})
    return time.perf_counter() - start, proc.returncode == 0


def notebook_times(*notebooks: str, target_s: float = 90) -> None:
    """Print the nbval wall-clock time of each notebook, and whether it passed."""
    rows = [[name, f"{seconds:.1f}", "pass" if ok else "FAIL"] for name in notebooks
            for seconds, ok in [nbval_seconds(name)]]
    table(["notebook", f"nbval s (target < {target_s:.0f})", "result"], rows, "Notebooks under pytest --nbval-lax")


# the columns after the size in distillation_gaps' rows
GAP_COLUMNS = ["params", "labels only %", "distilled %", "gap (pts)", "seeds", "train - test: labels / distilled"]


def distillation_gaps(make_student, teacher, dataset, test, sizes, seeds, *, temperature: float = 2.0,
                      alpha: float = 0.5, epochs: int = 30, lr: float = 3e-3) -> list[list]:
    """For each size, ``distill.compare_with_labels`` over the seeds; rows of [size, parameters, labels mean ± sd,
    distilled mean ± sd, gap mean ± sd, seeds won / lost, train - test of each arm] in points."""
    from compresskit import distill, metrics

    rows = []
    for size in sizes:
        result = distill.compare_with_labels(functools.partial(make_student, size), teacher, dataset, test,
                                             seeds=seeds, temperature=temperature, alpha=alpha, epochs=epochs,
                                             lr=lr, progress=False)
        tests = [[t for _, t in runs] for runs in (result.labels_only, result.distilled)]
        gap = result.gaps
        rows.append([size, f"{metrics.count_params(result.student):,}",
                     *(f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" for v in tests),
                     f"{statistics.mean(gap):+.2f} ± {statistics.stdev(gap):.2f}",
                     f"{sum(g > 0 for g in gap)} won, {sum(g < 0 for g in gap)} lost",
                     " / ".join(f"{result.overfit(arm):+.1f}" for arm in ("labels only", "distilled"))])
    return rows


def chapter_panels(notebook: str) -> dict:
    """Run a chapter's code cells in this process, headless, up to the last one that builds a panel, and return its
    panels keyed by their first control's name: the benchmarks time the chapter's own update functions, not copies
    of them."""
    import matplotlib.pyplot as plt
    import nbformat

    from compresskit import widgets

    book = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    cells = [c.source for c in book.cells if c.cell_type == "code"]
    last = max(i for i, source in enumerate(cells) if "panel(" in source)
    built, original = [], widgets.panel

    def recording(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    widgets.panel = recording  # the chapter's `from compresskit.widgets import panel` picks this up
    try:
        namespace = {"__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for source in cells[: last + 1]:
                exec(compile(source, notebook, "exec"), namespace)
    finally:
        widgets.panel = original
        plt.close("all")
    return {next(iter(p.controls)): p for p in built}


def slider_latency(what: str, panel, control: str, values, target_ms: float = 200,
                   model: str = "LeNet-300-100") -> list[float]:
    """Time a chapter's slider as the learner waits for it, ``Panel.render`` (update + PNG) once per value, and
    print the median / max table; returns the times in ms."""
    times = []
    for value in values:
        panel.render(**{control: value})
        times.append(panel.last_ms)
    table([f"{what} (update + evaluate + draw + PNG)", "median ms", "max ms", "target"],
          [[model, f"{statistics.median(times):.0f}", f"{max(times):.0f}", f"< {target_ms:.0f}"]],
          "Slider latency")
    return times


def trained(make, split, seed: int, *, epochs: int = 30, lr: float = 1e-3):
    """``make()`` trained on ``split.train`` for a seed, quietly: every benchmark's baseline."""
    set_seed(seed)
    model = make()
    train(model, split.train, epochs=epochs, lr=lr, progress=False, seed=seed)
    return model
