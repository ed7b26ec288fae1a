"""The training cache (compresskit.cache, used by train.train): a loaded training is the run one bit for bit, with
the random generators where training leaves them; the key follows everything the result depends on; a training whose
key cannot be complete, or that depended on more than its key, is never stored; damaged files are retrained; off
means off. The suite turns the cache off for unit tests (tests/conftest.py); the fixture here turns it back on."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from compresskit import cache as training_cache
from compresskit import distill, models, prune, qat, sparsify, train
from compresskit.cache import cache_dir, keyed
from compresskit.checks import available_cores
from compresskit.layers import copy_model
from compresskit.train import Recipe, fit_baseline, set_seed


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(training_cache, "cache_dir", cache_dir)
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(tmp_path))
    # short recipes: the cache's logic, not the baselines' accuracy, is under test
    monkeypatch.setitem(train.RECIPES, "mlp", Recipe(lambda: models.mlp(hidden=(16,)), 2, 1e-3))
    monkeypatch.setitem(train.RECIPES, "lenet", Recipe(lambda: models.lenet(channels=(2, 4), hidden=8), 1, 3e-3))
    return tmp_path


def _files(folder):
    return sorted(p.name for p in folder.glob("*.pt"))


def _after(model, history=None):
    """Everything a training leaves: every parameter and buffer, the pruned weights' attributes, gradients, modes,
    the losses, and the next draw of each random generator."""
    tensors = {k: v.detach().clone() for k, v in training_cache._state(model).items()}
    for name, module in model.named_modules():
        for attribute in ("weight", "weight_ih_l0", "weight_hh_l0"):
            if f"{attribute}_orig" in module._parameters:
                tensors[f"{name}.{attribute} (attribute)"] = getattr(module, attribute).detach().clone()
    grads = [p.grad for p in model.parameters()]
    return (tensors, grads, [m.training for m in model.modules()], history, torch.rand(3), np.random.rand(),
            random.random())


def _same(a, b):
    return (a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
            and all(g is None for g in a[1] + b[1]) and a[2] == b[2] and a[3] == b[3]
            and torch.equal(a[4], b[4]) and a[5:] == b[5:])


def _no_training(*args, **kwargs):
    raise AssertionError("trained, though an identical training was in the cache")


def _tiny_teacher(split):
    set_seed(5)
    teacher = models.mlp(hidden=(12,))
    train.train(teacher, split.train, epochs=1, lr=3e-3, progress=False)
    return teacher


TRAININGS = {  # name: (build the starting model, train it and return (model, history))
    "mlp": (lambda s: models.mlp(hidden=(16,)),
            lambda m, s: (m, train.train(m, s.train, epochs=2, lr=1e-3, progress=False, seed=1))),
    "lenet, BatchNorm statistics": (lambda s: models.lenet(channels=(2, 4), hidden=8),
                                    lambda m, s: (m, train.train(m, s.train, epochs=1, lr=3e-3, progress=False))),
    "pruned mlp, sgd, decay": (lambda s: prune.magnitude_prune(models.mlp(hidden=(16,)), sparsity=0.6),
                               lambda m, s: (m, train.train(m, s.train, epochs=2, lr=0.05, optimizer="sgd",
                                                            weight_decay=1e-4, progress=False))),
    "pruned gru": (lambda s: prune.magnitude_prune(models.rnn_classifier("gru", hidden_size=8), sparsity=0.5),
                   lambda m, s: (m, train.train(m, s.train, epochs=1, lr=3e-3, progress=False))),
    "proximal L1": (lambda s: models.mlp(hidden=(16,)),
                    lambda m, s: (m, sparsify.train_sparse(m, s.train, method="proximal", lam=1e-2, epochs=2,
                                                           lr=0.05, progress=False))),
    "L1 penalty": (lambda s: models.mlp(hidden=(16,)),
                   lambda m, s: (m, sparsify.train_sparse(m, s.train, method="l1", lam=1e-3, epochs=1, lr=0.05,
                                                          progress=False))),
    "distillation": (lambda s: models.mlp(hidden=(8,)),
                     lambda m, s: (m, distill.distill(m, _tiny_teacher(s), s.train, temperature=4.0, alpha=0.7,
                                                      epochs=2, lr=3e-3, progress=False))),
    "QAT, 3 bits, on a pruned gru (parametrized, unrolled)": (
        lambda s: prune.magnitude_prune(models.rnn_classifier("gru", hidden_size=8), sparsity=0.5),
        lambda m, s: (qat.qat(m, s.train, bits=3, epochs=1, lr=1e-3, progress=False), None)),
    "k-means centroids, pruned mlp": (
        lambda s: prune.magnitude_prune(models.mlp(hidden=(16,)), sparsity=0.5),
        lambda m, s: (qat.kmeans_finetune(m, s.train, bits=2, epochs=1, lr=1e-3, progress=False), None)),
}


@pytest.mark.parametrize("name", list(TRAININGS))
def test_a_loaded_training_is_the_run_one_bit_for_bit(cache, split, name, monkeypatch):
    build, run = TRAININGS[name]

    def once():
        set_seed(3)
        model, history = run(build(split), split)
        return _after(model, history)

    monkeypatch.setenv("COMPRESSKIT_CACHE", "off")
    without = once()
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(cache))
    trained = once()
    stored = _files(cache)
    assert stored and _same(without, trained)
    with monkeypatch.context() as m:  # now every training must come from the files
        m.setitem(train.OPTIMIZERS, "adam", _no_training)
        m.setitem(train.OPTIMIZERS, "sgd", _no_training)
        loaded = once()
    assert _same(trained, loaded) and _files(cache) == stored and not list(cache.glob(".tmp-*"))


def test_the_key_follows_everything_the_result_depends_on(cache, split):
    seen = []

    def new_file(build=lambda: models.mlp(hidden=(16,)), data=split.train, hooks=None, **settings):
        set_seed(0)
        model = build()
        args = {"epochs": 1, "lr": 1e-3, "progress": False, **settings}
        if hooks == "proximal":
            sparsify.train_sparse(model, data, method="proximal", lam=1e-3, **args)
        elif hooks == "proximal, another lambda":
            sparsify.train_sparse(model, data, method="proximal", lam=2e-3, **args)
        else:
            train.train(model, data, **args)
        files = _files(cache)
        added = len(files) > len(seen)
        seen[:] = files
        return added

    assert new_file()
    assert not new_file()  # the same training again: loaded
    for settings in ({"epochs": 2}, {"lr": 2e-3}, {"batch_size": 32}, {"optimizer": "sgd"}, {"weight_decay": 1e-5},
                     {"seed": 1}, {"hooks": "proximal"}, {"hooks": "proximal, another lambda"}):
        assert new_file(**settings), settings
    x, y = split.train.tensors
    nudged = x.clone()
    nudged[7, 0, 3, 4] = torch.nextafter(nudged[7, 0, 3, 4], torch.tensor(2.0))  # one input, one ulp
    assert new_file(data=torch.utils.data.TensorDataset(nudged, y))
    labels = y.clone()
    labels[0] = (labels[0] + 1) % 10
    assert new_file(data=torch.utils.data.TensorDataset(x, labels))

    def nudge_weight():
        model = models.mlp(hidden=(16,))
        with torch.no_grad():
            model[1].weight[0, 0] = torch.nextafter(model[1].weight[0, 0], torch.tensor(9.0))
        return model

    def frozen_bias():
        model = models.mlp(hidden=(16,))
        model[1].bias.requires_grad_(False)
        return model

    def other_mask(flip):
        def build():
            set_seed(0)
            model = prune.magnitude_prune(models.mlp(hidden=(16,)), sparsity=0.5)
            if flip:
                model[1].weight_mask[0, 0] = 1 - model[1].weight_mask[0, 0]
            return model
        return build

    def lenet(momentum):
        def build():
            model = models.lenet(channels=(2, 4), hidden=8)
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = momentum
            return model
        return build

    for build in (nudge_weight, frozen_bias, lambda: models.mlp(hidden=(17,)), other_mask(False), other_mask(True),
                  lenet(0.1), lenet(0.2)):
        assert new_file(build=build)
    if available_cores() >= 2:  # another thread count may sum floats in another order: another key
        before = torch.get_num_threads()
        torch.set_num_threads(2 if before != 2 else 1)
        try:
            assert new_file()
        finally:
            torch.set_num_threads(before)
    assert not new_file()  # and the first one is still there


class _Doubling(nn.Module):
    """A module of the learner's own: its forward could change without anything the key sees."""

    def forward(self, x):
        return 2 * x


