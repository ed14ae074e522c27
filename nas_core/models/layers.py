"""The layers every spec network is made of; this file imports only torch.

It owns the exact module structure (and so the ``state_dict`` keys) of a
network built from an :class:`~nas_core.space.ArchSpec`. It deliberately
depends on nothing but ``torch``: :func:`nas_core.models.export.generate_source`
copies this file's text verbatim into a standalone module, so an exported
network is built by the very same code as the one that was trained.

The structure (names are the ``state_dict`` prefixes):

- ``SpecNet``: ``stem``, ``blocks`` (``nn.ModuleList``), ``head``.
- ``Stem``: ``conv`` (k x k, stride, padding k//2, no bias), ``norm``
  (always ``BatchNorm2d``), ``act``.
- ``ConvBlock``: ``conv`` -> ``norm`` -> ``act`` -> [``se``] -> ``dropout``
  -> ``pool``.
- ``ResidualBlock``: ``conv1`` (stride) -> ``norm1`` -> ``act`` -> ``conv2``
  -> ``norm2`` -> [``se``]; plus ``shortcut`` (``Identity`` when stride 1 and
  the channels match, else ``Sequential(conv=1x1 stride, norm=...)`` with keys
  ``shortcut.conv`` / ``shortcut.norm``); add; ``act``; ``dropout``; ``pool``.
- ``MBConvBlock``: [``expand_conv`` 1x1 -> ``expand_norm`` -> act, only when
  expand > 1] -> ``dw_conv`` depthwise (stride) -> ``dw_norm`` -> act ->
  [``se`` on the expanded width] -> ``project_conv`` 1x1 -> ``project_norm``
  (no activation: a linear bottleneck); add the input when stride 1 and the
  channels match; ``dropout``; ``pool``.
- ``DWSepBlock``: ``dw_conv`` depthwise (stride) -> ``dw_norm`` -> act ->
  [``se``] -> ``pw_conv`` 1x1 -> ``pw_norm`` -> act; ``dropout``; ``pool``.
- ``SqueezeExcite``: global average pool -> ``fc1`` (1x1 conv with bias,
  C -> max(8, C // 4)) -> ReLU -> ``fc2`` (1x1 conv with bias) -> sigmoid gate.
- ``Head``: ``pool`` (global average) -> flatten -> [``hidden`` Linear ->
  ``act``, when hidden > 0] -> ``dropout`` -> ``fc`` Linear.

Norms: batch = ``BatchNorm2d``; group = ``GroupNorm(g, C)`` with g the first
of 8, 4, 2, 1 dividing C; layer = ``GroupNorm(1, C)``; instance =
``InstanceNorm2d(C, affine=True)``; none = ``Identity``. Convolutions followed
by a norm have no bias; with norm ``none`` they have one. Spatial convolutions
use padding k // 2, so a stride-s convolution maps n pixels to ceil(n / s), and
the 2x2 pools use ``ceil_mode=True`` so they map n to ceil(n / 2).
"""

from __future__ import annotations

import torch
from torch import nn

#: Activation name -> module class.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "hardswish": nn.Hardswish,
}


def make_act(kind: str) -> nn.Module:
    """A fresh activation module for ``kind`` (relu, relu6, silu, gelu, hardswish)."""
    return ACTIVATIONS[kind]()


