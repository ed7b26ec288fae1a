"""The public API's contract for bad input, generated from the signatures: every public function and class of every
module's ``__all__`` is called once as it should be (tests/contract_calls.py), then once per parameter and bad value
(None, the wrong type, an empty container, 0 and negative sizes, fractions outside [0, 1], integers beyond 64 bits,
NaN and inf). Each bad call must end in a ``ValueError`` or ``TypeError`` whose message names the parameter and the
value, or be listed in ``ACCEPTED`` with the reason the value is legitimate. Nothing else passes: not a raw error from
deep inside Python or torch, not a silent acceptance.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import importlib
import inspect
import math
import pkgutil
import re
import types
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import compresskit

from .contract_calls import CALLS

MODULES = sorted(m.name for m in pkgutil.iter_modules(compresskit.__path__))


def _public() -> dict[str, object]:
    found = {}
    for module in MODULES:
        mod = importlib.import_module(f"compresskit.{module}")
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if isinstance(obj, types.GenericAlias) or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants and type aliases
            found[f"{module}.{name}"] = obj
    return found


PUBLIC = _public()

# Judged by test_judges_never_raise instead: they compare a learner's result with the package's, and must say what
# differs for any result at all, never raise.
JUDGES = sorted(name for name in PUBLIC if name.startswith("answer_checks.") and name.endswith(("differs", "differ")))

# Public callables that are not called here, and why.
NOT_CALLED = {
    "lecture.main": "the command line of the lecture server: argparse refuses bad arguments itself (exit status 2), "
                    "and a valid call starts a server (tests/test_lecture.py runs it)",
}


def _parameters(fn) -> list[inspect.Parameter]:
    target = fn.__init__ if inspect.isclass(fn) and "__init__" in vars(fn) else fn
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.name != "self"]


def _called() -> list[str]:
    return sorted(name for name in PUBLIC if name not in JUDGES and name not in NOT_CALLED)


# ------------------------------------------------------------------------------------------------ bad values

FRACTIONS = {"sparsity", "amount", "alpha", "energy", "fraction", "test_fraction", "confidence", "final_sparsity",
             "initial_sparsity", "drift", "resolution"}
FREE_TEXT = {"title", "name", "desc", "claim", "measured", "unit", "label", "text", "xlabel", "ylabel", "hline_label",
             "description", "hint", "where", "what", "group", "prompt", "reference_name", "sample", "key", "default",
             "script", "needs", "sha256", "tensor", "reference", "color", "recipe"}


def _tensor_values():
    return [("a list", [[1.0, 2.0]]), ("an empty tensor", torch.empty(0)),
            ("a NaN tensor", torch.full((4, 8), math.nan)), ("a 0-d tensor", torch.tensor(1.0))]


def bad_values(name: str, annotation: str, default) -> list[tuple[str, object]]:
    """(label, value) pairs a caller might wrongly give to parameter ``name`` annotated ``annotation``."""
    ann = annotation.replace(" ", "")
    optional = ann.endswith("|None") or default is None
    core = ann[:-len("|None")] if ann.endswith("|None") else ann
    out: list[tuple[str, object]] = [] if optional else [("None", None)]
    if core == "bool":
        out += [("the int 1", 1), ("a string", "yes")]
    elif core == "int":
        out += [("a string", "3"), ("a float", 1.5), ("a bool", True), ("zero", 0), ("a negative int", -1),
                ("an int beyond 64 bits", 2**70)]
    elif core == "float":
        out += [("a string", "0.5"), ("a bool", True), ("NaN", math.nan), ("inf", math.inf), ("a negative", -1.0),
                ("zero", 0.0)]
        if name in FRACTIONS:
            out.append(("above one", 1.5))
    elif core.startswith("int|dict"):
        out += [("a string", "3"), ("zero", 0), ("a negative int", -1), ("an int beyond 64 bits", 2**70),
                ("an empty dict", {}), ("a dict naming no layer", {"no-such-layer": 4})]
    elif core.startswith("tuple[int") or core.startswith("tuple[float"):
        length = core.count(",") + 1 if "..." not in core else 1
        kind = int if core.startswith("tuple[int") else float
        out += [("a bare number", kind(3)), ("an empty tuple", ()), ("a string", "44")]
        if kind is int:
            out += [("zeros", (0,) * length), ("negatives", (-1,) * length), ("floats", (1.5,) * length),
                    ("ints beyond 64 bits", (2**70,) * length)]
        else:
            out += [("NaNs", (math.nan,) * length), ("strings", ("a",) * length)]
        if "..." not in core:
            out += [("one too many", (4,) * (length + 1))]
            if length > 1:
                out += [("one too few", (4,) * (length - 1))]
    elif core.startswith("tuple[str"):
        out += [("a bare string", "abc"), ("ints", (1, 2))]
    elif core in ("str|os.PathLike", "Path") or name in ("path", "folder", "root"):
        out += [("an int", 3), ("an empty string", "")]
    elif core == "str":
        out += [("an int", 3), ("a list", ["x"])]
        if name not in FREE_TEXT:
            out += [("an unknown word", "no-such-option")]
        if default != "":
            out += [("an empty string", "")]
    elif core == "str|Sequence[str]":
        out += [("an int", 3), ("an empty list", []), ("an unknown word", "no-such-tensor")]
    elif core.startswith(("nn.Module", "nn.Sequential", "nn.Linear", "nn.Conv2d", "nn.RNNBase", "UnrolledRNN")):
        out += [("an int", 3), ("a tensor", torch.zeros(2))]
        if core != "nn.Module":
            out += [("another kind of module", nn.ReLU())]
    elif core == "torch.Tensor":
        out += _tensor_values()
    elif core == "Dataset":
        out += [("a list", []), ("an empty dataset", TensorDataset(torch.empty(0, 1, 8, 8),
                                                                   torch.empty(0, dtype=torch.long)))]
    elif core == "bytes":
        out += [("a string", "abc"), ("empty bytes", b"")]
    elif core.startswith("dict"):
        out += [("a list", []), ("an int", 3), ("an empty dict", {})]
    elif core.startswith(("Sequence", "Iterable", "list")):
        out += [("an int", 3), ("an empty list", []), ("a list holding None", [None])]
        if "float" in core:
            out += [("a list holding NaN", [math.nan])]
            if name in ("sparsities",):
                out += [("a list holding 1.5", [1.5])]
        if "int" in core:
            out += [("a list holding 0", [0]), ("a list holding an int beyond 64 bits", [2**70])]
    elif core.startswith("Callable"):
        out += [("an int", 3)]
    elif core in ("Figure", "Reader", "Setting", "torch.dtype") or core.startswith("Dataset"):
        out += [("an int", 3), ("a string", "x")]
    elif core == "nn.Module|torch.Tensor":
        out += [("an int", 3)]
    else:  # not annotated, or a union the cases above do not know: at least None and an object of no use
        out += [("an object", object())]
    return out


# ------------------------------------------------------------------------------------------------ accepted values

# (functions, parameters, labels of bad values, why they are legitimately accepted); names match as fnmatch patterns.
ANY_NUMBER = ("zero", "a negative", "a negative int")
ACCEPTED: list[tuple[str, str, tuple[str, ...], str]] = [
    ("*", "seed", ("zero",), "0 is a seed like any other"),
    ("*", "|".join(sorted(FREE_TEXT)), ("an empty string",), "free text: an empty title, label or name prints nothing"),
    ("checks.*|data.check_ids", "name", ("None", "an int", "a list", "an empty string"),
     "the name the package gives an argument it checks, printed as given in the message"),
    ("claims.above|claims.below", "value|bound", ANY_NUMBER, "any finite number: a measured value or a threshold"),
    ("claims.compare", "a|b", ANY_NUMBER, "any finite number: the two measured values"),
    ("claims.compare|claims.within", "spread|tolerance", ("zero",), "0 asks for exact equality"),
    ("claims.compare", "fmt", ("an empty string",), "format(x, '') is str(x)"),
    ("claims.within", "value|reference", ANY_NUMBER, "any finite number: a measured value"),
    ("bitstream.Reader", "data", ("empty bytes",), "an empty blob is read as one: its first read says it is "
                                                   "truncated, naming what it needed"),
    ("bitstream.code_lengths|bitstream.canonical_code|encode.huffman_code", "counts|lengths", ("an empty dict",),
     "no symbols, no code: the empty code"),
    ("bitstream.pack_bits", "bits", ("an empty string",), "no bits pack to no bytes"),
    ("bitstream.read_stream", "count", ("zero",), "a stream of no codes"),
    ("bitstream.write_stream", "symbols", ("an empty list", "a list holding 0"), "no codes; 0 is the first symbol"),
    ("cache.keyed", "*key", ("None in *key", "an object in *key"),
     "any value: one that cannot be put in a key makes the training uncached (it trains every time), no error"),
    ("cache.training_key", "settings|hooks", ("an empty dict",), "a training with no settings or no hooks"),
    ("cache.store", "history", ("an empty list",), "a model kept without per-epoch losses"),
    ("answer_checks.seeded_randn", "*shape", ("zero in *shape",), "an empty tensor is a tensor"),
    ("answer_checks.seeded_randn", "scale", ANY_NUMBER, "any finite factor"),
    ("checks.check_finite", "tensor", ("an empty tensor", "a 0-d tensor"), "no non-finite value in it"),
    ("data.TextSplit", "train|val|test", ("an empty tensor",), "a split may be empty (a test split kept aside)"),
    ("data.verified_file", "path", ("None",), "the shipped file in data/"),
    ("distill.*|prune.*|structured.*|sparsify.*|metrics.*", "alpha|sparsity|amount|lam|count|fraction",
     ("zero",), "0 is the control: nothing removed, no penalty, labels alone"),
    ("exercises.check", "expected", ("None", "an object"), "the chapter's own result: compared with == when it is "
                                                           "not a number"),
    ("exercises.check", "rel_tol|abs_tol", ("zero",), "0 asks for exact equality"),
    ("exercises.CodingExercise", "mistakes", ("an empty dict",), "an exercise with no named classic mistake"),
    ("exercises.CodingExercise", "signature", ("an unknown word",), "free text shown to the learner"),
    ("metrics.Record|pipeline.Point|pipeline.Stage|timing.Timing|metrics.LMScore|prune.LayerSparsity",
     "accuracy|params|nonzeros|bytes|macs|latency_ms|ms|q1_ms|q3_ms|nll|numel|nonzero", ("zero",),
     "a measured 0 (an empty layer, a model that gets nothing right, a time below the clock's resolution)"),
    ("metrics.Record", "extra", ("an empty dict",), "no extra measurements"),
    ("pipeline.Point|pipeline.DeepCompression", "steps|stages|recipe", ("an empty list",),
     "the baseline: no step taken"),
    ("pipeline.DeepCompression", "blob", ("empty bytes",), "a result record; unpack says what a blob lacks"),
    ("pipeline.best_under", "points", ("an empty list",), "nothing fits: None"),
    ("prune.LayerSparsity", "shape", ("an empty tuple", "zeros"), "the shape of a 0-d or an empty tensor"),
    ("prune.cubic_schedule|prune.iterative_prune|pipeline.deep_compression", "final_sparsity|initial_sparsity|sparsity",
     ("zero",), "0 prunes nothing: the control"),
    ("prune.input_norms", "linears", ("an empty list",), "no layer, no norms: []"),
    ("prune.magnitude_mask", "w", ("a 0-d tensor",), "a 0-d tensor is masked like any other"),
    ("timing.compare|timing.latency", "warmup", ("zero",), "no warm-up run: timed from the first call"),
    ("timing.latency", "model", ("another kind of module",), "any module or callable is timed"),
    ("models.ResidualMLP|models.residual_mlp", "blocks", ("zero",),
     "the stem and the head alone: where dropping every block ends (chapter 02)"),
    ("metrics.tensor_bits", "codebook_bits", ("zero",), "no codebook (uniform levels)"),
    ("plots.accuracy_vs_size", "highlight", ("zero", "a negative int"), "an index into records; -1 the last"),
    ("plots.curves", "marker", ("an empty string",), "lines without markers"),
    ("plots.curves|plots.errorbars", "hline", ANY_NUMBER, "a reference line at any level"),
    ("plots.vlines", "ymin|ymax", ANY_NUMBER, "any level"),
    ("plots.vlines|plots.label_points|plots.pareto", "xs|labels|front", ("an empty list",), "nothing to draw there"),
    ("plots.errorbars", "styles", ("an empty dict",), "every series in its default style"),
    ("plots.errorbars|plots.dodged", "dodge", ("zero",), "no dodging: every series at its own x"),
    ("plots.dodged", "index", ("zero",), "the first series"),
    ("plots.dodged", "xs", ("an empty list",), "no point to move"),
    ("plots.weight_histogram", "w", ("a 0-d tensor",), "one weight, one bar"),
    ("quantize.*", "axis", ("zero", "a negative int"), "an axis index; -1 the last"),
    ("outliers.absmax_quantize|kvquant.minmax_quantize", "dim", ("zero", "a negative int"),
     "an axis index; -1 the last"),
    ("outliers.plant_outliers", "channels", ("a list holding 0",), "channel 0 is a channel like any other"),
    ("kvquant.kv_bytes", "tokens", ("zero",), "an empty cache holds no bytes"),
    ("recovery.lowrank_correction|recovery.correct_lm", "damp", ("zero",),
     "no damping: exact when x^T x is invertible"),
    ("sparsegpt.sparsegpt|sparsegpt.prune_lm", "sparsity", ("zero",), "nothing pruned: the updates are zero"),
    ("golf.pack|golf.score", "bits", ("zero",), "0: the blocks' linears stored in float16 (an entry without codes)"),
    ("golf.Entry", "bits_per_char", ("zero",), "a model that predicts every character for certain scores 0"),
    ("outliers.smooth|outliers.smooth_scales", "alpha", ("zero",), "s = 1 / max|W|: all the difficulty on the weights"),
    ("quantize.dequantize", "q|scale|zero_point", ("a 0-d tensor",), "one scale and zero point per tensor are 0-d"),
    ("quantize.dequantize", "q", ("an empty tensor",), "no codes, no values"),
    ("quantize.qparams", "w", ("a 0-d tensor",), "a single value has a range too"),
    ("quantize.storage_kwargs", "bits", ("a dict naming no layer",),
     "no model to check the names against: quantize_model and storage_bytes check them"),
    ("rnn.UnrolledRNN", "dropout", ("zero",), "no dropout: torch's default"),
    ("sparsify.*", "threshold", ("zero",), "no shrinkage: the identity"),
    ("sparsify.soft_threshold", "w", ("an empty tensor", "a 0-d tensor"), "elementwise: any shape"),
    ("formats.e2m1_round|formats.e4m3_round", "x", ("an empty tensor", "a 0-d tensor"), "elementwise: any shape"),
    ("structured.remove_heads", "heads", ("an empty dict",), "no head removed: a copy"),
    ("timing.SpeedComparison", "drift", ("zero",), "no drift between rounds allowed"),
    ("train.train", "weight_decay", ("zero",), "no weight decay: the default"),
    ("weightonly.lm_bytes", "settings", ("an empty dict",), "no layer quantized: float32 everywhere"),
    ("widgets.slider", "fmt", ("an empty string",), "ipywidgets' default readout"),
    ("exercises.CodingExercise", "signature", ("an empty string",), "free text shown to the learner"),
    ("layers.device_dtype|layers.is_compressible", "w|tensor", ("an empty tensor", "a 0-d tensor"),
     "only its device, dtype and kind are read"),
    ("layers.placed_like", "old", ("a tensor", "another kind of module"), "any module or tensor gives a place"),
    ("layers.unique_sites|lecture.voila_config|train.History", "found|warm|losses", ("an empty list",),
     "no sites; no pre-heated chapter; no epochs yet"),
    ("legible.fit_titles", "margin", ("zero",), "texts may touch the canvas' edge"),
    ("legible.legend_below", "gap", ("zero",), "the legend may touch the x labels' box"),
    ("lm_exercise_cases.obs_update", "j", ("zero",), "the first column"),
    ("weightonly.gptq|weightonly.quantize_lm|sparsegpt.sparsegpt|sparsegpt.prune_lm|hessian.inverse_hessian_factor",
     "damp", ("zero",),
     "no dampening: refused by name only when the Hessian is singular"),
    ("lowrank.tucker2|lowrank.tucker_conv", "hooi_iters", ("zero",), "HOSVD alone, no HOOI refinement"),
    ("lowrank.cp_als", "tol", ("zero",), "run every iteration"),
    ("metrics.relative_index_entries|metrics.tensor_bits", "w", ("an empty tensor",), "no entries, no bits"),
    ("metrics.tensor_bits", "w", ("a 0-d tensor",), "a dense scalar: its value bits"),
    ("metrics.storage_bytes", "value_bits", ("an empty dict",), "no layer named: every tensor at 32 bits"),
    ("layers.device_dtype|layers.is_compressible", "w|tensor", ("a NaN tensor",),
     "only its device, dtype and kind are read"),
    ("metrics.relative_index_entries|metrics.tensor_bits", "w", ("a NaN tensor",),
     "a size depends on which entries are zero, not on the others' values"),
    ("metrics.Fidelity", "kl_mean|kl_median|kl_p99|kl_p999|top1|log_ppl_ratio", ("zero",),
     "measured: identical models, or none agreeing"),
    ("metrics.Fidelity", "log_ppl_ratio", ("a negative",), "a compressed model may score a lower perplexity"),
]


# Parameters holding a learner's answer: any value is judged, and an AssertionError saying it is wrong is the verdict.
VERDICTS = [("exercises.check", "answer", "the learner's answer: None is 'not attempted', anything else is judged"),
            ("exercises.check", "expected", "the chapter's result the answer is compared with (== when no number)"),
            ("exercises.check_code", "fn", "the learner's function: None is 'not attempted'")]


def _verdict(fn: str, param: str) -> str | None:
    """Why ``param`` of ``fn`` is a learner's answer, judged rather than checked (None: it is not)."""
    return next((reason for f, p, reason in VERDICTS if f == fn and p == param), None)


