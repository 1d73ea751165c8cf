"""utils.instruments.stacked: a stacked (vmapped) run equals separate runs of the from-scratch
optimizer class, which equal torch.optim, model by model.

Tolerances: stacked vs separate runs are compared with ``rtol=1e-10, atol=1e-12`` in float64.
They cannot be bit-identical: the stacked trainer steps with a per-model lr tensor
(``w.sub_(lr * d)``) where the class steps with a float (``w.add_(d, alpha=-lr)``), and vmapped
gradients sum in another order; each differs by about one rounding (1e-16 relative) per step.
A wrong formula (a missing bias correction, a momentum applied twice) differs by >= 1e-3.
A model in a larger or smaller stack, by contrast, runs the same operations: on one thread it
trains bit for bit the same (``test_a_model_trains_the_same_in_any_stack``).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.core import repro, train
from utils.instruments import stacked
from utils.scratch import optim

SEEDS = [3, 11, 29]
RTOL, ATOL = 1e-10, 1e-12
EPOCHS = 4
# (stacked name, hyperparameters, from-scratch class, torch.optim class)
CONFIGS = [
    ("sgd", dict(), optim.SGD, torch.optim.SGD),
    ("sgd", dict(momentum=0.9, weight_decay=1e-3), optim.SGD, torch.optim.SGD),
    ("sgd", dict(momentum=0.9, nesterov=True), optim.SGD, torch.optim.SGD),
    ("sgd", dict(momentum=0.5, dampening=0.5), optim.SGD, torch.optim.SGD),
    ("adam", dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3), optim.Adam, torch.optim.Adam),
    ("adam", dict(amsgrad=True), optim.Adam, torch.optim.Adam),
    ("adamw", dict(weight_decay=0.1), optim.AdamW, torch.optim.AdamW),
    ("rmsprop", dict(alpha=0.9, momentum=0.5), optim.RMSprop, torch.optim.RMSprop),
    ("rmsprop", dict(centered=True, weight_decay=1e-2), optim.RMSprop, torch.optim.RMSprop),
    ("adagrad", dict(lr_decay=0.01), optim.Adagrad, torch.optim.Adagrad),
    ("adadelta", dict(rho=0.8), optim.Adadelta, torch.optim.Adadelta),
    ("radam", dict(weight_decay=1e-2), optim.RAdam, torch.optim.RAdam),
]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return x, y


def _make():
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _separate_run(cls, seed, lr, kw, x, y, batch_size, *, epochs=None, steps=None):
    torch.manual_seed(seed)
    model = _make()
    hist = train.fit(
        model,
        x,
        y,
        optimizer=cls(model.parameters(), lr=lr, **kw),
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        epoch_evals=False,
        progress=False,
    )
    return model, hist


def _ids(c):
    return c[0] + "-" + ("-".join(f"{k}={v}" for k, v in c[1].items()) or "defaults")


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("batch_size", [8, 40])
def test_stacked_equals_separate_from_scratch_runs_equal_torch_optim(config, batch_size):
    name, kw, ours_cls, torch_cls = config
    x, y = _data()
    lrs = {
        "sgd": [0.05, 0.1, 0.3],
        "adagrad": [0.05, 0.1, 0.3],
        "adadelta": [0.5, 1.0, 2.0],
        "radam": [0.01, 0.03, 0.1],  # its first steps are plain momentum steps: small moves
    }.get(name, [0.003, 0.01, 0.05])
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, optimizer=name, lr=lrs, **kw)
    hist = stacked.fit_stacked(tr, x, y, epochs=EPOCHS, batch_size=batch_size, seeds=SEEDS)
    for i, (seed, lr) in enumerate(zip(SEEDS, lrs, strict=True)):
        ours, ours_hist = _separate_run(ours_cls, seed, lr, kw, x, y, batch_size, epochs=EPOCHS)
        ref, _ = _separate_run(
            torch_cls, seed, lr, dict(kw, foreach=False), x, y, batch_size, epochs=EPOCHS
        )
        start = stacked.init_stack(_make, [seed])[1]
        moved = 0.0
        for k, v in ours.state_dict().items():
            # from scratch = torch.optim: the same single-tensor operations
            torch.testing.assert_close(v, ref.state_dict()[k], rtol=1e-12, atol=1e-14)
            # stacked = separate run of the from-scratch class (see the module doc)
            torch.testing.assert_close(params[k][i], v, rtol=RTOL, atol=ATOL)
            moved = max(moved, float((v - start[k][0]).abs().max()))
        assert moved > 1e-3, "the run barely moved: the comparison would be vacuous"
        torch.testing.assert_close(
            torch.as_tensor(hist["step_loss"][:, i]),
            torch.as_tensor(ours_hist["step_loss"], dtype=torch.float64),
            rtol=RTOL,
            atol=ATOL,
        )


@pytest.mark.parametrize("name", stacked.OPTIMIZERS)
def test_the_update_is_the_from_scratch_function(name):
    """One source of optimizer maths: the trainer calls the scratch module's own function."""
    cls, update, keys = stacked.UPDATES[name]
    assert update.__module__ == optim.__name__ and update is getattr(optim, update.__name__)
    assert cls is getattr(optim, cls.__name__)
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, optimizer=name)
    assert tr._update is update and set(tr.hyper) == set(keys)


