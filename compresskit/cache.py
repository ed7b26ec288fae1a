"""The training cache: a training that ran before, on the same model, data and settings, is loaded, not run again.

``train.train`` is deterministic on a CPU: for one starting model (its classes, configuration, parameters, buffers,
pruning masks and parametrizations), one dataset, one set of arguments and hooks, one torch version, thread count and
vector unit, it leaves the same tensors bit for bit. So its result can be kept in a file named by a hash of all that
(``training_key``) and loaded the next time, by the next chapter that asks for the same baseline, by a learner who
runs a chapter again, by the tests that execute every chapter several times.

A key is only made when it can be complete; otherwise the training simply runs (``None``):

- every module's class comes from torch or compresskit (a class defined in a notebook can change its ``forward``
  without changing anything the key sees), and every attribute of every module is data: numbers, strings, tensors,
  or ``torch.nn.utils.prune`` methods among its hooks; any other hook, on a module or a parameter, means no key;
- every hook of the loop (``objective``, ``penalty``, ``after_step``) carries a key of its own (``keyed``): the
  package's hooks do, a learner's function does not;
- the minibatch order comes from ``seed``, not from the global generator.

A result is stored only if training left the global torch generator and the models' non-tensor attributes as they
were (a dropout layer draws from the generator: its training depends on more than the key). The package's own source
is part of every key, so editing the training loop or a model never reuses an old file.

``COMPRESSKIT_CACHE`` names the folder (default ``~/.cache/compresskit``); ``COMPRESSKIT_CACHE=off`` (or ``0``,
``false``, ``no``) disables it; ``on`` / ``1`` / ``true`` are refused (they name no folder).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.prune import BasePruningMethod

from compresskit.checks import check_number, check_text, checked

__all__ = ["ENV", "KERNEL_ENV", "MAX_BYTES", "cache_dir", "package_digest", "keyed", "training_key", "structure",
           "path_for", "load", "store"]

ENV = "COMPRESSKIT_CACHE"
"""Environment variable: the cache's folder, or ``off``; default ``~/.cache/compresskit``."""

KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA", "MKL_CBWR")
"""Environment variables that choose the CPU kernels (and so the summation order) of a training: part of the key."""

MAX_BYTES = 512 * 2**20
"""The cache's size limit: past it, storing a result deletes the files least recently used (a full pass over the
chapters writes about 40 MB; each change to the package's code starts a new set)."""

_OWN_CLASSES = ("torch.", "compresskit.")
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def cache_dir() -> Path | None:
    """``$COMPRESSKIT_CACHE``, else ``$XDG_CACHE_HOME/compresskit`` (``~/.cache/compresskit``); None when
    ``COMPRESSKIT_CACHE=off``. Read at every call. A switch word (``on``, ``1``, ``true``, ...) is not a folder: it
    is refused with a ``ValueError`` (it used to make a folder named ``on`` wherever the chapter ran)."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no", "none"):
        return None
    if value.lower() in ("on", "1", "true", "yes"):
        raise ValueError(f"{ENV}={value!r} is not a folder: set it to a folder for the cache, to 'off' to train "
                         "every time, or leave it unset for the default ~/.cache/compresskit")
    if value:
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compresskit"


@functools.lru_cache(maxsize=1)
def package_digest() -> bytes:
    """Hash of the package's own source: a changed training loop, hook or model never reuses an old result."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.digest()


package_digest()  # now: the digest of the code as it is loaded, not as a file may be edited later


class _NoKey(Exception):
    """Something the training depends on cannot be put in a key."""


@checked
def keyed(hook: Callable, *key) -> Callable:
    """Mark a training hook with the data that determine what it does (plain values and tensors), so that a training
    using it can be cached: two hooks with equal keys must do the same thing. Returns ``hook``."""
    hook._compresskit_key = key
    return hook


