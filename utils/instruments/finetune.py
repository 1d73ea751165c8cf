"""Fine-tuning mechanics for :class:`utils.core.models.ResNet`: freezing by part, frozen
BatchNorm, per-part learning rates, head replacement, a linear probe, and steps-to-reach.

These are instruments, not a lesson: notebook 03 writes its own loops (the transfer grid, the
forgetting runs, the learning-rate choice on validation) and trains every model with
:func:`utils.core.train.fit`, passing ``set_mode=finetune.train_mode``.

Parts are the ResNet's named children: ``stem``, ``stage1`` .. ``stageK`` and ``head``
(:func:`part_names`). The "backbone" is every part but the head.

**BatchNorm in a frozen part is put in eval mode** (it normalises with its stored running
mean/variance and stops updating them). Freezing only the affine weights is not enough: in
train mode a BN layer still normalises with the current batch's statistics and overwrites its
running statistics with the target data's, so a "frozen" part would still change its function.
With eval-mode BN a frozen part is a fixed function, a linear probe equals training a logistic
regression on precomputed features (tested), and the frozen part cannot forget. This is the
usual practice in detection backbones ("frozen BN"); the alternative (re-estimating the
statistics on the target) is itself a form of adaptation. :func:`train_mode` applies the rule;
``train.fit(..., set_mode=finetune.train_mode)`` calls it wherever the loop would call
``model.train()``.

Sources: Yosinski et al. 2014 (arXiv:1411.1792), fine-tuning vs frozen features; Li & Hoiem
2016 (arXiv:1606.09282), forgetting of the source task during fine-tuning, a reduced lr for
the shared layers; Kornblith et al. 2019 (arXiv:1805.08974), linear probe vs fine-tuning.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from ..core import train

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def part_names(model: nn.Module) -> list[str]:
    """Names of the addressable parts: ``["stem", "stage1", ..., "head"]`` for a ResNet.

    Raises:
        TypeError: if ``model`` lacks ``stem``/``head``/``stage_names`` (not a ResNet).
    """
    if not all(hasattr(model, a) for a in ("stem", "head", "stage_names")):
        raise TypeError(
            f"model must be a utils.core.models.ResNet (parts stem, stage*, head), "
            f"got {type(model).__name__}"
        )
    return ["stem", *model.stage_names, "head"]


def backbone_parts(model: nn.Module) -> list[str]:
    """Every part but the head, e.g. ``["stem", "stage1", "stage2", "stage3"]``."""
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
        model: a :class:`utils.core.models.ResNet`.
        parts: a part name or names (see :func:`part_names`), e.g. ``["stem", "stage1"]``;
            an empty list freezes nothing.

    Returns:
        ``model`` (for chaining).

    Raises:
        TypeError: if ``model`` is not a ResNet or a part is not a str.
        ValueError: for an unknown part name (the message lists the model's parts).
    """
    return _set_frozen(model, parts, True)


def unfreeze(model: nn.Module, parts: str | Iterable[str]) -> nn.Module:
    """Undo :func:`freeze` for ``parts`` (their BatchNorm follows the model's train/eval mode)."""
    return _set_frozen(model, parts, False)


def frozen_parts(model: nn.Module) -> list[str]:
    """Parts whose parameters are all frozen (``requires_grad=False``), in part order."""
    return [
        n
        for n in part_names(model)
        if not any(p.requires_grad for p in getattr(model, n).parameters())
    ]


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, then every BatchNorm whose parameters are all frozen back to eval.

    Pass it to :func:`utils.core.train.fit` as ``set_mode=finetune.train_mode``. Works on any
    module (not only a ResNet). Returns ``model``.
    """
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
        model: a ResNet. lrs: part name -> lr (finite, > 0).
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
        if not _is_pos_float(lr):
            raise ValueError(f"lr of {name!r} must be a finite float > 0, got {lr!r}")
    groups = []
    for name in part_names(model):
        lr = lrs.get(name, default_lr)
        params = [p for p in getattr(model, name).parameters() if p.requires_grad]
        if lr is not None and params:
            groups.append({"params": params, "lr": float(lr), "name": name})
    return groups


def _is_pos_float(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _check_pos_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def replace_head(model: nn.Module, num_classes: int, *, seed: int) -> nn.Module:
    """Put a new seeded ``Linear(feature_dim, num_classes)`` head on ``model``; return the old.

    The new head is initialised by PyTorch's default ``nn.Linear`` init under
    ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the global RNG is left as it
    was). The old head is returned so the source task can still be scored (forgetting, T3).

    Raises:
        TypeError: for a non-ResNet. ValueError: ``num_classes`` not an int >= 1.
    """
    part_names(model)
    _check_pos_int("num_classes", num_classes)
    old = model.head
    dev = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model.head = nn.Linear(model.feature_dim, num_classes).to(dev)
    return old


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def _restore(model: nn.Module, modes: list[bool]) -> None:
    for m, mode in zip(model.modules(), modes, strict=True):
        m.training = mode


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """The model's pooled features ``model.features(x)`` in eval mode, without gradients.

    Args:
        model: a ResNet (anything with ``.features``). x: images [N, C, H, W].
        batch_size: chunk size (memory only).

    Returns:
        float tensor [N, feature_dim] on the model's device. Every module's train/eval flag is
        restored afterwards (frozen BN stays in eval mode).

    Raises:
        TypeError: model without ``features`` or x not a tensor.
    """
    if not hasattr(model, "features"):
        raise TypeError(f"model must have a .features method, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    _check_pos_int("batch_size", batch_size)
    modes = _modes(model)
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat(
        [model.features(x[i : i + batch_size].to(dev)) for i in range(0, len(x), batch_size)]
    )
    _restore(model, modes)
    return out


@torch.no_grad()
def head_accuracy(model: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of ``head`` on the model's current features of ``x``.

    The forgetting measure of Li & Hoiem 2016 (arXiv:1606.09282): keep the source head,
    frozen, beside the new target head; any drop of its accuracy on the source test set comes
    from the shared backbone moving during fine-tuning. Features are taken in eval mode
    (:func:`features`); every module's mode is restored afterwards.

    Args:
        x: images [N, C, H, W]; y: int64 labels [N] in ``0 .. head.out_features - 1``.

    Raises:
        ValueError: x and y of different length or empty.
    """
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must have the same non-zero length, got {len(x)}, {len(y)}")
    logits = head(features(model, x))
    return float((logits.argmax(1) == y.to(logits.device)).float().mean())


