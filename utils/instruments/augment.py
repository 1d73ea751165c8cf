"""Batch data augmentation for small image classifiers: shifts/crops, input noise, label
smoothing, MixUp and CutMix.

Everything works on whole batches with tensor ops (no per-image Python loop) and draws its
randomness from a caller-supplied ``torch.Generator``, so one seed reproduces one augmented
batch. Soft targets are float tensors of class probabilities ``[N, K]`` (rows sum to 1); train
against them with :func:`soft_cross_entropy`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _check_generator(generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _check_images(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a float > 0, got {type(alpha).__name__}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite float > 0, got {alpha}")
    return float(alpha)


def _check_soft(x: torch.Tensor, y) -> None:
    if not isinstance(y, torch.Tensor) or y.dim() != 2 or not y.is_floating_point():
        raise ValueError("y must be float soft targets of shape [N, K] (see one_hot/smooth_labels)")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}"
        )


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by an independent random (dy, dx) in [-max_shift, max_shift], zero fill.

    Equivalent to torchvision's ``RandomCrop(size=(H, W), padding=max_shift)`` (pad with zeros,
    crop a random window of the original size), done for the whole batch with one gather.

    Args:
        x: images [N, C, H, W], any float dtype (e.g. 28x28 MNIST digits).
        max_shift: largest shift in pixels, int >= 0 (0 returns a copy).
        generator: torch.Generator for the offsets.

    Returns:
        Tensor of the same shape, dtype and device as ``x``.

    Raises:
        TypeError: x not a tensor, generator not a torch.Generator, max_shift not an int.
        ValueError: x not 4-D, max_shift < 0 or larger than the image.
    """
    _check_images(x)
    _check_generator(generator)
    if isinstance(max_shift, bool) or not isinstance(max_shift, int):
        raise TypeError(f"max_shift must be an int, got {type(max_shift).__name__}")
    n, _, h, w = x.shape
    if not 0 <= max_shift < min(h, w):
        raise ValueError(f"max_shift must be in [0, {min(h, w) - 1}], got {max_shift}")
    if max_shift == 0:
        return x.clone()
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    off = torch.randint(0, 2 * s + 1, (2, n), generator=generator).to(x.device)
    rows = off[0][:, None] + torch.arange(h, device=x.device)  # [N, H]
    cols = off[1][:, None] + torch.arange(w, device=x.device)  # [N, W]
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def gaussian_noise(
    x: torch.Tensor,
    std: float,
    generator: torch.Generator,
    *,
    clip: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Add i.i.d. Gaussian noise N(0, std^2) to every input value (noise-robustness training).

    Args:
        x: inputs of any shape, float dtype. std: noise standard deviation in input units, >= 0.
        generator: torch.Generator for the noise (drawn on CPU, moved to x's device).
        clip: optional (low, high) range to clamp the result to, e.g. (0, 1) for unit pixels.

    Returns:
        Tensor of the same shape, dtype and device as ``x``.

    Raises:
        TypeError: x not a float tensor or generator of the wrong type. ValueError: std < 0.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point torch.Tensor")
    _check_generator(generator)
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite float >= 0, got {std!r}")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    out = x + std * noise
    return out.clamp(*clip) if clip is not None else out


def one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer labels [N] -> one-hot soft targets [N, num_classes] of ``dtype``."""
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise ValueError("y must be an int64 tensor of shape [N]")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return F.one_hot(y, num_classes).to(dtype)


def smooth_labels(y: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """Label-smoothing targets (Szegedy et al. 2016, arXiv:1512.00567).

    ``(1 - eps) * one_hot(y) + eps / K``: the same target that
    ``F.cross_entropy(logits, y, label_smoothing=eps)`` uses internally, so
    ``soft_cross_entropy(logits, smooth_labels(y, K, eps))`` equals it.

    Args:
        y: int64 labels [N] in 0..K-1. num_classes: K >= 2. eps: smoothing in [0, 1].

    Returns:
        float32 tensor [N, K]; rows sum to 1.

    Raises:
        ValueError: bad labels, K or eps outside [0, 1].
    """
    if not (isinstance(eps, (int, float)) and 0.0 <= eps <= 1.0):
        raise ValueError(f"eps must be a float in [0, 1], got {eps!r}")
    return (1.0 - eps) * one_hot(y, num_classes) + eps / num_classes


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k target_k * log_softmax(logits)_k``.

    Args:
        logits: [N, K] float. target: [N, K] float class probabilities.

    Returns:
        scalar tensor. Same as ``F.cross_entropy(logits, target)`` with probability targets.
    """
    if logits.shape != target.shape or logits.dim() != 2:
        raise ValueError(
            f"logits and target must both be [N, K], got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _beta(alpha: float, generator: torch.Generator) -> float:
    # torch.distributions.Beta takes no generator; derive a numpy stream from ours instead.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixUp (Zhang et al. 2018, arXiv:1710.09412) of one batch with a shuffled copy of itself.

    Draws ``lam ~ Beta(alpha, alpha)`` once per batch (as in the paper's code) and a random
    permutation ``p``; returns ``lam * x + (1 - lam) * x[p]`` and the same mix of the targets.

    Args:
        x: inputs [N, ...] float. y: soft targets [N, K] float (one_hot or smooth_labels).
        alpha: Beta concentration, float > 0 (the paper uses 0.1-0.4 on ImageNet, 1 on CIFAR).
        generator: torch.Generator for lam and the permutation.

    Returns:
        (x_mixed, y_mixed, lam): same shapes and dtypes as x and y; rows of y_mixed sum to 1.

    Raises:
        TypeError/ValueError: alpha not a finite number > 0; y not [N, K] float; sizes differ.
    """
    alpha = _check_alpha(alpha)
    _check_generator(generator)
    _check_soft(x, y)
    lam = _beta(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm], lam


def cutmix(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019, arXiv:1905.04899): paste a box from a shuffled copy of the batch.

    ``lam ~ Beta(alpha, alpha)``; a box of side ``(H sqrt(1-lam), W sqrt(1-lam))`` centred at a
    uniform random pixel (clipped at the border, as in the authors' code) is copied from
    ``x[p]`` into every image. The label weight is then recomputed from the clipped box, so the
    weight of the pasted image's label equals the pasted area fraction exactly.

    Args:
        x: images [N, C, H, W] float. y: soft targets [N, K] float.
        alpha: Beta concentration, float > 0 (the paper uses 1.0).
        generator: torch.Generator for lam, the box and the permutation.

    Returns:
        (x_mixed, y_mixed, lam) with ``lam`` = 1 - pasted area / (H W); same shapes/dtypes.

    Raises:
        TypeError/ValueError: as :func:`mixup`, and x not 4-D.
    """
    alpha = _check_alpha(alpha)
    _check_generator(generator)
    _check_images(x)
    _check_soft(x, y)
    n, _, h, w = x.shape
    lam = _beta(alpha, generator)
    perm = torch.randperm(n, generator=generator).to(x.device)
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = (int(v) for v in torch.randint(0, 10**9, (2,), generator=generator))
    cy, cx = cy % h, cx % w
    y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
    return out, lam * y + (1 - lam) * y[perm], lam