def _with_forward_hook():
    model = models.mlp(hidden=(16,))
    model[1].register_forward_hook(lambda m, i, o: o * 0.5)
    return model


def _with_gradient_hook():
    model = models.mlp(hidden=(16,))
    model[1].weight.register_hook(lambda g: g * 0.5)
    return model


@pytest.mark.parametrize("case", ["no seed", "a hook without a key", "a class from outside", "a forward hook",
                                  "a gradient hook", "a global hook", "dropout", "an attribute set while training"])
def test_a_training_that_depends_on_more_than_a_key_runs_and_is_never_stored(cache, split, case):
    build, kwargs = lambda: models.mlp(hidden=(16,)), {}
    if case == "no seed":
        kwargs = {"seed": None}
    elif case == "a hook without a key":
        kwargs = {"penalty": lambda m: 1e-4 * m[1].weight.abs().sum()}
    elif case == "a class from outside":
        build = lambda: nn.Sequential(_Doubling(), models.mlp(hidden=(16,)))
    elif case == "a forward hook":
        build = _with_forward_hook
    elif case == "a gradient hook":
        build = _with_gradient_hook
    elif case == "dropout":  # a key is made, but training draws from the global generator: not stored
        build = lambda: nn.Sequential(nn.Dropout(0.2), models.mlp(hidden=(16,)))
    elif case == "an attribute set while training":  # keyed, but it changes the model beyond its tensors
        kwargs = {"after_step": keyed(lambda m: setattr(m[1], "steps", getattr(m[1], "steps", 0) + 1), "count")}
    handle = (torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
              if case == "a global hook" else None)
    try:
        for _ in range(2):
            set_seed(0)
            train.train(build(), split.train, epochs=1, lr=1e-3, progress=False, **kwargs)
    finally:
        if handle is not None:
            handle.remove()
    assert _files(cache) == []


