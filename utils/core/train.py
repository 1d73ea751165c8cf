"""Training and evaluation loops for in-memory tensors, with a progress bar.

Data here are small enough to live on the device whole, so mini-batches are index slices
drawn with a seeded ``torch.Generator`` (no DataLoader): the order of examples is a pure
function of the ``seed`` argument. Histories are plain dicts of Python lists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def progress_enabled() -> bool:
    """Progress bars are on unless ``CI`` is set or ``LAB_PROGRESS=0`` (the tests set it)."""
    return not os.environ.get("CI") and os.environ.get("LAB_PROGRESS", "1") != "0"


def progress(iterable, desc: str, total: int | None = None):
    """``iterable`` with a tqdm progress bar (a widget in JupyterLab), for a cell's outer loop
    over seeds or arms whose inner ``fit`` calls run with ``progress=False``.

    The bar is off under :func:`progress_enabled` rules (CI, ``LAB_PROGRESS=0``) and disappears
    when the loop ends (``leave=False``), so it never becomes part of a saved output.

    Args:
        iterable: what to loop over.
        desc: the bar's label, e.g. ``"R6 seeds"``.
        total: number of items when ``len(iterable)`` does not exist.

    Raises:
        TypeError: ``desc`` not a string.
    """
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str, got {type(desc).__name__}")
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not progress_enabled(), leave=False)


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


SAMPLING = ("shuffle", "replacement", "sequential")


def _check_pos_int(name: str, value, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        extra = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {extra}an int >= 1, got {value!r}")


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 64,
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
    sampling: str = "shuffle",
    drop_last: bool = False,
    transform: Callable | None = None,
    set_mode: Callable[[nn.Module], object] | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    epoch_evals: bool = True,
    evals: Mapping[str, Callable[[nn.Module], float]] | None = None,
    eval_every: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scheduler_step: str = "epoch",
    before_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    on_step: Callable[[int, float], bool | None] | None = None,
    max_steps: int | None = None,
    progress: bool | None = None,
    desc: str = "train",
) -> dict[str, list]:
    """THE training loop of the course: mini-batch steps of ``optimizer`` on ``loss_fn``.

    Every notebook trains through this one function; a need it lacks becomes an option here,
    never a new loop. One step is: pick a batch, ``transform`` it, ``before_step``, forward,
    ``loss_fn``, backward, ``optimizer.step()``, scheduler, ``on_step``, evals.

    Args:
        model: the network (its device is used; x/y are moved there once).
        x: inputs [N, ...]; y: targets [N, ...]: int64 labels for classification, float
            targets for regression, or soft targets [N, K] with a matching ``loss_fn`` (e.g.
            ``augment.soft_cross_entropy``).
        optimizer: built on the model's parameters by the caller.
        epochs / steps: the budget, in passes over the data or in optimizer steps. Give one
            (``epochs`` defaults to 1 when neither is given); with both, training stops at
            whichever ends first.
        batch_size: examples per step (>= 1; ``N`` = full-batch gradient descent).
        loss_fn: mean-reduced ``loss_fn(model(xb), yb)``.
        seed: seeds the example order (and is the generator passed to ``transform``).
        sampling: ``"shuffle"`` (each epoch walks a fresh seeded permutation: without
            replacement) or ``"replacement"`` (every step draws ``batch_size`` indices uniformly
            with replacement; an "epoch" is then ``ceil(N / batch_size)`` steps) or
            ``"sequential"`` (every epoch walks the data in its stored order; batches are slices,
            so with ``batch_size = N`` full-batch gradient descent uses x itself, no copy).
        drop_last: with ``"shuffle"`` or ``"sequential"``, skip an epoch's last batch when it is
            smaller than ``batch_size`` (every step then averages the same number of examples).
        transform: ``transform(xb, yb, generator) -> (xb, yb, ...)`` applied to every batch
            before the forward pass (augmentation, MixUp/CutMix on soft targets); extra return
            values are ignored.
        set_mode: called as ``set_mode(model)`` wherever the loop would call ``model.train()``,
            e.g. ``finetune.train_mode`` so that frozen BatchNorm layers stay in eval mode.
        val: optional (x_val, y_val) evaluated after every epoch (needs ``epoch_evals``).
        epoch_evals: evaluate the whole training set (and ``val``) after every epoch; turn off
            for step-budget runs where only ``evals`` matter (it costs a full forward pass).
        evals: name -> ``f(model) -> float`` (e.g. validation accuracy), recorded after the last
            step and, with ``eval_every``, also at step 0 and every ``eval_every`` steps, under
            ``hist[name]`` with the step in ``hist["eval_step"]``. Called in whatever mode the
            function sets; training resumes in the mode ``set_mode`` sets.
        eval_every: period of ``evals`` in steps (>= 1), or None.
        scheduler: optional LR scheduler, stepped once per epoch or per step
            (``scheduler_step="epoch"`` or ``"step"``).
        before_step: called as ``before_step(step, xb, yb)`` with the batch about to be used,
            before its forward pass (``step`` counts the steps already taken), e.g. to probe the
            loss landscape at the current weights.
        on_step: called as ``on_step(step, loss)`` after every step; returning True stops
            training (e.g. a target accuracy reached).
        max_steps: alias of ``steps`` kept for older notebooks.
        progress: show a tqdm bar; default :func:`progress_enabled`.

    Returns:
        History dict: ``step_loss`` (training loss per step, before that step's update), ``lr``
        (per step, first param group); per epoch (with ``epoch_evals``) ``epoch``, ``steps``
        (cumulative), ``train_loss``/``train_acc`` (whole training set, eval mode) and
        ``val_loss``/``val_acc``; ``eval_step`` and one list per ``evals`` name; ``diverged``
        (True if the loss became non-finite: training stops there); ``stopped`` (True if
        ``on_step`` asked to stop).

    Raises:
        TypeError/ValueError: bad tensors, sizes or options (the message names the argument).
    """
    from tqdm.auto import tqdm

    _check_xy(x, y)
    if val is not None:
        _check_xy(*val, name="val")
    if max_steps is not None:
        if steps is not None:
            raise ValueError("give steps or its alias max_steps, not both")
        steps = max_steps
    _check_pos_int("epochs", epochs, allow_none=True)
    _check_pos_int("steps", steps, allow_none=True)
    _check_pos_int("batch_size", batch_size)
    _check_pos_int("eval_every", eval_every, allow_none=True)
    if epochs is None and steps is None:
        epochs = 1
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if not isinstance(drop_last, bool):
        raise TypeError(f"drop_last must be a bool, got {type(drop_last).__name__}")
    if scheduler_step not in ("epoch", "step"):
        raise ValueError(f"scheduler_step must be 'epoch' or 'step', got {scheduler_step!r}")
    evals = dict(evals or {})
    for name, f in evals.items():
        if not callable(f):
            raise TypeError(f"evals[{name!r}] must be a callable f(model) -> float")

    dev = _device_of(model)
    x, y = x.to(dev), y.to(dev)
    n = x.shape[0]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    hist: dict[str, list] = {"step_loss": [], "lr": []}
    if epoch_evals:
        hist.update(epoch=[], steps=[], train_loss=[], train_acc=[])
        if val is not None:
            hist["val_loss"], hist["val_acc"] = [], []
    if evals:
        hist["eval_step"] = []
        hist.update({name: [] for name in evals})
    hist["diverged"] = False  # type: ignore[assignment]
    hist["stopped"] = False  # type: ignore[assignment]

    def train_mode() -> None:
        if set_mode is None:
            model.train()
        else:
            set_mode(model)

    def record(step: int) -> None:
        hist["eval_step"].append(step)
        for name, f in evals.items():
            hist[name].append(float(f(model)))
        train_mode()

    def batches():
        if sampling == "replacement":
            for _ in range(math.ceil(n / batch_size)):
                yield torch.randint(n, (batch_size,), generator=g).to(dev)
            return
        if sampling == "sequential":
            for i in range(0, n, batch_size):
                if drop_last and i + batch_size > n:
                    return
                yield slice(i, i + batch_size)
            return
        order = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, batch_size):
            if drop_last and i + batch_size > n:
                return
            yield order[i : i + batch_size]

    step, done = 0, False
    n_epochs = epochs if epochs is not None else math.inf
    show = progress_enabled() if progress is None else progress
    bar = tqdm(total=steps if epochs is None else epochs, desc=desc, disable=not show, leave=False)
    train_mode()
    if evals and eval_every is not None:
        record(0)
    epoch = 0
    while epoch < n_epochs and not done:
        train_mode()
        for idx in batches():
            xb, yb = x[idx], y[idx]
            if transform is not None:
                xb, yb = transform(xb, yb, g)[:2]
            if before_step is not None:
                before_step(step, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            hist["lr"].append(optimizer.param_groups[0]["lr"])  # the lr this step used
            optimizer.step()
            if scheduler is not None and scheduler_step == "step":
                scheduler.step()
            step += 1
            value = float(loss.detach())
            hist["step_loss"].append(value)
            if epochs is None:
                bar.update(1)
            if on_step is not None and on_step(step, value) is True:
                hist["stopped"] = done = True  # type: ignore[assignment]
            if not math.isfinite(value):
                hist["diverged"] = done = True  # type: ignore[assignment]
            if steps is not None and step >= steps:
                done = True
            if evals and eval_every is not None and step % eval_every == 0:
                record(step)
            if done:
                break
        epoch += 1
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        if epoch_evals:
            tr = evaluate(model, x, y, loss_fn=loss_fn)
            hist["epoch"].append(epoch)
            hist["steps"].append(step)
            hist["train_loss"].append(tr["loss"])
            hist["train_acc"].append(tr["acc"])
            if val is not None:
                va = evaluate(model, *val, loss_fn=loss_fn)
                hist["val_loss"].append(va["loss"])
                hist["val_acc"].append(va["acc"])
            bar.set_postfix(loss=f"{tr['loss']:.3g}")
        if epochs is not None:
            bar.update(1)
    bar.close()
    if evals and (eval_every is None or step % eval_every != 0):
        record(step)
    return hist
