"""How far every checked claim of every chapter is from failing, under several CPU kernels and thread counts.

    python benchmarks/claim_margins.py [chapters ...] [--settings default:1,avx2:1,default:2,avx2:2]

A claim checked in a chapter (``claims.check``) holds on the machine it was written on; trained weights, timings and
so every measured number move with the processor's vector kernels and the number of threads. This script executes
each chapter (``jupyter nbconvert --execute``, claims not strict, a fresh training cache) once per setting:

- ``ATEN_CPU_CAPABILITY``: ``default`` (no vector unit), ``avx2``, and ``avx512`` where the processor has it; MKL's
  matrix products (``MKL_ENABLE_INSTRUCTIONS``) and oneDNN's (``DNNL_MAX_CPU_ISA``) follow;
- threads: the chapter's ``torch.set_num_threads(1)`` replaced by 1 or 2 (never more than the machine's cores).

Each check logs its margins (``claims.LOG_ENV``): per condition, the slack to its threshold as a fraction of it. The
table gives, per claim, the smallest margin in each setting and over all of them; a claim whose smallest margin is
below ``FLOOR`` is a defect to fix before it lands (a threshold tuned to one processor), as is a claim that fails.
Settings with one thread run two at a time (one per core), with two threads one at a time. About 6-9 minutes of
machine time per setting for all chapters (every training runs: the cache key holds kernel and thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import torch

from compresskit.checks import available_cores

ROOT = Path(__file__).resolve().parent.parent
FLOOR = 0.10
"""The smallest margin a claim may have in any setting: 10 % of its threshold, or of its tolerance where the
threshold sits near a natural limit (an accuracy a few points from 100 %, a perplexity within 2 % of float32's)."""
# the same vector level in oneDNN's and MKL's (the BLAS behind nn.Linear) own names
ISA = {"default": "SSE41", "avx2": "AVX2", "avx512": "AVX512_CORE"}
MKL = {"default": "SSE4_2", "avx2": "AVX2", "avx512": "AVX512"}
THREADS_LINE = re.compile(r"torch\.set_num_threads\(1\)")


def settings_available() -> list[str]:
    own = torch.backends.cpu.get_cpu_capability().lower()  # e.g. "avx2", "avx512", "default"
    kernels = ["default", "avx2"] + (["avx512"] if own.startswith("avx512") else [])
    return [f"{k}:{t}" for t in (1, 2) if t <= available_cores() for k in kernels]


def prepared(notebook: Path, threads: int, folder: Path) -> Path:
    """A copy of the chapter whose first cell sets ``threads`` threads instead of one."""
    book = nbformat.read(notebook, as_version=4)
    first = next(c for c in book.cells if c.cell_type == "code")
    if not THREADS_LINE.search(first.source):
        raise SystemExit(f"{notebook.name}: its first code cell does not call torch.set_num_threads(1)")
    first.source = THREADS_LINE.sub(f"torch.set_num_threads({threads})", first.source)
    path = folder / notebook.name
    nbformat.write(book, path)
    return path


def run(notebook: Path, setting: str, work: Path) -> tuple[str, str, float, list[dict], str]:
    kernel, threads = setting.split(":")
    folder = work / setting.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{notebook.stem}.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "ATEN_CPU_CAPABILITY": kernel, "DNNL_MAX_CPU_ISA": ISA[kernel],
           "MKL_ENABLE_INSTRUCTIONS": MKL[kernel], "OMP_NUM_THREADS": threads,
           "COMPRESSKIT_CLAIM_LOG": str(log), "COMPRESSKIT_STRICT_CLAIMS": "0",
           "COMPRESSKIT_CACHE": str(folder / "cache")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=600", "--output-dir", str(folder),
                           str(prepared(notebook, int(threads), folder))],
                          cwd=folder, env=env, capture_output=True, text=True)
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    error = "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1][:160]
    return notebook.name, setting, time.monotonic() - start, records, error


def smallest(record: dict) -> float | None:
    margins = record.get("margins")
    return min(margins.values()) if margins else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or names (default: all)")
    parser.add_argument("--settings", default=",".join(settings_available()),
                        help="comma-separated kernel:threads (default: %(default)s)")
    args = parser.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        notebooks = [n for n in notebooks if any(n.name.startswith(c) for c in args.chapters)]
    settings = args.settings.split(",")
    for setting in settings:
        kernel, threads = setting.split(":")
        if kernel not in ISA or not threads.isdigit() or not 1 <= int(threads) <= available_cores():
            raise SystemExit(f"setting {setting!r}: kernel in {sorted(ISA)}, threads in 1..{available_cores()}")
    work = Path(tempfile.mkdtemp(prefix="compresskit-claim-margins-"))
    results = {}
    try:
        for threads in sorted({s.split(":")[1] for s in settings}):
            batch = [(n, s) for s in settings if s.split(":")[1] == threads for n in notebooks]
            with ThreadPoolExecutor(max(1, available_cores() // int(threads))) as pool:
                for name, setting, seconds, records, error in pool.map(lambda a: run(*a, work), batch):
                    results[name, setting] = (seconds, records, error)
                    print(f"{name} [{setting}] {seconds:.0f} s" + (f"  FAILED: {error}" if error else ""),
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    worst = (float("inf"), "", "")
    for notebook in notebooks:
        claims = {}
        for setting in settings:
            for record in results[notebook.name, setting][1]:
                claims.setdefault(record["claim"], {})[setting] = record
        print(f"\n{notebook.name}")
        header = ["claim"] + settings + ["smallest", "weakest condition", "verdict"]
        rows = []
        for claim, by_setting in claims.items():
            margins = [smallest(r) for r in by_setting.values()]
            known = [m for m in margins if m is not None]
            low = min(known) if known else None
            conditions = {}
            for record in by_setting.values():
                for condition, value in (record.get("margins") or {}).items():
                    conditions[condition] = min(value, conditions.get(condition, float("inf")))
            weakest = min(conditions, key=conditions.get) if conditions else ""
            held = all(r["holds"] for r in by_setting.values()) and len(by_setting) == len(settings)
            verdict = "FAILS" if not held else "no margins logged" if low is None else \
                "BELOW FLOOR" if low < FLOOR else "ok"
            if low is not None and low < worst[0]:
                worst = (low, notebook.name, claim)
            rows.append([claim[:60]] + [("n/a" if s not in by_setting else
                                         f"{smallest(by_setting[s]):+.3f}" if smallest(by_setting[s]) is not None
                                         else ("holds" if by_setting[s]["holds"] else "fails")) for s in settings]
                        + ["" if low is None else f"{low:+.3f}", weakest[:50], verdict])
        if rows:
            widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
            for r in [header, ["-" * w for w in widths]] + rows:
                print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
        for setting in settings:
            seconds, records, error = results[notebook.name, setting]
            if error:
                print(f"  [{setting}] the chapter failed: {error}")
            for record in records:
                print(f"  [{setting}] {record['claim'][:50]}: {record['measured'][:200]}")
    if worst[1]:
        print(f"\nSmallest margin: {worst[0]:+.3f} ({worst[1]}: {worst[2]}); floor {FLOOR:+.2f}")


if __name__ == "__main__":
    main()
