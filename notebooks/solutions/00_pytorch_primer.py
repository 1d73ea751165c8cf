"""Reference solutions of notebook 00's exercises (and one wrong answer each).

Under ``LAB_CHECK_SOLUTIONS`` (set by the test suite) every ``utils.core.check`` call in the
notebook grades ``SOLUTIONS[id]``, which must pass, and ``WRONG[id]``, which must fail. Try the
exercises before you read on.
"""

import math

import torch


def kaiming_normal_(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """He et al. 2015 (arXiv:1502.01852): N(0, 2 / fan_in), fan_in = inputs per output unit."""
    fan_in = weight[0].numel()  # in_features for Linear, in_channels * kh * kw for Conv2d
    std = math.sqrt(2.0) / math.sqrt(fan_in)
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def _xavier_like_(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A wrong answer: variance 1 / fan_in forgets ReLU's factor 2."""
    with torch.no_grad():
        return weight.normal_(0.0, 1.0 / math.sqrt(weight[0].numel()), generator=generator)


SOLUTIONS = {
    # M1's prediction: modules() sees fc1 (attribute assignment registers it) but not the
    # layers inside a plain Python list
    "00.1": "b",
    # M2's prediction: Xavier halves the second moment per ReLU layer; from layer 1 to layer 30
    # that is 29 halvings, so the std ratio is 2 ** -14.5
    "00.2": 2**-14.5,
    "00.3": kaiming_normal_,
    # the plain-list model trains only its head, on fixed random hidden features
    "00.4": "b",
}

WRONG = {
    "00.1": "d",
    "00.2": 2**-29,  # confusing the second moment with the std
    "00.3": _xavier_like_,
    "00.4": "a",
}
