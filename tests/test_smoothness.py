"""utils.smoothness (and the runners of notebook 05): exact on quadratics, model untouched."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.instruments import probes as smoothness
from utils.tasks import deepnets
from utils.tasks import normalization as normexp


def _quadratic_problem(seed=0):
    """Linear regression with MSE: L(w) = mean((Xw + b - y)^2), Hessian 2/N [X 1]^T [X 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    return model, x, y


def test_probe_is_exact_on_a_quadratic():
    model, x, y = _quadratic_problem()
    steps = [0.01, 0.05, 0.2]
    p = smoothness.gradient_direction_probe(model, x, y, steps, loss_fn=F.mse_loss)
    xa = torch.cat([x, torch.ones(40, 1, dtype=x.dtype)], 1)
    hess = 2 * xa.T @ xa / 40
    w = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
    grad = 2 * xa.T @ (xa @ w - y.flatten()) / 40
    # along a quadratic, grad(w - eta g) - g = -eta H g: beta is ||Hg|| / ||g|| for every eta
    expected_beta = float((hess @ grad).norm() / grad.norm())
    np.testing.assert_allclose(p["beta"], [expected_beta] * 3, rtol=1e-9)
    assert p["beta_max"] <= float(torch.linalg.eigvalsh(hess)[-1]) + 1e-9
    for eta, loss in zip(steps, p["losses"], strict=True):
        w2 = w - eta * grad
        assert loss == pytest.approx(float(((xa @ w2 - y.flatten()) ** 2).mean()), rel=1e-9)
    assert p["grad_norm"] == pytest.approx(float(grad.norm()), rel=1e-9)
    assert p["loss_range"] == pytest.approx(
        max([p["loss"], *p["losses"]]) - min([p["loss"], *p["losses"]])
    )


def test_probe_leaves_parameters_and_running_stats_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    p = smoothness.gradient_direction_probe(net, x, y, [0.1, 1.0])
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p["grad_norm"] > 0 for _ in [0]) and len(p["beta"]) == 2
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("steps", [[], [0.1, 0.0], [-1.0], [math.inf]])
def test_probe_rejects_bad_step_sizes(steps):
    model, x, y = _quadratic_problem()
    with pytest.raises(ValueError, match="step_sizes"):
        smoothness.gradient_direction_probe(model, x, y, steps, loss_fn=F.mse_loss)


def test_train_with_probes_records_and_trains():
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 2, (64,))
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    h = smoothness.train_with_probes(
        net, x, y, lr=0.1, steps=20, batch_size=16, probe_every=5, watch=net[1]
    )
    assert len(h["step_loss"]) == 20 and h["probe_step"] == [0, 5, 10, 15]
    assert len(h["beta_max"]) == 4 and all(b > 0 for b in h["beta_max"])
    assert len(h["unit_means"]) == 20 and h["unit_means"][0].shape == (16,)  # probes not recorded
    assert np.mean(h["step_loss"][-5:]) < np.mean(h["step_loss"][:5])
    assert h["diverged"] is False


@pytest.mark.parametrize("kw", [{"lr": 0}, {"steps": 0}, {"batch_size": 0}, {"probe_every": 0}])
def test_train_with_probes_rejects_bad_arguments(kw):
    args = {"lr": 0.1, "steps": 2, **kw}
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        smoothness.train_with_probes(
            nn.Linear(2, 2), torch.randn(4, 2), torch.zeros(4).long(), **args
        )


def test_full_batch_gd_stability_and_target():
    torch.manual_seed(0)
    x = torch.randn(100, 2)
    y = (x[:, 0] > 0).long()

    def make():
        torch.manual_seed(0)
        return nn.Linear(2, 2)

    ok = normexp.full_batch_gd(make(), x, y, lr=0.5, steps=100, target_acc=0.95)
    assert ok["stable"] is True and ok["steps_to_target"] < 100
    # scaling the inputs by 1000 multiplies the curvature by 1e6: the same lr blows up
    bad = normexp.full_batch_gd(make(), x * 1000, y, lr=0.5, steps=100)
    assert bad["diverged"] is True and bad["stable"] is False
    grid = [1e-7, 1e-5, 1e-3, 1e-1, 10.0]
    lr_scaled = normexp.largest_stable_lr(make, x * 1000, y, grid, steps=30)
    assert lr_scaled * 100 <= normexp.largest_stable_lr(make, x, y, grid, steps=30)


def test_second_moment_spectrum():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(normexp.second_moment_spectrum(x), [1.0, 0.25])
    with pytest.raises(ValueError, match="x must be"):
        normexp.second_moment_spectrum(torch.zeros(3))


def test_eval_in_train_mode_and_active_fraction_restore_state():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    x, y = torch.randn(32, 4) + 3, torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    acc = normexp.eval_in_train_mode(net, x, y, 8)
    frac = normexp.active_fraction(net, net[1], x)
    assert 0 <= acc <= 1 and frac.shape == (6,)
    # BN with beta = 0 and batch statistics centres every unit: roughly half passes
    assert 0.2 < float(frac.mean()) < 0.8
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="batch_size"):
        normexp.eval_in_train_mode(net, x, y, 1)


@pytest.mark.parametrize("residual", [False, True])
def test_deep_mlp_shapes_lesion_and_grad_norms(residual):
    torch.manual_seed(0)
    net = deepnets.DeepMLP(10, 3, 8, 4, residual=residual)
    x = torch.randn(5, 10)
    out = net(x)
    assert out.shape == (5, 3)
    F.cross_entropy(out, torch.zeros(5).long()).backward()
    norms = deepnets.layer_grad_norms(net)
    assert len(norms) == 2 * 4 + 2 and all(n >= 0 for n in norms)
    net.delete_block(1)
    lesioned = net(x)
    net.restore_blocks()
    assert torch.equal(net(x), out.detach()) or torch.allclose(net(x), out)
    if not residual:  # no other path: every input gives the same output
        assert torch.allclose(lesioned, lesioned[:1].expand_as(lesioned))
    with pytest.raises(IndexError):
        net.delete_block(4)
    with pytest.raises(ValueError, match="blocks"):
        deepnets.DeepMLP(10, 3, 8, 0, residual=residual)