def _accepted(fn: str, param: str, label: str) -> str | None:
    if reason := _verdict(fn, param):
        return reason
    for names, params, labels, reason in ACCEPTED:
        if any(fnmatch.fnmatchcase(fn, n) for n in names.split("|")) and param in params.split("|") and \
                label in labels:
            return reason
    return None


# ------------------------------------------------------------------------------------------------ the calls


def _call(fn, kwargs: dict):
    params = _parameters(fn)
    args, kw = [], {}
    before_var = any(p.kind is p.VAR_POSITIONAL for p in params)
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            args += list(kwargs.get(f"*{p.name}", []))
            before_var = False
        elif p.kind is p.VAR_KEYWORD:
            kw.update(kwargs.get(f"**{p.name}", {}))
        elif p.name in kwargs:
            if p.kind is p.POSITIONAL_ONLY or before_var:
                args.append(kwargs[p.name])
            else:
                kw[p.name] = kwargs[p.name]
    result = fn(*args, **kw)
    if isinstance(result, contextlib.AbstractContextManager) and not isinstance(result, Path):  # enter and leave
        with result:
            pass
    elif inspect.isgenerator(result):
        list(result)
    return result


def _names_value(message: str, label: str, value) -> bool:
    if value is None:
        return "None" in message
    if isinstance(value, bool):
        return repr(value) in message
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "nan" in message.lower()
        if isinstance(value, float) and math.isinf(value):
            return "inf" in message.lower()
        return any(t in message for t in (repr(value), str(value), f"{value:g}"))
    if isinstance(value, (str, bytes)):
        return repr(value) in message or (bool(value) and str(value) in message) or \
            (not value and "empty" in message)
    if isinstance(value, torch.Tensor):
        words = ("Tensor", "tensor", "non-finite", "NaN", str(value.dtype), str(tuple(value.shape)), "0-d", "empty",
                 str(list(value.shape)),
                 "dimension", "scalar", f"{value.dim()}-d")
        return any(w in message for w in words)
    if isinstance(value, (list, tuple, dict, set)):
        return any(w in message for w in (repr(value), type(value).__name__, "empty")) or \
            any(_names_value(message, label, v) for v in (value.values() if isinstance(value, dict) else value)) or \
            (isinstance(value, dict) and any(repr(k) in message for k in value))
    if hasattr(value, "__len__") and len(value) == 0 and ("empty" in message or " 0 " in message):
        return True
    return type(value).__name__ in message