def linear_probe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    lr: float,
    steps: int,
    seed: int,
) -> tuple[nn.Module, dict]:
    """A linear probe: a copy of ``model`` with its backbone frozen and a new head trained.

    The backbone is frozen with eval-mode BatchNorm (:func:`freeze`), so it is a fixed
    function and its features can be computed once (:func:`features`). The new head
    (:func:`replace_head`, seeded) is then trained with full-batch Adam (Kingma & Ba 2014,
    arXiv:1412.6980) for ``steps`` steps of cross-entropy through :func:`utils.core.train.fit`
    on those features: logistic regression on frozen features (Kornblith et al. 2019,
    arXiv:1805.08974). The result equals training the frozen copy end to end with
    ``train.fit(..., batch_size=N, set_mode=train_mode)`` (tested), only faster.

    Args:
        model: the pretrained ResNet (not modified). x: images [N, C, H, W];
            y: int64 labels [N] in ``0 .. num_classes - 1``.
        num_classes: outputs of the new head (>= 1). lr: Adam lr (> 0). steps: >= 1.
        seed: seed of the head init and of fit's (irrelevant, full-batch) example order.

    Returns:
        ``(probe, history)``: the probe model (frozen backbone, trained head; same device as
        ``model``) and ``train.fit``'s history of the head.

    Raises:
        TypeError/ValueError: non-ResNet, bad ``num_classes``/``lr``/``steps``.
    """
    if not _is_pos_float(lr):
        raise ValueError(f"lr must be a finite float > 0, got {lr!r}")
    _check_pos_int("steps", steps)
    probe = copy.deepcopy(model)
    replace_head(probe, num_classes, seed=seed)
    freeze(probe, backbone_parts(probe))
    feats = features(probe, x)
    opt = torch.optim.Adam(probe.head.parameters(), lr=lr)
    hist = train.fit(
        probe.head,
        feats,
        y,
        optimizer=opt,
        steps=steps,
        batch_size=len(feats),
        seed=seed,
        epoch_evals=False,
        progress=False,
    )
    return probe.eval(), hist


def steps_to_reach(
    steps: Sequence[int], curve: Sequence[float], target: float, *, held: bool = False
) -> float:
    """First step at which ``curve`` reaches ``target`` (>=); ``inf`` if it never does.

    With ``held=True``, the first step from which ``curve`` stays at or above ``target`` to its
    end (``inf`` if its last value is below). A noisy curve touches a level by chance more often
    the more often it is evaluated, so the first crossing (the default) is the optimistic reading.

    Args:
        steps: evaluation steps, increasing. curve: the metric at those steps (same length).
        target: the level to reach (e.g. the from-scratch model's final accuracy).
        held: count a step only if the curve never falls below ``target`` afterwards.

    Raises:
        ValueError: for sequences of different length or empty.
    """
    if len(steps) != len(curve) or not len(steps):
        raise ValueError(
            f"steps and curve must be non-empty and of equal length, got "
            f"{len(steps)} and {len(curve)}"
        )
    if held:
        below = [i for i, v in enumerate(curve) if not v >= target]
        if not below:
            return float(steps[0])
        return math.inf if below[-1] == len(curve) - 1 else float(steps[below[-1] + 1])
    for s, v in zip(steps, curve, strict=True):
        if v >= target:
            return float(s)
    return math.inf
