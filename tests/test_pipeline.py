"""compresskit.pipeline: Deep Compression's stages in real bytes, the Pareto front, the byte budget, CSR runtime."""

from __future__ import annotations

import pytest
import torch

from compresskit import encode, models, pipeline, prune, timing
from compresskit.layers import effective_weight
from compresskit.train import set_seed


def _point(name, acc, size):
    return pipeline.Point(name, "f", [name], acc, size)


def test_pareto_front_and_budget_written_out():
    points = [_point("a", 0.90, 100), _point("b", 0.95, 300), _point("c", 0.93, 400), _point("d", 0.97, 900),
              _point("e", 0.90, 50), _point("f", 0.97, 900)]
    front = pipeline.pareto_front(points)
    # by hand: a point is on the front when no other has <= bytes and >= accuracy with one strict
    dominated = {p.name for p in points for q in points if q is not p and q.bytes <= p.bytes and
                 q.accuracy >= p.accuracy and (q.bytes < p.bytes or q.accuracy > p.accuracy)}
    assert [p.name for p in front] == ["e", "b", "d"] and dominated == {"a", "c"}
    assert pipeline.best_under(points, 350).name == "b" and pipeline.best_under(points, 10) is None
    assert pipeline.best_under(points, 10**6).name == "d"  # equal accuracy: the first, fewest bytes
    with pytest.raises(ValueError, match="budget"):
        pipeline.best_under(points, -1)
    with pytest.raises(ValueError, match="latency_ms"):
        pipeline.pareto_front(points, cost="latency_ms")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_csr_runtime_computes_what_the_model_computes(seed):
    set_seed(seed)
    model = prune.magnitude_prune(models.mlp(hidden=(32, 16)), sparsity=0.8)
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(timing.SparseCSR(model)(x), model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="Linear, ReLU and Flatten"):
        timing.SparseCSR(models.lenet())


def test_deep_compression_stages_and_layer_table(split, unchanged):
    set_seed(0)
    small = models.mlp(hidden=(32, 16))
    with unchanged(small):
        dc = pipeline.deep_compression(small, split.train, split.test, sparsity=0.8, steps=2, epochs_per_step=1,
                                       bits=2, kmeans_epochs=1)
    sizes = [s.bytes for s in dc.stages]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == len(dc.blob)
    assert dc.ratio == pytest.approx(4 * (64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10) / len(dc.blob))
    for i in (1, 3, 5):  # pruned zeros stay zero through sharing and the file; at most 2^2 values a layer
        w, kept = effective_weight(dc.unpacked[i]).detach(), dc.pruned[i].weight_mask.bool()
        assert (w[~kept] == 0).all() and len(w[kept].unique()) <= 4
        assert torch.equal(w, effective_weight(dc.shared[i]).detach())
    rows = pipeline.layer_table(dc.unpacked, dc.blob)
    assert [r["layer"] for r in rows] == ["1.weight", "3.weight", "5.weight"]
    assert all(r["weight bits"] <= 2 and r["ratio"] > 1 for r in rows)
    assert sum(r["bytes"] for r in rows) < len(dc.blob)
    assert encode.unpack(dc.blob, like=dc.shared)[1].bias.dtype == torch.float32  # float16 in the file
