"""Regenerate data/digits.csv.gz from scikit-learn's bundled copy of the UCI optical digits.

Run once by a maintainer (needs scikit-learn); the workbook itself only reads the file.

    python data/make_digits.py            # writes data/digits.csv.gz and prints its SHA-256

Format: gzip'd CSV, no header, 1797 rows, 65 integers per row: the 8x8 image row by row
(pixel counts 0..16), then the label 0..9. gzip is written with mtime=0 so the file, and
hence its checksum, is byte-for-byte reproducible.
"""

import gzip
import hashlib
from pathlib import Path

from sklearn.datasets import load_digits

OUT = Path(__file__).with_name("digits.csv.gz")


def main() -> None:
    digits = load_digits()
    lines = [
        ",".join(str(int(v)) for v in row) + f",{int(label)}"
        for row, label in zip(digits.data, digits.target)
    ]
    raw = ("\n".join(lines) + "\n").encode("ascii")
    with open(OUT, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    print(OUT, hashlib.sha256(OUT.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
