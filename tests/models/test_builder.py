"""The spec -> network builder: shapes, gradients, exact parameter/MAC counts, structure, budget checks."""

import dataclasses
import random

import pytest
import torch
from torch import nn

from nas_core.errors import UserError
from nas_core.models import (
    ModelError,
    SpecNet,
    build_model,
    check_budget,
    count_macs,
    count_params,
    model_size_mb,
    spec_costs,
    validate_full,
)
from nas_core.models.layers import group_count, make_norm
from nas_core.space import ArchSpec, Choices, default_spec, sample

SHAPE = (3, 32, 32)
DEFAULT = Choices.default()


def _spec(blocks, stem=None, head=None) -> ArchSpec:
    return ArchSpec.from_dict({"stem": stem or {}, "blocks": blocks, "head": head or {}})


# Spec A: two plain conv blocks, one with batch norm, one without (so with a conv bias).
SPEC_A = _spec(
    [{"type": "conv", "out_channels": 16}, {"type": "conv", "out_channels": 16, "norm": "none"}],
    stem={"out_channels": 8},
)
# Stem: conv 3*8*9 + BN 2*8 = 232. Block 1: 8*16*9 + BN 2*16 = 1184. Block 2: 16*16*9 + bias 16 = 2320.
# Head: fc 16*4 + 4 = 68.
PARAMS_A = 232 + 1184 + 2320 + 68
# One 32x32 image, nothing downsamples: per conv H*W*C_out*C_in*k*k; fc 16*4.
MACS_A = 1024 * 8 * 27 + 1024 * 16 * 72 + 1024 * 16 * 144 + 16 * 4

# Spec B: residual (projection shortcut, SE) + mbconv (expand 2, group norm) + hidden head.
SPEC_B = _spec(
    [
        {"type": "residual", "out_channels": 16, "stride": 2, "se": True},
        {"type": "mbconv", "out_channels": 16, "expand": 2, "norm": "group", "act": "silu"},
    ],
    stem={"out_channels": 8},
    head={"hidden": 64},
)
# Residual: conv1 8*16*9=1152, norm1 32, conv2 16*16*9=2304, norm2 32, SE (r = max(8, 16//4) = 8):
# fc1 16*8+8=136, fc2 8*16+16=144, shortcut conv 8*16=128 + norm 32 -> 3960.
# MBConv (hidden 32): expand 16*32=512, GN 64, dw 32*9=288, GN 64, project 32*16=512, GN 32 -> 1472.
# Head: hidden 16*64+64=1088, fc 64*4+4=260 -> 1348.
PARAMS_B = 232 + 3960 + 1472 + 1348

# Spec C: one input channel, 5x5 stride-2 stem, dwsep with SE and instance norm, mbconv without expansion.
SPEC_C = _spec(
    [
        {"type": "dwsep", "out_channels": 32, "kernel": 5, "norm": "instance", "se": True},
        {"type": "mbconv", "out_channels": 32, "expand": 1, "norm": "layer"},
    ],
    stem={"out_channels": 16, "kernel": 5, "stride": 2},
)
# Stem: 1*16*25 + 32 = 432. DWSep: dw 16*25=400, IN 32, SE on 16 (r=8): 136+144, pw 16*32=512, IN 64 -> 1288.
# MBConv, expand 1: dw 32*9=288, GN 64, project 32*32=1024, GN 64 -> 1440. Head: 32*3+3 = 99.
PARAMS_C = 432 + 1288 + 1440 + 99


@pytest.mark.parametrize(
    ("spec", "shape", "n_classes", "expected"),
    [(SPEC_A, SHAPE, 4, PARAMS_A), (SPEC_B, SHAPE, 4, PARAMS_B), (SPEC_C, (1, 32, 32), 3, PARAMS_C)],
)
def test_parameter_counts_match_hand_computed_values(spec, shape, n_classes, expected):
    model = build_model(spec, shape, n_classes)
    assert count_params(model) == expected
    assert spec_costs(spec, shape, n_classes)[0] == expected


def test_macs_match_the_formula():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (3, 32, 32)) == 32 * 32 * 8 * 3 * 9
    strided = nn.Conv2d(4, 6, 5, stride=2, padding=2)
    assert count_macs(strided, (4, 17, 17)) == 9 * 9 * 6 * 4 * 25
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(depthwise, (8, 16, 16)) == 16 * 16 * 8 * 9
    assert count_macs(nn.Linear(10, 7), (10,)) == 70
    model = build_model(SPEC_A, SHAPE, 4)
    assert count_macs(model, SHAPE) == MACS_A
    assert spec_costs(SPEC_A, SHAPE, 4) == (PARAMS_A, MACS_A)
    assert model.training  # count_macs restores the mode


def test_model_size_counts_parameters_and_float_buffers():
    model = build_model(SPEC_A, SHAPE, 4)
    buffers = 2 * 8 + 2 * 16  # running mean/var of the two batch norms (num_batches_tracked is int)
    assert model_size_mb(model) == pytest.approx((PARAMS_A + buffers) * 4 / 1e6)


