"""Small experiment runners of notebook 05 (normalisation): stability, speed, conditioning.

Kept out of the notebook so its cells stay a few decisive lines; each is a plain loop over
in-memory tensors, deterministic given the seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "full_batch_gd",
    "largest_stable_lr",
    "second_moment_spectrum",
    "eval_in_train_mode",
    "active_fraction",
]

ModelFactory = Callable[[], nn.Module]


def full_batch_gd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    steps: int,
    target_acc: float | None = None,
    blowup: float = 10.0,
) -> dict:
    """Full-batch gradient descent on cross-entropy; stops early on blow-up or at the target.

    Args:
        model: trained in place. x [N, ...] float, y [N] int64 labels (same device).
        lr: step size > 0. steps: maximum number of steps (>= 1).
        target_acc: stop as soon as the full-batch training accuracy reaches it (in (0, 1]).
        blowup: a loss above ``blowup * initial loss`` (or non-finite) counts as diverged.

    Returns:
        dict: ``loss0`` (initial loss), ``loss`` (last loss), ``losses`` (per step),
        ``diverged`` (bool), ``stable`` (not diverged and last loss < initial loss),
        ``steps_to_target`` (steps taken before the accuracy first reached ``target_acc``;
        ``math.inf`` if never within ``steps`` or diverged).
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if target_acc is not None and not 0 < target_acc <= 1:
        raise ValueError(f"target_acc must be in (0, 1], got {target_acc!r}")
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    hit, diverged = math.inf, False
    for t in range(steps + 1):
        out = model(x)
        loss = F.cross_entropy(out, y)
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value) or value > blowup * losses[0]:
            diverged = True
            break
        if target_acc is not None and float((out.argmax(1) == y).float().mean()) >= target_acc:
            hit = t
            break
        if t == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {
        "loss0": losses[0],
        "loss": losses[-1],
        "losses": losses,
        "diverged": diverged,
        "stable": (not diverged) and losses[-1] < losses[0],
        "steps_to_target": hit,
    }


def largest_stable_lr(
    make_model: ModelFactory,
    x: torch.Tensor,
    y: torch.Tensor,
    lrs: Sequence[float],
    *,
    steps: int = 50,
) -> float:
    """Largest step size in ``lrs`` at which full-batch GD is stable (see :func:`full_batch_gd`).

    Scans from the largest lr down (diverging runs stop after a few steps, so this is cheap) and
    returns the first stable one; ``math.nan`` if none is. ``make_model()`` must return a fresh,
    identically initialised model each call (seed inside it).
    """
    for lr in sorted((float(v) for v in lrs), reverse=True):
        if full_batch_gd(make_model(), x, y, lr=lr, steps=steps)["stable"]:
            return lr
    return math.nan


def second_moment_spectrum(x: torch.Tensor) -> np.ndarray:
    """Eigenvalues (descending) of the input second-moment matrix E[x x^T] = X^T X / N.

    For a linear model with squared loss this matrix IS the Hessian, so its largest eigenvalue
    sets the largest stable GD step (2 / lambda_max) and the spread lambda_max / lambda_i how
    slowly the low-curvature directions converge (LeCun, Bottou, Orr & Mueller 1998, "Efficient
    BackProp", Sec. 4.3 and 5). x: [N, D] float -> numpy float64 [D].
    """
    if x.dim() != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}")
    xd = x.detach().double().cpu()
    return np.linalg.eigvalsh((xd.T @ xd / xd.shape[0]).numpy())[::-1].copy()


@torch.no_grad()
def eval_in_train_mode(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> float:
    """Accuracy when normalisation layers use the statistics of each test batch of
    ``batch_size`` (train mode) instead of running estimates; running stats are not changed.

    Returns accuracy in [0, 1]. The last incomplete batch is dropped (a batch of 1 has no
    batch statistics).
    """
    if not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2, got {batch_size!r}")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was = model.training
    model.train()
    correct = total = 0
    for i in range(0, x.shape[0] - batch_size + 1, batch_size):
        out = model(x[i : i + batch_size])
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
        total += batch_size
    model.load_state_dict(state)
    model.train(was)
    return correct / max(total, 1)


@torch.no_grad()
def active_fraction(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per unit, the fraction of examples of x for which ``layer``'s output is > 0.

    The model runs once on all of x in train mode, so BatchNorm layers normalise with the
    statistics of x itself (the population, not stale running estimates, which at init are
    mean 0 / variance 1); the model's state (running statistics) is restored afterwards.
    x [N, ...] -> tensor [units]. Applied to a BatchNorm that feeds a ReLU, this is the fraction
    of the data the unit lets through.
    """
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append((out > 0).float()))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was = model.training
    model.train()
    try:
        model(x)
    finally:
        handle.remove()
        model.load_state_dict(state)
        model.train(was)
    return seen[0].flatten(2).mean(dim=(0, 2)) if seen[0].dim() > 2 else seen[0].mean(0)
