"""Regenerate data/pycode.txt.gz: Python source from CPython's standard library, the text corpus of chapters 09-10.

Run once by a maintainer; the workbook itself only reads the file.

    python data/make_pycode.py            # writes data/pycode.txt.gz and prints its SHA-256

What it takes: the standard library's top-level modules (``Lib/*.py``, not packages or tests) of the Python running
the script, in sorted order, skipping private modules (a leading underscore) and files that are not pure ASCII, until
the text reaches ``TARGET_CHARS``. Each file is preceded by a line ``# ==== <name>.py ====``. Tabs become four spaces,
form feeds and carriage returns are dropped, so the text uses only newline and the 95 printable ASCII characters
(``compresskit.data.TEXT_VOCAB``). The published file was made with CPython 3.11.7; another version's library gives
other bytes (and another checksum).

Licence: the Python Software Foundation License Version 2 (CPython's own licence, which permits redistribution with
the licence notice kept); see data/README.md.

gzip is written with mtime=0, so the file, and hence its checksum, is byte-for-byte reproducible.
"""

import gzip
import hashlib
import platform
import sysconfig
from pathlib import Path

OUT = Path(__file__).with_name("pycode.txt.gz")
TARGET_CHARS = 1_500_000
ALLOWED = set("\n" + "".join(chr(c) for c in range(32, 127)))


def clean(text: str) -> str | None:
    text = text.replace("\t", "    ").replace("\f", "").replace("\r", "")
    return text if set(text) <= ALLOWED else None


def main() -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(lib.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            text = clean(path.read_bytes().decode("ascii"))
        except UnicodeDecodeError:
            continue
        if text is None:
            continue
        parts.append(f"# ==== {path.name} ====\n{text.rstrip()}\n\n")
        total += len(parts[-1])
        if total >= TARGET_CHARS:
            break
    raw = "".join(parts).encode("ascii")
    with open(OUT, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    print(f"CPython {platform.python_version()}: {len(parts)} files, {len(raw):,} characters -> {OUT} "
          f"({OUT.stat().st_size:,} bytes)")
    print(OUT, hashlib.sha256(OUT.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