def test_layer_structure_is_the_documented_contract():
    model = build_model(SPEC_B, SHAPE, 4)
    assert isinstance(model, SpecNet) and isinstance(model.blocks, nn.ModuleList)
    keys = set(model.state_dict())
    for key in [
        "stem.conv.weight", "stem.norm.running_mean",
        "blocks.0.conv1.weight", "blocks.0.norm1.weight", "blocks.0.conv2.weight", "blocks.0.norm2.bias",
        "blocks.0.se.fc1.weight", "blocks.0.se.fc1.bias", "blocks.0.se.fc2.weight",
        "blocks.0.shortcut.conv.weight", "blocks.0.shortcut.norm.running_var",
        "blocks.1.expand_conv.weight", "blocks.1.expand_norm.weight", "blocks.1.dw_conv.weight",
        "blocks.1.dw_norm.weight", "blocks.1.project_conv.weight", "blocks.1.project_norm.weight",
        "head.hidden.weight", "head.fc.weight", "head.fc.bias",
    ]:
        assert key in keys, key
    assert model.stem.conv.bias is None and model.stem.conv.padding == (1, 1)
    assert isinstance(model.blocks[1].dw_norm, nn.GroupNorm) and model.blocks[1].dw_norm.num_groups == 8
    assert model.blocks[1].dw_conv.groups == 32
    assert isinstance(model.blocks[1].act, nn.SiLU) and isinstance(model.head.act, nn.SiLU)
    assert isinstance(model.stem.act, nn.ReLU)  # the first block's activation
    c = build_model(SPEC_C, (1, 32, 32), 3)
    assert "blocks.1.expand_conv.weight" not in c.state_dict()  # expand 1: no expansion layer
    assert isinstance(c.blocks[0].dw_norm, nn.InstanceNorm2d) and c.blocks[0].dw_norm.affine
    assert c.blocks[1].dw_norm.num_groups == 1  # layer norm = GroupNorm(1, C)
    a = build_model(SPEC_A, SHAPE, 4)
    assert a.blocks[0].conv.bias is None and a.blocks[1].conv.bias is not None


def test_norms_and_pools():
    assert [group_count(c) for c in (24, 12, 6, 3, 16)] == [8, 4, 2, 1, 8]
    assert isinstance(make_norm("none", 8), nn.Identity)
    spec = _spec([{"out_channels": 16, "pool": "max"}, {"out_channels": 16, "pool": "avg", "stride": 2}])
    model = build_model(spec, (3, 15, 15), 2).eval()
    x = torch.randn(1, 3, 15, 15)
    after0 = model.blocks[0](model.stem(x))
    assert after0.shape[-1] == 8  # ceil(15 / 2)
    assert model.blocks[1](after0).shape[-1] == 2  # stride 2 -> 4, pool -> 2


def _random_valid_specs(n: int, seed: int = 7) -> list[ArchSpec]:
    rng = random.Random(seed)
    specs: list[ArchSpec] = []
    while len(specs) < n:
        spec = sample(DEFAULT, rng)
        if not validate_full(spec, DEFAULT, SHAPE, 5):
            specs.append(spec)
    return specs