def test_defaults_and_validation_come_from_the_class():
    base, params = stacked.init_stack(_make, SEEDS)
    assert stacked.StackedTrainer(base, params, optimizer="adamw").hyper["weight_decay"] == 1e-2
    assert stacked.StackedTrainer(base, params, optimizer="adam").hyper["weight_decay"] == 0
    assert stacked.StackedTrainer(base, params, optimizer="rmsprop").hyper["alpha"] == 0.99
    with pytest.raises(ValueError, match="optimizer"):
        stacked.StackedTrainer(base, params, optimizer="lion")
    with pytest.raises(TypeError, match="alpha"):
        stacked.StackedTrainer(base, params, optimizer="sgd", alpha=0.9)
    with pytest.raises(ValueError, match="lr"):
        stacked.StackedTrainer(base, params, lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="lr"):
        stacked.StackedTrainer(base, params, lr=-0.1)
    with pytest.raises(ValueError, match="beta parameter at index 0"):
        stacked.StackedTrainer(base, params, optimizer="adam", betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum"):
        stacked.StackedTrainer(base, params, momentum=-0.5)
    with pytest.raises(ValueError, match="Nesterov"):
        stacked.StackedTrainer(base, params, nesterov=True)


def test_lr_zero_freezes_a_model_and_a_schedule_drives_the_others():
    x, y = _data()
    base, params = stacked.init_stack(_make, SEEDS)
    before = {k: v.clone() for k, v in params.items()}
    tr = stacked.StackedTrainer(base, params, optimizer="adam", lr=[0.0, 0.01, 0.01])
    seen = []

    def schedule(step):
        seen.append(step)
        return [0.0, 0.01 / (1 + step), 0.01]

    stacked.fit_stacked(tr, x, y, epochs=2, batch_size=10, seeds=SEEDS, lr_schedule=schedule)
    assert seen == list(range(8))
    for k in params:
        assert torch.equal(params[k][0], before[k][0])
        assert not torch.equal(params[k][1], before[k][1])
    torch.testing.assert_close(tr.lr, torch.tensor([0.0, 0.01 / 8, 0.01], dtype=torch.float64))


def test_budgets_evals_and_on_step_follow_train_fit():
    x, y = _data()
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, lr=0.1)
    hist = stacked.fit_stacked(
        tr,
        x,
        y,
        steps=7,
        batch_size=8,
        seeds=SEEDS,
        evals={"loss": lambda t: t.loss(x, y), "t": lambda t: float(t.t)},
        eval_every=3,
    )
    assert hist["step_loss"].shape == (7, 3)
    np.testing.assert_array_equal(hist["eval_step"], [0, 3, 6, 7])
    np.testing.assert_array_equal(hist["t"], [0, 3, 6, 7])
    assert hist["loss"].shape == (4, 3)
    np.testing.assert_allclose(hist["loss"][-1], tr.loss(x, y).numpy())
    # a step budget that ends mid-epoch stops where train.fit stops (same weights)
    model, _ = _separate_run(optim.SGD, SEEDS[1], 0.1, {}, x, y, 8, steps=7)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(params[k][1], v, rtol=RTOL, atol=ATOL)
    # on_step returning True stops after that step
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, lr=0.1)
    hist = stacked.fit_stacked(
        tr, x, y, steps=100, batch_size=8, seeds=SEEDS, on_step=lambda s, t: s == 4
    )
    assert hist["step_loss"].shape == (4, 3) and tr.t == 4