class _Fingerprint:
    """A sha256 fed with values; ``tensors=False`` feeds only their dtype and shape (the structure of a model)."""

    def __init__(self, tensors: bool = True):
        self.hash = hashlib.sha256()
        self.tensors = tensors
        self.gradients = True  # whether a tensor's requires_grad is fed (parameters: yes; derived attributes: no)

    def text(self, value: str) -> None:
        self.hash.update(value.encode() + b"\0")

    def feed(self, value) -> None:
        if isinstance(value, torch.Tensor):
            self._tensor(value)
        elif isinstance(value, _PLAIN):
            self.text(f"{type(value).__name__}:{value!r}")
        elif isinstance(value, (tuple, list)):
            self.text(f"{type(value).__name__}[{len(value)}]")
            for item in value:
                self.feed(item)
        elif isinstance(value, (set, frozenset)):
            if not all(isinstance(item, _PLAIN) for item in value):
                raise _NoKey(f"a set of {sorted({type(item).__name__ for item in value})}")
            self.text(f"set{sorted(repr(item) for item in value)}")
        elif isinstance(value, dict):
            self.text(f"dict[{len(value)}]")
            for k, v in value.items():
                self.feed(k)
                self.feed(v)
        elif isinstance(value, weakref.ref):  # torch's RNNs keep weak references to their weights: derived, and
            self.text("weakref")              # alive or not as the garbage collector pleases
        elif isinstance(value, BasePruningMethod):
            self.text(f"pruning:{type(value).__module__}.{type(value).__qualname__}")
            self.feed(dict(sorted(vars(value).items())))
        else:
            raise _NoKey(f"a {type(value).__module__}.{type(value).__qualname__}")

    def _tensor(self, t: torch.Tensor) -> None:
        if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
            raise _NoKey(f"a {t.layout} {t.dtype} tensor on {t.device}")
        if t._backward_hooks or getattr(t, "_post_accumulate_grad_hooks", None):
            raise _NoKey("a tensor with hooks")
        self.text(f"tensor:{t.dtype}:{tuple(t.shape)}:{t.requires_grad if self.gradients else ''}")
        if self.tensors:
            self.hash.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())

    def module(self, model: nn.Module) -> None:
        """Every module's class and every attribute but its mode (``train`` sets it); hooks only by their values
        (their dictionary keys are handle numbers that differ from run to run) and only pruning methods."""
        for name, module in model.named_modules(remove_duplicate=False):
            cls = type(module)
            if not cls.__module__.startswith(_OWN_CLASSES):
                raise _NoKey(f"module '{name}' is a {cls.__module__}.{cls.__qualname__}, defined outside torch and "
                             "compresskit")
            self.text(f"module:{name}:{cls.__module__}.{cls.__qualname__}")
            for attribute, value in sorted(vars(module).items()):
                if attribute in ("training", "_modules"):  # submodules come next in named_modules
                    continue
                self.text(attribute)
                if attribute.endswith(("_hooks_with_kwargs", "_hooks_always_called")):
                    self.feed(list(value.values()))
                elif attribute.endswith("_hooks"):
                    hooks = list(value.values())
                    if not all(isinstance(hook, BasePruningMethod) for hook in hooks):
                        raise _NoKey(f"module '{name}' has {attribute[1:]} other than pruning masks")
                    self.feed(hooks)
                else:  # a pruned weight recomputed by its hook is a plain attribute: with or without autograd as the
                    self.gradients = attribute in ("_parameters", "_buffers")  # last forward ran, which is no input
                    self.feed(value)
                    self.gradients = True

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def _global_hooks() -> bool:
    from torch.nn.modules import module as module_module

    return any(getattr(module_module, f"_global_{kind}", None) for kind in (
        "forward_hooks", "forward_pre_hooks", "backward_hooks", "backward_pre_hooks", "parameter_registration_hooks",
        "module_registration_hooks", "buffer_registration_hooks"))