@pytest.mark.parametrize("spec", _random_valid_specs(30), ids=lambda s: s.key)
def test_random_specs_forward_and_backward(spec):
    torch.manual_seed(0)
    model = build_model(spec, SHAPE, 5)
    x = torch.randn(3, *SHAPE)
    out = model(x)
    assert out.shape == (3, 5)
    nn.functional.cross_entropy(out, torch.tensor([0, 1, 4])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert spec_costs(spec, SHAPE, 5) == (count_params(model), count_macs(model, SHAPE))
    with torch.no_grad():
        assert model.eval()(x[:1]).shape == (1, 5)


def test_budget_check_names_both_numbers_and_what_to_change():
    assert check_budget(SPEC_A, DEFAULT, SHAPE, 4) == []
    tight = dataclasses.replace(DEFAULT, max_params=1000, max_macs=1_000_000)
    errors = check_budget(SPEC_A, tight, SHAPE, 4)
    assert len(errors) == 2
    assert f"{PARAMS_A:,}" in errors[0] and "1,000" in errors[0] and "max_params" in errors[0]
    assert f"{MACS_A:,}" in errors[1] and "1,000,000" in errors[1] and "max_macs" in errors[1]
    assert "32x32" in errors[1]
    uncapped = dataclasses.replace(DEFAULT, max_params=None, max_macs=None)
    assert check_budget(SPEC_A, uncapped, SHAPE, 4) == []
    just_fits = dataclasses.replace(DEFAULT, max_params=PARAMS_A, max_macs=MACS_A)
    assert check_budget(SPEC_A, just_fits, SHAPE, 4) == []


def test_validate_full_combines_choices_resolution_and_caps():
    spec = default_spec()
    assert validate_full(spec, DEFAULT, (3, 64, 64), 8) == []
    bad = dataclasses.replace(spec, head=dataclasses.replace(spec.head, hidden=100))
    tight = dataclasses.replace(DEFAULT, max_params=10)
    errors = validate_full(bad, tight, (3, 64, 64), 8)
    assert len(errors) == 1 and errors[0].startswith("head.hidden")  # caps only once the spec is valid
    assert "max_params" in validate_full(spec, tight, (3, 64, 64), 8)[0]
    tiny = validate_full(spec, DEFAULT, (3, 4, 4), 8)
    assert tiny and "1x1" in tiny[0]
    inst = _spec([{"out_channels": 16, "stride": 2}, {"out_channels": 16, "norm": "instance"}],
                 stem={"stride": 2, "out_channels": 16})
    errors = validate_full(inst, DEFAULT, (3, 4, 4), 8)
    assert len(errors) == 1 and errors[0].startswith("blocks[1].norm = 'instance'")
    assert validate_full(inst, DEFAULT, (3, 8, 8), 8) == []
    build_model(inst, (3, 8, 8), 8)(torch.randn(2, 3, 8, 8))  # and it really trains at 8 px


def test_bad_shapes_are_user_errors():
    with pytest.raises(ModelError, match="channels, height, width"):
        build_model(SPEC_A, (32, 32), 4)
    with pytest.raises(ModelError, match="at least 2"):
        build_model(SPEC_A, SHAPE, 1)
    with pytest.raises(UserError):
        validate_full(SPEC_A, DEFAULT, (3, 0, 32), 4)


def test_arithmetic_costs_equal_the_counters_at_odd_non_square_sizes():
    rng = random.Random(11)
    checked = 0
    while checked < 8:
        spec = sample(DEFAULT, rng)
        shape = (rng.choice([1, 3]), rng.randint(17, 41), rng.randint(17, 41))
        if validate_full(spec, dataclasses.replace(DEFAULT, max_params=None, max_macs=None), shape, 3):
            continue
        model = build_model(spec, shape, 3)
        assert spec_costs(spec, shape, 3) == (count_params(model), count_macs(model, shape)), (spec, shape)
        checked += 1


def test_unbuildable_specs_are_user_errors_naming_every_field():
    data = {"blocks": [{"act": "swish", "kernel": 4}, {"norm": "batchnorm", "pool": "min", "dropout": 1.5}],
            "head": {"hidden": -3}}
    spec = ArchSpec.from_dict(data)  # well-typed, so parsing accepts it; only Choices would reject it
    with pytest.raises(ModelError) as info:
        build_model(spec, SHAPE, 4)
    message = str(info.value)
    for part in ["blocks[0].act = 'swish'", "blocks[0].kernel = 4", "blocks[1].norm = 'batchnorm'",
                 "blocks[1].pool = 'min'", "blocks[1].dropout = 1.5", "head.hidden = -3"]:
        assert part in message
    assert "relu6" in message and "instance" in message  # the allowed values
    with pytest.raises(ModelError):
        spec_costs(spec, SHAPE, 4)


def test_mac_counter_equals_torch_flop_counter_on_specs_baselines_and_products():
    """count_macs counts without torch's FlopCounterMode (it imports torch._dynamo); held to it here."""
    from torch.utils.flop_counter import FlopCounterMode

    from nas_core.models.baselines import build_baseline

    def torch_macs(model, shape):
        model.eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros((1, *shape)))
        return counter.get_total_flops() // 2

    rng = random.Random(3)
    models = []
    unbounded = dataclasses.replace(DEFAULT, max_params=None, max_macs=None)
    while len(models) < 6:
        spec = sample(DEFAULT, rng)
        if not validate_full(spec, unbounded, SHAPE, 5):
            models.append((build_model(spec, SHAPE, 5), SHAPE))
    models += [(build_baseline(name, SHAPE, 5), SHAPE) for name in ("resnet18", "mobilenet_v1", "mobilenet_v2")]

    class Products(nn.Module):  # matmul, mm, bmm, addmm, baddbmm, a 1-D product and a conv1d
        def forward(self, x):
            a = x.flatten(1)[:, :12].reshape(1, 3, 4)
            b = torch.ones(4, 5)
            out = torch.matmul(a, b).sum() + torch.mm(a[0], b).sum() + torch.bmm(a, b.expand(1, 4, 5)).sum()
            out = out + torch.addmm(torch.zeros(3, 5), a[0], b).sum() + torch.baddbmm(torch.zeros(1, 3, 5), a,
                                                                                     b[None]).sum()
            return out + nn.functional.conv1d(a, torch.ones(2, 3, 3)).sum()

    class VectorProduct(nn.Module):  # torch's counter skips matrix-vector products (aten.mv); ours counts them
        def forward(self, x):
            return (x.flatten(1)[0, :4] @ torch.ones(4, 3)).sum() + (torch.ones(2, 4) @ x.flatten()[:4]).sum()

    models.append((Products(), SHAPE))
    for model, shape in models:
        assert count_macs(model, shape) == torch_macs(model, shape) > 0, type(model).__name__
    assert count_macs(VectorProduct(), SHAPE) == 4 * 3 + 2 * 4
