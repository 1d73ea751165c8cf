"""Reference solutions of notebook 02's exercises (and one wrong answer each).

Under ``LAB_CHECK_SOLUTIONS`` (set by the test suite) every ``utils.core.check`` call in the
notebook grades ``SOLUTIONS[id]``, which must pass, and ``WRONG[id]``, which must fail. Try the
exercises before you read on.
"""

import torch
import torch.nn.functional as F


def smooth_labels(y: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """Szegedy et al. 2016 (arXiv:1512.00567): (1 - eps) one-hot + eps / K, float32 [N, K]."""
    one_hot = F.one_hot(y, num_classes).to(torch.float32)
    return (1.0 - eps) * one_hot + eps / num_classes


def _smooth_over_others(y: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """A wrong answer: spreads eps over the K - 1 other classes only (a different target)."""
    one_hot = F.one_hot(y, num_classes).to(torch.float32)
    return (1.0 - eps) * one_hot + eps / (num_classes - 1) * (1.0 - one_hot)


SOLUTIONS = {
    # R8's prediction: the share of the flipped training labels the baseline reproduces. Trained in
    # mini-batches for many epochs on few images, it memorises most of them (around 0.9)
    "02.1": 0.9,
    "02.2": smooth_labels,
    # MixUp and CutMix change the inputs; the softer target is a side effect of mixing two examples
    "02.3": "b",
}

WRONG = {
    "02.1": 0.0,  # "a network does not learn labels that contradict the images"
    "02.2": _smooth_over_others,
    "02.3": "a",
}
