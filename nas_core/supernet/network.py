"""The elastic weight-sharing super-network and the extraction of standalone sub-networks.

Owns the elastic layers (convolutions sliced on input/output channels, a
depthwise convolution whose smaller kernels are centre crops of the largest,
optionally passed through Once-for-All's kernel transformation matrices, batch
norm and squeeze-excite on sliced channels), :class:`SuperNet` (runs any
sub-network of a :class:`~nas_core.supernet.space.SupernetSpaceConfig`),
:func:`extract_subnet` (the standalone ``build_model`` network of a sub-network
with its inherited weights), :func:`recalibrate_bn` and
:func:`sort_channels` (Once-for-All's importance sorting of expanded channels).

The module names mirror ``nas_core.models.builder.SpecNet`` (``stem.conv``,
``stem.norm``, ``blocks.N.expand_conv`` ... ``head.fc``) so a sub-network's
weights are a slice of the super-network's under the same names; only block
indices differ (the super-network keeps ``max depth`` slots per stage).

Slicing rules (Once-for-All): the first ``n`` output channels, the first ``n``
input channels, the centre ``k x k`` of the depthwise kernel; the expanded
width of a block is its *active* input width x the expand ratio, and the SE
bottleneck is ``max(8, hidden // 4)``, exactly as the builder computes them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nas_core.models import build_model
from nas_core.models.layers import init_weights, make_act
from nas_core.supernet.space import (
    StageConfig,
    SubnetConfig,
    SupernetSpaceConfig,
    check_config,
    largest,
    to_arch_spec,
)

log = logging.getLogger(__name__)


class DynamicConv2d(nn.Conv2d):
    """A dense convolution whose input and output channels are the first ``n`` of the stored ones."""

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:  # noqa: D401
        out = self.out_channels if out_channels is None else out_channels
        w = self.weight[:out, : x.shape[1]]
        b = None if self.bias is None else self.bias[:out]
        return F.conv2d(x, w, b, self.stride, self.padding)


class DynamicDepthwiseConv2d(nn.Module):
    """A depthwise convolution with elastic channels and kernel (centre crop of the largest).

    With ``transform`` the cropped kernel goes through a learned matrix (identity at
    start), Once-for-All's kernel transformation: 7 -> 5 through ``transform_7to5``,
    5 -> 3 through ``transform_5to3`` applied to the centre of the transformed 5x5.
    """

    def __init__(self, max_channels: int, kernels: Iterable[int], stride: int, transform: bool = False):
        super().__init__()
        self.kernels = tuple(sorted(kernels))
        self.max_kernel = self.kernels[-1]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        # The builder's initialization of its depthwise nn.Conv2d (init_weights: He-normal, fan out).
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.transform = transform
        self.transforms = nn.ParameterDict()
        if transform:
            for big, small in zip(self.kernels[::-1], self.kernels[::-1][1:]):
                self.transforms[f"{big}to{small}"] = nn.Parameter(torch.eye(small * small))

    def kernel(self, k: int, channels: int | None = None) -> torch.Tensor:
        """The effective ``k x k`` kernel of the first ``channels`` channels."""
        w = self.weight if channels is None else self.weight[:channels]
        big = self.max_kernel
        for small in self.kernels[::-1][1:]:
            if small < k:
                break
            start = (big - small) // 2
            w = w[:, :, start : start + small, start : start + small]
            if self.transform:
                m = self.transforms[f"{big}to{small}"]
                w = (w.reshape(w.shape[0], small * small) @ m).reshape(w.shape[0], 1, small, small)
            big = small
        if w.shape[-1] != k:
            raise ValueError(f"kernel {k} is not one of {self.kernels}")
        return w

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:  # noqa: D401
        c = x.shape[1]
        return F.conv2d(x, self.kernel(k, c), None, self.stride, k // 2, 1, c)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the first ``C`` channels of the stored statistics and affine parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        # Same bookkeeping as nn.BatchNorm2d.forward, on slices (views update the stored stats in place).
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c],
            self.bias[:c],
            use_batch,
            factor,
            self.eps,
        )


class DynamicSqueezeExcite(nn.Module):
    """The builder's SqueezeExcite (avg pool, fc1, ReLU, fc2, sigmoid) on an elastic width."""

    def __init__(self, max_channels: int):
        super().__init__()
        r = max(8, max_channels // 4)
        self.fc1 = DynamicConv2d(max_channels, r, 1, bias=True)
        self.fc2 = DynamicConv2d(r, max_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        c = x.shape[1]
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(self.fc1(s, max(8, c // 4)))
        s = self.fc2(s, c)
        return x * torch.sigmoid(s)


class ElasticMBConv(nn.Module):
    """An MBConv block of the builder's structure with elastic width, kernel and expand ratio."""

    def __init__(
        self, max_in: int, max_out: int, space: SupernetSpaceConfig, stage: StageConfig, stride: int
    ):
        super().__init__()
        hid = max_in * max(space.expands)
        self.stride = stride
        self.expand_conv = DynamicConv2d(max_in, hid, 1, bias=False)
        self.expand_norm = DynamicBatchNorm2d(hid)
        self.dw_conv = DynamicDepthwiseConv2d(hid, space.kernels, stride, transform=space.kernel_transform)
        self.dw_norm = DynamicBatchNorm2d(hid)
        self.se = DynamicSqueezeExcite(hid) if stage.se else None
        self.project_conv = DynamicConv2d(hid, max_out, 1, bias=False)
        self.project_norm = DynamicBatchNorm2d(max_out)
        self.act = make_act(stage.act)

    def forward(self, x: torch.Tensor, out_channels: int, kernel: int, expand: int) -> torch.Tensor:  # noqa: D401
        c_in = x.shape[1]
        h = self.act(self.expand_norm(self.expand_conv(x, c_in * expand)))
        h = self.act(self.dw_norm(self.dw_conv(h, kernel)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_norm(self.project_conv(h, out_channels))
        if self.stride == 1 and c_in == out_channels:
            h = h + x
        return h


class _Stem(nn.Module):
    def __init__(self, space: SupernetSpaceConfig, act: str, in_channels: int):
        super().__init__()
        k = space.stem_kernel
        self.conv = DynamicConv2d(
            in_channels, max(space.stem_widths), k, space.stem_stride, k // 2, bias=False
        )
        self.norm = DynamicBatchNorm2d(max(space.stem_widths))
        self.act = make_act(act)

    def forward(self, x: torch.Tensor, width: int) -> torch.Tensor:  # noqa: D401
        return self.act(self.norm(self.conv(x, width)))


class _Head(nn.Module):
    def __init__(self, max_in: int, n_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(max_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.dropout(x)
        return F.linear(x, self.fc.weight[:, : x.shape[1]], self.fc.bias)


class SuperNet(nn.Module):
    """The elastic MobileNetV3-style super-network.

    ``forward(x)`` runs the active sub-network (:meth:`set_active`; the largest by
    default); ``forward(x, config)`` runs ``config`` without changing it.

    Args:
        space: the elastic dimensions.
        n_classes: classifier outputs.
        image_size: the square training resolution (recorded for extraction).
        in_channels: image channels.
    """

    def __init__(
        self, space: SupernetSpaceConfig, n_classes: int, image_size: int = 64, in_channels: int = 3
    ):
        super().__init__()
        self.space = space
        self.n_classes = n_classes
        self.image_size = image_size
        self.in_channels = in_channels
        self.stem = _Stem(space, space.stages[0].act, in_channels)
        blocks = []
        # Block slot -> (stage, index in stage); the super-network keeps max-depth slots per stage.
        self.slots: list[tuple[int, int]] = []
        prev_max = max(space.stem_widths)
        for s, stage in enumerate(space.stages):
            for i in range(max(stage.depths)):
                max_in = prev_max if i == 0 else max(stage.widths)
                blocks.append(
                    ElasticMBConv(max_in, max(stage.widths), space, stage, stage.stride if i == 0 else 1)
                )
                self.slots.append((s, i))
            prev_max = max(stage.widths)
        self.blocks = nn.ModuleList(blocks)
        self.head = _Head(prev_max, n_classes, space.head_dropout)
        init_weights(self)  # the builder's recipe, so a sub-network starts like a from-scratch candidate
        self.active: SubnetConfig = largest(space)

    def set_active(self, config: SubnetConfig) -> None:
        """Make ``config`` the sub-network :meth:`forward` runs.

        Raises:
            SubnetError: when ``config`` is not in the space.
        """
        self.active = check_config(config, self.space)

    def active_slots(self, config: SubnetConfig) -> list[int]:
        """Super-network block slots the sub-network uses, in order."""
        return [j for j, (s, i) in enumerate(self.slots) if i < config.depths[s]]

    def forward(self, x: torch.Tensor, config: SubnetConfig | None = None) -> torch.Tensor:  # noqa: D401
        cfg = self.active if config is None else config
        x = self.stem(x, cfg.stem_width)
        for j, (s, i) in enumerate(self.slots):
            if i < cfg.depths[s]:
                x = self.blocks[j](x, cfg.widths[s], cfg.kernels[s][i], cfg.expands[s][i])
        return self.head(x)


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def subnet_state_dict(
    supernet: SuperNet, config: SubnetConfig, target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The sub-network's weights, keyed and shaped like ``target`` (a standalone state dict).

    Every tensor is the leading slice of the super-network tensor of the same name
    (block indices remapped to the super-network's slots); depthwise kernels are the
    effective (cropped, transformed) kernels.

    Raises:
        KeyError: a target tensor has no counterpart (the builder's structure changed).
    """
    slots = supernet.active_slots(config)
    own = supernet.state_dict()
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, ref in target.items():
            m = _BLOCK_KEY.match(name)
            src_name = f"blocks.{slots[int(m.group(1))]}.{m.group(2)}" if m else name
            if m and m.group(2) == "dw_conv.weight":
                block = supernet.blocks[slots[int(m.group(1))]]
                k = ref.shape[-1]
                out[name] = block.dw_conv.kernel(k, ref.shape[0]).detach().clone()
                continue
            if src_name not in own:
                raise KeyError(f"super-network has no tensor {src_name!r} for sub-network tensor {name!r}")
            src = own[src_name]
            if src.dim() != ref.dim():
                raise KeyError(f"{name}: super-network tensor has {src.dim()} dims, sub-network {ref.dim()}")
            if src.dim() == 0:
                out[name] = src.clone()
                continue
            index = tuple(slice(0, n) for n in ref.shape)
            sliced = src[index]
            if sliced.shape != ref.shape:
                raise KeyError(f"{name}: cannot slice {tuple(src.shape)} to {tuple(ref.shape)}")
            out[name] = sliced.clone()
    return out


def extract_subnet(supernet: SuperNet, config: SubnetConfig) -> nn.Module:
    """A standalone ``build_model`` network of ``config`` carrying the super-network's weights.

    The result is an ordinary network (same class, keys and shapes as any candidate
    built from :func:`~nas_core.supernet.space.to_arch_spec`), in the super-network's
    train/eval mode, with the super-network's sliced batch-norm statistics (recalibrate
    them with :func:`recalibrate_bn` before measuring).

    Raises:
        SubnetError: when ``config`` is not in the super-network's space.
    """
    config = check_config(config, supernet.space)
    spec = to_arch_spec(config, supernet.space)
    shape = (supernet.in_channels, supernet.image_size, supernet.image_size)
    model = build_model(spec, shape, supernet.n_classes)
    model.load_state_dict(subnet_state_dict(supernet, config, model.state_dict()), strict=True)
    model.train(supernet.training)
    return model


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every batch norm's running statistics on ``batches`` (Once-for-All's BN calibration).

    Running statistics are reset and accumulated as a plain average over the batches
    (momentum None), forward in train mode without gradients; dropout is disabled
    meanwhile so it does not skew the statistics. The model ends in eval mode.

    Returns:
        How many images were used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in norms:
        m.train()
    n = 0
    with torch.no_grad():
        for x in batches:
            model(x)
            n += x.shape[0]
    for m, mom in zip(norms, saved):
        m.momentum = mom
    model.eval()
    return n


def sort_channels(supernet: SuperNet) -> None:
    """Reorder every block's expanded channels by importance (Once-for-All, elastic expand).

    Importance of a hidden channel = L1 norm of its column of ``project_conv``; the
    most important come first so that small expand ratios keep them. The largest
    network computes the same function before and after (a permutation of hidden units).
    """
    with torch.no_grad():
        for block in supernet.blocks:
            importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
            order = torch.argsort(importance, descending=True)
            block.project_conv.weight.copy_(block.project_conv.weight[:, order])
            block.expand_conv.weight.copy_(block.expand_conv.weight[order])
            block.dw_conv.weight.copy_(block.dw_conv.weight[order])
            for norm in (block.expand_norm, block.dw_norm):
                norm.weight.copy_(norm.weight[order])
                norm.bias.copy_(norm.bias[order])
                norm.running_mean.copy_(norm.running_mean[order])
                norm.running_var.copy_(norm.running_var[order])
            if block.se is not None:
                block.se.fc1.weight.copy_(block.se.fc1.weight[:, order])
                block.se.fc2.weight.copy_(block.se.fc2.weight[order])
                block.se.fc2.bias.copy_(block.se.fc2.bias[order])
