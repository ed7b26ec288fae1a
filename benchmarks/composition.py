"""Techniques composed, through compresskit and by hand with torch (tests/reference.py), on the trained baselines:
test accuracy of each pair over seeds 0-2. The two columns must agree (the tests check the weights themselves); the
table shows what each composition costs.

    python benchmarks/composition.py
"""

from __future__ import annotations

import sys

import torch
from _common import ROOT, table
from torch.nn.utils import prune as torch_prune

from compresskit import data, layers, lowrank, prune, qat, quantize
from compresskit.train import evaluate, fit_baseline

sys.path.insert(0, str(ROOT))
from tests import reference as ref  # noqa: E402  (the by-hand references live with the tests)

SEEDS = (0, 1, 2)
LINEARS = ref.LINEARS


def _with_weights(by_hand, weights: dict):
    """A torch-pruned MLP whose kept weights are replaced by ``weights[i]`` (masks untouched)."""
    with torch.no_grad():
        for i, w in weights.items():
            target = by_hand[i].weight_orig if hasattr(by_hand[i], "weight_orig") else by_hand[i].weight
            target.copy_(w)
    return by_hand


def pairs(base, gru, split):
    """(name, compresskit model, by-hand model) for each composition."""
    x, y = split.train.tensors
    kept = lambda m, i: m[i].weight_mask.bool()  # noqa: E731
    rows = [("prune 90 % alone (layer scope, no fine-tuning)", prune.magnitude_prune(base, sparsity=0.9),
             ref.torch_prune_layers(base, 0.9))]
    for bits in (4,):
        hand = ref.torch_prune_layers(base, 0.9)
        rows.append((f"prune 90 % -> uniform {bits}-bit per channel",
                     quantize.quantize_model(prune.magnitude_prune(base, sparsity=0.9), bits, per_channel=True),
                     _with_weights(hand, {i: ref.fake_quant_kept(hand[i].weight.detach(), kept(hand, i), bits, True)
                                          for i in LINEARS})))
    hand = ref.torch_prune_layers(base, 0.9)
    rows.append(("prune 90 % -> k-means 4-bit", quantize.quantize_model(prune.magnitude_prune(base, sparsity=0.9), 4,
                                                                          method="kmeans"),
                 _with_weights(hand, {i: ref.kmeans_kept(hand[i].weight.detach(), kept(hand, i), 4) for i in LINEARS})))
    hand = ref.torch_prune_layers(base, 0.9)
    rows.append(("prune 90 % -> binary", quantize.quantize_model(prune.magnitude_prune(base, sparsity=0.9), 1,
                                                                   method="binary"),
                 _with_weights(hand, {i: ref.binarize_kept(hand[i].weight.detach(), kept(hand, i)) for i in LINEARS})))
    hand = ref.torch_prune_layers(base, 0.5)
    ours = lowrank.low_rank(prune.magnitude_prune(base, sparsity=0.5), rank=16)
    svd = layers.copy_model(base)
    with torch.no_grad():
        for i in (1, 3):
            svd[i].weight.copy_(ref.truncated_svd(hand[i].weight.detach(), 16).float())
            svd[5].weight.copy_(hand[5].weight.detach())
    rows.append(("prune 50 % -> SVD rank 16", ours, svd))
    factored = lowrank.low_rank(base, rank=16)
    rows.append(("SVD rank 16 -> prune 50 %", prune.magnitude_prune(factored, sparsity=0.5),
                 ref.torch_prune_layers(factored, 0.5)))
    hand = ref.torch_prune_layers(base, 0.7)
    ours = qat.qat(prune.magnitude_prune(base, sparsity=0.7), split.train, bits=3, per_channel=True, epochs=1,
                        lr=1e-3, seed=0, progress=False)
    weights = ref.qat_by_hand(hand, x, y, bits=3, lr=1e-3, seed=0, batch_size=64)  # trains hand's biases too
    rows.append(("prune 70 % -> QAT 3-bit (1 epoch)", ours, _with_weights(hand, weights)))
    hand = ref.torch_prune_layers(base, 0.9)
    ours = qat.kmeans_finetune(prune.magnitude_prune(base, sparsity=0.9), split.train, bits=2, epochs=1, lr=0.01,
                                    optimizer="sgd", batch_size=len(x), seed=0, progress=False)
    weights = ref.centroid_finetune_by_hand(ref.torch_prune_layers(base, 0.9), x, y, bits=2, lr=0.01)
    rows.append(("prune 90 % -> k-means 2-bit + 1 centroid step", ours, _with_weights(hand, weights)))
    hand = ref.torch_prune_layers(gru, 0.5, names=("weight_hh",))
    mask = hand.rnn.weight_hh_l0_mask.bool()
    gru_ours = quantize.quantize_model(prune.magnitude_prune(gru, sparsity=0.5, tensors="weight_hh"), 4,
                                       per_channel=True)
    with torch.no_grad():
        hand.rnn.weight_hh_l0_orig.copy_(ref.fake_quant_kept(hand.rnn.weight_hh_l0.detach(), mask, 4, True))
        w_ih = hand.rnn.weight_ih_l0.detach()
        hand.rnn.weight_ih_l0.copy_(ref.fake_quant_kept(w_ih, torch.ones_like(w_ih).bool(), 4, True))
        hand.fc.weight.copy_(ref.fake_quant_kept(hand.fc.weight.detach(), torch.ones_like(hand.fc.weight).bool(), 4,
                                                 True))
        torch_prune.remove(hand.rnn, "weight_hh_l0")
    rows.append(("GRU: prune weight_hh 50 % -> 4-bit per channel", gru_ours, hand))
    return rows


def main() -> None:
    split = data.load_digits(seed=0)
    results: dict[str, list] = {}
    for seed in SEEDS:
        base = fit_baseline("mlp", split.train, seed=seed, progress=False)
        gru = fit_baseline("gru", split.train, seed=seed, progress=False)
        results.setdefault("baseline LeNet-300-100 / GRU-64", []).append(
            (evaluate(base, split.test), evaluate(gru, split.test)))
        for name, ours, hand in pairs(base, gru, split):
            results.setdefault(name, []).append((evaluate(ours, split.test), evaluate(hand, split.test)))
    rows = [[name] + [f"{100 * a:.2f} / {100 * b:.2f}" for a, b in accs] for name, accs in results.items()]
    table(["pair (accuracy %: compresskit / by hand)"] + [f"seed {s}" for s in SEEDS], rows,
          "Compositions on LeNet-300-100 (digits), compresskit against torch by hand")


if __name__ == "__main__":
    main()