def group_count(channels: int) -> int:
    """Groups of a ``group`` norm: the first of 8, 4, 2, 1 that divides ``channels``."""
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalization layer ``kind`` (batch, group, layer, instance, none) for ``channels``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def make_pool(kind: str) -> nn.Module:
    """A 2x2 pool (``max`` or ``avg``, ceil mode) or ``Identity`` for ``none``."""
    if kind == "max":
        return nn.MaxPool2d(2, ceil_mode=True)
    if kind == "avg":
        return nn.AvgPool2d(2, ceil_mode=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pool {kind!r}")


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, norm: str = "batch") -> nn.Conv2d:
    """A same-padded convolution; biased only when no norm follows it."""
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=norm == "none")


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): scale each channel by a gate computed from its mean."""

    def __init__(self, channels: int):
        super().__init__()
        reduced = max(8, channels // 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class Stem(nn.Module):
    """The first convolution; always batch-normalized, whatever the blocks use."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, act: str):
        super().__init__()
        self.conv = conv(in_channels, out_channels, kernel, stride)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ConvBlock(nn.Module):
    """Plain convolution -> norm -> activation, optional SE, dropout, pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: str,
                 act: str, se: bool, dropout: float, pool: str):
        super().__init__()
        self.conv = conv(in_channels, out_channels, kernel, stride, norm=norm)
        self.norm = make_norm(norm, out_channels)
        self.act = make_act(act)
        self.se = SqueezeExcite(out_channels) if se else nn.Identity()
        self.dropout = nn.Dropout2d(dropout)
        self.pool = make_pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.act(self.norm(self.conv(x))))
        return self.pool(self.dropout(x))


class ResidualBlock(nn.Module):
    """Two convolutions with a shortcut (He et al. basic block), then dropout and pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: str,
                 act: str, se: bool, dropout: float, pool: str):
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, kernel, stride, norm=norm)
        self.norm1 = make_norm(norm, out_channels)
        self.act = make_act(act)
        self.conv2 = conv(out_channels, out_channels, kernel, 1, norm=norm)
        self.norm2 = make_norm(norm, out_channels)
        self.se = SqueezeExcite(out_channels) if se else nn.Identity()
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential()
            self.shortcut.add_module("conv", conv(in_channels, out_channels, 1, stride, norm=norm))
            self.shortcut.add_module("norm", make_norm(norm, out_channels))
        self.dropout = nn.Dropout2d(dropout)
        self.pool = make_pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.se(self.norm2(self.conv2(out)))
        out = self.act(out + self.shortcut(x))
        return self.pool(self.dropout(out))


class MBConvBlock(nn.Module):
    """Inverted residual with a linear bottleneck (MobileNetV2 / EfficientNet), then dropout and pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int,
                 norm: str, act: str, se: bool, dropout: float, pool: str):
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand > 1
        if self.has_expand:
            self.expand_conv = conv(in_channels, hidden, 1, norm=norm)
            self.expand_norm = make_norm(norm, hidden)
        else:
            self.expand_conv = nn.Identity()
            self.expand_norm = nn.Identity()
        self.act = make_act(act)
        self.dw_conv = conv(hidden, hidden, kernel, stride, groups=hidden, norm=norm)
        self.dw_norm = make_norm(norm, hidden)
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project_conv = conv(hidden, out_channels, 1, norm=norm)
        self.project_norm = make_norm(norm, out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.dropout = nn.Dropout2d(dropout)
        self.pool = make_pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.act(self.expand_norm(self.expand_conv(out)))
        out = self.se(self.act(self.dw_norm(self.dw_conv(out))))
        out = self.project_norm(self.project_conv(out))
        if self.use_residual:
            out = out + x
        return self.pool(self.dropout(out))


class DWSepBlock(nn.Module):
    """Depthwise-separable convolution (MobileNetV1), then dropout and pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: str,
                 act: str, se: bool, dropout: float, pool: str):
        super().__init__()
        self.dw_conv = conv(in_channels, in_channels, kernel, stride, groups=in_channels, norm=norm)
        self.dw_norm = make_norm(norm, in_channels)
        self.act = make_act(act)
        self.se = SqueezeExcite(in_channels) if se else nn.Identity()
        self.pw_conv = conv(in_channels, out_channels, 1, norm=norm)
        self.pw_norm = make_norm(norm, out_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.pool = make_pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.act(self.dw_norm(self.dw_conv(x))))
        out = self.act(self.pw_norm(self.pw_conv(out)))
        return self.pool(self.dropout(out))


class Head(nn.Module):
    """Global average pool, an optional hidden layer, dropout, then the classifier ``fc``."""

    def __init__(self, in_channels: int, hidden: int, dropout: float, n_classes: int, act: str):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        if hidden > 0:
            self.hidden = nn.Linear(in_channels, hidden)
            self.act = make_act(act)
        else:
            self.hidden = nn.Identity()
            self.act = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden if hidden > 0 else in_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.hidden(self.flatten(self.pool(x))))
        return self.fc(self.dropout(x))


def init_weights(model: nn.Module) -> None:
    """He-normal convolutions and small-normal linear layers, zero biases, unit norms.

    The PyTorch defaults (Kaiming-uniform with a = sqrt(5)) train deep plain
    CNNs noticeably slower; this is the torchvision ResNet recipe.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm | nn.InstanceNorm2d) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SpecNet(nn.Module):
    """A network built from an architecture spec: ``stem`` -> ``blocks`` -> ``head``."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module):
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
