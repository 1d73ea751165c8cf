"""Reference solutions of notebook 04's exercises (and one wrong answer each).

Under ``LAB_CHECK_SOLUTIONS`` (set by the test suite) every ``utils.core.check`` call in the
notebook grades ``SOLUTIONS[id]``, which must pass, and ``WRONG[id]``, which must fail. Try the
exercises before you read on.
"""

import math

import torch


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vaswani et al. 2017 (arXiv:1706.03762), Eq. 1: softmax(Q K^T / sqrt(d_k)) V."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def _unscaled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A wrong answer: forgets the 1/sqrt(d_k) of A1."""
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


SOLUTIONS = {
    # A6's prediction: 4 heads x 2048 x 2048 weights x 4 bytes = 2**26 bytes = 64 MiB
    "04.1": 4 * 2048 * 2048 * 4 / 2**20,
    "04.2": attention,
    # the weights fit only the encodings of the positions seen in training
    "04.3": "b",
    # smaller patches give more tokens: each weight is applied once per token, and the
    # parameter-free attention products QK^T and AV grow as the square of the token count
    "04.4": "a",
}

WRONG = {
    "04.1": 2048 * 2048 * 4 / 2**20,  # one head instead of four
    "04.2": _unscaled_attention,
    "04.3": "a",
    "04.4": "b",
}
