"""utils.tasks.optimization: the toy problems and data sets of notebook 01, against formulas
computed independently here (autograd, explicit sums, the construction's definition)."""

import math

import numpy as np
import pytest
import torch

from utils.core import train
from utils.scratch import optim
from utils.tasks import optimization as opt


def test_quadratic_is_half_w_h_w_with_gradient_h_w_on_points_and_grids():
    h = opt.rotated_hessian([1.0, 100.0], 0.3)
    w = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    f = opt.quadratic(w, h)
    expected = 0.5 * sum(w[i] * h[i, j] * w[j] for i in range(2) for j in range(2))
    torch.testing.assert_close(f, expected)
    (g,) = torch.autograd.grad(f, w)
    torch.testing.assert_close(g, h @ w.detach())
    grid = torch.randn(4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    vals = opt.quadratic(grid, h)
    assert vals.shape == (4, 3)
    torch.testing.assert_close(vals[2, 1], opt.quadratic(grid[2, 1], h))
    with pytest.raises(ValueError, match="hessian"):
        opt.quadratic(w, torch.eye(3, dtype=torch.float64))


def test_rotated_hessian_keeps_the_curvatures_and_rotates_the_eigenvectors():
    h = opt.rotated_hessian([1.0, 100.0], math.pi / 4)
    evals, evecs = torch.linalg.eigh(h)
    torch.testing.assert_close(evals, torch.tensor([1.0, 100.0], dtype=torch.float64))
    # the stiff direction e2 = (0, 1) is rotated to R e2 = (-sin a, cos a) = (-1, 1)/sqrt(2)
    stiff = torch.tensor([-1.0, 1.0], dtype=torch.float64) / math.sqrt(2)
    assert abs(float(evecs[:, 1] @ stiff)) == pytest.approx(1.0)
    torch.testing.assert_close(
        opt.rotated_hessian([2.0, 5.0], 0.0), torch.diag(torch.tensor([2.0, 5.0]).double())
    )
    with pytest.raises(ValueError, match="curvatures"):
        opt.rotated_hessian([1.0], 0.0)


def test_rosenbrock_minimum_and_values():
    pt = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(
        opt.rosenbrock(pt), torch.tensor([0.0, 1.0, 4.0 + 100.0], dtype=torch.float64)
    )
    xy = torch.tensor([2.0, 4.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(opt.rosenbrock(xy, a=2.0), xy)  # minimum at (a, a^2)
    torch.testing.assert_close(g, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="xy"):
        opt.rosenbrock(torch.zeros(3))


def test_point_turns_a_toy_function_into_a_train_fit_problem():
    """GD on 0.5(x^2 + 100 y^2) through train.fit: x <- (1 - lr) x, y <- (1 - 100 lr) y."""
    point = opt.Point([1.0, 1.0])
    h = opt.rotated_hessian([1.0, 100.0], 0.0)
    path = [point.w.detach().clone()]
    train.fit(
        point,
        torch.zeros(1, 1),
        torch.zeros(1),
        optimizer=optim.SGD(point.parameters(), lr=0.01),
        steps=5,
        batch_size=1,
        loss_fn=lambda w, _: opt.quadratic(w, h),
        epoch_evals=False,
        progress=False,
        on_step=lambda step, loss: path.append(point.w.detach().clone()),
    )
    path = torch.stack(path).numpy()
    np.testing.assert_allclose(path[:, 0], 0.99 ** np.arange(6))
    np.testing.assert_allclose(path[1:, 1], 0.0, atol=1e-15)
    assert torch.equal(point(torch.zeros(7, 3)), point.w)
    with pytest.raises(ValueError, match="start"):
        opt.Point([])


def test_wilson_construction():
    x, y = opt.wilson_data(10, seed=1)
    assert x.shape == (10, 53)
    torch.testing.assert_close(x[:, 0], y)
    assert torch.all(x[:, 1:3] == 1)
    # one unique feature for y = +1, five for y = -1, never shared between points
    unique = x[:, 3:].sum(1)
    torch.testing.assert_close(unique, torch.where(y > 0, 1.0, 5.0).double())
    assert torch.all(x[:, 3:].sum(0) <= 1)
    frac = float((opt.wilson_data(4000, seed=2)[1] > 0).double().mean())
    assert 0.57 < frac < 0.63  # p_positive = 0.6
    with pytest.raises(ValueError, match="p_positive"):
        opt.wilson_data(5, p_positive=1.0)


def test_sparse_regression_rare_features_are_rare_and_targets_are_linear():
    x, y, w = opt.sparse_regression(2000, 3, 4, 0.05, seed=0, noise=0.0)
    assert x.shape == (2000, 7) and y.shape == (2000,) and w.shape == (7,)
    nonzero = (x != 0).float().mean(0)
    assert torch.all(nonzero[:3] == 1)
    assert torch.all((nonzero[3:] > 0.03) & (nonzero[3:] < 0.07))
    torch.testing.assert_close(y, x @ w)
    with pytest.raises(ValueError, match="p_rare"):
        opt.sparse_regression(p_rare=0.0)


def test_split_guard_enforces_the_discipline():
    g = opt.SplitGuard("tr", "va", "te")
    assert g.train() == "tr" and g.val() == "va" and g.val() == "va"  # validation: many reads
    with pytest.raises(RuntimeError, match="select"):
        g.test()
    assert g.test_reads == 0  # a refused read is not a read
    g.select(lr=0.1)
    assert g.choice == {"lr": 0.1}
    with pytest.raises(RuntimeError, match="frozen"):
        g.select(lr=0.2)
    assert g.choice == {"lr": 0.1}
    assert g.val() == "va"  # still open: no test score read yet
    assert g.test() == "te" and g.test_reads == 1
    with pytest.raises(RuntimeError, match="once"):
        g.test()
    with pytest.raises(RuntimeError, match="closed"):
        g.val()
    assert g.train() == "tr" and g.test_reads == 1  # training data stays available
