"""Char-golf's file (compresskit.golf): the grid a quantized matrix lies on is read back from its values exactly as
weightonly.quantize_groups made it; a packed model read back is the model (to the file's float16 scales); an entry's
score is the perplexity of that read-back copy and its size the length of the file; bad files and models without a
grid are refused by name."""

import lzma

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from compresskit import golf, metrics, models, recovery, sparsegpt, weightonly
from compresskit.layers import effective_weight, named_tensors, transformer_linears


def lm(seed: int = 0):
    torch.manual_seed(seed)
    return models.transformer_lm(context=16, d_model=32, n_layer=2, n_head=2)


def ids(n: int = 3000):
    return torch.randint(0, 96, (n,), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [8, 32, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_grid_read_back_gives_the_same_values(bits, group, seed):
    w = torch.randn(6, 64, generator=torch.Generator().manual_seed(seed)) * (seed + 0.3)
    if seed == 2:
        w[:, ::3] = 0.0  # pruned zeros stay on the grid
    fq = weightonly.fake_quantize_groups(w, bits, group_size=group)
    q, scale, zero = golf.grid_of(fq, bits, group_size=group)
    assert q.dtype == torch.int32 and int(q.min()) >= 0 and int(q.max()) < 2**bits
    assert torch.allclose(weightonly.dequantize_groups(q, scale, zero), fq, rtol=0, atol=1e-6 * float(fq.abs().max()))


def test_symmetric_rows_constant_groups_and_signs():
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    scale = w.abs().amax(1, keepdim=True) / 7
    symmetric = torch.clamp(torch.round(w / scale), -7, 7) * scale  # SparseGPT's joint rounding: a scale per row
    q, s, z = golf.grid_of(symmetric, 4, group_size=None)
    assert torch.allclose(weightonly.dequantize_groups(q, s, z), symmetric, atol=1e-6)
    constant = torch.tensor([[0.0] * 4 + [0.5] * 4 + [-0.25] * 4])
    q, s, z = golf.grid_of(constant, 2, group_size=4)
    assert torch.equal(weightonly.dequantize_groups(q, s, z), constant)


def test_values_off_any_grid_are_refused_by_group():
    w = torch.randn(2, 16, generator=torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match=r"not on a 3-bit grid in groups of 8 \(group 0 of 4, row 0\)"):
        golf.grid_of(w, 3, group_size=8)
    fq = weightonly.fake_quantize_groups(w, 4, group_size=8)
    with pytest.raises(ValueError, match="2-bit grid"):  # 4-bit values need more than 2 bits
        golf.grid_of(fq, 2, group_size=8)


@pytest.mark.parametrize("others", [8, 16])
def test_a_packed_model_read_back_is_the_model(others):
    model = weightonly.quantize_lm(lm(), 3, group_size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blob = golf.pack(model, 3, group_size=8, others=others)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # not touched
    raw = lzma.decompress(blob)
    assert raw[:4] == golf.MAGIC
    back = golf.unpack(blob, like=model)
    linears = {f"{n}.weight" for n in transformer_linears(model)}
    for (name, t), (_, u) in zip(named_tensors(model), named_tensors(back)):
        t, u = t.detach(), u.detach()
        if name in linears:  # the codes are exact; only the float16 scale rounds
            assert torch.allclose(u, t, rtol=0, atol=2e-3 * float(t.abs().max())), name
        elif t.dim() == 2 and others == 8:  # 8 bits per row: within half a step
            step = (t.amax(1) - t.amin(1).clamp(max=0)) / 255
            assert bool(((u - t).abs() <= step[:, None] * 0.51 + 1e-3 * float(t.abs().max())).all()), name
        else:
            assert torch.equal(u, t.half().float()), name


def test_pruned_corrected_and_joint_models_pack():
    model = lm()
    text = ids()
    joint = sparsegpt.prune_lm(model, 0.5, bits=4, calibration=text, samples=4)
    back = golf.unpack(golf.pack(joint, 4, group_size=None, others=8), like=joint)
    for name, layer in transformer_linears(joint).items():
        kept = effective_weight(layer)
        assert torch.equal(effective_weight(transformer_linears(back)[name]) == 0, kept == 0), name
    masked = weightonly.quantize_lm(model, 4, group_size=16)
    torch_prune.l1_unstructured(masked.blocks[0].fc, "weight", amount=0.5)
    back = golf.unpack(golf.pack(masked, 4, group_size=16), like=masked)
    assert hasattr(back.blocks[0].fc, "weight_mask")
    assert torch.allclose(effective_weight(back.blocks[0].fc), effective_weight(masked.blocks[0].fc), atol=1e-3)
    corrected = recovery.correct_lm(weightonly.quantize_lm(model, 2, group_size=16), model, 2, calibration=text,
                                    samples=4)
    back = golf.unpack(golf.pack(corrected, 2, group_size=16, others=16), like=corrected)
    assert torch.equal(back.blocks[0].attn.q.a, corrected.blocks[0].attn.q.a.detach().half().float())


def test_the_score_is_the_read_back_models_and_the_size_the_files():
    model = weightonly.quantize_lm(lm(), 2, group_size=16)
    test = ids(600)
    entry = golf.score("two bits", model, test, 2, group_size=16, others=8, recipe="RTN")
    blob = golf.pack(model, 2, group_size=16, others=8)
    assert entry.bytes == len(blob)
    assert entry.bits_per_char == pytest.approx(metrics.perplexity(golf.unpack(blob, like=model),
                                                                   test).bits_per_char, rel=1e-12)
    assert entry.tokens == metrics.perplexity(model, test).tokens and "RTN" in entry.recipe
    float16 = golf.score("float16", model, test, 0)
    assert float16.bytes > entry.bytes  # the float16 linears cost more than their 2-bit codes


def test_a_model_not_on_its_grid_and_bad_files_are_refused():
    model = lm()
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.q\.weight: w is not on a 3-bit grid"):
        golf.pack(model, 3, group_size=8)
    blob = golf.pack(weightonly.quantize_lm(model, 3, group_size=8), 3, group_size=8)
    with pytest.raises(ValueError, match="not an lzma file"):
        golf.unpack(b"not a file", like=model)
    with pytest.raises(ValueError, match="not a golf.pack file"):
        golf.unpack(lzma.compress(b"XXXX" + bytes(20)), like=model)
    with pytest.raises(ValueError, match="cut short|not one of like's"):
        golf.unpack(lzma.compress(lzma.decompress(blob)[:-100]), like=model)
    with pytest.raises(ValueError, match="tensors; like has"):
        golf.unpack(blob, like=models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="others must be one of"):
        golf.pack(model, 0, others=12)


def test_the_board_keeps_what_fits_best_first():
    entries = [golf.Entry("a", "r", 300, 1.5, 10), golf.Entry("b", "r", 200, 1.5, 10),
               golf.Entry("c", "r", 100, 2.0, 10), golf.Entry("d", "r", 500, 1.2, 10)]
    assert [e.name for e in golf.board(entries, 300)] == ["b", "a", "c"]  # equal bits per character: smaller first
    assert golf.board(entries, 50) == []
    with pytest.raises(TypeError, match=r"entries\[1\] must be a golf.Entry"):
        golf.board([entries[0], "x"], 100)
