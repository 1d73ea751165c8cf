"""Toy sequence tasks for attention experiments, and training several seeds at once.

Tasks return int64 token ids ``x`` [n, L] and per-token targets ``y`` [n, L] or [n, L, R]
(R relations); target ``IGNORE`` (-100, as in ``F.cross_entropy``) marks positions without one.

* :func:`previous_token`: y[i] = x[i-1] — needs order (a relative position).
* :func:`two_relations`: y[i] = (x[i-1], x[0]) — two different relations at every position,
  the toy task for head specialisation (a previous-token head and a first-token head; cf. the
  heads Clark et al. 2019, arXiv:1906.04341, find in BERT).

:func:`train_seeds` trains one copy of a model per seed (its own init, data and batch order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


def _check_sizes(n: int, length: int, vocab: int) -> None:
    for name, v, lo in (("n", n, 1), ("length", length, 2), ("vocab", vocab, 2)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")


def previous_token(
    n: int, length: int, vocab: int, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens and the previous-token target.

    Returns:
        x [n, length] int64 in [0, vocab); y [n, length] int64 with y[:, i] = x[:, i-1] and
        y[:, 0] = IGNORE.
    """
    _check_sizes(n, length, vocab)
    x = torch.randint(vocab, (n, length), generator=generator)
    y = torch.full_like(x, IGNORE)
    y[:, 1:] = x[:, :-1]
    return x, y


def two_relations(
    n: int, length: int, vocab: int, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens with two targets per position: the previous token and the first token.

    Returns:
        x [n, length] int64; y [n, length, 2] int64: y[..., 0] = previous token (IGNORE at
        position 0), y[..., 1] = x[:, 0].
    """
    x, prev = previous_token(n, length, vocab, generator=generator)
    first = x[:, :1].expand(n, length)
    return x, torch.stack([prev, first], dim=-1)


def multi_target_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over tokens (and relations), ignoring ``IGNORE`` targets.

    Args:
        logits: [..., L, C] for y [..., L], or [..., L, R*V] for y [..., L, R] (relation r
            uses logits[..., r*V:(r+1)*V]).
    """
    if y.dim() == logits.dim():
        r = y.shape[-1]
        logits = logits.unflatten(-1, (r, logits.shape[-1] // r))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def accuracy(logits: torch.Tensor, y: torch.Tensor, positions: slice | None = None) -> torch.Tensor:
    """Accuracy over non-ignored targets: a scalar for y [n, L], one per relation for y [n, L, R].

    ``positions`` restricts to a slice of positions (e.g. ``slice(16, None)``).
    """
    if y.dim() == logits.dim():
        r = y.shape[-1]
        logits = logits.unflatten(-1, (r, logits.shape[-1] // r))
    else:
        logits, y = logits.unsqueeze(-2), y.unsqueeze(-1)
    if positions is not None:
        logits, y = logits[:, positions], y[:, positions]
    valid = y != IGNORE
    hit = (logits.argmax(-1) == y) & valid
    acc = hit.sum((0, 1)).float() / valid.sum((0, 1)).clamp_min(1)
    return acc.squeeze(0) if acc.numel() == 1 else acc


def train_seeds(
    build: Callable[[], nn.Module],
    seeds: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-2,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = multi_target_loss,
    batch_size: int | None = 64,
    weight_decay: float = 0.0,
) -> tuple[list[nn.Module], torch.Tensor]:
    """Train one model per seed with AdamW on its own data; return the models and loss curves.

    Args:
        build: returns a fresh model; called after ``torch.manual_seed(seed)`` for each seed.
        seeds: one int per model. x, y: per-seed training data stacked on dim 0: [S, n, ...].
        steps: AdamW steps. lr, weight_decay: AdamW hyper-parameters.
        batch_size: a random subset of this size per step (drawn with a generator seeded by the
            run's seed); None = full batch.
        loss_fn: ``loss_fn(model(xb), yb)``, mean-reduced.

    Returns:
        (trained models in eval mode, training loss curve [steps, S]).

    Raises:
        ValueError: data not stacked per seed, or bad step/batch sizes.

    (Sequential on purpose: for models this small, ``torch.func.vmap`` over stacked parameters
    was measured slower on CPU than a plain loop.)
    """
    s = len(seeds)
    if x.shape[0] != s or y.shape[0] != s:
        raise ValueError(
            f"x and y must be stacked per seed [S={s}, n, ...], got {tuple(x.shape)}"
            f" and {tuple(y.shape)}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    n = x.shape[1]
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] or None, got {batch_size}")
    models, curve = [], torch.empty(steps, s)
    for i, seed in enumerate(seeds):
        torch.manual_seed(int(seed))
        model = build()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        g = torch.Generator().manual_seed(int(seed))
        model.train()
        for step in range(steps):
            if batch_size is None:
                xb, yb = x[i], y[i]
            else:
                idx = torch.randint(n, (batch_size,), generator=g)
                xb, yb = x[i, idx], y[i, idx]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curve[step, i] = loss.detach()
        models.append(model.eval())
    return models, curve


def stacked(
    task: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    seeds: Sequence[int],
    n: int,
    length: int,
    vocab: int,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-seed data of a task stacked on dim 0: x [S, n, length], y [S, n, length(, R)]."""
    pairs = [task(n, length, vocab, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return (
        torch.stack([p[0] for p in pairs]).to(device),
        torch.stack([p[1] for p in pairs]).to(device),
    )


@torch.no_grad()
def head_ablation(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: int = 0
) -> torch.Tensor:
    """Accuracy with each head of ``layer`` removed in turn (Michel et al. 2019, arXiv:1905.10650).

    ``model`` must accept ``head_mask`` [num_layers, H] (as ``utils.attention.TinyTransformer``).

    Returns:
        [H + 1, R] float: row 0 the full model, row 1 + h the model without head h; one column
        per relation (R = 1 for y [n, L]).
    """
    hm = torch.ones(model.num_layers, model.num_heads, device=x.device)
    rows = [accuracy(model(x, head_mask=hm), y).reshape(-1)]
    for h in range(model.num_heads):
        m = hm.clone()
        m[layer, h] = 0.0
        rows.append(accuracy(model(x, head_mask=m), y).reshape(-1))
    return torch.stack(rows).cpu()


def offset_attention(
    weights: torch.Tensor, offset: int | None = None, key: int | None = None
) -> torch.Tensor:
    """Mean attention per head on the key at ``query + offset`` or on the fixed position ``key``.

    Args:
        weights: [N, H, L, L] attention weights.
        offset: relative key position (e.g. -1: the previous token); queries without such a key
            are skipped. key: absolute key position (e.g. 0: the first token). Give one.

    Returns:
        [H] mean weight in [0, 1].
    """
    if (offset is None) == (key is None):
        raise ValueError("give exactly one of offset or key")
    if key is not None:
        return weights[..., key].mean(dim=(0, 2))
    return torch.diagonal(weights, offset=offset, dim1=-2, dim2=-1).mean(dim=(0, 2))