def _message_name(fn_name: str, param: str, kwargs: dict) -> str:
    if param.startswith("**"):
        return "x"  # the keyword given
    if fn_name.startswith("checks.") and param not in ("name",) and "name" in kwargs:
        return kwargs["name"]  # the checks name the argument they are told about
    return param.lstrip("*")


def _problem(fn_name: str, fn, kwargs: dict, param: str, label: str, value) -> str | None:
    try:
        _call(fn, kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        name = _message_name(fn_name, param, kwargs)
        if not re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", message):
            return f"{label}: {type(error).__name__} does not name {name!r}: {message[:200]}"
        if not param.startswith("**") and not _names_value(message, label, value):
            return f"{label}: {type(error).__name__} names {name!r} but not the value: {message[:200]}"
        return None
    except AssertionError as error:
        if _verdict(fn_name, param):
            return None  # a wrong answer, judged
        return f"{label}: raised AssertionError: {str(error)[:200]}"
    except Exception as error:  # noqa: BLE001 - any other error is the finding
        return f"{label}: raised {type(error).__name__}: {str(error)[:200]}"
    finally:
        plt.close("all")
    if _accepted(fn_name, param, label):
        return None
    return f"{label}: accepted silently"


# Parameters not fed bad values, and why.
CONFIGURATION = {
    "quantize.check_method": ("allowed|name", "the methods a caller of the package allows, a literal beside the call"),
    "checks.*": ("low|high|low_open|high_open|floating|finite|empty|kind|keys|choices|**ranges|length|batch_size",
                 "how the package's own code configures a check, written as a literal beside the call"),
}


def _configuration(name: str, param: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) and param in params.split("|")
               for pattern, (params, _) in CONFIGURATION.items())


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name in _called():
        for p in _parameters(PUBLIC[name]):
            key = {p.VAR_POSITIONAL: f"*{p.name}", p.VAR_KEYWORD: f"**{p.name}"}.get(p.kind, p.name)
            if not _configuration(name, key):
                cases.append((name, key))
    return cases


