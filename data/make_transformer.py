"""Regenerate data/transformer.ckpk: the trained character language model of chapters 09 and 10.

Run once by a maintainer (about 25 minutes on 2 CPU cores); the workbook itself only reads the file.

    python data/make_transformer.py       # writes data/transformer.ckpk and prints its SHA-256

The recipe is ``compresskit.train.RECIPES["transformer"]`` (``models.transformer_lm()``, Adam, 8 epochs over the
non-overlapping 128-character windows of the corpus's training part, batch 32, seed 0), trained with
``train.fit_baseline`` on 2 threads. The file is written by ``compresskit.encode.pack`` (the workbook's own format:
float32 tensors, a checksum, no pickle) and read back by ``compresskit.train.shipped_baseline``. Training on a CPU is
deterministic for a given torch version, thread count and CPU vector unit; the published file was made with torch
2.13.0 on 2 threads (AVX2).
"""

import hashlib
import time
from pathlib import Path

import torch

from compresskit import data, encode, train

OUT = Path(__file__).with_name("transformer.ckpk")


def main() -> None:
    torch.set_num_threads(2)
    start = time.perf_counter()
    windows = data.windows(data.load_text().train, 128)
    model = train.fit_baseline("transformer", windows, seed=0)
    OUT.write_bytes(encode.pack(model, huffman=False))
    print(f"trained in {time.perf_counter() - start:.0f} s -> {OUT} ({OUT.stat().st_size:,} bytes)")
    print(OUT, hashlib.sha256(OUT.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
