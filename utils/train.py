"""Training and evaluation loops for in-memory tensors, with a progress bar.

Data here are small enough to live on the device whole, so mini-batches are index slices
drawn with a seeded ``torch.Generator`` (no DataLoader): the order of examples is a pure
function of the ``seed`` argument. Histories are plain dicts of Python lists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def progress_enabled() -> bool:
    """Progress bars are on unless ``CI`` is set or ``LAB_PROGRESS=0`` (the tests set it)."""
    return not os.environ.get("CI") and os.environ.get("LAB_PROGRESS", "1") != "0"


def _check_xy(x: torch.Tensor, y: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{name} and its labels must be tensors, got {type(x).__name__}, {type(y).__name__}"
        )
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"{name} and its labels must have the same non-zero length, got "
            f"{x.shape[0]} and {y.shape[0]}"
        )


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _correct(out: torch.Tensor, y: torch.Tensor) -> float:
    if out.dim() == 2 and not y.is_floating_point():
        return float((out.argmax(1) == y).sum())
    return math.nan


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on (x, y) in eval mode (mode restored afterwards).

    Args:
        x: inputs [N, ...]; y: int64 labels [N] (accuracy) or float targets (accuracy = NaN).
        loss_fn: mean-reduced loss ``loss_fn(output, y)``.
        batch_size: evaluation chunk size (memory only; results do not depend on it).

    Returns:
        ``{"loss": float, "acc": float in [0, 1] or NaN}``.
    """
    _check_xy(x, y)
    was_training = model.training
    model.eval()
    dev = _device_of(model)
    total, correct = 0.0, 0.0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
        out = model(xb)
        total += float(loss_fn(out, yb)) * xb.shape[0]
        correct += _correct(out, yb)
    model.train(was_training)
    n = x.shape[0]
    return {"loss": total / n, "acc": correct / n}


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int = 1,
    batch_size: int = 64,
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scheduler_step: str = "epoch",
    max_steps: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool | None = None,
    desc: str = "train",
) -> dict[str, list]:
    """Train ``model`` on (x, y) with shuffled mini-batches; evaluate after every epoch.

    Args:
        model: the network (its device is used; x/y are moved there once).
        x: inputs [N, ...]; y: labels [N] (int64 for classification, float for regression).
        optimizer: built on ``model.parameters()`` by the caller.
        epochs: passes over the data (>= 1). batch_size: >= 1 (``N`` = full-batch GD).
        loss_fn: mean-reduced loss. seed: seeds the order of examples.
        val: optional (x_val, y_val) evaluated after every epoch.
        scheduler: optional LR scheduler, stepped once per epoch or per step
            (``scheduler_step="epoch"`` or ``"step"``).
        max_steps: stop after this many optimizer steps (the last epoch may be partial).
        on_step: called as ``on_step(step, loss)`` after every step (e.g. to record a norm).
        progress: show a tqdm bar; default :func:`progress_enabled`.

    Returns:
        History dict: ``step_loss`` (training loss per step), ``lr`` (per step), and per epoch
        ``epoch``, ``steps`` (cumulative), ``train_loss``/``train_acc`` (evaluated on the
        whole training set in eval mode), and ``val_loss``/``val_acc`` if ``val`` is given.
        A run whose loss becomes non-finite stops early with ``diverged=True`` in the history.

    Raises:
        TypeError/ValueError: bad tensors, sizes or options.
    """
    from tqdm.auto import tqdm

    _check_xy(x, y)
    if val is not None:
        _check_xy(*val, name="val")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an int >= 1, got {max_steps!r}")
    if scheduler_step not in ("epoch", "step"):
        raise ValueError(f"scheduler_step must be 'epoch' or 'step', got {scheduler_step!r}")

    dev = _device_of(model)
    x, y = x.to(dev), y.to(dev)
    n = x.shape[0]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    hist: dict[str, list] = {
        "step_loss": [],
        "lr": [],
        "epoch": [],
        "steps": [],
        "train_loss": [],
        "train_acc": [],
    }
    if val is not None:
        hist["val_loss"], hist["val_acc"] = [], []
    hist["diverged"] = False  # type: ignore[assignment]
    step = 0
    show = progress_enabled() if progress is None else progress
    bar = tqdm(range(epochs), desc=desc, disable=not show, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            hist["lr"].append(optimizer.param_groups[0]["lr"])  # the lr this step used
            optimizer.step()
            if scheduler is not None and scheduler_step == "step":
                scheduler.step()
            step += 1
            value = float(loss.detach())
            hist["step_loss"].append(value)
            if on_step is not None:
                on_step(step, value)
            if not math.isfinite(value):
                hist["diverged"] = True  # type: ignore[assignment]
                break
            if max_steps is not None and step >= max_steps:
                break
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        tr = evaluate(model, x, y, loss_fn=loss_fn)
        hist["epoch"].append(epoch + 1)
        hist["steps"].append(step)
        hist["train_loss"].append(tr["loss"])
        hist["train_acc"].append(tr["acc"])
        if val is not None:
            va = evaluate(model, *val, loss_fn=loss_fn)
            hist["val_loss"].append(va["loss"])
            hist["val_acc"].append(va["acc"])
        bar.set_postfix(loss=f"{tr['loss']:.3g}")
        if hist["diverged"] or (max_steps is not None and step >= max_steps):
            break
    return hist
