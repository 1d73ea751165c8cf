"""utils.sweep: a stacked (vmapped) run equals separate torch.optim runs, model by model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.core import train
from utils.instruments import stacked as sweep

SEEDS = [3, 11, 29]
CONFIGS = [
    ("sgd", dict(), torch.optim.SGD, dict()),
    (
        "sgd",
        dict(momentum=0.9, weight_decay=1e-3),
        torch.optim.SGD,
        dict(momentum=0.9, weight_decay=1e-3),
    ),
    ("sgd", dict(momentum=0.9, nesterov=True), torch.optim.SGD, dict(momentum=0.9, nesterov=True)),
    ("sgd", dict(momentum=0.5, dampening=0.5), torch.optim.SGD, dict(momentum=0.5, dampening=0.5)),
    (
        "adam",
        dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3),
        torch.optim.Adam,
        dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-3),
    ),
    ("adamw", dict(weight_decay=0.1), torch.optim.AdamW, dict(weight_decay=0.1)),
    ("rmsprop", dict(alpha=0.9, momentum=0.5), torch.optim.RMSprop, dict(alpha=0.9, momentum=0.5)),
]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return x, y


def _make():
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("name,kw,ref_cls,ref_kw", CONFIGS)
@pytest.mark.parametrize("batch_size", [8, 40])
def test_stacked_equals_separate_torch_optim_runs(name, kw, ref_cls, ref_kw, batch_size):
    x, y = _data()
    lrs = [0.003, 0.01, 0.05] if name in ("adam", "adamw", "rmsprop") else [0.05, 0.1, 0.3]
    base, params = sweep.init_stack(_make, SEEDS)
    tr = sweep.StackedTrainer(base, params, optimizer=name, lr=lrs, **kw)
    hist = sweep.fit_stacked(tr, x, y, epochs=6, batch_size=batch_size, seeds=SEEDS)
    for i, (seed, lr) in enumerate(zip(SEEDS, lrs, strict=True)):
        torch.manual_seed(seed)
        model = _make()
        ref_hist = train.fit(
            model,
            x,
            y,
            optimizer=ref_cls(model.parameters(), lr=lr, **ref_kw),
            epochs=6,
            batch_size=batch_size,
            seed=seed,
            progress=False,
        )
        for k, v in model.state_dict().items():
            torch.testing.assert_close(params[k][i], v, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(
            torch.as_tensor(hist["step_loss"][:, i]),
            torch.as_tensor(ref_hist["step_loss"], dtype=torch.float64),
            rtol=1e-9,
            atol=1e-11,
        )


def test_per_model_lr_can_change_and_freeze_a_model():
    x, y = _data()
    base, params = sweep.init_stack(_make, SEEDS)
    before = {k: v.clone() for k, v in params.items()}
    tr = sweep.StackedTrainer(base, params, optimizer="adam", lr=[0.0, 0.01, 0.01])
    sweep.fit_stacked(
        tr,
        x,
        y,
        epochs=2,
        batch_size=10,
        seeds=SEEDS,
        lr_schedule=lambda s: [0.0, 0.01 / (1 + s), 0.01],
    )
    for k in params:
        assert torch.equal(params[k][0], before[k][0])
        assert not torch.equal(params[k][1], before[k][1])


def test_eval_predict_accuracy_and_to_module():
    x, y = _data()
    base, params = sweep.init_stack(_make, SEEDS)
    tr = sweep.StackedTrainer(base, params, lr=0.1)
    hist = sweep.fit_stacked(tr, x, y, epochs=3, batch_size=40, seeds=SEEDS, eval_every=1)
    assert hist["train_loss"].shape == (3, 3)
    m = sweep.to_module(base, params, 2)
    with torch.no_grad():
        out = m(x)
    torch.testing.assert_close(tr.predict(x)[2], out)
    torch.testing.assert_close(tr.loss(x, y)[2], F.cross_entropy(out, y))
    assert float(tr.accuracy(x, y)[2]) == pytest.approx(float((out.argmax(1) == y).double().mean()))


def test_per_model_batches():
    x, y = _data()
    base, params = sweep.init_stack(_make, SEEDS)
    tr = sweep.StackedTrainer(base, params, lr=0.1)
    xs = torch.stack([x, 2 * x, -x])
    ys = torch.stack([y, y, y])
    loss = tr.step(xs, ys, per_model=True)
    assert loss.shape == (3,)


def test_bad_arguments_raise():
    base, params = sweep.init_stack(_make, SEEDS)
    with pytest.raises(ValueError, match="optimizer"):
        sweep.StackedTrainer(base, params, optimizer="lion")
    with pytest.raises(ValueError, match="lr"):
        sweep.StackedTrainer(base, params, lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="lr"):
        sweep.StackedTrainer(base, params, lr=-0.1)
    with pytest.raises(ValueError, match="betas"):
        sweep.StackedTrainer(base, params, optimizer="adam", betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum"):
        sweep.StackedTrainer(base, params, momentum=-0.5)
    with pytest.raises(ValueError, match="nesterov"):
        sweep.StackedTrainer(base, params, nesterov=True)
    with pytest.raises(ValueError, match="buffers"):
        sweep.stack_models([nn.BatchNorm1d(3)])
    with pytest.raises(ValueError, match="same parameter"):
        sweep.stack_models([nn.Linear(2, 3), nn.Linear(3, 3)])
    with pytest.raises(ValueError, match="non-empty"):
        sweep.stack_models([])
    with pytest.raises(ValueError, match="batch_size"):
        next(sweep.batch_indices(10, 0, [1], 1))
    tr = sweep.StackedTrainer(base, params)
    x, y = _data()
    with pytest.raises(ValueError, match="seeds"):
        sweep.fit_stacked(tr, x, y, epochs=1, batch_size=4, seeds=[1])
