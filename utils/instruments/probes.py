"""Probes: measurements of a network or its data that leave the network untouched.

* :func:`gradient_direction_probe`: the loss and its gradient at points w - eta * grad L(w) along
  the gradient (Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help
  Optimization?", arXiv:1805.11604, Sec. 3.1 / Fig. 4). From its raw output a notebook computes
  the paper's three measures: the loss variation, the gradient predictiveness and the
  effective beta-smoothness.
* :class:`BatchMeans`: a forward hook recording the per-unit batch mean of a layer's output at
  every training step (the input distribution the next layer sees; Ioffe & Szegedy 2015,
  arXiv:1502.03167), with a switch that pauses it while a probe runs extra forward passes.
* :func:`active_fraction`: per unit, the fraction of the data a layer's output passes (> 0).
* :func:`eval_in_train_mode`: accuracy with normalisation layers using each test batch's own
  statistics.
* :func:`layer_grad_norms`: the weight-gradient norm of every linear/conv layer.
* :func:`second_moment_spectrum`: the eigenvalues of E[x x^T] of a data set (LeCun, Bottou, Orr
  & Mueller 1998, "Efficient BackProp").

Hessian-based measures (Hessian-vector products, top eigenvalue, slices) live in
``utils.instruments.landscape``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "gradient_direction_probe",
    "BatchMeans",
    "active_fraction",
    "eval_in_train_mode",
    "layer_grad_norms",
    "second_moment_spectrum",
]


def _check_steps(step_sizes: Sequence[float]) -> list[float]:
    try:
        steps = [float(s) for s in step_sizes]
    except (TypeError, ValueError):
        raise ValueError(
            f"step_sizes must be a non-empty sequence of finite numbers > 0, got {step_sizes!r}"
        ) from None
    if not steps or any(not (s > 0 and math.isfinite(s)) for s in steps):
        raise ValueError(
            f"step_sizes must be a non-empty sequence of finite numbers > 0, got {step_sizes!r}"
        )
    return steps


def _loss_and_grad(model, params, buffers, loss_fn, x, y):
    """L and dL/dparams at ``params``; buffers are fresh clones so running stats stay put."""
    bufs = {k: v.clone() for k, v in buffers.items()}
    ps = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = loss_fn(functional_call(model, (ps, bufs), (x,)), y)
    grads = torch.autograd.grad(loss, list(ps.values()))
    return float(loss.detach()), {k: g.detach() for k, g in zip(ps, grads, strict=True)}


def _norm(tensors) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))


def gradient_direction_probe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    step_sizes: Sequence[float],
    *,
    loss_fn: LossFn = F.cross_entropy,
) -> dict:
    """Move from the current weights w along -g = -grad L(w) by each step size; measure L, grad.

    The model is evaluated in its current mode (call ``model.train()`` to probe with batch
    statistics, as training sees the loss). Only parameters with ``requires_grad`` move.
    Stochastic layers (dropout, noisy BatchNorm) make the probe itself noisy.

    From the output, Santurkar et al. (2018) define, at the point w:

    * loss variation: ``max - min`` of ``[loss, *losses]``;
    * gradient predictiveness: ``max - min`` of ``grad_dist`` (small = the gradient at w
      predicts the gradient where the step lands);
    * effective beta-smoothness: ``max`` of ``grad_dist[k] / (step_sizes[k] * grad_norm)``,
      a local estimate of the gradient's Lipschitz constant along the step (on a quadratic
      with Hessian H it is ``||H g|| / ||g||`` for every step size).

    Args:
        model: the network; not modified (parameters and buffers, e.g. BatchNorm running
            statistics, are left as they were; no ``.grad`` is written).
        x: inputs [B, ...] on the model's device; y: targets [B] (int64 class labels for the
            default cross-entropy).
        step_sizes: K step lengths eta > 0 (w' = w - eta * g, so in units of a learning rate).
        loss_fn: mean-reduced loss ``loss_fn(output, y)``.

    Returns:
        dict: ``loss`` L(w) (float), ``grad_norm`` ||g|| (float, l2 over all moving
        parameters), ``step_sizes`` (the K floats), and per step size (lists of K floats)
        ``losses`` L(w - eta g) and ``grad_dist`` ||grad L(w - eta g) - g||; NaN where the loss
        or the gradient overflowed.

    Raises:
        ValueError: empty, non-finite or non-positive ``step_sizes``; x and y of different
            lengths.

    Source: Santurkar et al. 2018, arXiv:1805.11604, Sec. 3.1 and Fig. 4.
    """
    steps = _check_steps(step_sizes)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    frozen = {k: p for k, p in model.named_parameters() if not p.requires_grad}
    buffers = {**dict(model.named_buffers()), **{k: p.detach() for k, p in frozen.items()}}
    loss0, g = _loss_and_grad(model, params, buffers, loss_fn, x, y)
    losses, dists = [], []
    for eta in steps:
        moved = {k: p.detach() - eta * g[k] for k, p in params.items()}
        loss, g2 = _loss_and_grad(model, moved, buffers, loss_fn, x, y)
        dist = _norm(g2[k] - g[k] for k in g)
        ok = math.isfinite(loss) and math.isfinite(dist)
        losses.append(loss if ok else math.nan)
        dists.append(dist if ok else math.nan)
    return {
        "loss": loss0,
        "grad_norm": _norm(g.values()),
        "step_sizes": steps,
        "losses": losses,
        "grad_dist": dists,
    }


class BatchMeans:
    """Record the per-unit batch mean of ``layer``'s output at every forward pass.

    Use as a context manager around training (the hook is removed on exit); ``means`` is the
    list of recorded [units] tensors, one per forward pass (per training step when only the
    training loop runs the model). A probe's extra forward passes are not training steps: run
    them inside ``with recorder.paused():``. For an output [N, C, ...] the mean is over N and
    the trailing dimensions (per channel).

    Example::

        with probes.BatchMeans(net.net[4]) as watch:
            train.fit(net, x, y, optimizer=opt, steps=150)
        shift = torch.stack(watch.means).diff(dim=0).abs().mean()

    Raises:
        TypeError: ``layer`` is not an ``nn.Module``.
    """

    def __init__(self, layer: nn.Module):
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module, got {type(layer).__name__}")
        self.layer = layer
        self.means: list[torch.Tensor] = []
        self._paused = False
        self._handle = None

    def _record(self, _module, _inputs, out) -> None:
        if not self._paused:
            out = out.detach()
            self.means.append(out.flatten(2).mean(dim=(0, 2)) if out.dim() > 2 else out.mean(0))

    def __enter__(self) -> BatchMeans:
        self._handle = self.layer.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop recording inside the block (e.g. while a probe runs its own forward passes)."""
        before, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = before


@torch.no_grad()
def eval_in_train_mode(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> float:
    """Accuracy when normalisation layers use the statistics of each test batch of
    ``batch_size`` (train mode) instead of their running estimates.

    Args:
        model: classifier; its state (running statistics) and mode are restored afterwards.
        x: inputs [N, ...]; y: int64 labels [N]. batch_size: int >= 2 (a batch of 1 has no
            batch statistics); the last incomplete batch is dropped.

    Returns:
        accuracy in [0, 1] over the ``(N // batch_size) * batch_size`` examples used.

    Raises:
        ValueError: ``batch_size`` not an int >= 2 or larger than N.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2, got {batch_size!r}")
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size must be <= len(x) = {x.shape[0]}, got {batch_size}")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was = model.training
    model.train()
    correct = total = 0
    try:
        for i in range(0, x.shape[0] - batch_size + 1, batch_size):
            out = model(x[i : i + batch_size])
            correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
            total += batch_size
    finally:
        model.load_state_dict(state)
        model.train(was)
    return correct / total


@torch.no_grad()
def active_fraction(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per unit, the fraction of the examples of x for which ``layer``'s output is > 0.

    The model runs once on all of x in train mode, so BatchNorm layers normalise with the
    statistics of x itself (the population, not running estimates, which at initialisation are
    mean 0 / variance 1); the model's state (running statistics) and mode are restored.
    Applied to a BatchNorm that feeds a ReLU, this is the fraction of the data each unit lets
    through: with BN output gamma * x_hat + beta, the fraction P(x_hat > -beta / gamma).

    Args:
        model: the network; ``layer``: one of its submodules. x: inputs [N, ...].

    Returns:
        float tensor [units] with values in [0, 1] (units = output channels for [N, C, ...]).
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


def layer_grad_norms(model: nn.Module) -> list[float]:
    """l2 norm of the weight gradient of every Linear/Conv1d/Conv2d layer, in module order.

    Call after ``loss.backward()`` (e.g. from ``train.fit``'s ``on_step``). A layer without a
    gradient gives NaN.
    """
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            g = m.weight.grad
            out.append(float(g.norm()) if g is not None else math.nan)
    return out


def second_moment_spectrum(x: torch.Tensor) -> np.ndarray:
    """Eigenvalues (descending) of the input second-moment matrix E[x x^T] = X^T X / N.

    For a linear model with squared loss this matrix IS the Hessian (up to a factor 2), so its
    largest eigenvalue sets the largest stable gradient-descent step (2 / lambda_max) and the
    spread lambda_max / lambda_i how slowly the low-curvature directions converge (LeCun,
    Bottou, Orr & Mueller 1998, "Efficient BackProp", Sec. 4.3 and 5).

    Args:
        x: [N, D] float tensor (computed in float64 on the CPU, with ``torch.linalg.eigvalsh``:
            it runs on torch's threads, so ``LAB_THREADS=1`` holds; numpy's LAPACK would start
            its own BLAS threads).

    Returns:
        numpy float64 array [D], descending.

    Raises:
        ValueError: x is not 2-D.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}")
    xd = x.detach().double().cpu()
    return torch.linalg.eigvalsh(xd.T @ xd / xd.shape[0]).numpy()[::-1].copy()
