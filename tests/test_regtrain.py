"""Tests of utils.regtrain: label noise, early stopping, the training loop, ablation probe."""

import pytest
import torch

from utils.core import models
from utils.instruments import augment
from utils.tasks import regtrain


def test_corrupt_labels_flips_exact_fraction_to_other_classes():
    y = torch.arange(100) % 10
    noisy = regtrain.corrupt_labels(y, 0.3, 10, torch.Generator().manual_seed(0))
    assert int((noisy != y).sum()) == 30 and noisy.min() >= 0 and noisy.max() <= 9


@pytest.mark.parametrize(
    "curve,patience,expected",
    [
        ([5, 4, 3, 3.5, 3.6, 3.7, 2.0], 3, (3, 6)),
        ([5, 4, 3, 2, 1], 2, (5, 5)),
        ([1, 2, 3], 1, (1, 2)),
    ],
)
def test_early_stop_epoch(curve, patience, expected):
    assert regtrain.early_stop_epoch(curve, patience) == expected


def test_early_stop_rejects_bad_patience():
    with pytest.raises(ValueError, match="patience"):
        regtrain.early_stop_epoch([1.0], 0)


def test_train_fits_and_soft_targets_equal_hard_targets():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] > 0).long()
    hists = []
    for targets in [None, augment.one_hot(y, 2)]:
        torch.manual_seed(0)
        net = models.MLP(5, [16], 2)
        hists.append(
            regtrain.train(
                net,
                x,
                y,
                optimizer=torch.optim.Adam(net.parameters(), 0.05),
                epochs=30,
                targets=targets,
                evals={"train": (x, y)},
                eval_every=10,
            )
        )
    assert hists[0] == hists[1] and hists[0]["epoch"] == [10, 20, 30]
    assert hists[0]["train_acc"][-1] > 0.95


def test_ablated_accuracy_with_zero_fraction_is_plain_accuracy():
    torch.manual_seed(0)
    net = models.MLP(5, [16], 3)
    x, y = torch.randn(50, 5), torch.randint(0, 3, (50,))
    plain = float((net(x).argmax(1) == y).float().mean())
    assert regtrain.ablated_accuracy(net, x, y, 0.0, torch.Generator()) == plain
    assert len(net.net[1]._forward_hooks) == 0  # hooks removed
