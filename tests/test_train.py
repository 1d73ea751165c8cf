import math

import pytest
import torch
import torch.nn.functional as F

from utils.core import models, train


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
        ({"steps": 0}, "steps"),
        ({"eval_every": 0}, "eval_every"),
        ({"sampling": "bootstrap"}, "sampling"),
        ({"scheduler_step": "batch"}, "scheduler_step"),
        ({"steps": 3, "max_steps": 3}, "not both"),
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


def _net(seed=0):
    torch.manual_seed(seed)
    return models.MLP(2, [8], 2)


def test_fit_step_budget_runs_exactly_that_many_steps_across_epochs():
    x, y = _toy(100)
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    h = train.fit(net, x, y, optimizer=opt, steps=11, batch_size=32, progress=False)
    # 4 batches per epoch (32, 32, 32, 4): 11 steps end inside the third epoch
    assert len(h["step_loss"]) == 11 and h["steps"] == [4, 8, 11] and h["epoch"] == [1, 2, 3]


def test_fit_steps_equal_epochs_times_batches_and_alias_max_steps():
    x, y = _toy(96)
    a, b = _net(), _net()
    ha = train.fit(
        a,
        x,
        y,
        optimizer=torch.optim.SGD(a.parameters(), lr=0.1),
        epochs=2,
        batch_size=32,
        progress=False,
    )
    hb = train.fit(
        b,
        x,
        y,
        optimizer=torch.optim.SGD(b.parameters(), lr=0.1),
        max_steps=6,
        batch_size=32,
        progress=False,
    )
    assert ha["step_loss"] == hb["step_loss"]


def test_fit_drop_last_and_sampling_with_replacement():
    x, y = _toy(100)
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    h = train.fit(net, x, y, optimizer=opt, epochs=2, batch_size=32, drop_last=True, progress=False)
    assert h["steps"] == [3, 6]  # the batch of 4 is skipped every epoch
    seen = []
    h = train.fit(
        net,
        x,
        y,
        optimizer=opt,
        epochs=50,
        batch_size=10,
        sampling="replacement",
        before_step=lambda s, xb, yb: seen.append(xb),
        epoch_evals=False,
        progress=False,
    )
    rows = torch.cat(seen)
    assert rows.shape[0] == 50 * 10 * 10  # ceil(100 / 10) steps per epoch
    # with replacement, some batch repeats an example (500 draws of 10 from 100 per batch)
    dup = sum(int(torch.unique(b, dim=0).shape[0] < b.shape[0]) for b in seen)
    assert dup > 0
    # without replacement no batch ever repeats an example
    seen.clear()
    train.fit(
        net,
        x,
        y,
        optimizer=opt,
        epochs=5,
        batch_size=10,
        before_step=lambda s, xb, yb: seen.append(xb),
        epoch_evals=False,
        progress=False,
    )
    assert all(torch.unique(b, dim=0).shape[0] == b.shape[0] for b in seen)


def test_fit_set_mode_keeps_a_module_in_eval_mode():
    x, y = _toy(64)
    torch.manual_seed(0)
    net = models.MLP(2, [8], 2, norm="batch")
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d))
    before = bn.running_mean.clone()

    def freeze_bn(model):
        model.train()
        bn.eval()

    modes = []
    train.fit(
        net,
        x,
        y,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        epochs=2,
        batch_size=16,
        set_mode=freeze_bn,
        before_step=lambda s, xb, yb: modes.append(bn.training),
        progress=False,
    )
    assert not any(modes) and torch.equal(bn.running_mean, before)
    train.fit(
        net,
        x,
        y,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        epochs=1,
        batch_size=16,
        progress=False,
    )
    assert not torch.equal(bn.running_mean, before)  # without the hook, BN statistics move


def test_fit_evals_every_k_steps_and_on_step_can_stop():
    x, y = _toy(64)
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    calls = []
    h = train.fit(
        net,
        x,
        y,
        optimizer=opt,
        steps=10,
        batch_size=16,
        epoch_evals=False,
        eval_every=4,
        evals={
            "acc": lambda m: train.evaluate(m, x, y)["acc"],
            "n": lambda m: calls.append(1) or len(calls),
        },
        progress=False,
    )
    assert h["eval_step"] == [0, 4, 8, 10] and h["n"] == [1.0, 2.0, 3.0, 4.0]
    assert "epoch" not in h and len(h["acc"]) == 4
    h = train.fit(
        net,
        x,
        y,
        optimizer=opt,
        epochs=100,
        batch_size=16,
        on_step=lambda s, loss: s >= 7,
        progress=False,
    )
    assert len(h["step_loss"]) == 7 and h["stopped"] is True and h["diverged"] is False


def test_fit_transform_and_soft_targets_match_a_hand_written_step():
    x, y = _toy(32)
    soft = F.one_hot(y, 2).float() * 0.9 + 0.05

    def soft_ce(out, t):
        return -(t * out.log_softmax(1)).sum(1).mean()

    def flip(xb, tb, g):
        return -xb, tb, "ignored"

    a, b = _net(), _net()
    train.fit(
        a,
        x,
        soft,
        optimizer=torch.optim.SGD(a.parameters(), lr=0.1),
        epochs=1,
        batch_size=32,
        loss_fn=soft_ce,
        transform=flip,
        progress=False,
    )
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    soft_ce(b(-x[order]), soft[order]).backward()
    opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


def test_fit_sequential_walks_the_data_in_order_and_full_batch_is_plain_gd():
    x, y = _toy(50)
    seen = []
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    train.fit(
        net,
        x,
        y,
        optimizer=opt,
        epochs=2,
        batch_size=20,
        sampling="sequential",
        drop_last=True,
        before_step=lambda s, xb, yb: seen.append(xb),
        epoch_evals=False,
        progress=False,
    )
    assert len(seen) == 4  # 2 batches of 20 per epoch, the last 10 dropped
    for k, xb in enumerate(seen):
        assert torch.equal(xb, x[(k % 2) * 20 : (k % 2) * 20 + 20])
    # batch_size = N: full-batch gradient descent, equal to a hand-written loop bit for bit
    a, b = _net(), _net()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.5)
    h = train.fit(
        a,
        x,
        y,
        optimizer=opt_a,
        steps=7,
        batch_size=50,
        sampling="sequential",
        epoch_evals=False,
        progress=False,
    )
    opt_b = torch.optim.SGD(b.parameters(), lr=0.5)
    losses = []
    for _ in range(7):
        opt_b.zero_grad()
        loss = F.cross_entropy(b(x), y)
        loss.backward()
        opt_b.step()
        losses.append(float(loss.detach()))
    assert h["step_loss"] == losses
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_progress_wraps_the_loop_and_is_off_under_lab_progress_0(monkeypatch):
    monkeypatch.setenv("LAB_PROGRESS", "0")
    bar = train.progress(range(3), "seeds")
    assert list(bar) == [0, 1, 2] and bar.disable
    monkeypatch.setenv("LAB_PROGRESS", "1")
    monkeypatch.delenv("CI", raising=False)
    assert not train.progress([1, 2], "arms").disable
    with pytest.raises(TypeError, match="desc"):
        train.progress([1], 3)
