import copy
import math

import pytest
import torch

from compresskit import data, distill, models
from compresskit.train import evaluate, predict, set_seed, train


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (8.0, 1.0)])
def test_kd_loss_is_the_formula_written_out(seed, temperature, alpha):
    torch.manual_seed(seed)
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    y = torch.randint(0, 10, (5,))
    total = 0.0
    for i in range(5):
        p_t = [math.exp(v / temperature) for v in t[i].tolist()]
        p_s = [math.exp(v / temperature) for v in s[i].tolist()]
        p_t = [v / sum(p_t) for v in p_t]
        p_s = [v / sum(p_s) for v in p_s]
        kl = sum(a * math.log(a / b) for a, b in zip(p_t, p_s))
        ce = -math.log(math.exp(s[i, y[i]].item()) / sum(math.exp(v) for v in s[i].tolist()))
        total += alpha * temperature**2 * kl + (1 - alpha) * ce
    assert distill.kd_loss(s, t, y, temperature=temperature, alpha=alpha).item() == pytest.approx(total / 5, rel=1e-5)


def test_t_squared_keeps_the_soft_gradient_scale():
    torch.manual_seed(0)
    t = torch.randn(64, 10)
    norms = []
    for temperature in (2.0, 8.0):
        s = torch.randn(64, 10, generator=torch.Generator().manual_seed(1)).requires_grad_()
        distill.kd_loss(s, t, torch.zeros(64, dtype=torch.long), temperature=temperature, alpha=1.0).backward()
        norms.append(s.grad.norm().item())
    assert 0.2 < norms[0] / norms[1] < 5  # without T^2 the ratio would be about 16


@pytest.mark.parametrize("kwargs, match", [({"temperature": 0.0, "alpha": 0.5}, "temperature"),
                                          ({"temperature": -1.0, "alpha": 0.5}, "temperature"),
                                          ({"temperature": 2.0, "alpha": 1.5}, r"alpha must be in \[0, 1\]")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), **kwargs)


def test_distill_trains_the_student_and_leaves_the_teacher_alone():
    split = data.load_digits()
    set_seed(0)
    teacher, student = models.lenet(), models.mlp(hidden=(8,))
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    history = distill.distill(student, teacher, split.train, temperature=4.0, alpha=0.7, epochs=2, progress=False)
    assert len(history) == 2 and history[1] < history[0]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN statistics untouched too
    assert teacher.training


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distill_equals_the_loop_that_asks_the_teacher_every_batch(seed):
    """distill computes the teacher's logits once; the student must end where asking the frozen teacher on every
    minibatch (the textbook loop, written out with train's objective hook) ends."""
    split = data.load_digits()
    set_seed(seed)
    teacher = models.lenet()
    train(teacher, split.train, epochs=1, lr=3e-3, progress=False, seed=seed)
    set_seed(seed + 10)
    a = models.lenet(channels=(2, 4), hidden=8)
    b = copy.deepcopy(a)
    distill.distill(a, teacher, split.train, temperature=3.0, alpha=0.8, epochs=3, lr=3e-3, progress=False, seed=seed)
    teacher.eval()

    def every_batch(model, x, y):
        with torch.no_grad():
            t = teacher(x)
        return distill.kd_loss(model(x), t, y, temperature=3.0, alpha=0.8)

    train(b, split.train, epochs=3, lr=3e-3, objective=every_batch, progress=False, seed=seed)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(predict(a, split.test), predict(b, split.test), atol=1e-4, rtol=1e-4)


def test_distill_rejects_a_teacher_that_is_not_a_module():
    split = data.load_digits()
    with pytest.raises(TypeError, match="teacher must be an nn.Module"):
        distill.distill(models.mlp(hidden=(8,)), lambda x: x, split.train, temperature=2.0, alpha=0.5, epochs=1)


