"""The baselines registry: every entry builds, adapts to the input and class count, and trains."""

import pytest
import torch
from torch import nn

from nas_core.errors import UserError
from nas_core.models import SpecNet, count_macs, count_params
from nas_core.models.baselines import BASELINES, MobileNetV1, build_any, build_baseline
from nas_core.space import default_spec


def test_registry_has_the_four_baselines():
    assert set(BASELINES) == {"resnet18", "resnet34", "mobilenet_v2", "mobilenet_v1"}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_forward_and_backward_at_32px(name):
    torch.manual_seed(0)
    model = build_baseline(name, (3, 32, 32), 7)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    nn.functional.cross_entropy(out, torch.tensor([0, 6])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_takes_any_channel_count(name):
    model = build_baseline(name, (1, 24, 24), 3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 24, 24)).shape == (1, 3)


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_small_inputs_get_the_cifar_stem_and_large_ones_keep_imagenets(name):
    small, large = build_baseline(name, (3, 64, 64), 2), build_baseline(name, (3, 224, 224), 2)
    assert _first_conv(small).stride == (1, 1)
    assert _first_conv(large).stride == (2, 2)
    if name.startswith("resnet"):
        assert _first_conv(small).kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
        assert _first_conv(large).kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)


def test_costs_match_the_published_imagenet_numbers():
    with torch.device("meta"):
        v1 = MobileNetV1(3, 1000)
        r18 = build_baseline("resnet18", (3, 224, 224), 1000)
    # Howard et al. 2017, Table 8 (1.0 MobileNet-224): 4.2M parameters, 569M mult-adds.
    assert count_params(v1) == 4_231_976
    assert abs(count_macs(v1, (3, 224, 224)) / 1e6 - 569) < 2
    # ResNet-18 (torchvision): 11.69M parameters, 1.81 GMACs at 224 px.
    assert count_params(r18) == 11_689_512
    assert abs(count_macs(r18, (3, 224, 224)) / 1e9 - 1.81) < 0.02


def test_unknown_baseline_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        build_baseline("vgg16", (3, 32, 32), 2)
    message = str(info.value)
    assert "vgg16" in message
    for name in BASELINES:
        assert name in message


def test_build_any_accepts_specs_and_baseline_names():
    assert isinstance(build_any(default_spec(), (3, 32, 32), 4), SpecNet)
    model = build_any("baseline:mobilenet_v1", (3, 32, 32), 4)
    assert isinstance(model, MobileNetV1) and model.classifier.out_features == 4
    assert isinstance(build_any("resnet18", (3, 32, 32), 4), nn.Module)
    with pytest.raises(UserError, match="known baselines"):
        build_any("baseline:nope", (3, 32, 32), 4)
