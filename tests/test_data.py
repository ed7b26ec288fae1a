import gzip
import shutil

import numpy as np
import pytest
import torch

from compresskit import data


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_load_digits_shapes_ranges_and_stratification(seed):
    split = data.load_digits(seed=seed, test_fraction=0.2)
    x, y = split.train.tensors
    xt, yt = split.test.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1:] == (1, 8, 8) and len(x) + len(xt) == 1797
    assert 0.0 <= float(torch.cat([x, xt]).min()) and float(torch.cat([x, xt]).max()) == 1.0
    all_counts = torch.bincount(torch.cat([y, yt]), minlength=10)
    test_counts = torch.bincount(yt, minlength=10)
    # stratified: each class contributes round(0.2 * n_c) images to the test set
    expected = torch.tensor([round(0.2 * int(n)) for n in all_counts])
    assert torch.equal(test_counts, expected)
    # train and test are disjoint: no image (with its label) appears in both
    train_rows = {tuple(r.tolist()) for r in torch.cat([x.flatten(1), y[:, None].float()], 1)}
    dup = sum(tuple(r.tolist()) in train_rows for r in torch.cat([xt.flatten(1), yt[:, None].float()], 1))
    assert dup <= 2  # the UCI set itself holds a couple of identical images; a leaky split would give ~359


def test_load_digits_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = data.load_digits(seed=3), data.load_digits(seed=3), data.load_digits(seed=4)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0]) and torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])


def test_digits_match_the_raw_file_written_out():
    images, labels = data.read_digits()
    with gzip.open(data.DATA_DIR / data.DIGITS_FILE, "rt") as fh:
        first = [int(v) for v in fh.readline().split(",")]
    assert torch.allclose(images[0].flatten(), torch.tensor(first[:64], dtype=torch.float32) / 16)
    assert int(labels[0]) == first[64] and torch.bincount(labels).tolist()[0] == 178


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_bad_test_fraction_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=bad)


def test_bad_types_are_type_errors():
    with pytest.raises(TypeError, match="seed"):
        data.load_digits(seed=1.5)
    with pytest.raises(TypeError, match="test_fraction"):
        data.load_digits(test_fraction="0.2")


def test_seeds_beyond_what_the_generator_takes_are_refused():
    with pytest.raises(ValueError, match=r"seed must be in \[0, 18446744073709551615\], got 18446744073709551616"):
        data.load_digits(seed=2**64)
    with pytest.raises(ValueError, match="seed"):
        data.stratified_split(torch.arange(10) % 2, 0.5, -1)
    assert len(data.stratified_split(torch.arange(10) % 2, 0.5, 2**64 - 1)[1]) == 4  # the largest seed works


def test_split_refuses_fractions_that_empty_a_part_and_bad_labels():
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="test_fraction=0.1 leaves the test part empty"):
        data.stratified_split(labels, 0.1, 0)
    with pytest.raises(ValueError, match="test_fraction=0.9 leaves the train part empty"):
        data.stratified_split(labels, 0.9, 0)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor, got list"):
        data.stratified_split([0, 1, 0, 1], 0.5, 0)
    for bad in (torch.tensor([], dtype=torch.int64), torch.tensor([0.0, 1.0]), torch.zeros(2, 2, dtype=torch.int64)):
        with pytest.raises(ValueError, match="labels must be a non-empty 1-d tensor of integer class indices"):
            data.stratified_split(bad, 0.5, 0)
    with pytest.raises(ValueError, match="labels must be class indices >= 0, got a minimum of -1"):
        data.stratified_split(torch.tensor([0, -1, 0, -1]), 0.5, 0)


def test_missing_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="git checkout -- data/"):
        data.load_digits()


def test_corrupt_file_fails_the_checksum(tmp_path, monkeypatch):
    copy = tmp_path / data.DIGITS_FILE
    shutil.copy(data.DATA_DIR / data.DIGITS_FILE, copy)
    raw = bytearray(copy.read_bytes())
    raw[-20] ^= 0xFF
    copy.write_bytes(bytes(raw))
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match="corrupt: SHA-256"):
        data.load_digits()


def _write_idx(path, array: np.ndarray, type_code: int, compress: bool):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_load_idx_round_trips_tiny_files(tmp_path, compress, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"img{suffix}", images, 0x08, compress)
    _write_idx(tmp_path / f"lab{suffix}", labels, 0x08, compress)
    ds = data.load_idx(tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}")
    x, y = ds.tensors
    assert x.shape == (5, 1, 4, 3) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())


def test_load_idx_rejects_bad_files(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x12\x34\x56\x78rest")
    _write_idx(tmp_path / "lab", np.zeros(3, np.uint8), 0x08, False)
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load_idx(tmp_path / "junk", tmp_path / "lab")
    _write_idx(tmp_path / "img", np.zeros((4, 2, 2), np.uint8), 0x08, False)
    with pytest.raises(ValueError, match="4 images .* 3 labels"):
        data.load_idx(tmp_path / "img", tmp_path / "lab")
    truncated = (tmp_path / "img").read_bytes()[:-3]
    (tmp_path / "short").write_bytes(truncated)
    with pytest.raises(ValueError, match="header promises"):
        data.load_idx(tmp_path / "short", tmp_path / "lab")


@pytest.mark.parametrize("dtype, code", [(np.float32, 0x0D), (np.int16, 0x0B), (np.int32, 0x0C)])
def test_idx_images_that_are_not_bytes_are_refused_not_returned_as_if_in_0_1(tmp_path, dtype, code):
    _write_idx(tmp_path / "img", np.full((3, 2, 2), 1000, dtype), code, False)
    _write_idx(tmp_path / "lab", np.arange(3, dtype=np.uint8), 0x08, False)
    with pytest.raises(ValueError, match=f"holds {np.dtype(dtype).name} pixels; images must be unsigned bytes"):
        data.load_idx(tmp_path / "img", tmp_path / "lab")


def test_load_mnist_finds_files_in_variant_folder_and_explains_when_missing(tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    for name, n in (("train", 6), ("t10k", 2)):
        _write_idx(folder / f"{name}-images-idx3-ubyte.gz", np.full((n, 28, 28), 255, np.uint8), 0x08, True)
        _write_idx(folder / f"{name}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8), 0x08, False)
    split = data.load_mnist(tmp_path, "fashion")
    assert split.train.tensors[0].shape == (6, 1, 28, 28) and len(split.test) == 2
    assert float(split.train.tensors[0].max()) == 1.0
    with pytest.raises(FileNotFoundError, match="does not download"):
        data.load_mnist(tmp_path, "mnist")
    with pytest.raises(ValueError, match="variant"):
        data.load_mnist(tmp_path, "kmnist")


def test_as_sequences():
    x = torch.rand(3, 1, 8, 5)
    seq = data.as_sequences(x)
    assert seq.shape == (3, 8, 5) and torch.equal(seq[1, 2], x[1, 0, 2])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        data.as_sequences(torch.rand(3, 8, 5))
    with pytest.raises(TypeError):
        data.as_sequences(np.zeros((1, 1, 2, 2)))