def test_compare_with_labels_is_the_experiment_written_out():
    split = data.load_digits()
    set_seed(0)
    teacher = models.lenet()
    train(teacher, split.train, epochs=2, lr=3e-3, progress=False)
    make = lambda: models.mlp(hidden=(8,))  # noqa: E731
    got = distill.compare_with_labels(make, teacher, split.train, split.test, seeds=[3, 4], temperature=4.0,
                                      alpha=0.9, epochs=2, lr=3e-3, progress=False)
    for i, seed in enumerate([3, 4]):
        set_seed(seed)
        plain = make()
        train(plain, split.train, epochs=2, lr=3e-3, seed=seed, progress=False)
        set_seed(seed)
        taught = make()
        distill.distill(taught, teacher, split.train, temperature=4.0, alpha=0.9, epochs=2, lr=3e-3, seed=seed,
                        progress=False)
        assert got.labels_only[i] == (100 * evaluate(plain, split.train), 100 * evaluate(plain, split.test))
        assert got.distilled[i] == (100 * evaluate(taught, split.train), 100 * evaluate(taught, split.test))
    assert torch.equal(predict(got.student, split.test), predict(taught, split.test))  # the last distilled one
    assert got.gaps == [d[1] - p[1] for p, d in zip(got.labels_only, got.distilled)]
    assert math.isclose(got.overfit("distilled"), sum(a - b for a, b in got.distilled) / 2)
    assert math.isclose(got.train_accuracy("labels only"), sum(a for a, _ in got.labels_only) / 2)
    for measure in (got.overfit, got.train_accuracy):
        with pytest.raises(ValueError, match="arm must be one of"):
            measure("teacher")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"seeds": [0]}, ValueError, "at least 2 different seeds"),
    ({"seeds": [0, 0]}, ValueError, "at least 2 different seeds"),
    ({"seeds": None}, TypeError, "seeds must be a list of ints, got NoneType"),
    ({"seeds": [0, 1.5]}, TypeError, r"seeds\[i\] must be an int"),
    ({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]"),
    ({"make_student": lambda: "not a model"}, TypeError, "make_student must return an nn.Module"),
])
def test_compare_with_labels_bad_arguments(kwargs, error, match):
    split = data.load_digits()
    args = {"make_student": lambda: models.mlp(hidden=(4,)), "teacher": models.mlp(hidden=(4,)),
            "dataset": split.train, "test": split.test, "seeds": [0, 1], "temperature": 2.0, "alpha": 0.5,
            "epochs": 1, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        distill.compare_with_labels(**args)


def test_compare_with_labels_on_a_fraction_equals_the_experiment_written_out():
    split = data.load_digits()
    set_seed(0)
    teacher = models.mlp(hidden=(16,))
    train(teacher, split.train, epochs=2, lr=3e-3, progress=False)
    result = distill.compare_with_labels(lambda: models.mlp(hidden=(8,)), teacher, split.train, split.test,
                                         seeds=[0, 1], temperature=4.0, alpha=0.9, epochs=3, lr=3e-3, fraction=0.1,
                                         progress=False)
    x, y = split.train.tensors
    for seed, gap in zip([0, 1], result.gaps):
        subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[: int(len(x) * 0.1)]
        few = torch.utils.data.TensorDataset(x[subset], y[subset])
        set_seed(seed)
        plain = models.mlp(hidden=(8,))
        train(plain, few, epochs=3, lr=3e-3, progress=False, seed=seed)
        set_seed(seed)
        taught = models.mlp(hidden=(8,))
        distill.distill(taught, teacher, few, temperature=4.0, alpha=0.9, epochs=3, lr=3e-3, progress=False, seed=seed)
        assert gap == pytest.approx(100 * evaluate(taught, split.test) - 100 * evaluate(plain, split.test), abs=1e-9)
    with pytest.raises(ValueError, match="fraction"):
        distill.labelled_fraction(split.train, 1.5, 0)


# ---------------------------------------------------------------------------------------------- logit matching


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_logit_loss_is_the_formula_written_out(seed, alpha):
    torch.manual_seed(seed)
    s, t = torch.randn(6, 10) * 3, torch.randn(6, 10) * 4 + 1.5
    y = torch.randint(0, 10, (6,))
    for centre in (True, False):
        squares = 0.0
        for i in range(6):
            ms, mt = (s[i].mean().item(), t[i].mean().item()) if centre else (0.0, 0.0)
            squares += sum(((a - ms) - (b - mt)) ** 2 for a, b in zip(s[i].tolist(), t[i].tolist()))
        hard = sum(-math.log(math.exp(s[i, y[i]].item()) / sum(math.exp(v) for v in s[i].tolist()))
                   for i in range(6)) / 6
        expected = alpha * squares / 60 + (1 - alpha) * hard
        assert distill.logit_loss(s, t, y, alpha=alpha, centre=centre).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_high_temperature_limit_of_the_soft_term_is_half_the_logit_loss(seed):
    """Hinton et al.'s limit: for centred logits, the gradient of T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) tends
    to that of mean((z_s - z_t)^2) / 2 as T grows; the gap shrinks like 1/T (checked over three decades)."""
    torch.manual_seed(seed)
    s, t = torch.randn(16, 10) * 2, torch.randn(16, 10) * 3 + 2.0
    y = torch.randint(0, 10, (16,))

    def grad(loss):
        z = s.clone().requires_grad_()
        loss(z).backward()
        return z.grad

    limit = grad(lambda z: distill.logit_loss(z, t, y, alpha=1.0) / 2)
    gaps = [((grad(lambda z, T=T: distill.kd_loss(z, t, y, temperature=T, alpha=1.0)) - limit).norm()
             / limit.norm()).item()
            for T in (10.0, 100.0, 1000.0)]
    assert gaps[0] < 0.3 and gaps[1] < gaps[0] / 5 and gaps[2] < gaps[1] / 5 and gaps[2] < 5e-3
    # the classic mistake: uncentred logits whose rows have different means do not have this limit
    uncentred = grad(lambda z: distill.logit_loss(z, t, y, alpha=1.0, centre=False) / 2)
    assert ((grad(lambda z: distill.kd_loss(z, t, y, temperature=1000.0, alpha=1.0)) - uncentred).norm()
            / uncentred.norm()).item() > 0.3


@pytest.mark.parametrize("seed", [0, 1])
def test_distill_with_logits_equals_the_loop_written_out(seed):
    split = data.load_digits()
    set_seed(seed)
    teacher = models.mlp(hidden=(32,))
    train(teacher, split.train, epochs=1, lr=3e-3, progress=False, seed=seed)
    set_seed(seed + 10)
    a = models.mlp(hidden=(8,))
    b = copy.deepcopy(a)
    distill.distill(a, teacher, split.train, alpha=0.7, epochs=2, lr=3e-3, loss="logits", progress=False, seed=seed)

    def by_hand(model, x, y):
        with torch.no_grad():
            t = teacher(x)
        z = model(x)
        centred = (z - z.mean(1, keepdim=True)) - (t - t.mean(1, keepdim=True))
        return 0.7 * centred.pow(2).mean() + 0.3 * torch.nn.functional.cross_entropy(z, y)

    train(b, split.train, epochs=2, lr=3e-3, objective=by_hand, progress=False, seed=seed)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5, msg=name)


