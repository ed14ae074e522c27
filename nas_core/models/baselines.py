"""The registry of hand-made baseline CNNs the searched models are compared with.

Owns :data:`BASELINES` (name -> factory ``(input_shape, n_classes) -> nn.Module``),
:func:`build_baseline` and :func:`build_any` (a spec or ``"baseline:NAME"``).

Baselines: ``resnet18``, ``resnet34``, ``mobilenet_v2`` (torchvision, random
weights: nothing is downloaded) and ``mobilenet_v1`` (Howard et al. 2017,
width multiplier 1.0, written here: a 3x3 stride-2 convolution with 32
channels, then 13 depthwise-separable layers up to 1024 channels, global
average pool, the classifier).

Adaptation to the input (decided here, the usual practice):
- Class count: the classifier has ``n_classes`` outputs.
- Channels: the first convolution takes ``input_shape[0]`` channels.
- Small inputs (height or width < :data:`SMALL_INPUT`, i.e. 128 px): the
  CIFAR-style stem. ResNets get a 3x3 stride-1 first convolution and no
  initial max-pool (total downsampling 8 instead of 32); the MobileNets get a
  stride-1 first convolution (total downsampling 16 instead of 32). Without
  this, a 64 px image is 2x2 (or 1x1) before the last stage.
  Inputs of 128 px and more keep the ImageNet stems.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nas_core.models.builder import ModelError, build_model, check_shape
from nas_core.space import ArchSpec

#: Inputs smaller than this (height or width, px) get the CIFAR-style stem.
SMALL_INPUT = 128

Factory = Callable[[tuple[int, int, int], int], nn.Module]


def _is_small(input_shape: tuple[int, int, int]) -> bool:
    return min(input_shape[1], input_shape[2]) < SMALL_INPUT


def _resnet(depth: int) -> Factory:
    def factory(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
        from torchvision.models import resnet18, resnet34

        model = (resnet18 if depth == 18 else resnet34)(weights=None, num_classes=n_classes)
        channels = input_shape[0]
        if _is_small(input_shape):
            model.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        elif channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        return model

    factory.__doc__ = f"ResNet-{depth} (He et al. 2016, torchvision), adapted to the input and classes."
    return factory


def mobilenet_v2(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018, torchvision, width 1.0), adapted to the input and classes."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    model = tv_mobilenet_v2(weights=None, num_classes=n_classes)
    first = model.features[0][0]
    stride = 1 if _is_small(input_shape) else 2
    if stride != 2 or input_shape[0] != 3:
        conv = nn.Conv2d(input_shape[0], first.out_channels, 3, stride, 1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")
        model.features[0][0] = conv
    return model


class MobileNetV1(nn.Module):
    """MobileNetV1 (Howard et al. 2017), width multiplier 1.0.

    Structure: ``features`` (stem conv-BN-ReLU, then 13 depthwise-separable
    layers, each depthwise 3x3 conv-BN-ReLU and pointwise 1x1 conv-BN-ReLU),
    ``pool`` (global average), ``classifier`` (Linear 1024 -> n_classes).
    """

    #: (out_channels, stride) of the 13 depthwise-separable layers, from the paper's Table 1.
    LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, in_channels: int = 3, n_classes: int = 1000, stem_stride: int = 2):
        super().__init__()

        def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        layers = [conv_bn(in_channels, 32, 3, stem_stride)]
        c = 32
        for out, stride in self.LAYERS:
            layers.append(nn.Sequential(conv_bn(c, c, 3, stride, groups=c), conv_bn(c, out, 1, 1)))
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v1(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """MobileNetV1 (Howard et al. 2017, width 1.0), adapted to the input and classes."""
    return MobileNetV1(input_shape[0], n_classes, stem_stride=1 if _is_small(input_shape) else 2)


#: Baseline name -> factory(input_shape, n_classes). Tests sweep all of it.
BASELINES: dict[str, Factory] = {
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v1": mobilenet_v1,
}

#: Prefix that names a baseline where a spec is expected (CLI ``--arch baseline:resnet18``).
PREFIX = "baseline:"


def build_baseline(name: str, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """A freshly initialised baseline.

    Raises:
        ModelError: an unknown name (the message lists the known ones) or a bad shape.
    """
    key = name.strip().lower()
    if key not in BASELINES:
        raise ModelError(f"unknown baseline {name!r}; known baselines: {', '.join(sorted(BASELINES))}")
    shape = check_shape(input_shape, n_classes)
    return BASELINES[key](shape, int(n_classes))


def build_any(arch: str | ArchSpec, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """Build a spec, or a baseline named ``"baseline:NAME"`` (or a bare baseline name).

    Raises:
        ModelError: an unknown baseline or a bad shape.
    """
    if isinstance(arch, ArchSpec):
        return build_model(arch, input_shape, n_classes)
    name = arch[len(PREFIX):] if arch.startswith(PREFIX) else arch
    return build_baseline(name, input_shape, n_classes)
