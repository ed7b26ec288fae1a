"""Do the chapters print the same speed verdicts on an idle and on a busy machine?

    python benchmarks/verdict_stability.py [chapters...]     # e.g. 02 07; default: all

Each chapter runs twice through ``jupyter nbconvert --execute``: once with the machine otherwise idle, once with a
busy loop on another core. Every verdict the run prints ("1.8x faster (...)", "1.3x slower (...)", "no measurable
difference (...)", "undecided, 1.12x (...)") is compared by kind, line by line; differing lines are listed, and
counted apart when they contradict each other (two different decided kinds: faster, slower, no measurable difference)
rather than one run leaving open what the other decided. Target: all identical.
"""

import glob
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERDICT = re.compile(r"((?:\d+(?:\.\d+)?x (?:faster|slower)|no measurable difference|undecided, \d+\.\d+x)"
                     r"(?: \([0-9.]+-[0-9.]+\))?)")


def _busy() -> None:
    while True:
        pass


def verdicts(notebook: str, out: Path) -> tuple[list[tuple[int, str, str]], float]:
    start = time.monotonic()
    subprocess.run(["jupyter", "nbconvert", "--to", "notebook", "--execute", notebook, "--output", str(out),
                    "--ExecutePreprocessor.timeout=300"], check=True, capture_output=True)
    found = []
    for i, cell in enumerate(json.loads(out.read_text())["cells"]):
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream" and output["name"] == "stdout":
                for line in "".join(output["text"]).splitlines():
                    for m in VERDICT.finditer(line):
                        text = m.group(1)
                        kind = next((k for k in ("faster", "slower", "undecided") if k in text), "none")
                        found.append((i, kind, m.group(1)))
    return found, time.monotonic() - start


def main() -> None:
    wanted = sys.argv[1:]
    notebooks = sorted(glob.glob(str(ROOT / "notebooks" / "[0-9][0-9]_*.ipynb")))
    if wanted:
        notebooks = [n for n in notebooks if os.path.basename(n)[:2] in wanted]
    total = same = contradictions = 0
    with tempfile.TemporaryDirectory() as tmp:
        for notebook in notebooks:
            name = os.path.basename(notebook)
            idle, t_idle = verdicts(notebook, Path(tmp) / f"idle-{name}")
            load = multiprocessing.Process(target=_busy, daemon=True)  # one extra process: the machine's other core
            load.start()
            try:
                busy, t_busy = verdicts(notebook, Path(tmp) / f"busy-{name}")
            finally:
                load.terminate()
            differ = [(a, b) for a, b in zip(idle, busy) if a[1] != b[1]]
            opposed = [(a, b) for a, b in differ if "undecided" not in (a[1], b[1])]
            total, same = total + len(idle), same + len(idle) - len(differ)
            contradictions += len(opposed)
            print(f"{name}: {len(idle)} verdicts, {len(idle) - len(differ)} identical, {len(opposed)} contradicting "
                  f"(idle run {t_idle:.0f} s, busy run {t_busy:.0f} s)", flush=True)
            for a, b in differ:
                print(f"    cell {a[0]}: idle '{a[2]}', busy '{b[2]}'" + ("  <- contradiction" if (a, b) in opposed
                                                                         else ""))
            if len(idle) != len(busy):
                print(f"    {len(idle)} verdict lines idle, {len(busy)} busy")
    print(f"total: {same} of {total} verdicts identical; {contradictions} contradicting "
          f"(the rest: undecided in one run, decided in the other)")


if __name__ == "__main__":
    main()
