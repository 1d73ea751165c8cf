"""utils.optlab: toy problems and measurements of the optimization notebook."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from utils.instruments import stacked as sweep
from utils.tasks import optimization as optlab


def test_steps_to_target_and_band():
    curves = np.array([[3.0, 3.0], [1.0, 3.0], [0.5, np.nan]])  # [T=3, 2 runs]
    np.testing.assert_array_equal(optlab.steps_to_target(curves, 1.0), [1.0, np.inf])
    lrs = np.logspace(-3, 0, 7)  # half-decade grid
    final = np.array([[9, 0.1, 0.2, 9, 0.1, 0.1, 0.1], [9, 9, 9, 9, 9, 9, np.nan]])
    np.testing.assert_allclose(optlab.usable_band_decades(lrs, final, 0.5), [1.5, 0.0])
    with pytest.raises(ValueError, match="lrs"):
        optlab.usable_band_decades([1.0, 0.1], final[:, :2], 0.5)


def test_sign_flips_ignores_tiny_values():
    assert optlab.sign_flips([1, -1, 1, -1]) == 3
    assert optlab.sign_flips([1, -1e-20, 1e-20, 0.5], tol=1e-10) == 0


def test_quadratic_helpers():
    h = optlab.rotated_hessian([1.0, 100.0], math.pi / 4)
    torch.testing.assert_close(
        torch.linalg.eigvalsh(h), torch.tensor([1.0, 100.0], dtype=torch.float64)
    )
    w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert float(optlab.quadratic_loss(w, torch.eye(2, dtype=torch.float64))) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="curvatures"):
        optlab.rotated_hessian([1.0], 0.0)


def test_wilson_construction():
    x, y = optlab.wilson_data(10, seed=1)
    assert x.shape == (10, 53)
    torch.testing.assert_close(x[:, 0], y)
    assert torch.all(x[:, 1:3] == 1)
    # one unique feature for y = +1, five for y = -1, never shared between points
    unique = x[:, 3:].sum(1)
    torch.testing.assert_close(unique, torch.where(y > 0, 1.0, 5.0).double())
    assert torch.all(x[:, 3:].sum(0) <= 1)


def test_noisy_labels_changes_the_requested_fraction():
    y = torch.arange(10).repeat(500)
    yn = optlab.noisy_labels(y, 0.3, 10, seed=0)
    frac = float((yn != y).float().mean())
    assert 0.27 < frac < 0.33
    assert yn.min() >= 0 and yn.max() <= 9
    with pytest.raises(ValueError, match="fraction"):
        optlab.noisy_labels(y, 1.5, 10)


def test_sparse_regression_rare_features_are_rare():
    x, y, w = optlab.sparse_regression(2000, 3, 4, 0.05, seed=0)
    assert x.shape == (2000, 7) and y.shape == (2000,) and w.shape == (7,)
    nonzero = (x != 0).float().mean(0)
    assert torch.all(nonzero[:3] == 1)
    assert torch.all((nonzero[3:] > 0.03) & (nonzero[3:] < 0.07))


def test_minibatch_gradient_variance_matches_theory():
    g = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sizes = [1, 5, 25]
    var = optlab.minibatch_gradient_variance(g, sizes, n_draws=4000, seed=1)
    total = float(((g - g.mean(0)) ** 2).sum(1).sum() / (len(g) - 1))  # tr(Sigma), unbiased
    theory = [total / b * (50 - b) / 50 for b in sizes]
    np.testing.assert_allclose(var, theory, rtol=0.08)


def test_per_example_grads_match_autograd():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    g = optlab.per_example_grads(model, x, y)
    assert g.shape == (4, 8)
    model.zero_grad()
    nn.functional.cross_entropy(model(x[2:3]), y[2:3]).backward()
    ref = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(g[2], ref)


def test_train_until_stops_each_model_at_the_target():
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    base, params = sweep.init_stack(lambda: nn.Linear(3, 2), [0, 1])
    tr = sweep.StackedTrainer(base, params, lr=[0.5, 0.0])  # model 1 never moves
    reached = optlab.train_until(
        tr, x, y, batch_size=64, seeds=[0, 1], target=0.3, check_every=1, max_steps=400
    )
    assert np.isfinite(reached[0]) and np.isinf(reached[1])
    assert float(tr.loss(x, y)[0]) <= 0.3


def test_split_guard_enforces_the_discipline():
    g = optlab.SplitGuard("tr", "va", "te")
    assert g.train() == "tr" and g.val() == "va"
    with pytest.raises(RuntimeError, match="select"):
        g.test()
    g.select(lr=0.1)
    with pytest.raises(RuntimeError, match="frozen"):
        g.select(lr=0.2)
    assert g.test() == "te"
    with pytest.raises(RuntimeError, match="once"):
        g.test()
    with pytest.raises(RuntimeError, match="closed"):
        g.val()
    assert set(optlab.SplitGuard.RULES) == {"train", "validation", "test"}
