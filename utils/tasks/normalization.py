"""Toy problems of notebook 05 (normalisation and residual connections).

:class:`DeepMLP` builds deep fully connected nets of two-layer blocks, with and without identity
shortcuts, for the degradation problem (N6). He, Zhang, Ren & Sun 2016 ("Deep Residual Learning
for Image Recognition", arXiv:1512.03385) observed that a deeper *plain* network reaches a
HIGHER training error than a shallower one, and that the same network with identity shortcuts
h + F(h) does not degrade. Veit, Wilber & Belongie 2016 ("Residual Networks Behave Like
Ensembles of Relatively Shallow Networks", arXiv:1605.06431) deleted single blocks from trained
networks. Both kinds are built from the same layers so the comparison is like for like, on
CPU-sized budgets (the conv ResNet of ``utils.core.models`` is the image-sized version).

The data sets of notebook 05 are ``utils.core.data.mnist`` splits; the instruments it uses
(gradient-direction probes, batch-mean recorder, spectra) are in ``utils.instruments.probes``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.models import NormSpec, _check_norm, norm_layer

__all__ = ["DeepMLP"]


class _Block(nn.Module):
    """F(h) = norm(W2 relu(norm(W1 h))); output relu(h + alpha F(h)) or, plain, relu(F(h))."""

    def __init__(self, width: int, norm: NormSpec, residual: bool, branch_scale: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.norm1, self.norm2 = norm_layer(norm, width, 1), norm_layer(norm, width, 1)
        self.residual, self.branch_scale = residual, branch_scale
        self.deleted = False

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.deleted:  # Veit et al. 2016: the block is skipped, its input passes through
            return h
        f = self.norm2(self.fc2(torch.relu(self.norm1(self.fc1(h)))))
        return torch.relu(h + self.branch_scale * f) if self.residual else torch.relu(f)


class DeepMLP(nn.Module):
    """[N, in_features] -> Linear -> ReLU -> ``blocks`` two-layer blocks -> Linear -> logits.

    The network has ``2 * blocks + 2`` linear layers. With ``residual=True`` each block is
    relu(h + branch_scale * F(h)) (He et al. 2016 basic block, fully connected); with
    ``residual=False`` the same block without the shortcut, relu(F(h)) (a plain net). Weights
    get Kaiming (He) normal init, biases zero. Without normalisation the sum h + F(h) doubles
    the activation variance per block, so the branch is scaled by ``branch_scale`` (default
    1/sqrt(blocks), as in Fixup-style scaled residual branches, Zhang et al. 2019,
    arXiv:1901.09321).

    Args:
        in_features, out_features, width: sizes (ints >= 1); inputs [N, ...] are flattened to
            [N, in_features] float. blocks: number of blocks (int >= 1).
        residual: identity shortcuts on/off. norm: as in ``utils.core.models`` (None, "batch",
            "layer", "group", or a callable ``num_features -> nn.Module``).
        branch_scale: None for 1/sqrt(blocks), else a float > 0.

    Raises:
        ValueError: a size or ``blocks`` that is not an int >= 1, an unknown ``norm``, a
            ``branch_scale`` <= 0.

    Lesions (Veit et al. 2016): ``delete_block(i)`` skips block i, which then passes its input
    through unchanged, in both kinds of net. In a residual net that leaves the shortcut, the
    path every later block was trained with; in a plain net the next block receives a
    representation it was never trained on. ``restore_blocks()`` undoes every deletion.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int,
        blocks: int,
        *,
        residual: bool,
        norm: NormSpec = None,
        branch_scale: float | None = None,
    ):
        super().__init__()
        for name, v in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("width", width),
            ("blocks", blocks),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        _check_norm(norm)
        scale = blocks**-0.5 if branch_scale is None else float(branch_scale)
        if not scale > 0:
            raise ValueError(f"branch_scale must be > 0, got {branch_scale!r}")
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(_Block(width, norm, residual, scale) for _ in range(blocks))
        self.out = nn.Linear(width, out_features)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x.flatten(1)))
        for block in self.blocks:
            h = block(h)
        return self.out(h)

    def delete_block(self, i: int) -> None:
        """Skip block ``i`` (0-based): it passes its input through. IndexError if out of range."""
        if not isinstance(i, int) or not 0 <= i < len(self.blocks):
            raise IndexError(f"block index must be an int in [0, {len(self.blocks)}), got {i!r}")
        self.blocks[i].deleted = True

    def restore_blocks(self) -> None:
        """Undo every :meth:`delete_block`."""
        for b in self.blocks:
            b.deleted = False
