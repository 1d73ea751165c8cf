"""Transfer-learning mechanics for :class:`utils.models.ResNet`: freezing by part, per-part
learning rates, frozen BatchNorm, head replacement, a step-based training loop, and the three
arms compared in notebook 03 (training from scratch, full fine-tuning, linear probe).

Parts are the ResNet's named children: ``stem``, ``stage1`` .. ``stageK`` and ``head``
(:func:`part_names`). The "backbone" is every part but the head.

**BatchNorm in a frozen part is put in eval mode** (it normalises with its stored running
mean/variance and stops updating them). Freezing only the affine weights is not enough: in
train mode a BN layer still normalises with the current batch's statistics and overwrites its
running statistics with the target data's, so a "frozen" part would still change its function.
With eval-mode BN a frozen part is a fixed function, a linear probe equals training a logistic
regression on precomputed features (tested), and the frozen part cannot forget. The usual
practice in detection backbones ("frozen BN"); the alternative (re-estimating the statistics
on the target) is itself a form of adaptation. :func:`train_mode` applies the rule; call it
instead of ``model.train()`` (``utils.train.fit`` calls ``model.train()`` every epoch, which is
why :func:`train_steps` exists here).

Sources: Yosinski et al. 2014 (arXiv:1411.1792), fine-tuning vs frozen features; Li & Hoiem
2016 (arXiv:1606.09282), forgetting of the source task during fine-tuning; Kornblith et al.
2019 (arXiv:1805.08974), linear probe vs fine-tuning; He et al. 2019 (arXiv:1811.08883), from
scratch catches up with enough data and steps.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.train import evaluate
from ..tasks.transfer import SourceConfig, TargetTask, init_model

ARMS = ("scratch", "finetune", "probe")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def part_names(model: nn.Module) -> list[str]:
    """Names of the addressable parts: ``["stem", "stage1", ..., "head"]`` for a ResNet.

    Raises:
        TypeError: if ``model`` lacks ``stem``/``head``/``stage_names`` (not a ResNet).
    """
    if not all(hasattr(model, a) for a in ("stem", "head", "stage_names")):
        raise TypeError(
            f"model must be a utils.models.ResNet (parts stem, stage*, head), "
            f"got {type(model).__name__}"
        )
    return ["stem", *model.stage_names, "head"]


def backbone_parts(model: nn.Module) -> list[str]:
    """Every part but the head."""
    return part_names(model)[:-1]


def _resolve(model: nn.Module, parts: str | Iterable[str]) -> list[str]:
    names = part_names(model)
    parts = [parts] if isinstance(parts, str) else list(parts)
    if not all(isinstance(p, str) for p in parts):
        raise TypeError(f"parts must be part names (str), got {parts!r}")
    unknown = [p for p in parts if p not in names]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; parts of this model are {names}")
    return parts


def _set_frozen(model: nn.Module, parts, frozen: bool) -> nn.Module:
    for name in _resolve(model, parts):
        module = getattr(model, name)
        for p in module.parameters():
            p.requires_grad_(not frozen)
        for m in module.modules():
            if isinstance(m, _BN):
                m.train(model.training and not frozen)
    return model


def freeze(model: nn.Module, parts: str | Iterable[str]) -> nn.Module:
    """Freeze ``parts`` in place: ``requires_grad=False`` and their BatchNorm in eval mode.

    Args:
        model: a :class:`utils.models.ResNet`. parts: a part name or names (see
            :func:`part_names`), e.g. ``["stem", "stage1"]``.

    Returns:
        ``model`` (for chaining).

    Raises:
        TypeError: if ``model`` is not a ResNet or a part is not a str.
        ValueError: for an unknown part name (the message lists the model's parts).
    """
    return _set_frozen(model, parts, True)


def unfreeze(model: nn.Module, parts: str | Iterable[str]) -> nn.Module:
    """Undo :func:`freeze` for ``parts`` (BatchNorm follows the model's train/eval mode)."""
    return _set_frozen(model, parts, False)


def frozen_parts(model: nn.Module) -> list[str]:
    """Parts whose parameters are all frozen (``requires_grad=False``)."""
    return [
        n
        for n in part_names(model)
        if not any(p.requires_grad for p in getattr(model, n).parameters())
    ]


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, then every BatchNorm whose parameters are all frozen back to eval."""
    model.train()
    for m in model.modules():
        if isinstance(m, _BN):
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


def param_groups(
    model: nn.Module, lrs: Mapping[str, float], *, default_lr: float | None = None
) -> list[dict]:
    """Optimizer parameter groups with one learning rate per part (frozen parameters skipped).

    ``param_groups(model, {"head": 1e-2}, default_lr=1e-3)`` trains the head at 1e-2 and the
    backbone at 1e-3 (a smaller backbone lr limits forgetting: Li & Hoiem 2016,
    arXiv:1606.09282, fine-tune the shared layers with a reduced lr). Pass the result to any
    ``torch.optim`` optimizer; each group carries a ``"name"`` (its part) for inspection.

    Args:
        model: a ResNet. lrs: part name -> lr (> 0).
        default_lr: lr of the parts not named in ``lrs``; ``None`` leaves them out.

    Returns:
        list of ``{"params": [...], "lr": float, "name": str}``, in part order, without parts
        that have no trainable parameters.

    Raises:
        TypeError: if ``lrs`` is not a mapping. ValueError: unknown part or lr <= 0 / not finite.
    """
    if not isinstance(lrs, Mapping):
        raise TypeError(f"lrs must be a mapping part -> lr, got {type(lrs).__name__}")
    _resolve(model, list(lrs))
    for name, lr in [*lrs.items(), ("default_lr", default_lr)]:
        if name == "default_lr" and lr is None:
            continue
        if (
            not isinstance(lr, (int, float))
            or isinstance(lr, bool)
            or not math.isfinite(lr)
            or lr <= 0
        ):
            raise ValueError(f"lr of {name!r} must be a finite float > 0, got {lr!r}")
    groups = []
    for name in part_names(model):
        lr = lrs.get(name, default_lr)
        params = [p for p in getattr(model, name).parameters() if p.requires_grad]
        if lr is not None and params:
            groups.append({"params": params, "lr": float(lr), "name": name})
    return groups


def replace_head(model: nn.Module, num_classes: int, *, seed: int) -> nn.Linear:
    """Put a new seeded ``Linear(feature_dim, num_classes)`` head on ``model``; return the old.

    The old head is returned so the source task can still be scored (forgetting, T3).

    Raises:
        TypeError/ValueError: for a non-ResNet or ``num_classes`` < 1.
    """
    part_names(model)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    old = model.head
    dev = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model.head = nn.Linear(model.feature_dim, num_classes).to(dev)
    return old


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on (x [N, ...], y int64 [N]) in eval mode.

    Uses :func:`utils.train.evaluate` and then re-applies :func:`train_mode` if the model was
    training (``evaluate`` restores ``model.train()``, which would un-freeze frozen BN).
    """
    was_training = model.training
    acc = evaluate(model, x, y)["acc"]
    if was_training:
        train_mode(model)
    return acc


def source_accuracy(
    model: nn.Module, source_head: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Accuracy of the kept source head on the current backbone features (eval mode).

    This is the forgetting measure of Li & Hoiem 2016: the backbone is shared, the old head
    is frozen, so any drop comes from the backbone moving during fine-tuning.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        acc = float((source_head(model.features(x)).argmax(1) == y).float().mean())
    if was_training:
        train_mode(model)
    return acc


def _check_lrs(lrs) -> list[float]:
    lrs = list(lrs)
    if not lrs or any(
        not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0 or not math.isfinite(v)
        for v in lrs
    ):
        raise ValueError(f"lrs must be a non-empty list of finite floats > 0, got {lrs!r}")
    return lrs


def _check_pos_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def train_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    steps: int,
    batch_size: int,
    seed: int = 0,
    eval_every: int | None = None,
    evals: Mapping[str, Callable[[nn.Module], float]] | None = None,
    cosine: bool = False,
) -> dict[str, list[float]]:
    """Train for exactly ``steps`` optimizer steps of cross-entropy on shuffled mini-batches.

    Frozen parts stay frozen (their BN in eval mode, via :func:`train_mode`). Mini-batches
    walk through a seeded permutation of the data, reshuffled every epoch.

    Args:
        model: the network. x: inputs [N, ...] on the model's device; y: int64 labels [N].
        optimizer: built by the caller (e.g. on :func:`param_groups`).
        steps: optimizer steps (>= 1). batch_size: >= 1 (``>= N`` means full batch).
        seed: seed of the example order.
        eval_every: also evaluate every this many steps (``None``: only after the last step).
        evals: name -> ``f(model) -> float`` evaluated after the last step and, if
            ``eval_every`` is set, also at step 0 and every ``eval_every`` steps (e.g.
            validation accuracy, source accuracy).
        cosine: anneal every group's lr to 0 over ``steps``
            (``torch.optim.lr_scheduler.CosineAnnealingLR``; Loshchilov & Hutter 2016,
            arXiv:1608.03983). With a constant lr a short run's final weights can land on a
            loss spike; annealing makes fixed-budget comparisons far less noisy.

    Returns:
        ``{"step": [...], "loss": [per-step training loss], <name>: [value at each step]}``.

    Raises:
        TypeError/ValueError: bad tensors or counts.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x and y must have the same non-zero length, got {x.shape[0]}, {y.shape[0]}"
        )
    _check_pos_int("steps", steps)
    _check_pos_int("batch_size", batch_size)
    if eval_every is not None:
        _check_pos_int("eval_every", eval_every)
    evals = dict(evals or {})
    hist: dict[str, list[float]] = {"step": [], "loss": [], **{k: [] for k in evals}}

    def record(step: int) -> None:
        hist["step"].append(step)
        for k, f in evals.items():
            hist[k].append(float(f(model)))

    n = x.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    order, pos = torch.randperm(n, generator=g), 0
    if not isinstance(cosine, bool):
        raise TypeError(f"cosine must be a bool, got {type(cosine).__name__}")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    train_mode(model)
    if evals and eval_every is not None:
        record(0)
    for step in range(1, steps + 1):
        if pos >= n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos : pos + batch_size].to(x.device)
        pos += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        if sched is not None:
            sched.step()
        hist["loss"].append(float(loss.detach()))
        if evals and (step == steps or (eval_every is not None and step % eval_every == 0)):
            record(step)
    model.eval()
    return hist


def steps_to_reach(steps: Sequence[int], curve: Sequence[float], target: float) -> float:
    """First step at which ``curve`` reaches ``target`` (>=); ``inf`` if it never does.

    Args:
        steps: evaluation steps, increasing. curve: the metric at those steps (same length).
        target: the level to reach (e.g. the from-scratch model's final accuracy).

    Raises:
        ValueError: for sequences of different length or empty.
    """
    if len(steps) != len(curve) or not len(steps):
        raise ValueError(
            f"steps and curve must be non-empty and of equal length, got "
            f"{len(steps)} and {len(curve)}"
        )
    for s, v in zip(steps, curve, strict=True):
        if v >= target:
            return float(s)
    return math.inf


def make_arm(
    arm: str, source: nn.Module, config: SourceConfig, num_classes: int, *, seed: int
) -> nn.Module:
    """The starting model of an arm, on ``source``'s device.

    * ``"scratch"``: a fresh ResNet of ``config``'s shape (seeded init), all trainable.
    * ``"finetune"``: a copy of ``source`` with a new head, all trainable (full fine-tuning).
    * ``"probe"``: a copy of ``source`` with a new head and the backbone frozen (linear probe).

    Raises:
        ValueError: unknown ``arm`` (allowed: ``ARMS``).
    """
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    dev = next(source.parameters()).device
    if arm == "scratch":
        return init_model(config, seed, num_classes).to(dev)
    model = copy.deepcopy(source)
    replace_head(model, num_classes, seed=seed)
    if arm == "probe":
        freeze(model, backbone_parts(model))
    return model


def linear_probe(
    source: nn.Module,
    task: TargetTask,
    *,
    lrs: Sequence[float],
    steps: int,
    seed: int,
    num_classes: int = 5,
) -> dict:
    """Linear probe: a new head trained on frozen (eval-mode) source features, lr chosen on val.

    Features are computed once (exact, because frozen BN is in eval mode; see module doc),
    then the head is trained full-batch with Adam for ``steps`` steps per lr.

    Returns:
        ``{"lr": chosen lr, "val_acc": its validation accuracy, "test_acc": its test accuracy,
        "val_by_lr": {lr: val_acc}}``.
    """
    _check_lrs(lrs)
    _check_pos_int("steps", steps)
    source.eval()
    with torch.no_grad():
        feats = [source.features(t) for t in (task.x_train, task.x_val, task.x_test)]
    dev = feats[0].device
    best = None
    val_by_lr = {}
    for lr in lrs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            head = nn.Linear(feats[0].shape[1], num_classes).to(dev)
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(head(feats[0]), task.y_train).backward()
            opt.step()
        with torch.no_grad():
            va = float((head(feats[1]).argmax(1) == task.y_val).float().mean())
            te = float((head(feats[2]).argmax(1) == task.y_test).float().mean())
        val_by_lr[lr] = va
        if best is None or va > best["val_acc"]:
            best = {"lr": lr, "val_acc": va, "test_acc": te}
    best["val_by_lr"] = val_by_lr
    return best


def run_arm(
    arm: str,
    source: nn.Module,
    config: SourceConfig,
    task: TargetTask,
    *,
    lrs: Sequence[float],
    steps: int,
    batch_size: int,
    seed: int,
    eval_every: int | None = None,
    num_classes: int = 5,
    cosine: bool = True,
) -> dict:
    """Train one arm on ``task`` once per lr in ``lrs``; keep the lr with the best validation
    accuracy after ``steps`` steps (the test set is never used for the choice).

    ``"probe"`` goes through :func:`linear_probe` (features computed once; ``batch_size`` and
    ``eval_every`` unused). ``"scratch"``/``"finetune"`` train the whole network with Adam
    (cosine-annealed lr unless ``cosine=False``).

    Returns:
        ``{"lr", "val_acc", "test_acc", "val_by_lr"}`` and, for trained arms, ``"curve"``: the
        chosen run's test accuracy ``{"step": [...], "test": [...]}`` (step 0, every
        ``eval_every`` steps and the last; only the last step if ``None``). Test accuracy is
        recorded for reporting only; the lr is chosen on validation accuracy after the last
        step.

    Raises:
        ValueError: unknown arm, empty/invalid ``lrs``, bad counts.
    """
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    lrs = _check_lrs(lrs)
    if arm == "probe":
        return linear_probe(source, task, lrs=lrs, steps=steps, seed=seed, num_classes=num_classes)
    best, val_by_lr = None, {}
    for lr in lrs:
        model = make_arm(arm, source, config, num_classes, seed=seed)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        hist = train_steps(
            model,
            task.x_train,
            task.y_train,
            optimizer=opt,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            eval_every=eval_every,
            evals={"test": lambda m: accuracy(m, task.x_test, task.y_test)},
            cosine=cosine,
        )
        val = accuracy(model, task.x_val, task.y_val)  # the choice sees validation only
        val_by_lr[lr] = val
        if best is None or val > best["val_acc"]:
            best = {
                "lr": lr,
                "val_acc": val,
                "test_acc": hist["test"][-1],
                "curve": {k: hist[k] for k in ("step", "test")},
            }
    best["val_by_lr"] = val_by_lr
    return best


def transfer_grid(
    sources: Sequence[nn.Module],
    config: SourceConfig,
    distances: Sequence[float],
    sizes: Sequence[int],
    seeds: Sequence[int],
    *,
    lrs: Mapping[str, Sequence[float]],
    steps: int,
    batch_size: int,
    probe_steps: int = 200,
    curve_cells: Iterable[tuple[float, int]] = (),
    eval_every: int = 5,
) -> dict:
    """Domain distance x target size grid of the three arms, over seeds.

    The learning rate of every arm is chosen per cell on the **validation** set of the first
    seed (from ``lrs[arm]``) and reused for the other seeds, which are then trained once per
    arm (cost: ``len(lrs) + len(seeds) - 1`` runs per arm and cell instead of
    ``len(lrs) * len(seeds)``). The linear probe is cheap, so it chooses its lr for every seed.

    Args:
        sources: one pretrained source model per seed (same order as ``seeds``).
        config: the source config (shape of the from-scratch models).
        distances: domain distances in [0, 1] (:func:`utils.transfer_tasks.scramble`).
        sizes: training images per class. seeds: one seed per repetition (>= 1).
        lrs: ``{"scratch": [...], "finetune": [...], "probe": [...]}`` candidate lrs.
        steps, batch_size: Adam steps and mini-batch size of the trained arms.
        probe_steps: full-batch Adam steps of the probe head.
        curve_cells: (distance, size) cells whose trained arms are also evaluated every
            ``eval_every`` steps (for steps-to-reach, T5).

    Returns:
        ``{"acc": {arm: array [D, S, n_seeds] test accuracy}, "lr": {arm: array [D, S]
        (first seed's choice; probe: [D, S, n_seeds])}, "curves": {(d, k): {arm: [curve per
        seed]}}}``; a curve is ``{"step", "test"}``.

    Raises:
        ValueError: mismatched lengths, missing arms in ``lrs``, invalid counts.
    """
    import numpy as np

    from ..tasks.transfer import target_task

    if len(sources) != len(seeds) or not seeds:
        raise ValueError(f"need one source model per seed, got {len(sources)} and {len(seeds)}")
    if not isinstance(lrs, Mapping) or set(lrs) != set(ARMS):
        raise ValueError(f"lrs must map each of {ARMS} to candidate lrs, got {lrs!r}")
    curve_cells = {(float(d), int(k)) for d, k in curve_cells}
    shape = (len(distances), len(sizes), len(seeds))
    acc = {a: np.full(shape, np.nan) for a in ARMS}
    chosen = {
        "scratch": np.full(shape[:2], np.nan),
        "finetune": np.full(shape[:2], np.nan),
        "probe": np.full(shape, np.nan),
    }
    curves: dict = {}
    for i, d in enumerate(distances):
        for j, k in enumerate(sizes):
            cell = (float(d), int(k))
            every = eval_every if cell in curve_cells else None
            if every:
                curves[cell] = {"scratch": [], "finetune": []}
            for s, (seed, src) in enumerate(zip(seeds, sources, strict=True)):
                task = target_task(d, k, seed=seed)
                task = task._replace(
                    **{
                        f: getattr(task, f).to(next(src.parameters()).device)
                        for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
                    }
                )
                for arm in ARMS:
                    cand = lrs[arm] if (s == 0 or arm == "probe") else [chosen[arm][i, j]]
                    res = run_arm(
                        arm,
                        src,
                        config,
                        task,
                        lrs=cand,
                        steps=probe_steps if arm == "probe" else steps,
                        batch_size=batch_size,
                        seed=seed,
                        eval_every=every,
                    )
                    acc[arm][i, j, s] = res["test_acc"]
                    if arm == "probe":
                        chosen[arm][i, j, s] = res["lr"]
                    elif s == 0:
                        chosen[arm][i, j] = res["lr"]
                    if every and arm != "probe":
                        curves[cell][arm].append(res["curve"])
    return {
        "acc": acc,
        "lr": chosen,
        "curves": curves,
        "distances": list(distances),
        "sizes": list(sizes),
    }


FORGET_ARMS = ("full", "full_small_backbone_lr", "partial", "frozen")


def forgetting_run(
    source: nn.Module,
    task: TargetTask,
    source_test: tuple[torch.Tensor, torch.Tensor],
    *,
    arm: str,
    lr: float,
    steps: int,
    batch_size: int,
    seed: int,
    eval_every: int,
    backbone_lr_scale: float = 0.1,
    partial_frozen: Sequence[str] = ("stem", "stage1", "stage2"),
) -> dict:
    """Fine-tune a copy of ``source`` on ``task`` and track source-task accuracy (forgetting).

    The source head is kept frozen beside the new target head (Li & Hoiem 2016,
    arXiv:1606.09282), so the source accuracy measures how much the shared backbone moved.

    Arms (``FORGET_ARMS``): ``"full"`` every part at ``lr``; ``"full_small_backbone_lr"``
    backbone at ``lr * backbone_lr_scale``, head at ``lr``; ``"partial"`` ``partial_frozen``
    parts frozen (BN in eval), the rest at ``lr``; ``"frozen"`` the whole backbone frozen
    (a linear probe trained by the same loop).

    Returns:
        ``{"step": [...], "source_acc": [...], "target_acc": [...]}`` (test accuracies in
        [0, 1] at step 0, every ``eval_every`` steps and at the end).

    Raises:
        ValueError: unknown arm, unknown part in ``partial_frozen``, bad lr or counts.
    """
    if arm not in FORGET_ARMS:
        raise ValueError(f"arm must be one of {FORGET_ARMS}, got {arm!r}")
    if not (isinstance(backbone_lr_scale, (int, float)) and 0 < backbone_lr_scale <= 1):
        raise ValueError(f"backbone_lr_scale must be in (0, 1], got {backbone_lr_scale!r}")
    model = copy.deepcopy(source)
    source_head = replace_head(model, int(task.y_train.max()) + 1, seed=seed)
    for p in source_head.parameters():
        p.requires_grad_(False)
    if arm == "partial":
        freeze(model, partial_frozen)
    elif arm == "frozen":
        freeze(model, backbone_parts(model))
    lr_map = {"head": lr}
    default = lr * backbone_lr_scale if arm == "full_small_backbone_lr" else lr
    opt = torch.optim.Adam(param_groups(model, lr_map, default_lr=default))
    xs, ys = source_test
    return train_steps(
        model,
        task.x_train,
        task.y_train,
        optimizer=opt,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        eval_every=eval_every,
        evals={
            "source_acc": lambda m: source_accuracy(m, source_head, xs, ys),
            "target_acc": lambda m: accuracy(m, task.x_test, task.y_test),
        },
    )
