import pytest
import torch
import torch.nn.functional as F

from compresskit import data, layers, metrics, models
from compresskit.train import evaluate, predict, set_seed, train


def _linear_params(widths):
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


@pytest.mark.parametrize("hidden", [(300, 100), (32,), (16, 8, 4)])
def test_mlp_shapes_and_param_count_by_formula(hidden):
    m = models.mlp(hidden=hidden)
    assert m(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert metrics.count_params(m) == _linear_params((64, *hidden, 10))


def test_lenet_and_rnn_shapes_and_param_counts():
    cnn = models.lenet()
    assert cnn(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    conv = (1 * 9 * 16 + 16) + (16 * 9 * 32 + 32)
    bn = 2 * 16 + 2 * 32
    assert metrics.count_params(cnn) == conv + bn + _linear_params((128, 64, 10))
    for cell, gates in (("rnn", 1), ("gru", 3), ("lstm", 4)):
        r = models.rnn_classifier(cell, hidden_size=20)
        # image input and sequence input give the same logits
        x = torch.rand(3, 1, 8, 8)
        assert torch.allclose(r(x), r(data.as_sequences(x)))
        expected = gates * 20 * (8 + 20) + 2 * gates * 20 + _linear_params((20, 10))
        assert metrics.count_params(r) == expected


def test_model_arguments_are_validated():
    with pytest.raises(ValueError, match="hidden\\[1\\]"):
        models.mlp(hidden=(10, 0))
    with pytest.raises(TypeError, match="hidden\\[0\\]"):
        models.mlp(hidden=(2.5,))
    with pytest.raises(ValueError, match="cell must be one of"):
        models.rnn_classifier("transformer")
    with pytest.raises(ValueError, match="hidden_size"):
        models.rnn_classifier("gru", hidden_size=0)


def test_set_seed_makes_initialisation_and_training_repeatable():
    split = data.load_digits()
    runs = []
    for _ in range(2):
        set_seed(5)
        m = models.mlp(hidden=(16,))
        hist = train(m, split.train, epochs=2, lr=1e-2, progress=False)
        runs.append((hist, m[1].weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    with pytest.raises(TypeError, match="seed"):
        set_seed("1")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_baseline_mlp_reaches_97_percent(seed):
    split = data.load_digits(seed=seed)
    set_seed(seed)
    m = models.mlp()
    history = train(m, split.train, epochs=30, lr=1e-3, progress=False, seed=seed)
    assert history[-1] < history[0] / 10
    assert evaluate(m, split.test) >= 0.97


def test_evaluate_matches_accuracy_written_out_and_restores_mode():
    split = data.load_digits()
    set_seed(0)
    m = models.lenet()
    m.train()
    x, y = split.test.tensors
    m.eval()
    with torch.no_grad():
        expected = (m(x).argmax(1) == y).float().mean().item()
    m.train()
    assert evaluate(m, split.test) == pytest.approx(expected, abs=1e-7)
    assert m.training  # evaluate put it back
    assert torch.allclose(predict(m, split.test).softmax(1).sum(1), torch.ones(len(y)))


def test_hooks_penalty_and_after_step_and_objective_are_called():
    split = data.load_digits()
    calls = {"penalty": 0, "after": 0, "objective": 0}

    def objective(model, x, y):
        calls["objective"] += 1
        return F.cross_entropy(model(x), y)

    def penalty(model):
        calls["penalty"] += 1
        return torch.zeros(())

    def after(model):
        calls["after"] += 1

    train(models.mlp(hidden=(8,)), split.train, epochs=1, lr=1e-3, batch_size=500, progress=False,
          objective=objective, penalty=penalty, after_step=after)
    assert calls == {"penalty": 3, "after": 3, "objective": 3}  # ceil(1438 / 500) batches


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0, "lr": 1e-3}, "epochs"), ({"epochs": 1, "lr": -1.0}, "lr"),
    ({"epochs": 1, "lr": 1e-3, "batch_size": 0}, "batch_size"),
    ({"epochs": 1, "lr": 1e-3, "optimizer": "lbfgs"}, "optimizer"),
    ({"epochs": 1, "lr": 1e-3, "weight_decay": -1}, "weight_decay"),
])
def test_train_validates_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        train(models.mlp(hidden=(4,)), data.load_digits().train, progress=False, **kwargs)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_train_updates_exactly_as_the_plain_optimizer_loop(optimizer):
    """train() uses the multi-tensor (foreach) optimizer for speed: the weights must equal, bit for bit, those of the
    same epochs written out with torch's default single-tensor optimizer."""
    torch.manual_seed(0)
    x, y = torch.rand(96, 1, 8, 8), torch.randint(0, 10, (96,))
    dataset = torch.utils.data.TensorDataset(x, y)
    by_train = models.lenet(channels=(2, 4), hidden=8)
    by_hand = layers.copy_model(by_train)
    train(by_train, dataset, epochs=2, lr=3e-3, batch_size=32, optimizer=optimizer, progress=False, seed=5)
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer](by_hand.parameters(), lr=3e-3,
                                                                         foreach=False, **extra)
    gen = torch.Generator().manual_seed(5)
    by_hand.train()
    for _ in range(2):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            loss = torch.nn.functional.cross_entropy(by_hand(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(by_train.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)


def test_labels_beyond_the_models_classes_are_refused_in_training_and_evaluation():
    model = models.mlp(hidden=(4,))
    bad = torch.utils.data.TensorDataset(torch.rand(8, 1, 8, 8), torch.full((8,), 12))
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 9\] for a model with 10 outputs, got "
                                         r"values from 12 to 12"):
        train(model, bad, epochs=1, lr=0.01, progress=False)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 9\]"):
        evaluate(model, bad)
