"""Small models for CPU-sized experiments: an MLP, a small CNN and a small ResNet.

All take a ``norm`` argument: ``None``, ``"batch"``, ``"layer"``, ``"group"``, or a callable
``num_features -> nn.Module`` (so a from-scratch or noisy BatchNorm can be plugged in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

NORMS = (None, "batch", "layer", "group")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}
INITS = ("default", "kaiming", "xavier")

NormSpec = str | Callable[[int], nn.Module] | None


def _check_norm(norm: NormSpec) -> None:
    if not (norm in NORMS or callable(norm)):
        raise ValueError(
            f"norm must be one of {NORMS} or a callable num_features -> nn.Module, got {norm!r}"
        )


def _positive_ints(name: str, values: Sequence[int], allow_empty: bool = False) -> tuple[int, ...]:
    vals = tuple(values)
    if not vals and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in vals):
        raise ValueError(f"{name} must be positive ints, got {values!r}")
    return vals


def norm_layer(norm: NormSpec, num_features: int, dims: int) -> nn.Module:
    """Build a normalisation layer for ``dims``-D features (1: [N, C]; 2: [N, C, H, W]).

    ``"layer"`` on images is GroupNorm with one group (normalises over C, H, W); ``"group"`` uses
    gcd(C, 8) groups (Wu & He 2018, arXiv:1803.08494, use 32 groups on wider nets).
    """
    _check_norm(norm)
    if norm is None:
        return nn.Identity()
    if callable(norm):
        return norm(num_features)
    if norm == "batch":
        return nn.BatchNorm1d(num_features) if dims == 1 else nn.BatchNorm2d(num_features)
    if norm == "layer":
        return nn.LayerNorm(num_features) if dims == 1 else nn.GroupNorm(1, num_features)
    return nn.GroupNorm(math.gcd(num_features, 8), num_features)


class MLP(nn.Module):
    """Fully connected network: [N, in_features] -> [N, out_features] logits.

    Each hidden layer is Linear -> (norm) -> activation -> (dropout); with
    ``norm_position="after"`` the norm follows the activation instead.

    Args:
        in_features: input width. hidden: hidden widths (may be empty: a linear model).
        out_features: output width. activation: ``relu``, ``tanh``, ``gelu`` or ``identity``.
        norm: see module doc. norm_position: ``"before"`` or ``"after"`` the activation.
        dropout: dropout probability in [0, 1).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: str = "relu",
        norm: NormSpec = None,
        norm_position: str = "before",
        dropout: float = 0.0,
    ):
        super().__init__()
        _positive_ints("in_features/out_features", (in_features, out_features))
        hidden = _positive_ints("hidden", hidden, allow_empty=True)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        _check_norm(norm)
        if norm_position not in ("before", "after"):
            raise ValueError(f"norm_position must be 'before' or 'after', got {norm_position!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            act, nrm = ACTIVATIONS[activation](), norm_layer(norm, h, 1)
            layers += [nrm, act] if norm_position == "before" else [act, nrm]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """Conv net: [N, C, H, W] -> [N, num_classes] logits.

    Each stage is conv3x3 -> (norm) -> ReLU -> maxpool 2x2; then global average pooling and a
    linear head, so any input size >= 2**len(channels) works.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        *,
        norm: NormSpec = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        _positive_ints("in_channels/num_classes", (in_channels, num_classes))
        channels = _positive_ints("channels", channels)
        _check_norm(norm)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1),
                norm_layer(norm, c, 2),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"SmallCNN expects x of shape [N, C, H, W], got {tuple(x.shape)}")
        h = self.features(x).mean(dim=(2, 3))
        return self.head(self.dropout(h))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016, arXiv:1512.03385): relu(F(x) + shortcut(x)).

    F = conv3x3 -> norm -> ReLU -> conv3x3 -> norm. The shortcut is the identity, or a 1x1
    conv + norm when the shape changes. ``residual=False`` drops the shortcut (a plain block).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        *,
        norm: NormSpec = "batch",
        residual: bool = True,
    ):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm is None)
        self.norm1 = norm_layer(norm, c_out, 2)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm is None)
        self.norm2 = norm_layer(norm, c_out, 2)
        self.shortcut: nn.Module = nn.Identity()
        if residual and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=norm is None), norm_layer(norm, c_out, 2)
            )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch F(x)."""
        return self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.residual:
            out = out + self.shortcut(x)
        return torch.relu(out)


class ResNet(nn.Module):
    """Small ResNet: [N, C, H, W] -> [N, num_classes] logits.

    Named parts (for freezing, per-part learning rates and block deletion): ``stem`` (conv3x3 +
    norm + ReLU), ``stage1`` .. ``stageK`` (``nn.Sequential`` of :class:`BasicBlock`; stages
    after the first downsample by 2) and ``head`` (linear on globally average-pooled features).

    Args:
        in_channels, num_classes: input channels and classes.
        widths: channels per stage, e.g. (16, 32, 64).
        blocks: blocks per stage (an int for all stages, or one per stage).
        norm: see module doc (default BatchNorm).
        residual: ``False`` builds the same network without shortcuts (a "plain" net).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        blocks: int | Sequence[int] = 1,
        *,
        norm: NormSpec = "batch",
        residual: bool = True,
    ):
        super().__init__()
        _positive_ints("in_channels/num_classes", (in_channels, num_classes))
        widths = _positive_ints("widths", widths)
        blocks = (blocks,) * len(widths) if isinstance(blocks, int) else tuple(blocks)
        blocks = _positive_ints("blocks", blocks)
        if len(blocks) != len(widths):
            raise ValueError(f"blocks must have one entry per stage ({len(widths)}), got {blocks}")
        _check_norm(norm)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=norm is None),
            norm_layer(norm, widths[0], 2),
            nn.ReLU(),
        )
        c_in = widths[0]
        self.stage_names: list[str] = []
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True), start=1):
            stage = nn.Sequential(
                *[
                    BasicBlock(
                        c_in if j == 0 else w,
                        w,
                        (2 if i > 1 and j == 0 else 1),
                        norm=norm,
                        residual=residual,
                    )
                    for j in range(n)
                ]
            )
            self.add_module(f"stage{i}", stage)
            self.stage_names.append(f"stage{i}")
            c_in = w
        self.head = nn.Linear(c_in, num_classes)
        self.feature_dim = c_in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, widths[-1]] (the input of ``head``)."""
        if x.dim() != 4:
            raise ValueError(f"ResNet expects x of shape [N, C, H, W], got {tuple(x.shape)}")
        h = self.stem(x)
        for name in self.stage_names:
            h = getattr(self, name)(h)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def init_weights(model: nn.Module, scheme: str = "kaiming") -> nn.Module:
    """Re-initialise every Linear and Conv layer of ``model`` in place; returns ``model``.

    * ``"default"``: the layer's own ``reset_parameters()`` (PyTorch: kaiming_uniform with
      a=sqrt(5), i.e. weight variance 1/(3 fan_in), and a uniform bias).
    * ``"kaiming"``: ``nn.init.kaiming_normal_`` (fan_in, ReLU gain: variance 2/fan_in; He et al.
      2015, arXiv:1502.01852) and zero bias — the ``init_param`` pattern of the group's
      assignment (M2 in docs/questions.md).
    * ``"xavier"``: ``nn.init.xavier_normal_`` (variance 2/(fan_in+fan_out); Glorot & Bengio
      2010) and zero bias.
    """
    if scheme not in INITS:
        raise ValueError(f"scheme must be one of {INITS}, got {scheme!r}")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            if scheme == "default":
                m.reset_parameters()
                continue
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