def test_a_damaged_or_foreign_file_is_retrained_and_replaced(cache, split, monkeypatch):
    def run():
        set_seed(0)
        model = models.mlp(hidden=(16,))
        return _after(model, train.train(model, split.train, epochs=1, lr=1e-3, progress=False))

    trained = run()
    assert trained[3].loaded_from is None  # the losses say whether they were trained or loaded, and from where
    (path,) = cache.glob("*.pt")
    assert run()[3].loaded_from == path
    path.write_bytes(path.read_bytes()[:100])  # cut short
    assert _same(trained, run())
    assert _same(trained, run())  # the rewritten file loads
    good = path.read_bytes()
    torch.save({"history": [0.5], "tensors": {"1.weight": torch.zeros(3)}}, path)  # another model's result
    assert _same(trained, run())
    torch.save({"history": "?", "tensors": {}}, path)
    assert _same(trained, run())
    assert path.read_bytes() == good and len(list(cache.glob("*.pt"))) == 1


def test_a_cached_baseline_is_the_trained_one_and_says_where_it_came_from(cache, split, monkeypatch, capsys):
    trained = _after(fit_baseline("lenet", split.train, seed=3, progress=False))
    assert len(list(cache.glob("lenet-*.pt"))) == 1
    loaded = _after(fit_baseline("lenet", split.train, seed=3))  # from the file
    out = capsys.readouterr().out
    assert "loaded from" in out and "COMPRESSKIT_CACHE=off" in out
    assert _same(trained, loaded)
    monkeypatch.setenv("COMPRESSKIT_CACHE", "off")  # and both equal a training without any cache
    assert _same(trained, _after(fit_baseline("lenet", split.train, seed=3, progress=False)))


