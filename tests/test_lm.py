"""The language-model foundation of chapters 09-10: the text corpus, the transformer, perplexity and sample text."""

import copy
import gzip
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from compresskit import cache, data, encode, metrics, models
from compresskit.cache import cache_dir
from compresskit.layers import eval_mode
from compresskit.train import SHIPPED, lm_loss, shipped_baseline, train


@pytest.fixture(scope="module")
def text():
    return data.load_text()


# ------------------------------------------------------------------------------------------------ corpus


def test_corpus_is_the_published_file_split_by_interleaved_blocks(text):
    raw = (data.DATA_DIR / data.TEXT_FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == data.TEXT_SHA256
    whole = gzip.decompress(raw).decode("ascii")
    assert len(whole) >= 1_000_000
    blocks = [whole[i:i + 2048] for i in range(0, len(whole), 2048)]  # the split written out
    parts = {"train": "".join(b for i, b in enumerate(blocks) if i % 20 < 18),
             "val": "".join(b for i, b in enumerate(blocks) if i % 20 == 18),
             "test": "".join(b for i, b in enumerate(blocks) if i % 20 == 19)}
    for name, expected in parts.items():
        assert data.decode_text(getattr(text, name)) == expected, name  # nothing lost, nothing reordered
    assert abs(len(text.test) / len(whole) - 0.05) < 0.002 and abs(len(text.train) / len(whole) - 0.9) < 0.002
    starts = [i for i in range(len(whole)) if whole.startswith("# ==== ", i) and (i == 0 or whole[i - 1] == "\n")]
    files = {sum(s <= 2048 * i for s in starts) for i in range(19, len(blocks), 20)}  # the file each test block is in
    assert len(files) >= 20  # the test text samples the whole corpus, not its last files
    ids = torch.cat([text.train, text.val, text.test])
    assert text.vocab_size == 96 and int(ids.max()) < 96
    assert torch.equal(data.load_text().test, text.test)  # deterministic


def test_corrupt_or_truncated_corpus_is_refused(tmp_path):
    good = (data.DATA_DIR / data.TEXT_FILE).read_bytes()
    for name, blob in (("truncated", good[: len(good) // 2]), ("edited", good[:-1] + bytes([good[-1] ^ 1]))):
        path = tmp_path / f"{name}.txt.gz"
        path.write_bytes(blob)
        with pytest.raises(ValueError, match="corrupt: SHA-256"):
            data.read_text(path)
    with pytest.raises(FileNotFoundError, match="make_pycode.py"):
        data.read_text(tmp_path / "missing.txt.gz")


def test_encode_decode_round_trip_and_refusals():
    s = "def f(x):\n    return x ** 2  # ~!"
    assert data.decode_text(data.encode_text(s)) == s
    with pytest.raises(ValueError, match="not in TEXT_VOCAB"):
        data.encode_text("tab\there")
    with pytest.raises(TypeError):
        data.encode_text(b"bytes")
    with pytest.raises(ValueError, match="ids must lie in"):
        data.decode_text([0, 96])
    with pytest.raises(ValueError, match="1-d"):
        data.decode_text(torch.tensor([1.0, 2.0]))


def test_windows_are_next_token_pairs():
    ids = torch.arange(20)
    w = data.windows(ids, 4)
    x, y = w.tensors
    assert x.shape == (4, 4) and torch.equal(x[1], torch.arange(4, 8)) and torch.equal(y[1], torch.arange(5, 9))
    x2, _ = data.windows(ids, 4, stride=2).tensors
    assert torch.equal(x2[:, 0], torch.arange(0, 16, 2))
    for bad in (dict(context=0), dict(context=4, stride=0), dict(context=20)):
        with pytest.raises(ValueError):
            data.windows(ids, **bad)
    with pytest.raises(TypeError):
        data.windows(ids.float(), 4)


# ------------------------------------------------------------------------------------------------ model


def test_transformer_is_causal_and_counts_its_parameters():
    torch.manual_seed(0)
    model = models.transformer_lm()
    assert sum(p.numel() for p in model.parameters()) == 834_304  # the docstring's figure
    small = models.transformer_lm(context=16, d_model=32, n_layer=2, n_head=4)
    x = torch.randint(0, 96, (2, 16))
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 96  # change the future
    with torch.no_grad():
        assert torch.allclose(small(x)[:, :10], small(x2)[:, :10], atol=1e-6)
        assert not torch.allclose(small(x)[:, 10:], small(x2)[:, 10:])
    with pytest.raises(ValueError, match="context of 16"):
        small(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of n_head"):
        models.transformer_lm(d_model=30, n_head=4)


def test_attention_equals_the_formula_written_out():
    torch.manual_seed(1)
    attn = models.Attention(16, 2, 8)
    x = torch.randn(3, 5, 16)
    q, k, v = (lin(x).view(3, 5, 2, 8).transpose(1, 2) for lin in (attn.q, attn.k, attn.v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(8) + torch.triu(torch.full((5, 5), -math.inf), 1)
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(3, 5, 16)
    assert torch.allclose(attn(x), attn.proj(y), atol=1e-5)


def test_lm_training_goes_through_the_training_cache(text, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "cache_dir", cache_dir)  # conftest turns the cache off for unit tests
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(tmp_path))
    windows = data.windows(text.train[:8000], 16)

    def run():
        torch.manual_seed(0)
        model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
        return model, train(model, windows, epochs=1, lr=3e-3, batch_size=32, objective=lm_loss, progress=False)

    first, history = run()
    again, loaded = run()
    assert history.loaded_from is None and loaded.loaded_from is not None
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert history[0] < math.log(96)  # it learned something in one epoch


def test_the_shipped_model_loads_bit_for_bit(text):
    model = shipped_baseline("transformer")
    blob = (data.DATA_DIR / SHIPPED["transformer"][0]).read_bytes()
    again = encode.unpack(blob, like=models.transformer_lm())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not model.training
    assert metrics.perplexity(model, text.val[:4096]).bits_per_char < 2.5  # a trained model, not a random one


# ------------------------------------------------------------------------------------------------ measurements


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_perplexity_is_the_formula_written_out(seed, text):
    torch.manual_seed(seed)
    model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    ids = text.val[seed * 1000: seed * 1000 + 300]
    score = metrics.perplexity(model, ids)
    n = (len(ids) - 1) // 16  # whole windows
    with torch.no_grad():
        nll = [F.cross_entropy(model(ids[None, 16 * i: 16 * i + 16])[0], ids[16 * i + 1: 16 * i + 17],
                               reduction="sum") for i in range(n)]
    assert score.tokens == 16 * n
    assert math.isclose(score.nll, float(sum(nll)) / (16 * n), rel_tol=1e-5)
    assert math.isclose(score.perplexity, math.exp(score.nll)) and math.isclose(score.bits_per_char,
                                                                                score.nll / math.log(2))
    # stride 4: the first window scores 16 tokens, every later one the 4 it adds, each with 12 before it
    s4 = metrics.perplexity(model, ids, stride=4)
    starts = range(0, len(ids) - 16, 4)
    with torch.no_grad():
        total = 0.0
        for j, start in enumerate(starts):
            losses = F.cross_entropy(model(ids[None, start:start + 16])[0], ids[start + 1:start + 17], reduction="none")
            total += float(losses.sum() if j == 0 else losses[-4:].sum())
    assert s4.tokens == 16 + 4 * (len(starts) - 1)
    assert math.isclose(s4.nll, total / s4.tokens, rel_tol=1e-5)


@pytest.mark.parametrize("seed", (0, 1, 2))
@pytest.mark.parametrize("stride", (16, 4))
def test_fidelity_is_kl_div_written_out_on_the_tokens_perplexity_scores(seed, stride, text):
    torch.manual_seed(seed)
    reference = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    with torch.no_grad():  # a perturbed copy: close to the reference, not equal
        model.load_state_dict(reference.state_dict())
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = text.val[seed * 1000: seed * 1000 + 300]
    got = metrics.fidelity(reference, model, ids, stride=stride)
    kls, agree, targets_nll = [], 0, [0.0, 0.0]
    with torch.no_grad():
        for j, start in enumerate(range(0, len(ids) - 16, stride)):
            window = ids[None, start:start + 16]
            p, q = (F.log_softmax(m(window)[0].double(), -1) for m in (reference, model))
            keep = slice(None) if j == 0 else slice(-stride, None)
            p, q, y = p[keep], q[keep], ids[start + 1:start + 17][keep]
            kls.append(F.kl_div(q, p, log_target=True, reduction="none").sum(-1))  # KL(p || q), torch's own
            agree += int((p.argmax(-1) == q.argmax(-1)).sum())
            targets_nll[0] += float(F.nll_loss(p, y, reduction="sum"))
            targets_nll[1] += float(F.nll_loss(q, y, reduction="sum"))
    kl = torch.cat(kls)
    assert got.tokens == len(kl) == metrics.perplexity(model, ids, stride=stride).tokens
    assert math.isclose(got.kl_mean, float(kl.mean()), rel_tol=1e-9)
    assert math.isclose(got.kl_median, float(torch.quantile(kl, 0.5)), rel_tol=1e-9)
    assert math.isclose(got.kl_p999, float(torch.quantile(kl, 0.999)), rel_tol=1e-9)
    assert got.kl_median <= got.kl_p99 <= got.kl_p999 <= float(kl.max()) + 1e-12
    assert got.top1 == agree / len(kl)
    ratio = math.log(metrics.perplexity(model, ids, stride=stride).perplexity /
                     metrics.perplexity(reference, ids, stride=stride).perplexity)
    assert math.isclose(got.log_ppl_ratio, (targets_nll[1] - targets_nll[0]) / len(kl), rel_tol=1e-9)
    assert math.isclose(got.log_ppl_ratio, ratio, rel_tol=1e-4, abs_tol=1e-6)


def test_fidelity_of_a_model_with_itself_is_perfect(text):
    torch.manual_seed(0)
    model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    same = metrics.fidelity(model, model, text.val[:300])
    assert same.kl_mean == same.kl_p999 == 0.0 and same.top1 == 1.0 and same.log_ppl_ratio == 0.0
    assert "top-1 agreement 100.00%" in str(same)


def test_fidelity_reuses_the_reference_only_while_nothing_in_it_changed(text):
    """The reference's log-probabilities are kept between calls (a chapter scores many models against one): a
    second call gives the same numbers, and any change to the reference (a weight in place, a head mask, a new
    submodule) or to the text is seen."""
    torch.manual_seed(0)
    reference = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    ids = text.val[:300]
    first = metrics.fidelity(reference, model, ids)
    assert metrics.fidelity(reference, model, ids) == first
    fresh = copy.deepcopy(reference)  # another module, same weights: computed anew, same numbers
    assert metrics.fidelity(fresh, model, ids) == first
    changes = [lambda r: r.blocks[0].fc.weight.data.mul_(1.5),
               lambda r: setattr(r.blocks[0].attn, "head_mask", torch.tensor([1.0, 0.0])),
               lambda r: setattr(r.blocks[0], "fc", torch.nn.Linear(32, 128))]
    for change in changes:
        with torch.no_grad():
            change(reference)
        again = metrics.fidelity(reference, model, ids)
        uncached = metrics.fidelity(copy.deepcopy(reference), model, ids)
        assert again == uncached and again != first
        first = again
    assert metrics.fidelity(reference, model, text.val[300:600]) != first


def test_perplexity_refusals_and_mode_restore(text):
    model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    model.train()
    model.blocks[0].eval()  # mixed modes come back exactly
    metrics.perplexity(model, text.val[:100])
    assert model.training and not model.blocks[0].training and model.ln.training
    with pytest.raises(ValueError, match="at least context"):
        metrics.perplexity(model, text.val[:16])
    with pytest.raises(ValueError, match="stride"):
        metrics.perplexity(model, text.val[:100], stride=17)
    with pytest.raises(ValueError, match="context"):
        metrics.perplexity(model, text.val[:100], context=32)
    with pytest.raises(TypeError):
        metrics.perplexity(model, text.val[:100].float())
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        metrics.perplexity(model, text.val[:100])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_cache_gives_the_full_windows_logits_piece_by_piece(seed):
    """Feeding a sequence in pieces through a KVCache (a prompt, single tokens, a run of several) gives the logits
    of one full forward, with removed heads too (chapter 10's shapes), and counts its tokens and bytes."""
    torch.manual_seed(seed)
    model = models.transformer_lm(context=32, d_model=32, n_layer=2, n_head=4).eval()
    model.blocks[1].attn.head_mask = torch.tensor([1.0, 0.0, 1.0, 1.0])
    x = torch.randint(0, 96, (2, 32))
    cache = models.KVCache()
    with torch.no_grad():
        full = model(x)
        pieces = [model(x[:, a:b], cache) for a, b in ((0, 7), (7, 8), (8, 9), (9, 20), (20, 32))]
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)
    assert cache.length == 32 and cache.bytes() == 2 * 2 * (2 * 4 * 32 * 8) * 4  # k and v, 2 blocks, float32
    with pytest.raises(ValueError, match="after 32 cached"):
        model(x[:, :1], cache)


def test_sample_text_with_the_cache_equals_recomputing_every_window():
    """``sample_text`` uses a KV cache on a TransformerLM while the text fits the context and recomputes the sliding
    window after that: the text equals the one a model without the cache support writes (the same logits)."""
    torch.manual_seed(0)
    model = models.transformer_lm(context=16, d_model=32, n_layer=2, n_head=2)

    class Plain(torch.nn.Module):  # the same model, called without a cache
        def __init__(self, inner):
            super().__init__()
            self.inner, self.context = inner, inner.context

        def forward(self, idx):
            return self.inner(idx)

    for seed in range(3):
        assert metrics.sample_text(model, "def f(", 30, seed=seed) == metrics.sample_text(Plain(model), "def f(", 30,
                                                                                           seed=seed)


def test_sample_text_is_deterministic_for_a_seed():
    torch.manual_seed(0)
    model = models.transformer_lm(context=16, d_model=32, n_layer=1, n_head=2)
    a = metrics.sample_text(model, "def ", 40, seed=3)
    assert a == metrics.sample_text(model, "def ", 40, seed=3) and len(a) == 40
    assert a != metrics.sample_text(model, "def ", 40, seed=4)
    for bad in (dict(prompt=""), dict(prompt="x", length=0), dict(prompt="x", temperature=0.0)):
        with pytest.raises(ValueError):
            metrics.sample_text(model, **bad)


def test_eval_mode_restores_every_submodule_even_on_error():
    model = models.mlp()
    model.train()
    model[1].eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError
    assert model.training and not model[1].training and model[2].training
