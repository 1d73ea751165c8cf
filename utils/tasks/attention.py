"""Toy sequence tasks of notebook 04 (attention scaling): data sets and their loss, nothing else.

Tasks return int64 token ids ``x`` [n, L] and per-token targets ``y`` [n, L] or [n, L, R]
(R relations); target ``IGNORE`` (-100, as in ``F.cross_entropy``) marks positions without one.

* :func:`previous_token`: y[i] = x[i-1] — needs order (a relative position).
* :func:`two_relations`: y[i] = (x[i-1], x[0]) — two different relations at every position,
  the toy task for head specialisation (a previous-token head and a first-token head; cf. the
  heads Clark et al. 2019, arXiv:1906.04341, find in BERT).
* :func:`multi_target_loss`: the tasks' objective (mean token cross-entropy over all relations).
* :func:`stacked`: one independent data set per seed, stacked on dim 0.

How the models are trained (``utils.core.train.fit``), scored and lesioned is written in the
notebook itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

IGNORE = -100


def _check_sizes(n: int, length: int, vocab: int) -> None:
    for name, v, lo in (("n", n, 1), ("length", length, 2), ("vocab", vocab, 2)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")


def previous_token(
    n: int, length: int, vocab: int, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens and the previous-token target.

    Args:
        n: sequences (>= 1). length: tokens per sequence (>= 2). vocab: token ids (>= 2).
        generator: the ``torch.Generator`` that draws the tokens (uniform over the vocabulary).

    Returns:
        x [n, length] int64 in [0, vocab); y [n, length] int64 with y[:, i] = x[:, i-1] and
        y[:, 0] = IGNORE.

    Raises:
        ValueError: a size that is not an int in range (the message names it).
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

    Args: as :func:`previous_token`.

    Returns:
        x [n, length] int64; y [n, length, 2] int64: y[..., 0] = previous token (IGNORE at
        position 0), y[..., 1] = x[:, 0].

    Raises:
        ValueError: as :func:`previous_token`.
    """
    x, prev = previous_token(n, length, vocab, generator=generator)
    first = x[:, :1].expand(n, length)
    return x, torch.stack([prev, first], dim=-1)


def multi_target_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over every (token, relation) target that is not ``IGNORE``.

    Args:
        logits: float [..., L, C] for y [..., L] (one relation, C classes), or [..., L, R*V]
            for y [..., L, R]: relation r reads ``logits[..., r*V:(r+1)*V]``.
        y: int64 targets, ``IGNORE`` where a position has none.

    Returns:
        scalar tensor: ``F.cross_entropy(..., ignore_index=IGNORE)`` over the flattened targets
        (every valid target weighs the same, whatever its relation).

    Raises:
        ValueError: shapes that do not match, or a last logits dim not divisible by R.
    """
    if y.dim() == logits.dim():
        r = y.shape[-1]
        if logits.shape[:-1] != y.shape[:-1] or logits.shape[-1] % r:
            raise ValueError(
                f"logits [..., L, R*V] and y [..., L, R] must match, got {tuple(logits.shape)} "
                f"and {tuple(y.shape)}"
            )
        logits = logits.unflatten(-1, (r, logits.shape[-1] // r))
    elif y.dim() != logits.dim() - 1 or logits.shape[:-1] != y.shape:
        raise ValueError(
            f"logits [..., L, C] and y [..., L] must match, got {tuple(logits.shape)} and "
            f"{tuple(y.shape)}"
        )
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


def stacked(
    task: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    seeds: Sequence[int],
    n: int,
    length: int,
    vocab: int,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One data set of ``task`` per seed, stacked on dim 0.

    Data set i is ``task(n, length, vocab, generator=torch.Generator().manual_seed(seeds[i]))``.

    Returns:
        x [S, n, length], y [S, n, length(, R)] on ``device`` (S = len(seeds)).

    Raises:
        ValueError: no seeds, or sizes as :func:`previous_token`.
    """
    if len(seeds) == 0:
        raise ValueError("seeds must hold at least one seed")
    pairs = [task(n, length, vocab, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return (
        torch.stack([p[0] for p in pairs]).to(device),
        torch.stack([p[1] for p in pairs]).to(device),
    )
