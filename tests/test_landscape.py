"""utils.instruments.landscape: Hessian-vector products and top eigenvalue against exact
Hessians, filter normalization (Li et al. 2018), slices, per-example gradients, contour grids."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.instruments import landscape as L


def _quadratic_problem(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigs = torch.linspace(0.5, 7.0, n, dtype=torch.float64)
    eigs[-1] = 10.0  # well-separated top eigenvalue
    h = q @ torch.diag(eigs) @ q.T
    w = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    return h, w, lambda: 0.5 * w @ h @ w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvp_equals_exact_hessian_times_vector_on_quadratic(seed):
    h, w, closure = _quadratic_problem(seed)
    v = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 9))
    (hv,) = L.hvp(closure, [w], [v])
    torch.testing.assert_close(hv, h @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_eigenvalue_of_quadratic_is_exact(seed):
    h, w, closure = _quadratic_problem(seed)
    eig, vec = L.top_hessian_eigenvalue(closure, [w], iters=500, tol=1e-12, seed=seed)
    assert eig == pytest.approx(10.0, rel=1e-8)
    true_vec = torch.linalg.eigh(h).eigenvectors[:, -1]
    assert abs(float(vec[0] @ true_vec)) == pytest.approx(1.0, abs=1e-6)


def _tiny_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    return net, x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_eigenvalue_matches_autograd_hessian_on_tiny_net(seed):
    net, x, y = _tiny_net(seed)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in net.parameters()])

    def loss_of_flat(flat):
        parts, i = {}, 0
        for name, s in zip(names, shapes, strict=True):
            parts[name] = flat[i : i + s.numel()].view(s)
            i += s.numel()
        return F.cross_entropy(torch.func.functional_call(net, parts, (x,)), y)

    H = torch.autograd.functional.hessian(loss_of_flat, flat0)
    eigs = torch.linalg.eigvalsh(H)
    top = float(eigs[eigs.abs().argmax()])
    eig, _ = L.top_hessian_eigenvalue(L.loss_closure(net, x, y), net, iters=2000, tol=1e-13)
    assert eig == pytest.approx(top, rel=1e-5)


def test_hvp_on_net_matches_autograd_hessian():
    net, x, y = _tiny_net(0)
    closure = L.loss_closure(net, x, y)
    params = list(net.parameters())
    v = [torch.randn_like(p) for p in params]
    hv = L.hvp(closure, net, v)

    # reference: torch.autograd.functional.hvp on the same function of the parameter tuple
    def f(*ps):
        names = [n for n, _ in net.named_parameters()]
        out = torch.func.functional_call(net, dict(zip(names, ps, strict=True)), (x,))
        return F.cross_entropy(out, y)

    _, ref = torch.autograd.functional.hvp(f, tuple(p.detach() for p in params), tuple(v))
    for a, b in zip(hv, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_filter_normalized_direction_matches_filter_norms(ignore):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)
    )
    d = L.filter_normalized_direction(net, seed=3, ignore=ignore)
    for p, di in zip(net.parameters(), d, strict=True):
        assert di.shape == p.shape
        if p.dim() <= 1:
            expected = torch.zeros_like(p) if ignore == "biasbn" else p.detach()
            torch.testing.assert_close(di, expected)
        else:
            torch.testing.assert_close(
                di.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5, atol=1e-7
            )
    # reproducible and seed-dependent
    d2 = L.filter_normalized_direction(net, seed=3, ignore=ignore)
    d3 = L.filter_normalized_direction(net, seed=4, ignore=ignore)
    assert all(torch.equal(a, b) for a, b in zip(d, d2, strict=True))
    assert not torch.equal(d[0], d3[0])


def test_slices_restore_params_and_match_direct_evaluation():
    net, x, y = _tiny_net(1)
    closure = L.loss_closure(net, x, y)
    before = [p.detach().clone() for p in net.parameters()]
    d1 = L.filter_normalized_direction(net, seed=0)
    d2 = L.filter_normalized_direction(net, seed=1)
    s1 = L.loss_slice_1d(closure, net, d1, [0.0, 0.5])
    s2 = L.loss_slice_2d(closure, net, d1, d2, [0.0, 0.5], [0.0, -0.25, 1.0])
    assert s2.shape == (3, 2)
    for p, b in zip(net.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)
    assert s1[0] == pytest.approx(float(closure().detach()))
    assert s2[0, 1] == pytest.approx(s1[1])
    with torch.no_grad():
        for p, a, b in zip(net.parameters(), d1, d2, strict=True):
            p.add_(0.5 * a - 0.25 * b)
        direct = float(closure())
    assert s2[1, 1] == pytest.approx(direct, rel=1e-10)


def test_perturbation_loss_rise_is_positive_at_a_minimum_and_grows_with_radius():
    net, x, y = _tiny_net(2)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=200)
    closure = L.loss_closure(net, x, y)

    def step():
        opt.zero_grad()
        loss = closure()
        loss.backward()
        return loss

    opt.step(step)
    small = L.perturbation_loss_rise(closure, net, radius=0.05, n_directions=4)
    big = L.perturbation_loss_rise(closure, net, radius=0.3, n_directions=4)
    assert 0 < small < big


def test_per_example_grads_match_autograd_one_example_at_a_time():
    net, x, y = _tiny_net(3)
    g = L.per_example_grads(net, x, y)
    n_params = sum(p.numel() for p in net.parameters())
    assert g.shape == (20, n_params)
    for i in (0, 7, 19):
        net.zero_grad()
        F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]).backward()
        ref = torch.cat([p.grad.flatten() for p in net.parameters()])
        torch.testing.assert_close(g[i], ref)
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()  # the mean of the rows is the full-batch gradient
    torch.testing.assert_close(g.mean(0), torch.cat([p.grad.flatten() for p in net.parameters()]))


def test_contour_grid_evaluates_the_function_on_the_grid():
    X, Y, Z = L.contour_grid(lambda p: p[..., 0] ** 2 + 3 * p[..., 1], (-2, 2), (-1, 3), n=7)
    assert X.shape == Y.shape == Z.shape == (7, 7)
    np.testing.assert_allclose(Z, X**2 + 3 * Y)
    assert X[0, 0] == -2 and X[0, -1] == 2 and Y[0, 0] == -1 and Y[-1, 0] == 3


def test_bad_arguments_raise():
    net, x, y = _tiny_net(0)
    closure = L.loss_closure(net, x, y)
    with pytest.raises(ValueError, match="ignore"):
        L.filter_normalized_direction(net, ignore="bias")
    with pytest.raises(ValueError, match="iters"):
        L.top_hessian_eigenvalue(closure, net, iters=0)
    with pytest.raises(ValueError, match="tol"):
        L.top_hessian_eigenvalue(closure, net, tol=-1.0)
    with pytest.raises(ValueError, match="vec"):
        L.hvp(closure, net, [torch.zeros(3)])
    with pytest.raises(ValueError, match="radius"):
        L.perturbation_loss_rise(closure, net, radius=0.0)
    with pytest.raises(ValueError, match="same length"):
        L.per_example_grads(net, x, y[:3])
    with pytest.raises(ValueError, match="n must be"):
        L.contour_grid(lambda p: p[..., 0], (0, 1), (0, 1), n=1)
    with pytest.raises(TypeError, match="params"):
        L.hvp(closure, [], [])
    with pytest.raises(ValueError, match="same length"):
        L.loss_closure(net, x, y[:3])