CASES = _cases()


def test_every_public_callable_has_a_valid_call_or_a_reason():
    missing = [name for name in _called() if name not in CALLS and _parameters(PUBLIC[name])]
    assert not missing, f"no valid call in tests/contract_calls.py for: {missing}"
    stale = sorted(set(CALLS) - set(PUBLIC))
    assert not stale, f"tests/contract_calls.py calls names that are no longer public: {stale}"
    unused = [names for names, *_ in ACCEPTED
              if not any(fnmatch.fnmatchcase(public, n) for n in names.split("|") for public in PUBLIC)]
    assert not unused, f"ACCEPTED lists names that are not public: {unused}"


@pytest.mark.parametrize("name", [n for n in _called() if n in CALLS])
def test_the_valid_call_works(name, tmp_path):
    try:
        _call(PUBLIC[name], CALLS[name](tmp_path))
    finally:
        plt.close("all")


@pytest.mark.parametrize("name, param", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_a_bad_value_is_refused_by_name(name, param, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a bad folder ("") must not write into the folder the tests run from
    fn = PUBLIC[name]
    p = next(q for q in _parameters(fn) if q.name == param.lstrip("*"))
    annotation = p.annotation if isinstance(p.annotation, str) else ("" if p.annotation is p.empty else
                                                                       getattr(p.annotation, "__name__", ""))
    if p.kind is p.VAR_POSITIONAL:
        values = [(f"{label} in {param}", [v]) for label, v in bad_values(p.name, annotation, p.empty)]
    elif p.kind is p.VAR_KEYWORD:
        values = [("a control that is a list", {"x": [1, 2]}), ("a control that is None", {"x": None})]
    else:
        values = bad_values(p.name, annotation, p.default)
    problems = []
    for i, (label, value) in enumerate(values):
        (tmp_path / str(i)).mkdir(exist_ok=True)
        kwargs = CALLS[name](tmp_path / str(i))
        kwargs[param] = value
        problem = _problem(name, fn, kwargs, param, label, value)
        if problem:
            problems.append(problem)
    assert not problems, f"{name}({param}=...):\n  " + "\n  ".join(problems)


def test_judges_never_raise():
    """A learner's result of any kind gets a sentence saying what differs, never an exception (the checker would
    catch one, but say less): every exercise's comparison, which calls the judges of compresskit.answer_checks."""
    from compresskit.exercises import CODING

    odd = [None, 3, "x", [], (1, 2), torch.empty(0), torch.full((2, 2), math.nan), nn.ReLU(), {"a": 1}]
    problems = []
    for name, exercise in CODING.items():
        for case in exercise.cases()[:2]:
            expected = exercise.solve(**{k: copy.deepcopy(v) for k, v in case.items() if k != "what"})
            for got in odd:
                try:
                    said = exercise.differs(got, expected, case)
                except Exception as error:  # noqa: BLE001
                    problems.append(f"{name} given {got!r}: raised {type(error).__name__}: {error}")
                    continue
                if not isinstance(said, str) or not said:
                    problems.append(f"{name} given {got!r}: returned {said!r}, not a sentence")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------ the families seen


FAMILIES = [
    ("hidden must be a tuple of ints, got int 300", lambda: compresskit.models.mlp(300)),
    ("channels must hold 2 int", lambda: compresskit.models.lenet((4, 8, 16))),
    ("cell must be a string, got list", lambda: compresskit.models.rnn_classifier(["gru"])),
    ("root must be a path", lambda: compresskit.data.load_mnist(None)),
    ("seed must be in \\[0, 18446744073709551615\\], got 36893488147419103232",
     lambda: compresskit.data.load_digits(seed=2**65)),
    ("format must be a string, got int 3", lambda: compresskit.metrics.tensor_bits(torch.ones(3, 3), format=3)),
    ("w must have at least one dimension to be stored in the 'csr' format",
     lambda: compresskit.metrics.tensor_bits(torch.tensor(1.0), format="csr")),
    ("index_bits must be in \\[1, 64\\], got 0",
     lambda: compresskit.metrics.tensor_bits(torch.ones(3, 3), format="relative", index_bits=0)),
    ("input_shape must hold at least one int", lambda: compresskit.metrics.macs(compresskit.models.mlp((8,)), ())),
    ("bits must be in \\[1, 32\\], got 0", lambda: compresskit.quantize.code_range(0, True)),
    ("indices must lie in \\[0, 3\\]",
     lambda: compresskit.quantize.centroid_gradients(torch.ones(2, 2), torch.tensor([[0, 1], [2, 4]]), 4)),
    ("sparsities must be a list of floats, got NoneType",
     lambda: compresskit.prune.sensitivity_scan(compresskit.models.mlp((8,)), _digits(), sparsities=None)),
    ("sparsities must hold at least one fraction",
     lambda: compresskit.prune.sensitivity_scan(compresskit.models.mlp((8,)), _digits(), sparsities=[])),
    ("labels must be integer class indices, got torch.float32",
     lambda: compresskit.distill.kd_loss(torch.randn(4, 10), torch.randn(4, 10), torch.rand(4), temperature=2.0,
                                         alpha=0.5)),
    ("a must be hidden states \\(batch, time, hidden\\)",
     lambda: compresskit.rnn.state_drift(torch.randn(4, 8), torch.randn(4, 8))),
    ("records must be a list, got NoneType", lambda: compresskit.plots.accuracy_vs_size(None)),
    ("highlight must be in \\[-1, 0\\], got 5",
     lambda: compresskit.plots.accuracy_vs_size([compresskit.metrics.Record("a", 0.9, 1, 1, 1, 1)], highlight=5)),
    ("w is empty", lambda: compresskit.plots.weight_histogram(torch.empty(0))),
    ("controls must be a dict, got list",
     lambda: compresskit.widgets.Panel(lambda **k: None, [compresskit.widgets.slider(1.0, 0.0, 2.0, 0.5, "x")])),
]


def _digits():
    from torch.utils.data import TensorDataset

    return TensorDataset(torch.rand(8, 1, 8, 8), torch.arange(8) % 10)


@pytest.mark.parametrize("message, call", FAMILIES, ids=[m[:40] for m, _ in FAMILIES])
def test_each_family_the_issue_names_is_refused_by_name(message, call):
    import compresskit.distill  # noqa: F401 - the modules the calls reach
    import compresskit.plots  # noqa: F401
    import compresskit.widgets  # noqa: F401

    with pytest.raises((ValueError, TypeError), match=message):
        call()
    plt.close("all")


def test_a_cp_convolution_with_string_padding_computes_the_same_function():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding="same")
    x = torch.randn(2, 3, 8, 8)
    from compresskit import lowrank

    assert torch.allclose(lowrank.cp_conv(conv, 27, iters=60)(x), conv(x), atol=1e-3)


def test_structured_rnn_pruning_leaves_an_input_projection_registered_after_the_rnn_alone():
    from compresskit import structured

    class Projected(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(16, 8, batch_first=True)
            self.fc = nn.Linear(8, 10)
            self.proj = nn.Linear(4, 16)  # registered after the RNN, read before it

        def forward(self, x):
            out, _ = self.rnn(self.proj(x))
            return self.fc(out[:, -1])

    torch.manual_seed(0)
    model = Projected()
    pruned = structured.prune_units(model, 0.5)
    assert pruned.proj.weight.shape == (16, 4) and pruned.rnn.hidden_size == 4 and pruned.fc.weight.shape == (10, 4)
    assert pruned(torch.randn(2, 5, 4)).shape == (2, 10)
