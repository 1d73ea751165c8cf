"""Attention from scratch: scaled dot-product attention, multi-head attention, positional
encodings and a tiny transformer encoder for toy tasks.

Every piece mirrors a library function and is tested against it in ``tests/test_attention.py``:

* :func:`scaled_dot_product_attention` == ``torch.nn.functional.scaled_dot_product_attention``
  (and also returns the attention weights);
* :class:`MultiHeadAttention` == ``torch.nn.MultiheadAttention(batch_first=True)`` loaded with the
  same state dict (same parameter names), with per-head weights and a per-head gate for head
  ablation (Michel et al. 2019, arXiv:1905.10650);
* :func:`sinusoidal_encoding` is the table of Vaswani et al. 2017 (arXiv:1706.03762, sec. 3.5).

Mask conventions follow the library each piece mirrors, which differ (a classic trap):
``scaled_dot_product_attention`` takes a bool mask where **True = may attend**;
``MultiHeadAttention`` takes ``attn_mask``/``key_padding_mask`` where **True = masked out**.
Float masks are added to the scores in both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PE_KINDS = ("none", "sinusoidal", "learned")
PE_COMBINES = ("add", "concat")
POOLS = ("none", "mean", "cls")


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(name: str, t, min_dim: int = 2) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have >= {min_dim} dims, got shape {_shape(t)}")


def _mask_to_additive(
    mask: torch.Tensor, name: str, true_means_allowed: bool, dtype: torch.dtype
) -> torch.Tensor:
    """Turn a bool or float mask into an additive float mask (0 or -inf for bool masks)."""
    if mask.dtype == torch.bool:
        blocked = ~mask if true_means_allowed else mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            blocked, float("-inf")
        )
    if mask.is_floating_point():
        return mask.to(dtype)
    raise TypeError(f"{name} must be a bool or floating-point tensor, got dtype {mask.dtype}")


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scale + mask) V, returning the output and the attention weights.

    Args:
        query: [..., L, E] float. key: [..., S, E] (same E: the head dimension d_k).
        value: [..., S, Ev]. Leading (batch, head) dims must broadcast.
        attn_mask: optional, broadcastable to [..., L, S]. Bool: **True = may attend** (as in
            ``F.scaled_dot_product_attention``); float: added to the scores (e.g. -inf or
            ALiBi-style biases).
        scale: multiplier of the scores; default 1/sqrt(E) (Vaswani et al. 2017,
            arXiv:1706.03762, eq. 1). ``scale=1.0`` gives unscaled dot-product attention.
        is_causal: mask out keys after the query position (needs no ``attn_mask``).

    Returns:
        (output [..., L, Ev], weights [..., L, S]); each row of weights sums to 1 (NaN for a
        row whose keys are all masked, like the library's math kernel).

    Raises:
        TypeError: non-tensor inputs or a mask that is neither bool nor float.
        ValueError: query/key head dims differ, key/value lengths differ, leading dims do not
            broadcast, the mask does not broadcast to [..., L, S], or both ``attn_mask`` and
            ``is_causal`` are given. Messages give the shapes received and expected.

    Mirrors ``torch.nn.functional.scaled_dot_product_attention`` (dropout left out).
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        _check_tensor(name, t)
    L, E = query.shape[-2:]
    S = key.shape[-2]
    if key.shape[-1] != E:
        raise ValueError(
            f"query and key must share the head dim E: query {_shape(query)} "
            f"[..., L, E], key {_shape(key)}, expected key [..., S, {E}]"
        )
    if value.shape[-2] != S:
        raise ValueError(
            f"key and value must have the same length S: key {_shape(key)}, "
            f"value {_shape(value)}, expected value [..., {S}, Ev]"
        )
    try:
        torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"leading dims of query {_shape(query)}, key {_shape(key)}, value "
            f"{_shape(value)} do not broadcast"
        ) from None
    if scale is None:
        scale = 1.0 / math.sqrt(E)
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        if attn_mask is not None:
            raise ValueError("give either attn_mask or is_causal=True, not both")
        attn_mask = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor):
            raise TypeError(f"attn_mask must be a tensor, got {type(attn_mask).__name__}")
        try:
            torch.broadcast_shapes(attn_mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"attn_mask of shape {_shape(attn_mask)} does not broadcast to the "
                f"scores [..., L, S] = {_shape(scores)}"
            ) from None
        scores = scores + _mask_to_additive(attn_mask, "attn_mask", True, scores.dtype)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention from scratch, parameter-compatible with ``nn.MultiheadAttention``.

    ``MultiHeadAttention(E, H).load_state_dict(torch_mha.state_dict())`` works (same names:
    ``in_proj_weight`` [3E, E], ``in_proj_bias`` [3E], ``out_proj.weight``/``.bias``) and the two
    then compute the same thing (batch_first layout). Vaswani et al. 2017, arXiv:1706.03762, 3.2.2.

    Args:
        embed_dim: model width E. num_heads: H; E must be divisible by H (head dim d_k = E/H).
        bias: use biases in the projections.
        scale: score multiplier; default 1/sqrt(d_k). ``1.0`` = unscaled (for A1).
        dropout: dropout on the attention weights (training mode only).

    Raises:
        ValueError: non-positive sizes, or ``embed_dim`` not divisible by ``num_heads``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        bias: bool = True,
        scale: float | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, v in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads "
                f"({num_heads}); got head dim {embed_dim / num_heads:g}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = scale
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The library's initialisation: Xavier-uniform in_proj, zero biases."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [N, T, E] -> [N, H, T, d_k]
        n, t, _ = x.shape
        return x.view(n, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        average_attn_weights: bool = True,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (self-attention when they are omitted).

        Args:
            query: [N, L, E]; key, value: [N, S, E] (default: ``query``).
            key_padding_mask: [N, S]; bool **True = padding, ignored**, or float (added).
            attn_mask: [L, S] or [N*H, L, S]; bool **True = not allowed**, or float (added).
            need_weights: return the attention weights (else ``None``).
            average_attn_weights: average the weights over heads ([N, L, S]) or return them
                per head ([N, H, L, S]).
            head_mask: optional [H] gate multiplying each head's output before ``out_proj``
                (0 removes a head: head ablation, Michel et al. 2019, arXiv:1905.10650).

        Returns:
            (output [N, L, E], weights or None).

        Raises:
            ValueError: wrong ranks or sizes; the message gives received and expected shapes.
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            _check_tensor(name, t, 3)
            if t.dim() != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{name} must be [N, T, {self.embed_dim}] (batch_first), got {_shape(t)}"
                )
        n, L, _ = query.shape
        S = key.shape[1]
        if key.shape[0] != n or value.shape[0] != n or value.shape[1] != S:
            raise ValueError(
                f"query {_shape(query)}, key {_shape(key)}, value {_shape(value)}: "
                f"expected key and value [{n}, S, {self.embed_dim}] with equal S"
            )
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (
            self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        )
        q = self._heads(F.linear(query, w_q, b_q))
        k = self._heads(F.linear(key, w_k, b_k))
        v = self._heads(F.linear(value, w_v, b_v))

        mask = None  # additive, broadcastable to [N, H, L, S]
        if attn_mask is not None:
            if attn_mask.shape == (L, S):
                m = attn_mask
            elif attn_mask.shape == (n * self.num_heads, L, S):
                m = attn_mask.view(n, self.num_heads, L, S)
            else:
                raise ValueError(
                    f"attn_mask must be [L, S] = [{L}, {S}] or [N*H, L, S] = "
                    f"[{n * self.num_heads}, {L}, {S}], got {_shape(attn_mask)}"
                )
            mask = _mask_to_additive(m, "attn_mask", False, q.dtype)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (n, S):
                raise ValueError(
                    f"key_padding_mask must be [N, S] = [{n}, {S}], got {_shape(key_padding_mask)}"
                )
            kp = _mask_to_additive(key_padding_mask, "key_padding_mask", False, q.dtype)
            kp = kp.view(n, 1, 1, S)
            mask = kp if mask is None else mask + kp
        if head_mask is not None and head_mask.shape != (self.num_heads,):
            raise ValueError(f"head_mask must be [H] = [{self.num_heads}], got {_shape(head_mask)}")

        scale = 1.0 / math.sqrt(self.head_dim) if self.scale is None else self.scale
        out, weights = scaled_dot_product_attention(q, k, v, mask, scale=scale)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
            out = weights @ v
        if head_mask is not None:
            out = out * head_mask.to(out.dtype).view(1, -1, 1, 1)
        out = self.out_proj(out.transpose(1, 2).reshape(n, L, self.embed_dim))
        if not need_weights:
            return out, None
        return out, (weights.mean(dim=1) if average_attn_weights else weights)


# ----------------------------------------------------------------------------- softmax analysis


def softmax_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(scores) along the last dim: [..., S] -> [...].

    log S for uniform weights, 0 for a one-hot (saturated) softmax.
    """
    _check_tensor("scores", scores, 1)
    logp = torch.log_softmax(scores, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def softmax_jacobian_norm(scores: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the softmax Jacobian J = d softmax(s)/ds = diag(p) - p p^T.

    Shapes: scores [..., S] -> [...].

    Closed form ||J||_F^2 = sum p^2 - 2 sum p^3 + (sum p^2)^2; it tends to 0 as the softmax
    saturates (vanishing gradients through the attention weights), and is largest near uniform
    weights for small S. Tested against ``torch.autograd.functional.jacobian``.
    """
    _check_tensor("scores", scores, 1)
    p = torch.softmax(scores, dim=-1)
    s2 = (p * p).sum(-1)
    s3 = (p * p * p).sum(-1)
    return (s2 - 2 * s3 + s2 * s2).clamp_min(0).sqrt()


# ----------------------------------------------------------------------- positional encodings


def sinusoidal_encoding(
    n_positions: int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The sinusoidal table of Vaswani et al. 2017 (arXiv:1706.03762, sec. 3.5): [n_positions, dim].

    PE[pos, 2i] = sin(pos / base^(2i/dim)), PE[pos, 2i+1] = cos(pos / base^(2i/dim)); values in
    [-1, 1]; defined for any position (no maximum length). An odd ``dim`` drops the last cosine.

    Raises:
        ValueError: ``n_positions`` or ``dim`` not a positive int, or ``base`` <= 1.
    """
    for name, v in (("n_positions", n_positions), ("dim", dim)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base}")
    pos = torch.arange(n_positions, dtype=torch.float64, device=device)[:, None]
    i2 = torch.arange(0, dim, 2, dtype=torch.float64, device=device)
    angle = pos / base ** (i2 / dim)
    pe = torch.zeros(n_positions, dim + dim % 2, dtype=torch.float64, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe[:, :dim].to(dtype)


class PositionalEncoding(nn.Module):
    """Give a sequence of content vectors their positions: add or concatenate a PE vector.

    Args:
        kind: ``"none"`` (no position information: attention is then permutation-equivariant),
            ``"sinusoidal"`` (fixed table, any length) or ``"learned"`` (a trainable table of
            ``max_len`` rows, as in BERT and ViT; Dosovitskiy et al. 2021, arXiv:2010.11929).
        dim: PE width; with ``combine="add"`` it must equal the content width.
        combine: ``"add"`` (x + PE, Vaswani et al.) or ``"concat"`` ([x, PE] along features).
        max_len: rows of the learned table (the maximum sequence length it can encode).
        init_std: std of the learned table's normal initialisation.

    forward(x [N, L, d]) -> [N, L, d] (add, none) or [N, L, d + dim] (concat).

    Raises:
        ValueError: unknown ``kind``/``combine``, bad sizes; in forward a sequence longer than
            ``max_len`` for a learned table, or a content width that does not match for "add".
    """

    def __init__(
        self,
        kind: str,
        dim: int,
        *,
        combine: str = "add",
        max_len: int = 512,
        init_std: float = 0.5,
    ):
        super().__init__()
        if kind not in PE_KINDS:
            raise ValueError(f"kind must be one of {PE_KINDS}, got {kind!r}")
        if combine not in PE_COMBINES:
            raise ValueError(f"combine must be one of {PE_COMBINES}, got {combine!r}")
        for name, v in (("dim", dim), ("max_len", max_len)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.kind, self.dim, self.combine, self.max_len = kind, dim, combine, max_len
        self.table = (
            nn.Parameter(torch.randn(max_len, dim) * init_std) if kind == "learned" else None
        )

    def out_dim(self, content_dim: int) -> int:
        """Width of the output for content vectors of width ``content_dim``."""
        if self.kind != "none" and self.combine == "concat":
            return content_dim + self.dim
        return content_dim

    def encoding(self, length: int, device=None) -> torch.Tensor:
        """The PE rows for positions 0..length-1: [length, dim]."""
        if self.kind == "learned":
            if length > self.max_len:
                raise ValueError(
                    f"sequence length {length} exceeds max_len={self.max_len} of the "
                    f"learned position table [{self.max_len}, {self.dim}]: a learned "
                    "table has no row for later positions"
                )
            return self.table[:length]
        return sinusoidal_encoding(length, self.dim, device=device or "cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_tensor("x", x, 3)
        if self.kind == "none":
            return x
        n, length, d = x.shape
        pe = self.encoding(length, x.device).to(x.dtype)
        if self.combine == "add":
            if d != self.dim:
                raise ValueError(
                    f"add needs x [N, L, {self.dim}] to match the PE width, got {_shape(x)}"
                )
            return x + pe
        return torch.cat([x, pe.expand(n, length, self.dim)], dim=-1)


# ------------------------------------------------------------------------ tiny transformer


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder block: x + MHA(LN(x)), then x + FF(LN(x)) (FF optional)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, scale: float | None):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, scale=scale)
        self.ff = None
        if d_ff > 0:
            self.ln2 = nn.LayerNorm(d_model)
            self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x, attn_mask=None, head_mask=None):
        a, w = self.attn(
            self.ln1(x), attn_mask=attn_mask, head_mask=head_mask, average_attn_weights=False
        )
        x = x + a
        if self.ff is not None:
            x = x + self.ff(self.ln2(x))
        return x, w


class TinyTransformer(nn.Module):
    """A small transformer encoder for toy sequence tasks and a tiny ViT.

    Tokens [N, L] int64 (``vocab_size``) or vectors [N, L, input_dim] float (e.g. image patches,
    ``input_dim``) -> embedding -> :class:`PositionalEncoding` -> ``num_layers`` pre-LN blocks
    -> LayerNorm -> linear head.

    Args:
        vocab_size / input_dim: exactly one of them (token ids or continuous inputs).
        num_classes: output classes.
        d_model: width of the residual stream. num_heads: heads per block.
        num_layers: blocks. d_ff: hidden width of the feed-forward part (0: attention only).
        pe: ``"none"``, ``"sinusoidal"`` or ``"learned"``. max_len: rows of a learned table.
        combine: ``"add"`` (content width d_model) or ``"concat"`` (content width
            ``d_model - d_pos`` and PE width ``d_pos``: equal model width).
        d_pos: PE width for concat (default d_model // 2).
        scale: attention score multiplier (None: 1/sqrt(d_k); 1.0: unscaled).
        pool: ``"none"`` (per-token logits [N, L, C]), ``"mean"`` or ``"cls"`` ([N, C]).
        causal: mask future positions.

    forward(x, head_mask=None [num_layers, H], return_attention=False) -> logits, or
    (logits, list of per-layer attention weights [N, H, L, L]).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        vocab_size: int | None = None,
        input_dim: int | None = None,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 1,
        d_ff: int = 64,
        pe: str = "sinusoidal",
        max_len: int = 64,
        combine: str = "add",
        d_pos: int | None = None,
        scale: float | None = None,
        pool: str = "none",
        causal: bool = False,
        pe_init_std: float = 0.5,
    ):
        super().__init__()
        if (vocab_size is None) == (input_dim is None):
            raise ValueError("give exactly one of vocab_size (token ids) or input_dim (vectors)")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if combine not in PE_COMBINES:
            raise ValueError(f"combine must be one of {PE_COMBINES}, got {combine!r}")
        if combine == "concat" and pe != "none":
            d_pos = d_model // 2 if d_pos is None else d_pos
            if not 0 < d_pos < d_model:
                raise ValueError(f"d_pos must be in (0, d_model={d_model}), got {d_pos}")
            d_content = d_model - d_pos
        else:
            d_pos, d_content = d_model, d_model
        self.embed = (
            nn.Embedding(vocab_size, d_content)
            if vocab_size is not None
            else nn.Linear(input_dim, d_content)
        )
        self.pos = PositionalEncoding(
            pe, d_pos, combine=combine, max_len=max_len, init_std=pe_init_std
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, d_content)) if pool == "cls" else None
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, num_heads, d_ff, scale) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        self.pool, self.causal = pool, causal
        self.num_layers, self.num_heads = num_layers, num_heads

    def forward(
        self, x: torch.Tensor, head_mask: torch.Tensor | None = None, return_attention: bool = False
    ):
        h = self.embed(x)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], 1, h.shape[-1]), h], dim=1)
        h = self.pos(h)
        length = h.shape[1]
        mask = (
            torch.ones(length, length, dtype=torch.bool, device=h.device).triu(1)
            if self.causal
            else None
        )
        if head_mask is not None and head_mask.shape != (self.num_layers, self.num_heads):
            raise ValueError(
                f"head_mask must be [num_layers, H] = [{self.num_layers}, "
                f"{self.num_heads}], got {_shape(head_mask)}"
            )
        maps = []
        for i, block in enumerate(self.blocks):
            h, w = block(h, mask, None if head_mask is None else head_mask[i])
            maps.append(w)
        h = self.ln(h)
        if self.pool == "mean":
            h = h.mean(1)
        elif self.pool == "cls":
            h = h[:, 0]
        out = self.head(h)
        return (out, maps) if return_attention else out


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches, row-major, as ViT does.

    Args:
        images: [N, C, H, W]; H and W divisible by ``patch``.
        patch: patch side in pixels.

    Returns:
        [N, (H/patch)*(W/patch), C*patch*patch] (Dosovitskiy et al. 2021, arXiv:2010.11929, eq. 1).

    Raises:
        ValueError: wrong rank, or H/W not divisible by ``patch``.
    """
    _check_tensor("images", images, 4)
    if images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got {_shape(images)}")
    n, c, h, w = images.shape
    if not isinstance(patch, int) or patch < 1 or h % patch or w % patch:
        raise ValueError(f"patch must be a positive int dividing H={h} and W={w}, got {patch!r}")
    x = images.unfold(2, patch, patch).unfold(3, patch, patch)  # [N, C, H/p, W/p, p, p]
    return x.permute(0, 2, 3, 1, 4, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)