def test_logit_matching_refuses_bad_arguments():
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
    split = data.load_digits()
    student, teacher = models.mlp(hidden=(4,)), models.mlp(hidden=(4,))
    with pytest.raises(ValueError, match="takes no temperature"):
        distill.distill(student, teacher, split.train, temperature=4.0, alpha=0.5, epochs=1, loss="logits")
    with pytest.raises(ValueError, match="temperature is required"):
        distill.distill(student, teacher, split.train, alpha=0.5, epochs=1)
    with pytest.raises(ValueError, match="loss must be one of"):
        distill.distill(student, teacher, split.train, alpha=0.5, epochs=1, loss="mse")
    with pytest.raises(ValueError, match="takes no temperature"):
        distill.compare_with_labels(lambda: models.mlp(hidden=(4,)), teacher, split.train, split.test, seeds=[0, 1],
                                    temperature=2.0, alpha=0.5, epochs=1, loss="logits")
    with pytest.raises(TypeError, match="centre must be a bool"):
        distill.logit_loss(s, t, y, alpha=0.5, centre=1)
    with pytest.raises(ValueError, match="alpha"):
        distill.logit_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="teacher_logits"):
        distill.logit_loss(s, torch.full((4, 10), float("nan")), y, alpha=0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        distill.logit_loss(s, t[:, :5], y, alpha=0.5)


def test_distillation_helpers_refuse_empty_batches_missing_seeds_and_modules_for_factories():
    with pytest.raises(ValueError, match=r"student_logits must be a non-empty batch \(batch, classes\), got shape"):
        distill.kd_loss(torch.empty(0, 10), torch.empty(0, 10), torch.empty(0, dtype=torch.long), temperature=2.0,
                        alpha=0.5)
    dataset = torch.utils.data.TensorDataset(torch.rand(10, 1, 8, 8), torch.arange(10))
    with pytest.raises(TypeError, match="seed must be an int"):
        distill.labelled_fraction(dataset, 0.5, None)
    with pytest.raises(TypeError, match="make_student must be a function that builds a new student"):
        distill.compare_with_labels(models.mlp(), models.mlp(), dataset, dataset, seeds=[0, 1], temperature=2.0,
                                    alpha=0.5, epochs=1)
