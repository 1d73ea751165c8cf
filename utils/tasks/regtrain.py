"""A small training loop for regularisation experiments on soft targets.

Unlike :func:`utils.train.fit` this loop lets a batch transform rewrite inputs *and* targets
(MixUp, CutMix, shifts, input noise), trains on soft targets (label smoothing), can add an L2
penalty to the loss, and evaluates several named sets after chosen epochs. Also: label noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..instruments import augment

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]


def corrupt_labels(
    y: torch.Tensor, fraction: float, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Symmetric label noise: a random ``fraction`` of labels replaced by a different class.

    Args:
        y: int64 labels [N]. fraction: in [0, 1]. num_classes: K >= 2.
        generator: torch.Generator for which labels flip and to what.

    Returns:
        int64 tensor [N]; exactly ``round(fraction * N)`` labels differ from ``y``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    n = y.shape[0]
    idx = torch.randperm(n, generator=generator)[: round(fraction * n)]
    shift = torch.randint(1, num_classes, (idx.numel(),), generator=generator)
    out = y.clone()
    out[idx] = (y[idx] + shift) % num_classes
    return out


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities [N, K] of ``model`` in eval mode (mode restored)."""
    was = model.training
    model.eval()
    p = torch.softmax(model(x), dim=1)
    model.train(was)
    return p


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """0.5 * sum of squared weights of all parameters with dim >= 2 (biases excluded)."""
    return 0.5 * sum((p**2).sum() for p in model.parameters() if p.dim() >= 2)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int | None = None,
    targets: torch.Tensor | None = None,
    transform: Transform | None = None,
    l2: float = 0.0,
    seed: int = 0,
    evals: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    eval_every: int = 1,
) -> dict[str, list[float]]:
    """Train ``model`` with soft-target cross-entropy; evaluate named sets along the way.

    Args:
        model: classifier returning logits [B, K]. x: inputs [N, ...]; y: int64 labels [N].
        optimizer: built by the caller on ``model.parameters()``.
        epochs: passes over the data (>= 1). batch_size: default N (full batch).
        targets: soft targets [N, K] (e.g. ``augment.smooth_labels``); default one-hot of y.
        transform: ``f(xb, tb, generator) -> (xb, tb, ...)`` applied to every batch (extra
            return values are ignored), e.g. ``lambda x, t, g: augment.mixup(x, t, 0.2, g)``.
        l2: coefficient of :func:`l2_penalty` added to the loss (L2 regularisation in the loss).
        seed: seeds batch order and the transform's generator.
        evals: name -> (x, y) evaluated (loss on hard labels, accuracy) every ``eval_every``
            epochs and after the last one.

    Returns:
        dict: ``epoch`` list and ``<name>_loss`` / ``<name>_acc`` lists per evaluated set.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    n = x.shape[0]
    k = int(y.max()) + 1 if targets is None else targets.shape[1]
    t = augment.one_hot(y, max(k, 2)) if targets is None else targets
    bs = n if batch_size is None else batch_size
    g = torch.Generator().manual_seed(int(seed))
    hist: dict[str, list[float]] = {"epoch": []}
    evals = dict(evals or {})
    for name in evals:
        hist[f"{name}_loss"], hist[f"{name}_acc"] = [], []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=g) if bs < n else torch.arange(n)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            xb, tb = x[idx], t[idx]
            if transform is not None:
                xb, tb = transform(xb, tb, g)[:2]
            loss = augment.soft_cross_entropy(model(xb), tb)
            if l2:
                loss = loss + l2 * l2_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if evals and (epoch % eval_every == 0 or epoch == epochs):
            hist["epoch"].append(epoch)
            with torch.no_grad():
                model.eval()
                for name, (xe, ye) in evals.items():
                    out = model(xe)
                    hist[f"{name}_loss"].append(float(nn.functional.cross_entropy(out, ye)))
                    hist[f"{name}_acc"].append(float((out.argmax(1) == ye).float().mean()))
    return hist


def early_stop_epoch(val_losses, patience: int) -> tuple[int, int]:
    """Early stopping on a validation curve (Prechelt 1998; Goodfellow et al. 2016, sec. 7.8).

    Walks the curve epoch by epoch, remembering the best (lowest) value; stops when
    ``patience`` epochs pass without improvement and returns the best epoch so far (the
    checkpoint one would restore).

    Args:
        val_losses: sequence of validation losses, index 0 = epoch 1.
        patience: epochs without improvement before stopping, int >= 1.

    Returns:
        (chosen_epoch, stop_epoch), 1-based; ``stop_epoch`` = len(val_losses) if it never stops.
    """
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    vals = [float(v) for v in val_losses]
    if not vals:
        raise ValueError("val_losses must not be empty")
    best, best_epoch = float("inf"), 1
    for epoch, v in enumerate(vals, start=1):
        if v < best:
            best, best_epoch = v, epoch
        elif epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(vals)


@torch.no_grad()
def ablated_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, fraction: float, generator: torch.Generator
) -> float:
    """Accuracy when a random ``fraction`` of every ReLU layer's units is zeroed at test time
    (survivors scaled by 1/(1-fraction), as inverted dropout does): a probe of co-adaptation."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")

    def hook(_module, _inp, out):
        keep = (torch.rand(out.shape[1:], generator=generator) >= fraction).to(out)
        return out * keep / (1.0 - fraction)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        was = model.training
        model.eval()
        acc = float((model(x).argmax(1) == y).float().mean())
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    return acc