def test_off_writes_nothing_and_the_folder_is_read_at_each_call(cache, split, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("COMPRESSKIT_CACHE", "OFF")
    assert training_cache.cache_dir() is None
    fit_baseline("mlp", split.train, progress=False)
    assert not list(cache.iterdir())
    other = tmp_path_factory.mktemp("other")
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(other))
    fit_baseline("mlp", split.train, progress=False)
    assert training_cache.cache_dir() == other and len(list(other.glob("*.pt"))) == 1
    monkeypatch.delenv("COMPRESSKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(other))
    assert training_cache.cache_dir() == other / "compresskit"


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


def test_unit_tests_run_without_the_cache(split, tmp_path, monkeypatch):
    """tests/conftest.py: every unit test trains for real (the cache serves the chapters' kernels)."""
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(tmp_path))
    assert training_cache.cache_dir() is None
    train.train(copy_model(models.mlp(hidden=(4,))), split.train, epochs=1, lr=1e-3, progress=False)
    assert not list(tmp_path.iterdir())


def test_past_its_size_limit_the_cache_deletes_the_least_recently_used(cache, split, monkeypatch):
    import os
    import time

    def fit(width):
        set_seed(0)
        model = models.mlp(hidden=(width,))
        return train.train(model, split.train, epochs=1, lr=1e-3, progress=False)

    fit(8)
    (first,) = cache.glob("*.pt")
    one = first.stat().st_size
    fit(9)
    os.utime(first, (time.time() - 100, time.time() - 100))
    assert fit(8).loaded_from == first and first.stat().st_mtime > time.time() - 50  # a load marks it used
    second = next(p for p in cache.glob("*.pt") if p != first)
    os.utime(second, (time.time() - 100, time.time() - 100))
    monkeypatch.setattr(training_cache, "MAX_BYTES", 2 * one + 10)
    fit(7)  # three results do not fit: the least recently used (width 9) goes
    assert len(_files(cache)) == 2 and first.exists() and not second.exists()


@pytest.mark.parametrize("word", ["on", "1", "true", "TRUE", "yes"])
def test_a_switch_word_is_not_a_folder(monkeypatch, word, tmp_path):
    """`COMPRESSKIT_CACHE=on` once made a folder named `on` wherever a chapter ran (one was committed)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESSKIT_CACHE", word)
    with pytest.raises(ValueError, match=rf"COMPRESSKIT_CACHE='{word}' is not a folder: .* 'off'"):
        cache_dir()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("word", ["off", "OFF", "0", "false", "no"])
def test_off_words_turn_the_cache_off(monkeypatch, word):
    monkeypatch.setenv("COMPRESSKIT_CACHE", word)
    assert cache_dir() is None


def test_the_key_follows_the_cpu_kernel_settings(monkeypatch):
    """Another vector unit or BLAS code path sums in another order: a training done under one is not loaded under
    another."""
    model = models.mlp(hidden=(8,))
    tensors = (torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    keys = set()
    for name in training_cache.KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    keys.add(training_cache.training_key(model, tensors, {"epochs": 1}, {}))
    for name, value in (("ATEN_CPU_CAPABILITY", "default"), ("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")):
        monkeypatch.setenv(name, value)
        keys.add(training_cache.training_key(model, tensors, {"epochs": 1}, {}))
    assert len(keys) == 3 and None not in keys
