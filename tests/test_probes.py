"""utils.instruments.probes against references computed here: exact on quadratics, the network's
state untouched, hooks that record what training saw and nothing else."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.core import train
from utils.instruments import probes


def _quadratic_problem(seed=0):
    """Linear regression with MSE: L(w) = mean((Xw + b - y)^2), Hessian 2/N [X 1]^T [X 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Linear(3, 1).double()
    return model, x, y


def _bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()


def test_probe_is_exact_on_a_quadratic():
    model, x, y = _quadratic_problem()
    etas = [0.01, 0.05, 0.2]
    p = probes.gradient_direction_probe(model, x, y, etas, loss_fn=F.mse_loss)
    xa = torch.cat([x, torch.ones(40, 1, dtype=x.dtype)], 1)
    hess = 2 * xa.T @ xa / 40
    w = torch.cat([model.weight.detach().flatten(), model.bias.detach()])
    grad = 2 * xa.T @ (xa @ w - y.flatten()) / 40
    assert p["loss"] == pytest.approx(float(((xa @ w - y.flatten()) ** 2).mean()), rel=1e-12)
    assert p["grad_norm"] == pytest.approx(float(grad.norm()), rel=1e-12)
    assert p["step_sizes"] == etas
    for eta, loss, dist in zip(etas, p["losses"], p["grad_dist"], strict=True):
        w2 = w - eta * grad
        assert loss == pytest.approx(float(((xa @ w2 - y.flatten()) ** 2).mean()), rel=1e-12)
        # along a quadratic, grad(w - eta g) - g = -eta H g
        assert dist == pytest.approx(eta * float((hess @ grad).norm()), rel=1e-9)
    # the notebook's effective beta-smoothness: ||H g|| / ||g|| <= top Hessian eigenvalue
    beta = max(d / (e * p["grad_norm"]) for d, e in zip(p["grad_dist"], etas, strict=True))
    assert beta == pytest.approx(float((hess @ grad).norm() / grad.norm()), rel=1e-9)
    assert beta <= float(torch.linalg.eigvalsh(hess)[-1]) * (1 + 1e-12)


def test_probe_uses_batch_statistics_and_leaves_the_network_untouched():
    net = _bn_net()
    x, y = torch.randn(16, 5) * 2 + 1, torch.randint(0, 3, (16,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    p = probes.gradient_direction_probe(net, x, y, [0.1, 1.0])
    for k, v in net.state_dict().items():  # parameters AND running statistics
        assert torch.equal(v, before[k]), k
    assert all(q.grad is None for q in net.parameters())
    # L(w) is the training-mode loss (batch statistics), computed on a copy
    ref = copy.deepcopy(net)
    with torch.no_grad():
        assert p["loss"] == pytest.approx(float(F.cross_entropy(ref(x), y)), rel=1e-6)
        ref.eval()
        assert abs(p["loss"] - float(F.cross_entropy(ref(x), y))) > 1e-3  # eval mode differs


def test_probe_moves_only_parameters_that_require_grad():
    net = _bn_net()
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for q in net[0].parameters():
        q.requires_grad_(False)
    p = probes.gradient_direction_probe(net, x, y, [0.5])
    loss = F.cross_entropy(net(x), y)  # after the probe: this forward may touch the stats
    grads = torch.autograd.grad(loss, [q for q in net.parameters() if q.requires_grad])
    assert p["grad_norm"] == pytest.approx(float(torch.sqrt(sum((g**2).sum() for g in grads))))


@pytest.mark.parametrize("etas", [[], [0.1, 0.0], [-1.0], [math.inf], [math.nan], "ab"])
def test_probe_rejects_bad_step_sizes(etas):
    model, x, y = _quadratic_problem()
    with pytest.raises(ValueError, match="step_sizes"):
        probes.gradient_direction_probe(model, x, y, etas, loss_fn=F.mse_loss)


def test_probe_rejects_mismatched_lengths():
    model, x, y = _quadratic_problem()
    with pytest.raises(ValueError, match="same length"):
        probes.gradient_direction_probe(model, x, y[:5], [0.1], loss_fn=F.mse_loss)


def test_probe_reports_nan_where_the_loss_overflows():
    model, x, y = _quadratic_problem()
    p = probes.gradient_direction_probe(model, x * 1e200, y, [1.0, 1e300], loss_fn=F.mse_loss)
    assert all(math.isnan(v) for v in p["losses"] + p["grad_dist"])


def test_batch_means_records_each_forward_pauses_and_unhooks():
    lin = nn.Linear(4, 3)
    xs = [torch.randn(6, 4) for _ in range(3)]
    with probes.BatchMeans(lin) as watch:
        lin(xs[0])
        with watch.paused():
            lin(xs[1])
        lin(xs[2])
    lin(xs[1])  # after the block: the hook is gone
    assert len(watch.means) == 2
    torch.testing.assert_close(watch.means[0], lin(xs[0]).detach().mean(0))
    torch.testing.assert_close(watch.means[1], lin(xs[2]).detach().mean(0))
    conv = nn.Conv2d(2, 5, 3)
    x4 = torch.randn(4, 2, 6, 6)
    with probes.BatchMeans(conv) as watch:
        conv(x4)
    torch.testing.assert_close(watch.means[0], conv(x4).detach().mean(dim=(0, 2, 3)))
    with pytest.raises(TypeError, match="layer"):
        probes.BatchMeans("relu")


def test_the_notebook_probe_loop_does_not_change_training():
    """fit + before_step probe + BatchMeans: one mean per step; same trajectory as without."""
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))

    def run(with_probe):
        net = _bn_net(1)
        watch = probes.BatchMeans(net[2])
        found = []

        def probe(step, xb, yb):
            if with_probe and step % 3 == 0:
                with watch.paused():
                    found.append(probes.gradient_direction_probe(net, xb, yb, [0.1, 0.4]))

        with watch:
            h = train.fit(
                net,
                x,
                y,
                optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                steps=10,
                batch_size=16,
                seed=3,
                epoch_evals=False,
                before_step=probe,
                progress=False,
            )
        return h, watch.means, found, net

    h1, means1, found, net1 = run(True)
    h0, means0, _, net0 = run(False)
    assert len(found) == 4 and len(means1) == 10  # probes at steps 0, 3, 6, 9; not recorded
    assert h1["step_loss"] == h0["step_loss"]
    assert all(torch.equal(a, b) for a, b in zip(means1, means0, strict=True))
    for k, v in net1.state_dict().items():
        assert torch.equal(v, net0.state_dict()[k]), k


def test_active_fraction_is_the_fraction_above_minus_beta_over_gamma():
    net = _bn_net(2)
    with torch.no_grad():
        net[1].weight.copy_(torch.linspace(0.5, 2.0, 8))
        net[1].bias.copy_(torch.linspace(-1.0, 1.0, 8))
    x = torch.randn(200, 5) + 3
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    frac = probes.active_fraction(net, net[1], x)
    h = net[0](x).detach()
    xhat = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + net[1].eps)
    ref = (xhat > -net[1].bias.detach() / net[1].weight.detach()).float().mean(0)
    torch.testing.assert_close(frac, ref)
    assert not net.training  # mode restored
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_eval_in_train_mode_matches_per_batch_train_mode_and_restores_state():
    net = _bn_net(3)
    x, y = torch.randn(50, 5) + 3, torch.randint(0, 3, (50,))
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    acc = probes.eval_in_train_mode(net, x, y, 8)
    ref, correct = copy.deepcopy(net).train(), 0
    with torch.no_grad():
        for i in range(0, 48, 8):  # the last 2 examples are dropped
            correct += int((ref(x[i : i + 8]).argmax(1) == y[i : i + 8]).sum())
    assert acc == correct / 48
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    for bad in (1, 51, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            probes.eval_in_train_mode(net, x, y, bad)


def test_layer_grad_norms_in_module_order_nan_without_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2)
    )
    assert all(math.isnan(v) for v in probes.layer_grad_norms(net))
    F.cross_entropy(net(torch.randn(4, 1, 4, 4)), torch.tensor([0, 1, 1, 0])).backward()
    expected = [float(net[i].weight.grad.norm()) for i in (0, 2, 4)]
    assert probes.layer_grad_norms(net) == expected


def test_second_moment_spectrum():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(probes.second_moment_spectrum(x), [1.0, 0.25])
    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 6, generator=g) * torch.arange(1.0, 7.0)
    lam = probes.second_moment_spectrum(z)
    ref = np.sort(np.linalg.eigvalsh(z.double().T.numpy() @ z.double().numpy() / 300))[::-1]
    np.testing.assert_allclose(lam, ref, rtol=1e-10)
    assert np.all(np.diff(lam) <= 0)
    # scaling x by c scales the spectrum by c^2 and keeps its shape (N1)
    np.testing.assert_allclose(probes.second_moment_spectrum(255 * z), 255**2 * lam, rtol=1e-8)
    with pytest.raises(ValueError, match="x must be"):
        probes.second_moment_spectrum(torch.zeros(3))
