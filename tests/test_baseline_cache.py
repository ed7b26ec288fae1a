"""fit_baseline's cache: a loaded baseline is the trained one bit for bit, with the random generators where training
leaves them; the key follows everything the weights depend on; damaged files are retrained; off means off."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from compresskit import models, train
from compresskit.checks import available_cores
from compresskit.train import Recipe, fit_baseline


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(tmp_path))
    # short recipes: the cache's logic, not the baselines' accuracy, is under test
    monkeypatch.setitem(train.RECIPES, "mlp", Recipe(lambda: models.mlp(hidden=(16,)), 2, 1e-3))
    monkeypatch.setitem(train.RECIPES, "lenet", Recipe(lambda: models.lenet(channels=(2, 4), hidden=8), 1, 3e-3))
    return tmp_path


def _after(model):
    """The model's tensors and mode, and the next draw of each random generator."""
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            torch.rand(3), np.random.rand(), random.random())


def _same(a, b):
    return (a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
            and a[1] == b[1] and torch.equal(a[2], b[2]) and a[3:] == b[3:])


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_a_cached_baseline_is_the_trained_one_bit_for_bit(cache, name, split, monkeypatch, capsys):
    trained = _after(fit_baseline(name, split.train, seed=3, progress=False))
    files = list(cache.glob(f"{name}-seed3-*.pt"))
    assert len(files) == 1
    loaded = _after(fit_baseline(name, split.train, seed=3))  # from the file
    assert "loaded from" in capsys.readouterr().out
    assert _same(trained, loaded)
    monkeypatch.setenv("COMPRESSKIT_CACHE", "off")  # and both equal a training without any cache
    assert _same(trained, _after(fit_baseline(name, split.train, seed=3, progress=False)))
    assert list(cache.glob("*.pt")) == files and not list(cache.glob(".tmp-*"))


def test_the_key_follows_seed_data_recipe_and_threads(cache, split, monkeypatch):
    def files():
        return len(list(cache.glob("*.pt")))

    fit_baseline("mlp", split.train, seed=0, progress=False)
    fit_baseline("mlp", split.train, seed=0, progress=False)
    assert files() == 1
    fit_baseline("mlp", split.train, seed=1, progress=False)
    assert files() == 2
    fit_baseline("mlp", torch.utils.data.TensorDataset(*(t[:500] for t in split.train.tensors)), progress=False)
    assert files() == 3
    monkeypatch.setitem(train.RECIPES, "mlp", Recipe(lambda: models.mlp(hidden=(16,)), 3, 1e-3))  # epochs
    fit_baseline("mlp", split.train, seed=0, progress=False)
    assert files() == 4
    monkeypatch.setitem(train.RECIPES, "mlp", Recipe(lambda: models.mlp(hidden=(17,)), 3, 1e-3))  # architecture
    fit_baseline("mlp", split.train, seed=0, progress=False)
    assert files() == 5
    if available_cores() >= 2:  # another thread count may sum floats in another order: another key
        before = torch.get_num_threads()
        torch.set_num_threads(2 if before != 2 else 1)
        try:
            fit_baseline("mlp", split.train, seed=0, progress=False)
            assert files() == 6
        finally:
            torch.set_num_threads(before)


def test_a_damaged_file_is_retrained_and_replaced(cache, split, monkeypatch):
    trained = _after(fit_baseline("mlp", split.train, progress=False))
    (path,) = cache.glob("mlp-seed0-*.pt")
    path.write_bytes(path.read_bytes()[:100])  # cut short
    assert _same(trained, _after(fit_baseline("mlp", split.train, progress=False)))
    assert _same(trained, _after(fit_baseline("mlp", split.train, progress=False)))  # the rewritten file loads
    assert len(list(cache.glob("*.pt"))) == 1


def test_off_writes_nothing_and_the_folder_is_read_at_each_call(cache, split, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("COMPRESSKIT_CACHE", "OFF")
    assert train.baseline_cache_dir() is None
    fit_baseline("mlp", split.train, progress=False)
    assert not list(cache.iterdir())
    other = tmp_path_factory.mktemp("other")
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(other))
    fit_baseline("mlp", split.train, progress=False)
    assert train.baseline_cache_dir() == other and len(list(other.glob("*.pt"))) == 1
    monkeypatch.delenv("COMPRESSKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(other))
    assert train.baseline_cache_dir() == other / "compresskit"


def test_an_unwritable_folder_costs_only_the_cache(cache, split, monkeypatch):
    blocker = cache / "a file, not a folder"
    blocker.write_text("")
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot be written"):
        model = fit_baseline("mlp", split.train, progress=False)
    assert isinstance(model, torch.nn.Module)
    with pytest.raises(ValueError, match="name must be one of"):
        fit_baseline("nope", split.train)
    with pytest.raises(TypeError, match="progress"):
        fit_baseline("mlp", split.train, progress=1)
