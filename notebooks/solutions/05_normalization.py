"""Reference solutions of notebook 05's exercises (and one wrong answer each).

Under ``LAB_CHECK_SOLUTIONS`` (set by the test suite) every ``utils.core.check`` call in the
notebook grades ``SOLUTIONS[id]``, which must pass, and ``WRONG[id]``, which must fail. Try the
exercises before you read on.
"""

import torch


def batch_norm(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float
) -> torch.Tensor:
    """BatchNorm in training mode (Ioffe & Szegedy 2015, arXiv:1502.03167, Alg. 1): per feature,
    the batch mean and the BIASED batch variance."""
    mean = x.mean(0)
    var = x.var(0, unbiased=False)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def _unbiased_batch_norm(x, gamma, beta, eps):
    """A wrong answer: the unbiased variance (what the running average stores) is not what the
    batch is normalised with; the difference is largest for small batches."""
    return gamma * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=True) + eps) + beta


SOLUTIONS = {
    # N1's prediction: the first layer's curvature grows 255^2-fold, but cross-entropy is not a
    # quadratic bowl (a saturated softmax has bounded logit gradients), so the measured ratio of
    # best learning rates (lowest training loss after 40 steps) lies between 255 and 255^2:
    # about a thousandfold
    "05.1": 1e3,
    "05.2": batch_norm,
    # fixed steps: a larger batch means more examples seen (and a less noisy gradient)
    "05.3": "b",
}

WRONG = {
    "05.1": 255.0**2,  # the quadratic-bowl factor, taken literally
    "05.2": _unbiased_batch_norm,
    "05.3": "a",
}