@checked
def training_key(model: nn.Module, tensors, settings: dict, hooks: dict) -> str | None:
    """The key of a training of ``model`` on ``tensors`` (inputs, labels) with ``settings`` (plain values) and
    ``hooks`` (name: hook or None), or None when the training depends on something a key cannot hold."""
    if not isinstance(tensors, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"tensors must be a tuple of tensors (inputs, labels), got {type(tensors).__name__} "
                        f"{tensors!r:.60}")
    if _global_hooks():
        return None
    f = _Fingerprint()
    try:
        f.hash.update(package_digest())
        f.feed((torch.__version__, torch.get_num_threads(), torch.backends.cpu.get_cpu_capability(),
                torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
                # the BLAS and oneDNN kernels torch calls follow these too (and sum in another order)
                *(os.environ.get(name, "") for name in KERNEL_ENV)))
        f.feed(dict(sorted(settings.items())))
        for name, hook in sorted(hooks.items()):
            if hook is not None and not hasattr(hook, "_compresskit_key"):
                return None
            f.feed((name, None if hook is None else hook._compresskit_key))
        f.feed(list(tensors))
        f.module(model)
    except _NoKey:
        return None
    return f.hexdigest()[:32]


@checked
def structure(model: nn.Module) -> str | None:
    """A hash of ``model``'s classes and non-tensor attributes (tensors by dtype and shape only), or None."""
    f = _Fingerprint(tensors=False)
    try:
        f.module(model)
    except _NoKey:
        return None
    return f.hexdigest()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, persistent or not, by name."""
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    return dict(named)


@checked
def path_for(label: str, key: str) -> Path | None:
    """The file of ``key`` in the cache (``label`` makes it readable: the model's recipe or the loop's name)."""
    check_text("label", label, empty=False)
    check_text("key", key, empty=False)
    folder = cache_dir()
    if folder is None:
        return None
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:40]}-{key}.pt"


@checked
def load(path: Path, model: nn.Module) -> list[float] | None:
    """Copy a stored result into ``model``'s own tensors (in place, as training updates them) and return the stored
    per-epoch losses; None, leaving ``model`` untouched, if the file is missing, damaged or does not fit ``model``."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        history, tensors = saved["history"], saved["tensors"]
        state = _state(model)
        if (not isinstance(history, list) or not all(isinstance(v, float) for v in history)
                or tensors.keys() != state.keys()
                or any(t.dtype != state[k].dtype or t.shape != state[k].shape for k, t in tensors.items())):
            return None
    except Exception:  # a damaged or foreign file: the caller trains and replaces it
        return None
    with torch.no_grad():
        for k, t in tensors.items():
            state[k].copy_(t)
    with contextlib.suppress(OSError):
        os.utime(path)  # used now: the last file the size limit deletes
    return history


@checked
def store(path: Path, model: nn.Module, history: list[float]) -> None:
    """Keep ``model``'s tensors and the losses, written to a temporary file beside ``path`` and then renamed: a reader
    (another kernel) never sees half a file. A folder that cannot be written only costs the cache, with a warning."""
    for i, v in enumerate(history):
        check_number(f"history[{i}]", v)  # losses as trained; a NaN loss is no result to keep
    obj = {"history": [float(v) for v in history],
           "tensors": {k: t.detach().clone() for k, t in _state(model).items()}}
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", suffix=".pt", delete=False) as f:
            temporary = f.name
            torch.save(obj, f)
        os.replace(temporary, path)
        _trim(path.parent)
    except OSError as err:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        warnings.warn(f"compresskit: the training cache {path.parent} cannot be written ({err}); set {ENV} to a "
                      f"writable folder, or to off", stacklevel=3)


def _trim(folder: Path) -> None:
    """Delete the least recently used results until the folder's results take at most ``MAX_BYTES``."""
    files = []
    for p in folder.glob("*.pt"):
        with contextlib.suppress(OSError):  # another kernel may be deleting it now
            st = p.stat()
            files.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in files)
    for _, size, p in sorted(files, key=lambda f: f[0]):
        if total <= MAX_BYTES:
            break
        with contextlib.suppress(OSError):
            p.unlink()
        total -= size
