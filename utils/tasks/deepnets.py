"""Deep fully connected nets with and without skip connections, for the degradation problem.

He et al. 2016 ("Deep Residual Learning for Image Recognition", arXiv:1512.03385) observed that
a deeper *plain* network reaches a HIGHER training error than a shallower one (the degradation
problem), and that the same network with identity shortcuts h + F(h) does not degrade. Veit et
al. 2016 ("Residual Networks Behave Like Ensembles of Relatively Shallow Networks",
arXiv:1605.06431) showed that deleting one block from a trained residual network barely hurts,
while deleting a layer from a plain network is fatal. :class:`DeepMLP` builds both kinds with the
same layers so the comparison is like for like, on CPU-sized budgets (the conv ResNet of
``utils.models`` is the image-sized version of the same idea).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.models import NormSpec, _check_norm, norm_layer

__all__ = ["DeepMLP", "layer_grad_norms"]


class _Block(nn.Module):
    """Two linear layers F(h) = W2 relu(norm(W1 h)); output relu(h + alpha F(h)) or relu(F(h))."""

    def __init__(self, width: int, norm: NormSpec, residual: bool, branch_scale: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.norm1, self.norm2 = norm_layer(norm, width, 1), norm_layer(norm, width, 1)
        self.residual, self.branch_scale = residual, branch_scale
        self.deleted = False

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.deleted:  # Veit et al.: drop the block; a residual net keeps its identity path
            return h if self.residual else torch.zeros_like(h)
        f = self.norm2(self.fc2(torch.relu(self.norm1(self.fc1(h)))))
        return torch.relu(h + self.branch_scale * f) if self.residual else torch.relu(f)


class DeepMLP(nn.Module):
    """[N, in_features] -> Linear -> ReLU -> ``blocks`` two-layer blocks -> Linear -> logits.

    The network has ``2 * blocks + 2`` linear layers. With ``residual=True`` each block is
    relu(h + branch_scale * F(h)) (He et al. 2016 basic block, fully connected); with
    ``residual=False`` the same block without the shortcut (a plain net). Weights get Kaiming
    (He) normal init, biases zero. Without normalisation the sum h + F(h) doubles the activation
    variance per block, so the branch is scaled by ``branch_scale`` (default 1/sqrt(blocks), as in
    Fixup-style scaled residual branches, Zhang et al. 2019, arXiv:1901.09321).

    Args:
        in_features, out_features, width: sizes (ints >= 1). blocks: number of blocks (>= 1).
        residual: identity shortcuts on/off. norm: as in ``utils.models`` (None, "batch", ...,
        or a callable). branch_scale: None for 1/sqrt(blocks), else a float > 0.

    ``delete_block(i)`` / ``restore_blocks()`` switch a block off (a residual block becomes the
    identity; a plain block outputs zeros, as there is no other path) for the lesion study.
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
        """Lesion block ``i`` (0-based). Raises IndexError for a block that does not exist."""
        if not 0 <= i < len(self.blocks):
            raise IndexError(f"block index must be in [0, {len(self.blocks)}), got {i}")
        self.blocks[i].deleted = True

    def restore_blocks(self) -> None:
        """Undo every :meth:`delete_block`."""
        for b in self.blocks:
            b.deleted = False


def layer_grad_norms(model: nn.Module) -> list[float]:
    """l2 norm of the weight gradient of every Linear/Conv layer, in forward order.

    Call after ``loss.backward()``. Layers without a gradient give NaN.
    """
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            g = m.weight.grad
            out.append(float(g.norm()) if g is not None else float("nan"))
    return out