def test_per_model_data_equals_separate_runs_on_each_data_set():
    x, y = _data()
    labels = torch.stack([y, (y + 1) % 3, y.flip(0)])  # a different labelling per model
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, optimizer="sgd", lr=0.1, momentum=0.9)
    stacked.fit_stacked(
        tr, x.expand(3, *x.shape), labels, epochs=3, batch_size=8, seeds=SEEDS, per_model_data=True
    )
    for i, seed in enumerate(SEEDS):
        model, _ = _separate_run(
            optim.SGD, seed, 0.1, dict(momentum=0.9), x, labels[i], 8, epochs=3
        )
        for k, v in model.state_dict().items():
            torch.testing.assert_close(params[k][i], v, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("per_model_data", [False, True])
def test_sampling_with_replacement_draws_the_batches_of_train_fit(per_model_data):
    x, y = _data()
    labels = torch.stack([y, (y + 1) % 3, y.flip(0)]) if per_model_data else y.expand(3, -1)
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, optimizer="adam", lr=[0.003, 0.01, 0.05])
    xs = x.expand(3, *x.shape) if per_model_data else x
    ys = labels if per_model_data else y
    # 13 steps of batch 8 from 40 examples: 5 steps per "epoch", the budget ends mid-epoch
    hist = stacked.fit_stacked(
        tr,
        xs,
        ys,
        steps=13,
        batch_size=8,
        seeds=SEEDS,
        per_model_data=per_model_data,
        sampling="replacement",
    )
    assert hist["step_loss"].shape == (13, 3)
    for i, (seed, lr) in enumerate(zip(SEEDS, [0.003, 0.01, 0.05], strict=True)):
        torch.manual_seed(seed)
        model = _make()
        ref = train.fit(
            model,
            x,
            labels[i],
            optimizer=optim.Adam(model.parameters(), lr=lr),
            steps=13,
            batch_size=8,
            seed=seed,
            sampling="replacement",
            epoch_evals=False,
            progress=False,
        )
        for k, v in model.state_dict().items():
            torch.testing.assert_close(params[k][i], v, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(
            torch.as_tensor(hist["step_loss"][:, i]),
            torch.as_tensor(ref["step_loss"], dtype=torch.float64),
            rtol=RTOL,
            atol=ATOL,
        )
    # a batch as large as the data set still draws with replacement (no full-batch shortcut)
    first = next(stacked.batch_indices(40, 40, SEEDS, 1, sampling="replacement"))
    assert first.shape == (3, 40) and len(set(first[0].tolist())) < 40
    with pytest.raises(ValueError, match="sampling"):
        stacked.fit_stacked(tr, xs, ys, steps=1, batch_size=8, seeds=SEEDS, sampling="bootstrap")


@pytest.mark.parametrize("per_model", [False, True])
def test_grad_mode_sum_gives_the_gradients_of_vmap(per_model):
    x, y = _data()
    xs = torch.stack([x, 2 * x, -x]) if per_model else x
    ys = torch.stack([y, (y + 1) % 3, y.flip(0)]) if per_model else y

    def unused():  # a parameter that does not reach the loss gets a zero gradient in both modes
        model = _make()
        model.extra = nn.Parameter(torch.ones(2, dtype=torch.float64))
        return model

    out = {}
    for mode in stacked.GRAD_MODES:
        base, params = stacked.init_stack(unused, SEEDS)
        tr = stacked.StackedTrainer(base, params, optimizer="adam", lr=0.01, grad_mode=mode)
        out[mode] = tr.grads(xs, ys, per_model=per_model)
        # whole runs agree too (the same updates from the same gradients)
        stacked.fit_stacked(
            tr, xs, ys, steps=6, batch_size=8, seeds=SEEDS, per_model_data=per_model
        )
        out[mode] += (tr.params,)
    (gv, lv, pv), (gs, ls, ps) = out["vmap"], out["sum"]
    torch.testing.assert_close(ls, lv, rtol=RTOL, atol=ATOL)
    assert set(gs) == set(gv) and float(gs["extra"].abs().max()) == 0.0
    assert float(gv["0.weight"].abs().max()) > 1e-3  # not a vacuous comparison
    for k in gv:
        torch.testing.assert_close(gs[k], gv[k], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(ps[k], pv[k], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="grad_mode"):
        stacked.StackedTrainer(*stacked.init_stack(_make, SEEDS), grad_mode="jacrev")


def test_predict_loss_and_to_module():
    x, y = _data()
    base, params = stacked.init_stack(_make, SEEDS)
    tr = stacked.StackedTrainer(base, params, lr=0.1)
    stacked.fit_stacked(tr, x, y, epochs=3, batch_size=40, seeds=SEEDS)
    m = stacked.to_module(base, params, 2)
    with torch.no_grad():
        out = m(x)
    torch.testing.assert_close(tr.predict(x)[2], out)
    torch.testing.assert_close(tr.loss(x, y)[2], F.cross_entropy(out, y))
    xs = torch.stack([x, 2 * x, -x])
    assert tr.step(xs, torch.stack([y, y, y]), per_model=True).shape == (3,)


def test_bad_arguments_raise():
    base, params = stacked.init_stack(_make, SEEDS)
    with pytest.raises(ValueError, match="buffers"):
        stacked.stack_models([nn.BatchNorm1d(3)])
    with pytest.raises(ValueError, match="same parameter"):
        stacked.stack_models([nn.Linear(2, 3), nn.Linear(3, 3)])
    with pytest.raises(ValueError, match="non-empty"):
        stacked.stack_models([])
    with pytest.raises(ValueError, match="batch_size"):
        next(stacked.batch_indices(10, 0, [1], 1))
    with pytest.raises(ValueError, match="i must be"):
        stacked.to_module(base, params, 3)
    tr = stacked.StackedTrainer(base, params)
    x, y = _data()
    with pytest.raises(ValueError, match="seeds"):
        stacked.fit_stacked(tr, x, y, epochs=1, batch_size=4, seeds=[1])
    with pytest.raises(ValueError, match="steps"):
        stacked.fit_stacked(tr, x, y, steps=0, batch_size=4, seeds=SEEDS)
    with pytest.raises(ValueError, match="per_model_data"):
        stacked.fit_stacked(tr, x, y, epochs=1, batch_size=4, seeds=SEEDS, per_model_data=True)


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
@pytest.mark.parametrize("grad_mode", stacked.GRAD_MODES)
@pytest.mark.parametrize("per_model_data", [False, True])
def test_a_model_trains_the_same_in_any_stack(grad_mode, per_model_data, sampling):
    """On the CPU with one thread (as the notebooks train), model i's run does not depend on its
    stack-mates, bit for bit, in float32: its weights, its loss at every step, its predictions.
    So a notebook may cut one stack into several, e.g. to train them side by side with
    parallel.pmap, and get the same numbers. (Unlike stacked vs separate runs, module docstring:
    a sub-stack runs the very same vmapped operations.) With two threads, grad_mode="sum" can
    differ in the last bit (measured: 2e-7 on a 1-model stack): its reduction splits by thread."""
    x, y = _data()
    x, seeds = x.float(), [*SEEDS, 41]
    xs = torch.stack([x, 2 * x, -x, x.flip(0)]) if per_model_data else x
    ys = torch.stack([y, (y + 1) % 3, y.flip(0), y]) if per_model_data else y
    lrs = [0.01, 0.03, 0.003, 0.01]

    def make():  # a hidden layer as wide as the notebooks' (128)
        return nn.Sequential(nn.Linear(5, 128), nn.Tanh(), nn.Linear(128, 3))

    def run(idx):
        base, params = stacked.init_stack(make, [seeds[i] for i in idx])
        tr = stacked.StackedTrainer(
            base, params, optimizer="adam", lr=[lrs[i] for i in idx], grad_mode=grad_mode
        )
        pick = (lambda t: t[list(idx)]) if per_model_data else (lambda t: t)
        hist = stacked.fit_stacked(
            tr,
            pick(xs),
            pick(ys),
            epochs=3,
            batch_size=8,
            seeds=[seeds[i] for i in idx],
            per_model_data=per_model_data,
            sampling=sampling,
        )
        return tr.params, torch.as_tensor(hist["step_loss"]), tr.predict(x)

    with repro.num_threads(1):
        whole = run(range(4))
        parts = [run([0, 2]), run([1]), run([3])]
    where = [(0, 0), (1, 0), (0, 1), (2, 0)]  # model i of the whole stack: (part, index in it)

    def split(t, dim=0):
        return torch.stack([parts[p][t].select(dim, i) for p, i in where], dim)

    for k, v in whole[0].items():
        assert torch.equal(torch.stack([parts[p][0][k][i] for p, i in where]), v), k
    assert torch.equal(split(1, dim=1), whole[1])  # step_loss: [steps, models]
    assert torch.equal(split(2), whole[2])  # predictions: [models, examples, classes]
    w = whole[0]["0.weight"]
    assert not torch.equal(w[0], w[2])  # the members differ
    _, init = stacked.init_stack(make, seeds)
    assert float((w - init["0.weight"]).abs().min()) > 0  # every member trained
