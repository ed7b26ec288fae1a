"""Fixtures shared by the unit tests: the data split, trained baselines (trained once per session, from the shared
recipes), and a check that a function left the caller's model bit for bit as it was."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

from compresskit import cache as training_cache
from compresskit import claims, data
from compresskit.train import fit_baseline

from .kernels import THREADS

# one thread per kernel when two chapters (or two workers) share the two cores: kernels, nbconvert and the servers
# the browser tests start inherit this; the tests' own torch follows it too
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)

# a training cache (compresskit.cache) of this test session's own, shared by the xdist workers (they inherit the
# controller's environment) and every kernel they start: each chapter's trainings run once per session, then load in
# the other passes over the chapters; a developer's ~/.cache/compresskit is never read or written by the tests
_cache = os.environ.get("COMPRESSKIT_TEST_CACHE", "")
if "PYTEST_XDIST_WORKER" not in os.environ or not os.path.isdir(_cache):  # the controller, or a worker on its own
    _cache = os.environ["COMPRESSKIT_TEST_CACHE"] = tempfile.mkdtemp(prefix="compresskit-test-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ["COMPRESSKIT_CACHE"] = _cache
# a chapter whose run contradicts one of its checked sentences fails (compresskit.claims): kernels inherit this
os.environ[claims.STRICT_ENV] = "1"


@pytest.fixture(autouse=True)
def _unit_tests_train_for_real(monkeypatch):
    """In the test processes every training runs: a unit test checks the code, not a file an earlier test wrote
    (tests/test_cache.py turns the cache back on for itself). Kernels and servers keep the session's cache."""
    monkeypatch.setattr(training_cache, "cache_dir", lambda: None)


@pytest.fixture(scope="session")
def split():
    return data.load_digits(seed=0)


@pytest.fixture(scope="session")
def trained_mlp(split):
    """LeNet-300-100 from ``train.RECIPES["mlp"]``, seed 0 (do not change it: copy it)."""
    return fit_baseline("mlp", split.train, seed=0, progress=False)


def snapshot(model: torch.nn.Module) -> dict:
    """Everything a model holds: parameters and buffers, cloned, plus its modes."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state": state, "modes": [m.training for m in model.modules()], "hooks": [
        len(m._forward_pre_hooks) for m in model.modules()]}


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modes"] == before["modes"] and after["hooks"] == before["hooks"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():  # bit for bit (a NaN equals itself here)
        a = after["state"][k]
        assert a.dtype == v.dtype and a.shape == v.shape and torch.equal(
            a.reshape(-1).contiguous().view(torch.uint8), v.reshape(-1).contiguous().view(torch.uint8)), f"{k} changed"


@pytest.fixture
def unchanged():
    """``with unchanged(model): ...`` fails if the block changed the model's tensors, modes or hooks."""
    import contextlib

    @contextlib.contextmanager
    def guard(model):
        before = snapshot(model)
        yield
        assert_unchanged(model, before)

    return guard
