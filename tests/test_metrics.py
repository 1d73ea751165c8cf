"""Tests of utils.metrics: accuracy, ECE against a hand-computed example, bias-variance."""

import numpy as np
import pytest
import torch

from utils.core import metrics


def test_accuracy_from_logits_and_labels():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert metrics.accuracy(np.array([1, 1]), np.array([1, 0])) == 0.5
    with pytest.raises(ValueError):
        metrics.accuracy(logits, torch.tensor([0, 1]))


def test_ece_hand_computed():
    # 3 classes, 2 bins: (0, .5] and (.5, 1].
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # conf .9, pred 0, label 0 -> correct, bin 2
            [0.7, 0.2, 0.1],  # conf .7, pred 0, label 1 -> wrong,   bin 2
            [0.4, 0.35, 0.25],  # conf .4, pred 0, label 0 -> correct, bin 1
            [0.3, 0.3, 0.4],  # conf .4, pred 2, label 1 -> wrong,   bin 1
            [0.2, 0.6, 0.2],  # conf .6, pred 1, label 1 -> correct, bin 2
        ]
    )
    y = np.array([0, 1, 0, 1, 1])
    # bin 1: n=2, acc .5, conf .4 -> |.1|; bin 2: n=3, acc 2/3, conf (.9+.7+.6)/3 = .7333
    expected = 2 / 5 * 0.1 + 3 / 5 * abs(2 / 3 - 2.2 / 3)
    b = metrics.reliability_bins(probs, y, n_bins=2)
    assert b["count"].tolist() == [2, 3]
    assert b["accuracy"] == pytest.approx([0.5, 2 / 3])
    assert b["confidence"] == pytest.approx([0.4, 2.2 / 3])
    assert metrics.expected_calibration_error(probs, y, n_bins=2) == pytest.approx(expected)


def test_ece_bin_edges_are_right_closed():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    b = metrics.reliability_bins(probs, np.array([0, 0]), n_bins=2)
    assert b["count"].tolist() == [1, 1]  # 0.5 belongs to (0, .5], 1.0 to (.5, 1]


def test_ece_zero_when_calibrated_and_one_when_confidently_wrong():
    probs = np.tile([0.75, 0.25], (4, 1))
    assert metrics.expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0)
    assert metrics.expected_calibration_error(np.array([[1.0, 0.0]]), np.array([1])) == 1.0


@pytest.mark.parametrize("bad", [np.array([[0.5, 0.6], [2.0, -1.0]]), np.ones(3)])
def test_ece_rejects_non_probabilities(bad):
    with pytest.raises(ValueError):
        metrics.expected_calibration_error(bad, np.array([0, 1]))
    with pytest.raises(ValueError, match="n_bins"):
        metrics.reliability_bins(np.array([[1.0, 0.0]]), np.array([0]), n_bins=0)


def test_bias_variance_exact_terms():
    preds = np.array([[1.0, 2.0], [3.0, 4.0]])  # fbar = [2, 3]
    f = np.array([1.0, 1.0])
    out = metrics.bias_variance(preds, f, noise_var=0.5)
    assert out["bias2"] == pytest.approx((1 + 4) / 2)
    assert out["variance"] == pytest.approx(1.0)
    assert out["total"] == pytest.approx(2.5 + 1.0 + 0.5)


def test_bias_variance_sums_to_measured_mse():
    rng = np.random.default_rng(0)
    f = np.sin(np.linspace(0, 3, 50))
    preds = f + 0.3 + 0.5 * rng.standard_normal((4000, 50))
    y = f + 0.2 * rng.standard_normal((4000, 50))
    out = metrics.bias_variance(preds, f, y_noisy=y)
    assert out["bias2"] == pytest.approx(0.09, rel=0.05)
    assert out["variance"] == pytest.approx(0.25, rel=0.05)
    assert out["noise"] == pytest.approx(0.04, rel=0.05)
    assert out["total"] == pytest.approx(out["mse"], rel=0.02)


def test_bias_variance_argument_errors():
    p, f = np.zeros((3, 2)), np.zeros(2)
    with pytest.raises(ValueError, match="exactly one"):
        metrics.bias_variance(p, f)
    with pytest.raises(ValueError, match="preds"):
        metrics.bias_variance(np.zeros((1, 2)), f, noise_var=0.1)
    with pytest.raises(ValueError, match="y_noisy"):
        metrics.bias_variance(p, f, y_noisy=np.zeros((2, 2)))
