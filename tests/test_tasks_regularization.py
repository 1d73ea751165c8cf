"""Tests of utils.tasks.regularization (notebook 02's data sets) against their references:
numpy's Legendre Vandermonde matrix and polyfit, a Monte Carlo test set, and a digits task that
train.fit can learn."""

import numpy as np
import pytest
import torch

from utils.core import models, train
from utils.tasks import regularization as reg


def test_sine_data_shapes_seeding_and_noise():
    x, y = reg.sine_data(40, 0.2, np.random.default_rng(0))
    assert x.shape == y.shape == (40,) and x.dtype == np.float64
    assert 0 <= x.min() and x.max() <= 1
    xs, ys = reg.sine_data(2000, 0.3, np.random.default_rng(1), reps=5)
    assert xs.shape == ys.shape == (5, 2000)
    resid = ys - np.sin(2 * np.pi * xs)
    assert abs(resid.std() - 0.3) < 0.01 and abs(resid.mean()) < 0.01
    again = reg.sine_data(2000, 0.3, np.random.default_rng(1), reps=5)
    assert np.array_equal(again[1], ys)
    clean = reg.sine_data(10, 0.0, np.random.default_rng(2))
    assert np.allclose(clean[1], np.sin(2 * np.pi * clean[0]))


@pytest.mark.parametrize("degree", [0, 1, 2, 5, 10])
def test_legendre_features_equal_numpy_legvander(degree):
    x = np.random.default_rng(degree).uniform(0, 1, (3, 17))
    ours = reg.legendre_features(x, degree)
    ref = np.polynomial.legendre.legvander(2 * x - 1, degree)
    assert ours.shape == (3, 17, degree + 1) and ours.dtype == torch.float64
    assert np.allclose(ours.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("degree", [1, 3, 6])
def test_least_squares_on_the_features_is_numpy_polyfit(degree):
    x, y = reg.sine_data(40, 0.2, np.random.default_rng(degree))
    phi = reg.legendre_features(x, degree)
    coef = torch.linalg.lstsq(phi, torch.as_tensor(y)[:, None]).solution
    ours = (phi @ coef)[:, 0].numpy()
    assert np.allclose(ours, np.polyval(np.polyfit(x, y, degree), x), atol=1e-8)


def test_sine_test_mse_exact_cases_and_monte_carlo():
    assert float(reg.sine_test_mse(torch.zeros_like, 0.3)) == pytest.approx(0.09 + 0.5, abs=1e-12)
    assert float(reg.sine_test_mse(lambda x: torch.sin(2 * np.pi * x), 0.3)) == pytest.approx(
        0.09, abs=1e-12
    )
    coef = torch.tensor([[0.1, -0.5, 2.0, -1.5], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)

    def cubic(x):  # two cubics in the monomial basis, batched: [2, m]
        return coef @ torch.stack([x**k for k in range(4)])

    exact = reg.sine_test_mse(cubic, 0.3)
    assert exact.shape == (2,)
    x, y = reg.sine_data(400_000, 0.3, np.random.default_rng(3))
    mc = ((torch.as_tensor(y) - cubic(torch.as_tensor(x))) ** 2).mean(-1)
    se = ((torch.as_tensor(y) - cubic(torch.as_tensor(x))) ** 2).std(-1) / np.sqrt(len(x))
    assert torch.all((mc - exact).abs() < 4 * se)


def test_bad_arguments_name_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="rng"):
        reg.sine_data(3, 0.1, 0)
    for kwargs, name in [({"n": 0}, "n"), ({"noise": -1.0}, "noise"), ({"reps": 0}, "reps")]:
        args = {"n": 3, "noise": 0.1, "rng": rng} | kwargs
        with pytest.raises(ValueError, match=name):
            reg.sine_data(args.pop("n"), args.pop("noise"), args.pop("rng"), **args)
    with pytest.raises(ValueError, match="degree"):
        reg.legendre_features(np.zeros(3), -1)
    with pytest.raises(ValueError, match="nodes"):
        reg.sine_test_mse(torch.zeros_like, 0.1, nodes=1)
    with pytest.raises(ValueError, match="predict"):
        reg.sine_test_mse(lambda x: x[:3], 0.1)
    with pytest.raises(ValueError, match="val_fraction"):
        reg.digits_task(0, 1.5)


@pytest.fixture(scope="module")
def task():
    return reg.digits_task(0)


def test_digits_task_split_and_standardisation(task):
    assert task["x_train"].shape == (980, 64) and task["x_val"].shape == (420, 64)
    assert task["x_test"].shape == (397, 64) and task["y_test"].dtype == torch.int64
    assert task["x_train"].dtype == torch.float32
    assert task["x_train"].mean(0).abs().max() < 1e-4  # standardised with its own statistics
    sd = task["x_train"].std(0, correction=0)  # 1 up to the +1e-3 that guards blank pixels
    assert (sd <= 1).all() and (sd > 0.95).sum() >= 50
    assert torch.bincount(task["y_val"]).min() >= 40  # stratified: every class in validation
    other = reg.digits_task(1)
    assert torch.equal(reg.digits_task(0)["y_val"], task["y_val"])
    assert not torch.equal(other["y_val"], task["y_val"])
    assert torch.equal(other["y_test"], task["y_test"])  # the test set is fixed


def test_digits_task_is_learnable_and_a_huge_lr_diverges(task):
    """What R10's searches rely on: a sensible configuration learns in a few epochs, an absurd
    learning rate diverges (train.fit stops and flags it)."""

    def run(lr):
        torch.manual_seed(0)
        net = models.MLP(64, [reg.DEFAULT["width"]], 10)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=reg.DEFAULT["wd"])
        hist = train.fit(
            net,
            task["x_train"],
            task["y_train"],
            optimizer=opt,
            epochs=5,
            batch_size=64,
            epoch_evals=False,
            progress=False,
        )
        return hist, 1 - train.evaluate(net, task["x_val"], task["y_val"])["acc"]

    hist, val_error = run(0.1)
    assert not hist["diverged"] and val_error < 0.1
    assert run(1e6)[0]["diverged"]


def test_space_holds_the_default():
    for k, (low, high) in reg.SPACE.items():
        assert low < high and low <= reg.DEFAULT[k] <= high
