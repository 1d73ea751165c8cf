import math

import pytest
import torch
import torch.nn.functional as F

from utils import models, train


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_fit_learns_and_records_history():
    x, y = _toy()
    torch.manual_seed(0)
    net = models.MLP(2, [16], 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    h = train.fit(net, x, y, optimizer=opt, epochs=5, batch_size=32, val=(x, y), progress=False)
    assert len(h["step_loss"]) == 5 * 8 and h["steps"][-1] == 40
    assert h["epoch"] == [1, 2, 3, 4, 5] and len(h["val_acc"]) == 5
    assert h["train_acc"][-1] > 0.9 and h["diverged"] is False


def test_fit_is_reproducible_and_seed_changes_order():
    x, y = _toy()

    def run(seed):
        torch.manual_seed(0)
        net = models.MLP(2, [8], 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        return train.fit(
            net, x, y, optimizer=opt, epochs=2, batch_size=16, seed=seed, progress=False
        )["step_loss"]

    assert run(1) == run(1) and run(1) != run(2)


def test_fit_max_steps_scheduler_and_divergence():
    x, y = _toy()
    net = models.MLP(2, [8], 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    h = train.fit(
        net,
        x,
        y,
        optimizer=opt,
        epochs=10,
        batch_size=64,
        max_steps=6,
        scheduler=sched,
        scheduler_step="step",
        progress=False,
    )
    assert h["steps"][-1] == 6 and h["lr"][:3] == [0.1, 0.05, 0.025]
    bad = torch.optim.SGD(net.parameters(), lr=1e30)
    h = train.fit(net, x * 1e10, y, optimizer=bad, epochs=3, progress=False)
    assert h["diverged"] is True and not math.isfinite(h["step_loss"][-1])


def test_evaluate_regression_accuracy_is_nan_and_mode_restored():
    net = models.MLP(2, [4], 1)
    net.train()
    x = torch.randn(10, 2)
    out = train.evaluate(net, x, torch.randn(10, 1), loss_fn=F.mse_loss)
    assert math.isnan(out["acc"]) and out["loss"] > 0 and net.training


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_steps": 0}, "max_steps"),
        ({"scheduler_step": "batch"}, "scheduler_step"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, word):
    x, y = _toy(8)
    net = models.MLP(2, [4], 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=word):
        train.fit(net, x, y, optimizer=opt, progress=False, **kwargs)
    with pytest.raises(ValueError, match="same non-zero length"):
        train.fit(net, x, y[:4], optimizer=opt, progress=False)
