"""How a learner's result is judged against the package's answer, one function per kind of result: each returns
``None`` when the result is right and otherwise says, in words a learner can act on, what differs (the type, the
shape, the dtype, the first wrong entry, what the result computes instead). ``compresskit.exercise_cases`` pairs them
with each exercise's cases and ``compresskit.exercises`` runs them.

Results are compared by what they are and what they compute, never by an attribute a correct answer in another style
could leave stale (a rebuilt layer is judged by its weight's shape, not by ``in_features``).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from compresskit.checks import check_int, check_number, check_seed

__all__ = ["seeded_randn", "mask_differs", "neuron_pair_differs", "tensor_differs", "low_rank_pair_differs",
           "scalar_differs", "hidden_state_differs", "code_lengths_differ", "keep_mask_differs"]


def seeded_randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """A standard normal tensor of ``shape`` (times ``scale``) drawn from its own generator seeded with ``seed``: the
    same inputs for every run, whatever the global random state."""
    check_seed(seed)
    for i, size in enumerate(shape):
        check_int(f"shape[{i}]", size, 0)
    check_number("scale", scale)
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def mask_differs(got, expected, w):
    """What is wrong with a keep-mask ``got`` of ``w`` against the package's ``expected`` (None when right)."""
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor mask, got {type(got).__name__}"
    if got.shape != w.shape:
        return f"the mask has shape {tuple(got.shape)}, the weight {tuple(w.shape)}"
    if not bool(((got == 0) | (got == 1)).all()):
        return "a mask holds only 0 (removed) and 1 (kept)"
    removed, should = int((got == 0).sum()), int((expected == 0).sum())
    if removed != should:
        return f"it removes {removed} weights, round(sparsity * n) = {should}"
    a = w.abs()
    if removed and removed < w.numel() and float(a[got == 0].max()) > float(a[got == 1].min()):
        return "a removed weight is larger in magnitude than a kept one"
    return None


def neuron_pair_differs(got, expected, case):
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(m, nn.Linear) for m in got)):
        return "expected a pair (first, second) of nn.Linear"
    (a, b), (ea, eb) = got, expected
    kept, should = a.weight.shape[0], ea.weight.shape[0]  # the weights' shapes, not attributes a rebuild can leave
    if kept != should:
        return f"the first layer keeps {kept} neurons, round(amount * n) removed leaves {should}"
    if a.bias is None or a.bias.shape != (kept,):
        return f"the first layer's bias must keep the same {kept} neurons as its weight"
    if b.weight.shape != eb.weight.shape:
        return f"the second layer's weight has shape {tuple(b.weight.shape)}; it must read the {kept} kept neurons"
    x = seeded_randn(99, 16, ea.weight.shape[1])
    with torch.no_grad():
        if not torch.allclose(b(torch.relu(a(x))), eb(torch.relu(ea(x))), atol=1e-5):
            return "the pair computes something else than keeping the highest-L1 neurons (check which rows go)"
    return None


def tensor_differs(got, expected, case, atol=1e-6):
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)} (the input's shape)"
    if got.dtype != expected.dtype:
        return f"dtype {got.dtype}, expected {expected.dtype} (the input's dtype: cast back after computing)"
    bad = ~torch.isclose(got.double(), expected.double(), atol=atol, rtol=1e-5)
    if bad.any():
        j = int(bad.flatten().nonzero()[0])
        where = next(v for k, v in case.items() if isinstance(v, torch.Tensor)).flatten()[j].item()
        return (f"entry {j} (input {where:.6g}) is {got.flatten()[j].item():.6g}, expected "
                f"{expected.flatten()[j].item():.6g}")
    return None


def low_rank_pair_differs(got, expected, case):
    if not isinstance(got, nn.Module):
        return f"expected an nn.Module (e.g. nn.Sequential of two Linear layers), got {type(got).__name__}"
    linears = [m for m in got.modules() if isinstance(m, nn.Linear)]
    n_in, n_out = case["layer"].weight.shape[1], case["layer"].weight.shape[0]
    if len(linears) != 2 or linears[0].weight.shape != (case["rank"], n_in) or \
            linears[1].weight.shape != (n_out, case["rank"]):
        shapes = [tuple(m.weight.shape) for m in linears]
        return (f"expected two Linear layers with weights of shape {(case['rank'], n_in)} and {(n_out, case['rank'])} "
                f"(judged by the weights, not by in_features / out_features), got {shapes}")
    x = seeded_randn(7, 9, n_in)
    with torch.no_grad():
        if not torch.allclose(got(x), expected(x), atol=1e-4):
            return "its outputs differ from the best rank-r approximation of the layer"
    return None


def scalar_differs(got, expected, case):
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            return f"expected one number (the batch mean), got a tensor of shape {tuple(got.shape)}"
        got = got.item()
    if not isinstance(got, (int, float)):
        return f"expected a number or a 0-d tensor, got {type(got).__name__}"
    if not math.isclose(got, float(expected), rel_tol=1e-4, abs_tol=1e-6):
        return f"it gives {got:.6g}, the loss is {float(expected):.6g}"
    return None


def hidden_state_differs(got, expected, case):
    if not isinstance(got, torch.Tensor):
        return f"expected the new hidden state as a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)} (batch, hidden), like h"
    if got.dtype != expected.dtype:
        return f"dtype {got.dtype}, expected {expected.dtype} (h's dtype: cast back after computing)"
    bad = ~torch.isclose(got.detach().double(), expected.double(), atol=1e-5, rtol=1e-4)
    if bad.any():
        row, unit = (int(i) for i in bad.nonzero()[0])
        return (f"sample {row}, hidden unit {unit}: {got[row, unit].item():.6g}, torch's GRUCell gives "
                f"{expected[row, unit].item():.6g}")
    return None


def code_lengths_differ(got, expected, case):
    counts = case["counts"]
    if not isinstance(got, dict) or set(got) != set(counts):
        return f"expected a dict with one code length per symbol {sorted(counts)}"
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in got.values()):
        return "every code length is a whole number of bits >= 1 (a single symbol still needs a 1-bit code)"
    kraft = sum(2.0 ** -v for v in got.values())
    if kraft > 1 + 1e-12:
        return f"no prefix-free code has these lengths (sum of 2^-length = {kraft:.3f} > 1)"
    bits, best = sum(counts[s] * got[s] for s in counts), sum(counts[s] * expected[s] for s in counts)
    if bits != best:
        return f"the message takes {bits} bits with these lengths, {best} with an optimal code"
    return None


def keep_mask_differs(got, expected, case):
    """A keep-mask in any dtype that holds 0 and 1 (float, bool, int), entry for entry the expected one."""
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor mask, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"the mask has shape {tuple(got.shape)}, the scores {tuple(expected.shape)}"
    if not bool(((got == 0) | (got == 1)).all()):
        return "a mask holds only 0 (removed) and 1 (kept)"
    return tensor_differs(got.to(expected.dtype), expected, case)
