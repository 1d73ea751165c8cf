"""Tests of utils.regression: polynomial fits vs numpy, batched fits, k-fold selection."""

import numpy as np
import pytest

from utils.tasks import regression


@pytest.mark.parametrize("degree", [0, 1, 3, 6])
def test_poly_fit_matches_numpy_polyfit(degree):
    rng = np.random.default_rng(degree)
    x, y = regression.sine_data(40, 0.2, rng)
    ours = regression.poly_predict(regression.poly_fit(x, y, degree, ridge=0.0), x).numpy()
    ref = np.polyval(np.polyfit(x, y, degree), x)
    assert np.allclose(ours, ref, atol=1e-8)


def test_poly_fit_is_batched():
    rng = np.random.default_rng(0)
    x, y = regression.sine_data(20, 0.1, rng, reps=5)
    batch = regression.poly_fit(x, y, 3)
    single = regression.poly_fit(x[2], y[2], 3)
    assert batch.shape == (5, 4) and np.allclose(batch[2].numpy(), single.numpy())


def test_kfold_select_trains_on_k_minus_1_folds_and_reports():
    rng = np.random.default_rng(1)
    x, y = regression.sine_data(30, 0.3, rng)
    xt, yt = regression.sine_data(500, 0.3, rng)
    out = regression.kfold_select(x, y, range(1, 8), k=5, seed=0, x_test=xt, y_test=yt)
    assert out["train_frac"] == pytest.approx(0.8)
    assert out["degree"] == 1 + int(np.argmin(out["cv_all"]))
    assert out["cv_mse"] == pytest.approx(out["cv_all"].min())


def test_bad_arguments():
    with pytest.raises(ValueError, match="degree"):
        regression.features(np.zeros(3), -1)
    with pytest.raises(TypeError, match="rng"):
        regression.sine_data(3, 0.1, 0)
